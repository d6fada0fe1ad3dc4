"""Hooks and session fixtures for the namespace tests (the machinery lives in ``nstools.py``).

Wheels are built once per session and the two venvs are built once per session, lazily: a run
that selects only some tests builds only what they use.

Tests that need PyPI (building a wheel pulls hatchling into an isolated build env; the venvs
install the distributions' dependencies and ``dapr-agents-ext-drasi``) are marked ``network``
here, from the fixtures they use: ``pytest -m "not network"`` runs only the offline checks.
"""

from __future__ import annotations

import pytest
from nstools import (
    DISTS,
    REFERENCE_DIST,
    REFERENCE_MODULE,
    TRIGGERS_DIST,
    Probe,
    Venv,
    WheelBuild,
    build_wheel,
    make_venv,
)

#: Fixtures that reach PyPI; any test using one (directly or not) gets the ``network`` mark.
NETWORK_FIXTURES = frozenset({"built_wheels", "full_venv", "lean_venv", "full_probe"})

_SUMMARY_KEY = pytest.StashKey[list[str]]()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``dist`` parametrizes over every distribution; ``cheap_dist`` over all but triggers."""
    if "dist" in metafunc.fixturenames:
        metafunc.parametrize("dist", DISTS, ids=[d.name for d in DISTS])
    if "cheap_dist" in metafunc.fixturenames:
        cheap = [d for d in DISTS if not d.needs_dapr_agents]
        metafunc.parametrize("cheap_dist", cheap, ids=[d.name for d in cheap])


# --------------------------------------------------------------------------------------------
# Markers and the closing summary
# --------------------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "network: needs PyPI (builds wheels in isolated build envs, installs into fresh venvs); "
        "deselect with -m 'not network'",
    )
    config.stash[_SUMMARY_KEY] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if NETWORK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.network)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    lines = config.stash.get(_SUMMARY_KEY, [])
    if lines:
        terminalreporter.section("namespace-tests timings")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def report(pytestconfig: pytest.Config):
    """``report("...")`` prints a line now (visible with -s) and again in the closing summary."""

    def _report(line: str) -> None:
        print(line)
        pytestconfig.stash[_SUMMARY_KEY].append(line)

    return _report


@pytest.fixture(scope="session")
def built_wheels(tmp_path_factory: pytest.TempPathFactory, report) -> dict[str, WheelBuild]:
    """Every distribution's wheel, built once per session: ``{dist name: WheelBuild}``."""
    base = tmp_path_factory.mktemp("wheels")
    builds = {}
    for dist in DISTS:
        builds[dist.name] = build = build_wheel(dist, base / dist.dir_name)
        status = build.wheel.name if build.wheel else "FAILED"
        report(f"wheel build  {dist.name:<40} {build.seconds:6.1f}s  {status}")
    return builds


@pytest.fixture(scope="session")
def full_venv(tmp_path_factory: pytest.TempPathFactory, built_wheels, report) -> Venv:
    """A fresh venv with every built wheel together with dapr-agents-ext-drasi (and so dapr-agents)."""
    hint = (
        f"  This check installs {REFERENCE_DIST} (the reference third-party extension, which depends\n"
        "  on dapr-agents) from PyPI, so it needs network access; it is marked `network` (deselect\n"
        "  with -m 'not network' when offline). If uv reports a resolution conflict instead, the\n"
        "  distributions' dependency pins are incompatible with dapr-agents / the reference extension."
    )
    venv = make_venv("full", tmp_path_factory.mktemp("venvs") / "full", built_wheels, [REFERENCE_DIST], hint)
    report(
        f"venv full    all wheels + {REFERENCE_DIST:<27} {venv.seconds:6.1f}s  "
        + ("FAILED" if venv.error else "ok")
    )
    return venv


@pytest.fixture(scope="session")
def lean_venv(tmp_path_factory: pytest.TempPathFactory, built_wheels, report) -> Venv:
    """A fresh venv with every built wheel except dapr-agents-ext-triggers: no dapr-agents expected."""
    wheels = {name: b for name, b in built_wheels.items() if name != TRIGGERS_DIST}
    hint = "  This check installs the distributions' dependencies from PyPI, so it needs network access."
    venv = make_venv("lean", tmp_path_factory.mktemp("venvs") / "lean", wheels, [], hint)
    report(
        f"venv lean    all wheels but {TRIGGERS_DIST:<25} {venv.seconds:6.1f}s  "
        + ("FAILED" if venv.error else "ok")
    )
    return venv


@pytest.fixture(scope="session")
def full_probe(full_venv: Venv, report) -> Probe | None:
    """One import of every extension, the reference extension and dapr_agents in the full venv
    (None when the venv could not be built: the tests then fail on ``full_venv.require()``)."""
    if full_venv.error:
        return None
    probe = full_venv.probe([d.import_name for d in DISTS] + [REFERENCE_MODULE, "dapr_agents"])
    report(
        f"import full  all extensions + drasi + dapr_agents        {probe.wall_seconds:6.2f}s (subprocess wall)"
    )
    return probe
