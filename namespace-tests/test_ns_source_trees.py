"""Check 2: the source trees, each on its own sys.path entry, form one namespace.

Every ``ext/<dist>/`` folder goes on PYTHONPATH as a separate entry (nothing is installed) and a
subprocess of the python running the tests imports every ``dapr_agents.ext.<module>``. A stray
``dapr_agents/__init__.py`` (or ``dapr_agents/ext/__init__.py``) in any tree turns the namespace
into a regular package living only in that tree, which hides the other trees' modules.

The subprocess needs the distributions' third-party dependencies, so the python running pytest
must have them (see README.md). No network is needed.
"""

from __future__ import annotations

import os
import sys

import pytest
from nstools import DISTS, Probe, clean_env, describe, is_within, run_probe


@pytest.fixture(scope="module")
def source_probe(tmp_path_factory: pytest.TempPathFactory, report) -> Probe:
    pythonpath = os.pathsep.join(str(d.root) for d in DISTS)
    probe = run_probe(
        sys.executable,
        [d.import_name for d in DISTS],
        isolated=False,  # PYTHONPATH must apply
        env=clean_env(PYTHONPATH=pythonpath),
        cwd=tmp_path_factory.mktemp("empty-cwd"),  # keep '' on sys.path harmless
    )
    report(
        f"import src   all source trees via PYTHONPATH ({len(DISTS)} entries)   {probe.wall_seconds:6.2f}s"
    )
    return probe


def owner_of(path: str) -> str:
    for d in DISTS:
        if is_within(path, d.root):
            return f"distribution {d.name}"
    return f"not one of ext/*/ (is it installed in {sys.prefix}?)"


def test_source_tree_imports_alongside_the_others(dist, source_probe: Probe):
    if dist.needs_dapr_agents:
        # dapr-agents ships dapr_agents/__init__.py, so its dependants can only be imported from
        # installed wheels (the full venv test does that), never from source trees.
        pytest.skip(f"{dist.name} needs dapr-agents, which makes dapr_agents a regular package")
    probe = source_probe
    assert probe.data is not None, f"[{dist.name}] the import probe crashed:\n{describe(probe.proc)}"

    # The shared packages must stay PEP 420 namespaces spanning every tree.
    for pkg in ("dapr_agents", "dapr_agents.ext"):
        info = probe.package(pkg)
        if info and info["file"]:
            pytest.fail(
                f"[{dist.name}] {pkg} is a regular package from {info['file']} ({owner_of(info['file'])}): "
                f"that __init__.py shadows every other sys.path entry, so the other distributions' modules "
                f"cannot be found. {pkg} must be a namespace package (no __init__.py). __path__={info['path']}",
                pytrace=False,
            )

    result = probe.module(dist.import_name)
    if not result["ok"]:
        missing = result.get("missing") or ""
        if missing.startswith("dapr_agents"):
            why = (
                f"{missing} was not found: the namespace does not reach ext/{dist.dir_name}/ "
                f"(dapr_agents = {probe.package('dapr_agents')}, dapr_agents.ext = {probe.package('dapr_agents.ext')})"
            )
        elif missing:
            why = (
                f"third-party module {missing!r} is missing from the python running the tests ({sys.executable}); "
                f"install {dist.name}'s dependencies there (see namespace-tests/README.md)"
            )
        else:
            why = "importing it raised"
        pytest.fail(
            f"[{dist.name}] `import {dist.import_name}` failed with the source trees on PYTHONPATH: {why}\n"
            f"{result['error']}",
            pytrace=False,
        )

    assert is_within(result["file"], dist.root), (
        f"[{dist.name}] {dist.import_name} was imported from {result['file']}, not from its source tree "
        f"ext/{dist.dir_name}/ (PYTHONPATH entries must come first)"
    )
    ns_path = (probe.package("dapr_agents") or {}).get("path", [])
    assert any(is_within(p, dist.root) for p in ns_path), (
        f"[{dist.name}] dapr_agents.__path__ does not include ext/{dist.dir_name}/dapr_agents: {ns_path}"
    )
