"""Name resolution between dev sidecars on one machine: a registry of files in a shared folder.

daprd finds another app's sidecar through a name-resolution component (mDNS by default in
self-hosted mode, or ``nameresolution.sqlite`` on one machine). The dev sidecar does the same
with a folder: every running sidecar writes ``<home>/apps/<namespace>/<app-id>/<pid>-<port>.json``
naming its internal gRPC address, and removes it when it stops. An entry whose process is gone
(a crash, SIGKILL) is ignored and deleted by the next lookup. Several live entries for one app id
are replicas; a lookup picks one at random, as daprd does.

``<home>`` is ``DAPR_DEVSIDECAR_HOME`` or ``~/.dapr/devsidecar``, the folder ``dapr-devsidecar run
--runtime daprd`` also keeps its placement, scheduler and ``nameresolution.sqlite`` database in.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

_log = logging.getLogger(__name__)


def registry_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The folder of the machine's registry: ``home``, ``DAPR_DEVSIDECAR_HOME`` or
    ``~/.dapr/devsidecar`` (next to ``DAPR_INSTALL_DIR`` when that is set)."""
    if home is not None:
        return Path(home)
    from ._daprd import _home

    return _home(None)


def _process_start(pid: int) -> str | None:
    # The kernel's start time of pid (Linux), so a reused pid is not taken for the sidecar.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if started is not None:
        current = _process_start(pid)
        if current is not None and current != started:
            return False
    return True


def _segment(text: str) -> str:
    return urllib.parse.quote(text or "default", safe="")


@dataclass(frozen=True)
class Registration:
    """One sidecar's entry; :meth:`Registry.unregister` removes it."""

    app_id: str
    namespace: str
    address: str
    path: Path


class Registry:
    """The app registry in ``<home>/apps``."""

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        self.root = registry_home(home) / "apps"

    def _folder(self, app_id: str, namespace: str) -> Path:
        return self.root / _segment(namespace) / _segment(app_id)

    def register(self, app_id: str, namespace: str, address: str) -> Registration:
        """Announce that ``app_id``'s sidecar takes internal calls on ``address`` (host:port)."""
        folder = self._folder(app_id, namespace)
        folder.mkdir(parents=True, exist_ok=True)
        self.sweep()
        pid = os.getpid()
        entry = {
            "appID": app_id,
            "namespace": namespace,
            "address": address,
            "pid": pid,
            "started": _process_start(pid),
        }
        path = folder / f"{pid}-{address.rsplit(':', 1)[-1]}.json"
        # Written aside and renamed, so a lookup never reads half an entry.
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(entry, handle)
        os.replace(temporary, path)
        _log.debug("registered app %r at %s in %s", app_id, address, path)
        return Registration(app_id, namespace, address, path)

    def sweep(self) -> None:
        """Delete every entry whose process is gone (SIGKILLed sidecars leave theirs)."""
        for path in self.root.glob("*/*/*.json"):
            try:
                entry = json.loads(path.read_text())
                pid, started = int(entry["pid"]), entry.get("started")
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if not _alive(pid, started):
                with contextlib.suppress(OSError):
                    path.unlink()

    def unregister(self, registration: Registration) -> None:
        with contextlib.suppress(FileNotFoundError):
            registration.path.unlink()

    def addresses(self, app_id: str, namespace: str = "") -> list[str]:
        """Every live address of ``app_id`` (stale entries are deleted on the way)."""
        folder = self._folder(app_id, namespace)
        try:
            paths = sorted(folder.glob("*.json"))
        except OSError:
            return []
        found = []
        for path in paths:
            try:
                entry = json.loads(path.read_text())
                pid, address = int(entry["pid"]), str(entry["address"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # being written, or not ours
            if _alive(pid, entry.get("started")):
                found.append(address)
            else:
                _log.debug("removing the stale registry entry %s (process %d is gone)", path, pid)
                with contextlib.suppress(OSError):
                    path.unlink()
        return found

    def resolve(self, app_id: str, namespace: str = "") -> str | None:
        """One live address of ``app_id``, picked at random among its replicas."""
        addresses = self.addresses(app_id, namespace)
        return random.choice(addresses) if addresses else None

    def forget(self, app_id: str, namespace: str, address: str) -> None:
        """Drop ``address`` for ``app_id``: its sidecar did not answer although its process runs."""
        for path in self._folder(app_id, namespace).glob("*.json"):
            try:
                if json.loads(path.read_text()).get("address") == address:
                    path.unlink()
            except (OSError, ValueError):
                continue


#: The file of the machine's ``nameresolution.sqlite`` database, in the registry's home.
SQLITE_DATABASE = "nameresolution.db"


def daprd_configuration(
    user_config: str | os.PathLike[str] | None, home: str | os.PathLike[str] | None, app_id: str
) -> tuple[Path | None, bool]:
    """The Configuration file for a daprd that ``dapr-devsidecar run --runtime daprd`` starts.

    If the user's Configuration names a name resolver (``spec.nameResolution``), it is used as
    is. Otherwise daprd gets a copy with Dapr's ``nameresolution.sqlite`` component on
    ``<home>/nameresolution.db``, so every daprd started from the same home finds the others
    (and only those), whether or not mDNS works on the machine. Returns the file and whether it
    was written here (the caller removes it when daprd stops).
    """
    import yaml

    document: dict[str, object] = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Configuration",
        "metadata": {"name": "dapr-devsidecar"},
        "spec": {},
    }
    if user_config is not None:
        loaded = yaml.safe_load(Path(user_config).read_text())
        if not isinstance(loaded, dict) or loaded.get("kind") != "Configuration":
            return Path(user_config), False  # daprd reports what is wrong with it
        spec = loaded.get("spec") or {}
        if isinstance(spec, dict) and spec.get("nameResolution"):
            return Path(user_config), False
        document = loaded
        document["spec"] = spec if isinstance(spec, dict) else {}
    folder = registry_home(home)
    spec = document["spec"]
    assert isinstance(spec, dict)
    spec["nameResolution"] = {
        "component": "sqlite",
        "version": "v1",
        "configuration": {"connectionString": str(folder / SQLITE_DATABASE)},
    }
    configs = folder / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=configs, prefix=f"{_segment(app_id)}-", suffix=".yaml")
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(document, handle, sort_keys=False)
    return Path(name), True
