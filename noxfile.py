"""Sessions for the whole repository; every distribution is tested in its own virtualenv.

    nox                       every test of every distribution, the namespace contract, samples, lint
    nox -s demo               the main job: the flagship sample, killed midway and resumed
    nox -s "tests(devsidecar)"  one distribution
    nox -s lowest             each distribution against the lowest versions its ranges allow
    nox -s daprd              build Dapr's real runtime (daprd, placement, scheduler, sentry) into ~/.dapr/bin
    nox -s "tests-daprd(langgraph)"  one distribution's suite against that real daprd

Each distribution declares its test requirements in the ``test`` dependency group of its
pyproject.toml; sessions install the distribution itself from its folder (a real wheel build,
not an editable install), so tests run against what users install.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).parent
DISTRIBUTIONS = {
    path.parent.name.removeprefix("dapr-agents-ext-"): path.parent
    for path in sorted(ROOT.glob("ext/*/pyproject.toml"))
}
DEVSIDECAR = ROOT / "ext" / "dapr-agents-ext-devsidecar"
PYTHON = "3.11"

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = False
# The suites, the e2e tests, the samples and the demo run twice: on the dev sidecar, then on Dapr's
# real runtime built from Dapr's Go modules (the *-daprd sessions; "daprd" builds it first).
nox.options.sessions = [
    "lint",
    "typecheck",
    "tests",
    "e2e",
    "namespace",
    "samples",
    "demo",
    "lowest",
    "daprd",
    "tests-daprd",
    "e2e-daprd",
    "samples-daprd",
    "demo-daprd",
]


def _pyproject(folder: Path) -> dict:
    return tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))


def _test_requirements(folder: Path) -> list[str]:
    """The ``test`` dependency group, with local distributions referenced by path."""
    requirements = []
    for requirement in _pyproject(folder).get("dependency-groups", {}).get("test", []):
        name = requirement.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip()
        local = ROOT / "ext" / name
        requirements.append(str(local) + requirement[len(name) :] if local.is_dir() else requirement)
    return requirements


def _local_requirements(folder: Path) -> list[str]:
    """This repository's distributions that ``folder`` needs at run time (not on PyPI yet): by path."""
    local = []
    for requirement in _pyproject(folder).get("project", {}).get("dependencies", []):
        name = requirement.split("[")[0].split(">")[0].split("=")[0].split("<")[0].split(";")[0].strip()
        if (ROOT / "ext" / name).is_dir():
            local.append(str(ROOT / "ext" / name))
    return local


def _extras(folder: Path) -> str:
    extras = sorted(_pyproject(folder).get("project", {}).get("optional-dependencies", {}))
    return f"[{','.join(extras)}]" if extras else ""


# One pytest worker per core (up to 4): the crash tests start apps and sidecars that mostly wait on
# each other. Each worker has its own sidecars, ports and temp folders.
PARALLEL = ["-n", "auto", "--maxprocesses", "4"]


def _install_and_test(
    session: nox.Session, name: str, *install_args: str, env: dict[str, str] | None = None
) -> None:
    folder = DISTRIBUTIONS[name]
    session.install(
        *install_args,
        f"{folder}{_extras(folder)}",
        *_local_requirements(folder),
        *_test_requirements(folder),
        "pytest-xdist>=3.6",
    )
    session.chdir(folder)
    session.run(
        "pytest",
        *(session.posargs or ["-q", "-p", "no:cacheprovider", *PARALLEL]),
        env={"PYTHONDONTWRITEBYTECODE": "1", **(env or {})},
    )


@nox.session(python=PYTHON)
@nox.parametrize("name", list(DISTRIBUTIONS), ids=list(DISTRIBUTIONS))
def tests(session: nox.Session, name: str) -> None:
    """Run one distribution's test suite in its own virtualenv."""
    _install_and_test(session, name)


DAPRD_BUILD = ROOT / ".ci" / "daprd" / "build.py"


@nox.session(venv_backend="none")
def daprd(session: nox.Session) -> None:
    """Build Dapr's runtime (daprd, placement, scheduler, sentry) from Dapr's Go modules into ~/.dapr/bin,
    where ``dapr init --slim`` puts it; a second run with the same inputs reuses it."""
    session.run("python3", str(DAPRD_BUILD), *session.posargs, external=True)


@nox.session(name="tests-daprd", python=PYTHON)
@nox.parametrize("name", list(DISTRIBUTIONS), ids=list(DISTRIBUTIONS))
def tests_daprd(session: nox.Session, name: str) -> None:
    """One distribution's suite against Dapr's real runtime: the pytest plugin starts placement,
    scheduler and a daprd per worker (``DAPR_TEST_SIDECAR=daprd``), built by ``nox -s daprd``."""
    session.run("python3", str(DAPRD_BUILD), external=True)
    _install_and_test(session, name, env={"DAPR_TEST_SIDECAR": "daprd"})


@nox.session(python=PYTHON)
@nox.parametrize("name", list(DISTRIBUTIONS), ids=list(DISTRIBUTIONS))
def lowest(session: nox.Session, name: str) -> None:
    """The same suite with the lowest direct dependency versions the ranges admit."""
    _install_and_test(session, name, "--resolution=lowest-direct")


@nox.session(python=PYTHON)
def e2e(session: nox.Session) -> None:
    """Agents as tools across frameworks with a real dapr-agents DurableAgent (interop's e2e tests)."""
    _e2e(session)


@nox.session(name="e2e-daprd", python=PYTHON)
def e2e_daprd(session: nox.Session) -> None:
    """The e2e tests against Dapr's real runtime."""
    session.run("python3", str(DAPRD_BUILD), external=True)
    _e2e(session, {"DAPR_TEST_SIDECAR": "daprd"})


def _e2e(session: nox.Session, env: dict[str, str] | None = None) -> None:
    interop = DISTRIBUTIONS["interop"]
    frameworks = [str(DISTRIBUTIONS[name]) for name in ("langgraph", "openai-agents", "crewai")]
    session.install(str(interop), *frameworks, *_test_requirements(interop))
    session.chdir(interop)
    session.run(
        "pytest",
        *(session.posargs or ["-q", "-p", "no:cacheprovider", "tests/test_e2e_frameworks.py"]),
        env={"PYTHONDONTWRITEBYTECODE": "1", "INTEROP_E2E": "1", **(env or {})},
    )


@nox.session(python=PYTHON)
def namespace(session: nox.Session) -> None:
    """Build every wheel and check the PEP 420 namespace contract (see namespace-tests/)."""
    # triggers brings dapr-agents, which owns dapr_agents/__init__.py; namespace-tests install it apart.
    session.install("pytest", *(str(folder) for name, folder in DISTRIBUTIONS.items() if name != "triggers"))
    session.run("pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "namespace-tests"))


def _sample_requirements(listing: Path) -> list[str]:
    """A sample's ``requirements.txt`` as users install it (``pip install -r requirements.txt`` in
    the sample folder): lines naming a folder (``../../ext/dapr-agents-ext-crewai``) install that
    distribution of this repository from source, with its local runtime dependencies."""
    requirements = []
    for line in listing.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name = line.split("[")[0]
        folder = (listing.parent / name).resolve()
        if folder.is_dir():
            requirements += [str(folder) + line[len(name) :], *_local_requirements(folder)]
        else:
            requirements.append(line)
    return list(dict.fromkeys(requirements))  # each local distribution once


@nox.session(python=PYTHON)
def samples(session: nox.Session) -> None:
    """Run every sample end to end against the dev sidecar and check its output (one virtualenv
    with every sample's ``requirements.txt``)."""
    _samples(session)


@nox.session(name="samples-daprd", python=PYTHON)
def samples_daprd(session: nox.Session) -> None:
    """Every sample on Dapr's real runtime (``dapr-devsidecar run --runtime daprd``)."""
    session.run("python3", str(DAPRD_BUILD), external=True)
    _samples(session, {"DAPR_DEVSIDECAR_RUNTIME": "daprd"})


def _samples(session: nox.Session, env: dict[str, str] | None = None) -> None:
    requirements = [f"{DEVSIDECAR}[redis]", "pytest", "pytest-xdist>=3.6"]
    for listing in sorted(ROOT.glob("samples/*/requirements.txt")):
        requirements += _sample_requirements(listing)
    session.install(*dict.fromkeys(requirements))
    session.run("pytest", "-q", "-p", "no:cacheprovider", *PARALLEL, str(ROOT / "samples"), env=env)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The main job: the flagship sample on the dev sidecar, killed in the middle and started again.

    An event on a topic starts a DurableAgent that calls a LangGraph graph, an OpenAI agent and a
    CrewAI crew as tools; the first start is SIGKILLed during the crew, the second finishes the run
    without repeating a finished step (see samples/flagship/README.md).
    """
    _demo(session)


@nox.session(name="demo-daprd", python=PYTHON)
def demo_daprd(session: nox.Session) -> None:
    """The flagship demo on Dapr's real runtime: daprd, placement and scheduler built by
    ``nox -s daprd``, run by ``dapr-devsidecar run --runtime daprd``."""
    session.run("python3", str(DAPRD_BUILD), external=True)
    _demo(session, runtime="daprd")


def _demo(session: nox.Session, runtime: str = "dev") -> None:
    flagship = ROOT / "samples" / "flagship"
    session.install(*_sample_requirements(flagship / "requirements.txt"))
    session.chdir(session.create_tmp())
    for leftover in Path.cwd().glob("dapr-*.db*"):  # a fresh question each time the demo runs
        leftover.unlink()
    command = ["dapr-devsidecar", "run", "--app-id", "flagship", "--resources-path", str(ROOT / "components")]
    command += ["--runtime", runtime]
    app = ["--", "python", str(flagship / "app.py")]
    # daprd: a placement and scheduler of the demo's own, kept between the two starts (the
    # scheduler holds the workflow's reminders) and stopped at the end.
    env = {"DAPR_DEVSIDECAR_HOME": str(Path.cwd() / "dapr-control-plane")}
    try:
        session.log("First start, with --crash: the app kills itself (SIGKILL) while the crew works")
        session.run(*command, *app, "--crash", success_codes=[137], env=env)
        session.log("Second start: the same run continues where it stopped")
        session.run(*command, *app, env=env)
    finally:
        if runtime == "daprd":
            session.run("dapr-devsidecar", "uninit", env=env)


@nox.session(python=PYTHON)
@nox.parametrize("name", list(DISTRIBUTIONS), ids=list(DISTRIBUTIONS))
def typecheck(session: nox.Session, name: str) -> None:
    """mypy over one distribution's package, with its dependencies installed."""
    folder = DISTRIBUTIONS[name]
    session.install(f"{folder}{_extras(folder)}", *_local_requirements(folder), "mypy>=1.13", "types-PyYAML")
    session.chdir(folder)
    session.run(
        "mypy", "--namespace-packages", "--explicit-package-bases", "--ignore-missing-imports", "dapr_agents"
    )


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over the whole repository."""
    session.install("ruff>=0.8")
    session.run("ruff", "check", str(ROOT))
    session.run("ruff", "format", "--check", str(ROOT))
