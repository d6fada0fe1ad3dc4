"""Checks 3 and 4: the built wheels installed in fresh venvs.

3. Full venv: every wheel together with PyPI's ``dapr-agents-ext-drasi`` (the reference third-party
   extension, which brings the real ``dapr-agents``). Every extension imports, and
   ``import dapr_agents`` is the real package (``__file__`` is set).
4. Lean venv: every wheel except ``dapr-agents-ext-triggers`` and nothing else. Each extension
   imports without loading ``dapr_agents.agents`` and ``dapr_agents`` stays a pure namespace
   (``__file__`` is None). The import time is printed (and shown in the closing summary), not asserted.

Both venvs are built once per session with uv and need PyPI (``network`` mark).
"""

from __future__ import annotations

import pytest
from nstools import REFERENCE_DIST, REFERENCE_MODULE, TRIGGERS_DIST, describe, is_within

# -- 3. full venv ----------------------------------------------------------------------------


def _require_ok(venv, probe, module: str, label: str) -> dict:
    venv.require()  # fails with uv's output (e.g. no network) if the venv could not be built
    assert probe.data is not None, (
        f"[{label}] the import probe crashed in the full venv:\n{describe(probe.proc)}"
    )
    result = probe.module(module)
    if not result["ok"]:
        pytest.fail(f"[{label}] `import {module}` failed in the full venv:\n{result['error']}", pytrace=False)
    return result


def test_full_venv_imports_extension(dist, full_venv, full_probe):
    result = _require_ok(full_venv, full_probe, dist.import_name, dist.name)
    assert is_within(result["file"], full_venv.path), (
        f"[{dist.name}] {dist.import_name} came from {result['file']}, not from the venv {full_venv.path}"
    )


def test_full_venv_imports_reference_extension(full_venv, full_probe):
    result = _require_ok(full_venv, full_probe, REFERENCE_MODULE, REFERENCE_DIST)
    assert is_within(result["file"], full_venv.path), (
        f"[{REFERENCE_DIST}] {REFERENCE_MODULE} came from {result['file']}, not from the venv {full_venv.path}"
    )


def test_full_venv_dapr_agents_is_the_real_package(full_venv, full_probe):
    _require_ok(full_venv, full_probe, "dapr_agents", "dapr-agents")
    info = full_probe.package("dapr_agents")
    assert info is not None and info["file"] is not None, (
        f"[dapr-agents] in the full venv `dapr_agents` is a namespace package ({info}): the real dapr-agents "
        f"(pulled in by {REFERENCE_DIST}) should own dapr_agents/__init__.py"
    )
    assert is_within(info["file"], full_venv.path), (
        f"[dapr-agents] dapr_agents.__file__ is {info['file']}, outside the venv {full_venv.path}"
    )


# -- 4. lean venv: importing an extension must not load dapr_agents.agents -------------------


def test_cheap_import_without_dapr_agents(cheap_dist, lean_venv, report):
    dist = cheap_dist
    lean_venv.require()
    probe = lean_venv.probe([dist.import_name])
    assert probe.data is not None, (
        f"[{dist.name}] the import probe crashed in the lean venv:\n{describe(probe.proc)}"
    )
    result = probe.module(dist.import_name)
    if not result["ok"]:
        pytest.fail(
            f"[{dist.name}] `import {dist.import_name}` failed in a venv without dapr-agents "
            f"(all wheels but {TRIGGERS_DIST}):\n{result['error']}",
            pytrace=False,
        )
    report(
        f"import lean  {dist.import_name:<40} {result['seconds']:6.3f}s import, "
        f"{probe.wall_seconds:6.3f}s subprocess wall"
    )

    info = probe.package("dapr_agents")
    if info is None or info["file"] is not None:
        owners = lean_venv.owners_of("dapr_agents/__init__.py")
        why = f"dapr_agents/__init__.py is installed by {owners or 'an unknown distribution'}"
        if any(o.startswith("dapr_agents-") for o in owners):
            why += f"; the real dapr-agents was pulled in by:\n{lean_venv.who_requires('dapr-agents')}"
        pytest.fail(
            f"[{dist.name}] in the lean venv (all wheels but {TRIGGERS_DIST}) dapr_agents is not a pure "
            f"namespace: dapr_agents.__file__ = {info and info['file']} (should be None). {why}",
            pytrace=False,
        )
    assert probe.data["agents_loaded"] is False, (
        f"[{dist.name}] `import {dist.import_name}` loaded dapr_agents.agents; only {TRIGGERS_DIST} may "
        f"depend on dapr-agents (its import is expensive)"
    )
