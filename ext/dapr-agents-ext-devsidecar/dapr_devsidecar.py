"""Entry point of the ``dapr-devsidecar`` command, outside the ``dapr_agents`` package on purpose.

When dapr-agents is installed, ``dapr_agents`` is a regular package and Python runs its
``__init__`` (which imports ``DurableAgent`` and everything behind it: 7-10 s, ~160 MB) before
any ``dapr_agents.ext`` module. The sidecar never uses dapr-agents, so this module puts a light
stand-in for ``dapr_agents`` and ``dapr_agents.ext`` into ``sys.modules`` first: it has the real
search path, so ``dapr_agents.ext.devsidecar`` imports as usual, and it runs the real
``dapr_agents/__init__.py`` on the first attribute anyone asks of it, so nothing breaks if code in
this process does use dapr-agents.

``python -m dapr_devsidecar run ...`` is the same as ``dapr-devsidecar run ...``.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from typing import Any


class _DeferredPackage(types.ModuleType):
    """``dapr_agents`` with its search path, whose ``__init__`` runs on first attribute access."""

    def __getattr__(self, name: str) -> Any:
        init = self.__dict__.get("__file__")
        if init and not self.__dict__.get("_dapr_devsidecar_loaded"):
            self.__dict__["_dapr_devsidecar_loaded"] = True
            loader = importlib.machinery.SourceFileLoader(self.__name__, init)
            loader.exec_module(self)  # runs dapr_agents/__init__.py into this very module
            if name in self.__dict__:
                return self.__dict__[name]
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")


def _defer_dapr_agents_init() -> None:
    if "dapr_agents" in sys.modules:
        return
    spec = importlib.util.find_spec("dapr_agents")  # finds, does not import
    if spec is None or spec.submodule_search_locations is None:
        return
    package = _DeferredPackage("dapr_agents")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    if spec.origin and spec.origin.endswith("__init__.py"):
        package.__file__ = spec.origin  # a regular package (dapr-agents installed): defer its init
    sys.modules["dapr_agents"] = package


def main() -> int:
    _defer_dapr_agents_init()
    from dapr_agents.ext.devsidecar._cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
