"""Library for the namespace tests: discovery, subprocess helpers, wheel builds, venvs.

Imported by ``conftest.py`` (hooks and session fixtures) and by the test modules.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import tomllib
import zipfile
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
EXT_DIR = REPO_ROOT / "ext"

DIST_PREFIX = "dapr-agents-ext-"
#: The only distribution allowed to depend on dapr-agents (it does not exist yet).
TRIGGERS_DIST = "dapr-agents-ext-triggers"
#: The reference third-party extension in the same namespace, installed from PyPI.
REFERENCE_DIST = "dapr-agents-ext-drasi"
REFERENCE_MODULE = "dapr_agents.ext.drasi"


BUILD_TIMEOUT = 600
INSTALL_TIMEOUT = 1200
IMPORT_TIMEOUT = 300


# --------------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    """One distribution of the monorepo: ``ext/<dir_name>/pyproject.toml``."""

    name: str  # [project].name (falls back to the folder name when missing)
    root: Path  # ext/<dir_name>

    @property
    def dir_name(self) -> str:
        return self.root.name

    @property
    def module(self) -> str:
        """``dapr-agents-ext-openai-agents`` -> ``openai_agents``."""
        short = self.name[len(DIST_PREFIX) :] if self.name.startswith(DIST_PREFIX) else self.name
        return short.replace("-", "_").replace(".", "_")

    @property
    def import_name(self) -> str:
        return f"dapr_agents.ext.{self.module}"

    @property
    def package_dir(self) -> str:
        """The package folder inside the wheel / source tree, with a trailing slash."""
        return f"dapr_agents/ext/{self.module}/"

    @property
    def needs_dapr_agents(self) -> bool:
        return self.name == TRIGGERS_DIST

    def __str__(self) -> str:
        return self.name


def discover_dists() -> list[Dist]:
    dists = []
    for pyproject in sorted(EXT_DIR.glob("*/pyproject.toml")):
        with pyproject.open("rb") as fh:
            data = tomllib.load(fh)
        name = data.get("project", {}).get("name") or pyproject.parent.name
        dists.append(Dist(name=name, root=pyproject.parent))
    return dists


DISTS = discover_dists()


# --------------------------------------------------------------------------------------------
# Subprocess helpers
# --------------------------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment minus what would leak the test runner's interpreter setup."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "CONDA_PREFIX"}
    }
    env.update(extra)
    return env


def run(cmd: list[str | os.PathLike[str]], *, timeout: float, **kwargs) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("env", clean_env())
    try:
        return subprocess.run(
            [str(c) for c in cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = (exc.stderr or b"").decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return subprocess.CompletedProcess(exc.cmd, 124, out, err + f"\n[timed out after {timeout}s]")


def tail(text: str, lines: int = 40) -> str:
    chunk = text.strip().splitlines()[-lines:]
    return textwrap.indent("\n".join(chunk), "    | ") if chunk else "    | (no output)"


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    cmd = " ".join(str(c) for c in proc.args) if isinstance(proc.args, list) else str(proc.args)
    return (
        f"$ {cmd}\n  exit {proc.returncode}\n  stdout:\n{tail(proc.stdout)}\n  stderr:\n{tail(proc.stderr)}"
    )


# The import probe: imports each module named on the command line, then describes the
# ``dapr_agents`` and ``dapr_agents.ext`` packages. Prints one JSON line prefixed by a marker.
PROBE_MARKER = "@@NSPROBE@@"
PROBE_CODE = textwrap.dedent(
    f"""
    import importlib, json, sys, time, traceback
    result = {{"modules": {{}}, "packages": {{}}}}
    for name in sys.argv[1:]:
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(name)
        except BaseException as exc:
            info = {{"ok": False, "error": traceback.format_exc(),
                     "missing": exc.name if isinstance(exc, ModuleNotFoundError) else None}}
        else:
            info = {{"ok": True, "file": getattr(mod, "__file__", None),
                     "version": getattr(mod, "__version__", None)}}
        info["seconds"] = time.perf_counter() - t0
        result["modules"][name] = info
    for pkg in ("dapr_agents", "dapr_agents.ext"):
        mod = sys.modules.get(pkg)
        if mod is None:
            result["packages"][pkg] = None
        else:
            result["packages"][pkg] = {{"file": getattr(mod, "__file__", None),
                                       "path": list(getattr(mod, "__path__", []))}}
    result["agents_loaded"] = "dapr_agents.agents" in sys.modules
    result["sys_path"] = sys.path
    print({PROBE_MARKER!r} + json.dumps(result))
    """
)


@dataclass
class Probe:
    """What one probe subprocess saw."""

    proc: subprocess.CompletedProcess[str]
    wall_seconds: float
    data: dict | None  # None when the probe itself did not report (crash, timeout)

    def module(self, name: str) -> dict:
        assert self.data is not None, f"the import probe did not report:\n{describe(self.proc)}"
        return self.data["modules"][name]

    def package(self, name: str) -> dict | None:
        assert self.data is not None, f"the import probe did not report:\n{describe(self.proc)}"
        return self.data["packages"].get(name)


def run_probe(
    python: str | Path, modules: list[str], *, isolated: bool, env: dict[str, str], cwd: Path
) -> Probe:
    """Run the probe with ``python`` (``-I`` when ``isolated``: no PYTHONPATH, no cwd, no user site)."""
    cmd: list[str | Path] = [python]
    if isolated:
        cmd.append("-I")
    cmd += ["-c", PROBE_CODE, *modules]
    t0 = time.perf_counter()
    proc = run(cmd, timeout=IMPORT_TIMEOUT, env=env, cwd=cwd)
    wall = time.perf_counter() - t0
    data = None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(PROBE_MARKER):
            data = json.loads(line[len(PROBE_MARKER) :])
            break
    return Probe(proc=proc, wall_seconds=wall, data=data)


def is_within(path: str | None, root: Path) -> bool:
    if not path:
        return False
    try:
        Path(path).resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Wheels
# --------------------------------------------------------------------------------------------


@dataclass
class WheelBuild:
    dist: Dist
    wheel: Path | None
    log: str
    seconds: float

    def require(self) -> Path:
        if self.wheel is None:
            pytest.fail(f"[{self.dist.name}] building the wheel failed:\n{self.log}", pytrace=False)
        return self.wheel

    # -- contents -------------------------------------------------------------------------

    def names(self) -> list[str]:
        with zipfile.ZipFile(self.require()) as zf:
            return zf.namelist()

    def read_text(self, member: str) -> str:
        with zipfile.ZipFile(self.require()) as zf:
            return zf.read(member).decode("utf-8")

    def dist_info_dirs(self) -> list[str]:
        return sorted({n.split("/", 1)[0] for n in self.names() if n.split("/", 1)[0].endswith(".dist-info")})

    def metadata(self) -> Message:
        dirs = self.dist_info_dirs()
        assert len(dirs) == 1, (
            f"[{self.dist.name}] {self.wheel.name}: expected one *.dist-info folder, got {dirs}"
        )
        text = self.read_text(f"{dirs[0]}/METADATA")
        return email.parser.Parser(policy=email.policy.compat32).parsestr(text)


def build_wheel(dist: Dist, out_dir: Path) -> WheelBuild:
    out_dir.mkdir(parents=True, exist_ok=True)
    uv = shutil.which("uv")
    if uv:
        cmd = [uv, "build", "--wheel", "--out-dir", out_dir, "--python", sys.executable, dist.root]
    else:
        cmd = [sys.executable, "-m", "build", "--wheel", "--outdir", out_dir, dist.root]
    t0 = time.perf_counter()
    proc = run(cmd, timeout=BUILD_TIMEOUT, cwd=dist.root)
    seconds = time.perf_counter() - t0
    wheels = sorted(out_dir.glob("*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        hint = (
            "\n  Building fetches the build backend (hatchling) from PyPI unless uv's cache has it: offline,"
            "\n  deselect with -m 'not network'."
        )
        if not uv:
            hint += "\n  (uv is not on PATH; the fallback `python -m build` needs `pip install build`)"
        return WheelBuild(
            dist, None, f"{describe(proc)}\n  wheels produced: {[w.name for w in wheels]}{hint}", seconds
        )
    return WheelBuild(dist, wheels[0], describe(proc), seconds)


# --------------------------------------------------------------------------------------------
# Venvs
# --------------------------------------------------------------------------------------------


@dataclass
class Venv:
    label: str
    path: Path
    error: str | None = None
    seconds: float = 0.0
    installed: list[str] = field(default_factory=list)

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def require(self) -> Venv:
        if self.error:
            pytest.fail(self.error, pytrace=False)
        return self

    def probe(self, modules: list[str]) -> Probe:
        """Import ``modules`` with this venv's python, isolated (-I) and from a folder with no code."""
        return run_probe(self.python, modules, isolated=True, env=clean_env(), cwd=self.path)

    def owners_of(self, member: str) -> list[str]:
        """The installed distributions (dist-info folders) whose RECORD lists ``member``."""
        owners = []
        for record in sorted(self.path.glob("lib/python*/site-packages/*.dist-info/RECORD")):
            if any(line.split(",", 1)[0] == member for line in record.read_text().splitlines()):
                owners.append(record.parent.name)
        return owners

    def who_requires(self, package: str) -> str:
        uv = shutil.which("uv") or "uv"
        proc = run(
            [uv, "pip", "tree", "--python", self.python, "--invert", "--package", package],
            timeout=120,
        )
        return proc.stdout.strip() or describe(proc)


def make_venv(
    label: str, path: Path, wheels: dict[str, WheelBuild], requirements: list[str], failure_hint: str
) -> Venv:
    venv = Venv(label=label, path=path)
    uv = shutil.which("uv")
    if uv is None:
        venv.error = f"[{label} venv] uv is not on PATH; the venv checks create and fill their venvs with uv"
        return venv
    broken = [name for name, build in wheels.items() if build.wheel is None]
    if broken:
        venv.error = (
            f"[{label} venv] not built: the wheel of {', '.join(broken)} failed to build "
            f"(see its test_ns_wheels.py failures for uv's output)"
        )
        return venv
    t0 = time.perf_counter()
    proc = run([uv, "venv", path, "--python", sys.executable], timeout=300)
    if proc.returncode != 0:
        venv.error = f"[{label} venv] `uv venv` failed:\n{describe(proc)}"
        return venv
    venv.installed = [str(b.wheel) for b in wheels.values()] + requirements
    proc = run([uv, "pip", "install", "--python", venv.python, *venv.installed], timeout=INSTALL_TIMEOUT)
    venv.seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        venv.error = (
            f"[{label} venv] installing {', '.join(list(wheels) + requirements)} into the fresh venv {path} "
            f"failed.\n{failure_hint}\n{describe(proc)}"
        )
    return venv
