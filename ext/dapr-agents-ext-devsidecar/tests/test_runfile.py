"""``dapr-devsidecar run -f``: the Dapr CLI's run file, on the dev sidecar and, when the suite runs
with ``DAPR_TEST_SIDECAR=daprd``, with ``--runtime daprd``.

The file's rules (required fields, what an app inherits from ``common``, where relative paths
point, which resources and Configuration an app gets) and a real run: apps start with their
sidecars, call each other by app id, their output is prefixed ``== APP - <id> ==`` and logged
under ``<appDirPath>/.dapr/logs``; an app that exits is reported and the others keep running
until SIGINT, as with ``dapr run -f``, and the exit code tells whether an app failed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from apps import answers, wait_until

from dapr_agents.ext.devsidecar._errors import DevSidecarError
from dapr_agents.ext.devsidecar._runfile import load_run_file
from dapr_agents.ext.devsidecar.testing import free_port, sidecar_mode, write_components

# -- the file ---------------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_required_fields(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    with pytest.raises(DevSidecarError, match="required field 'version' not found"):
        load_run_file(_write(tmp_path / "dapr.yaml", "apps:\n  - appDirPath: ./app\n"))
    with pytest.raises(DevSidecarError, match="required field 'appDirPath' not found"):
        load_run_file(_write(tmp_path / "dapr.yaml", "version: 1\napps:\n  - appID: a\n"))
    with pytest.raises(DevSidecarError, match="does not exist"):
        load_run_file(_write(tmp_path / "dapr.yaml", "version: 1\napps:\n  - appDirPath: ./missing\n"))
    with pytest.raises(DevSidecarError, match="invalid log destination type: everywhere"):
        load_run_file(
            _write(
                tmp_path / "dapr.yaml",
                "version: 1\napps:\n  - appDirPath: ./app\n    appLogDestination: everywhere\n",
            )
        )


def test_apps_inherit_from_common_and_paths_are_relative_to_their_owner(tmp_path: Path) -> None:
    shared = write_components(tmp_path / "shared", pubsub=None)
    _write(tmp_path / "common-config.yaml", "kind: Configuration\n")
    own = write_components(tmp_path / "backend" / "components", pubsub=None)
    local = write_components(tmp_path / "frontend" / ".dapr" / "resources", pubsub=None)
    _write(tmp_path / "frontend" / ".dapr" / "config.yaml", "kind: Configuration\n")
    (tmp_path / "worker").mkdir()
    run_file = _write(
        tmp_path / "dapr.yaml",
        """
        version: 1
        common:
          resourcesPath: ./shared
          configFilePath: ./common-config.yaml
          appProtocol: grpc
          logLevel: debug
          env:
            LEVEL: common
            SHARED: "yes"
        apps:
          - appDirPath: ./backend
            appID: orders
            appPort: 6001
            appProtocol: http
            resourcesPaths: [./components]
            env:
              LEVEL: app
            command: ["python3", "app.py"]
          - appDirPath: ./frontend
            daprHTTPPort: 3601
            appLogDestination: console
          - appDirPath: ./worker
        """,
    )
    backend, frontend, worker = load_run_file(tmp_path)  # a folder means its dapr.yaml
    assert (backend.app_id, backend.app_port, backend.app_protocol) == ("orders", 6001, "http")
    assert backend.resources_paths == [own]
    assert backend.config == tmp_path / "common-config.yaml"
    assert backend.env == {"LEVEL": "app", "SHARED": "yes"}
    assert backend.log_level == "debug"
    assert backend.command == ["python3", "app.py"]
    assert (frontend.app_id, frontend.app_protocol, frontend.http_port) == ("frontend", "grpc", 3601)
    assert frontend.resources_paths == [local]  # <appDirPath>/.dapr/resources wins over common
    assert frontend.config == tmp_path / "frontend" / ".dapr" / "config.yaml"
    assert (frontend.app_log_destination, frontend.daprd_log_destination) == ("console", "file")
    assert worker.app_id == "worker"
    assert worker.resources_paths == [shared]
    assert (worker.app_log_destination, worker.daprd_log_destination) == ("fileAndConsole", "file")
    assert run_file.exists()


# -- a run ------------------------------------------------------------------------------------

CALLEE = """
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from {os.environ['APP_ID']} ({os.environ['GREETING']})".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

print("listening on", os.environ["APP_PORT"], flush=True)
HTTPServer(("127.0.0.1", int(os.environ["APP_PORT"])), Handler).serve_forever()
"""

CALLER = """
import os, sys, time, urllib.request, urllib.error
url = f"http://127.0.0.1:{os.environ['DAPR_HTTP_PORT']}/v1.0/invoke/callee/method/greet"
deadline = time.monotonic() + 60
while True:
    try:
        print("REPLY", urllib.request.urlopen(url, timeout=10).read().decode(), flush=True)
        break
    except urllib.error.HTTPError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
print("greeting", os.environ["GREETING"], file=sys.stderr, flush=True)
"""

FAILER = """
import sys
print("failing now", flush=True)
sys.exit(3)
"""


def _runtime() -> list[str]:
    return ["--runtime", "daprd"] if sidecar_mode() == "daprd" else []


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "home"
    yield folder
    if sidecar_mode() == "daprd":
        subprocess.run(
            [sys.executable, "-m", "dapr_devsidecar", "uninit"],
            env={**os.environ, "DAPR_DEVSIDECAR_HOME": str(folder)},
            capture_output=True,
            timeout=60,
        )


def _project(tmp_path: Path, apps: str) -> Path:
    write_components(tmp_path / "components", pubsub=None, actor_state_store=False)
    for name, code in (("callee", CALLEE), ("caller", CALLER), ("failer", FAILER)):
        _write(tmp_path / name / "app.py", code)
    return _write(tmp_path / "dapr.yaml", apps)


def _start(run_file: Path, home: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAPR_") or k == "DAPR_INSTALL_DIR"}
    env.update(PYTHONUNBUFFERED="1", DAPR_DEVSIDECAR_HOME=str(home))
    return subprocess.Popen(
        [sys.executable, "-m", "dapr_devsidecar", "run", *_runtime(), "-f", str(run_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


class Output:
    """The run's console output, read as it comes."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        import threading

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                self.lines.append(line.rstrip("\n"))

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, fragment: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if fragment in line:
                    return line
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{fragment!r} not in the output:\n{self.text}")

    def finish(self, timeout: float = 60.0) -> int:
        code = self.process.wait(timeout)
        self._reader.join(10)
        return code


def test_a_run_file_runs_every_app_with_its_sidecar_until_a_signal(tmp_path: Path, home: Path) -> None:
    callee_port = free_port()
    run_file = _project(
        tmp_path,
        f"""
        version: 1
        common:
          resourcesPaths: [./components]
          env:
            GREETING: common
        apps:
          - appDirPath: ./callee
            appPort: {callee_port}
            command: ["{sys.executable}", "app.py"]
          - appDirPath: ./caller
            command: ["{sys.executable}", "app.py"]
            env:
              GREETING: own
          - appDirPath: ./failer
            command: ["{sys.executable}", "app.py"]
        """,
    )
    output = Output(_start(run_file, home))
    try:
        output.wait_for("== APP - callee == listening on")
        assert (
            output.wait_for("== APP - caller == REPLY")
            == "== APP - caller == REPLY hello from callee (common)"
        )
        output.wait_for("== APP - caller == greeting own")
        output.wait_for("Exited App successfully")
        output.wait_for("== APP - failer == failing now")
        output.wait_for("The App process exited with error code: exit status 3")
        # As with 'dapr run -f', the apps that exited leave the others running.
        started = output.wait_for('Started Dapr with app id "callee"')
        http_port = int(re.search(r"HTTP Port: (\d+)", started).group(1))  # type: ignore[union-attr]
        time.sleep(1)
        assert output.process.poll() is None
        assert answers(f"http://127.0.0.1:{http_port}/v1.0/healthz")
        assert answers(f"http://127.0.0.1:{http_port}/v1.0/invoke/callee/method/greet", 200)
    finally:
        if output.process.poll() is None:
            output.process.send_signal(signal.SIGINT)
    code = output.finish()
    assert (
        "Received signal to stop Dapr and app processes. Shutting down Dapr and app processes." in output.text
    )
    assert code == 1, output.text  # an app had failed
    wait_until(lambda: not answers(f"http://127.0.0.1:{callee_port}/", 200), what="the callee app stopping")
    assert not answers(f"http://127.0.0.1:{http_port}/v1.0/healthz/outbound")
    for app in ("callee", "caller", "failer"):
        logs = tmp_path / app / ".dapr" / "logs"
        (app_log,) = logs.glob(f"{app}_app_*.log")
        (sidecar_log,) = logs.glob(f"{app}_daprd_*.log")
        assert f"== APP - {app} ==" in app_log.read_text()
        assert f"Starting Dapr with id {app}." in sidecar_log.read_text()


def test_a_run_whose_apps_succeed_exits_zero_on_sigterm(tmp_path: Path, home: Path) -> None:
    run_file = _project(
        tmp_path,
        f"""
        version: 1
        apps:
          - appDirPath: ./callee
            appPort: {free_port()}
            resourcesPaths: [../components]
            appLogDestination: console
            daprdLogDestination: console
            env:
              GREETING: hello
            command: ["{sys.executable}", "app.py"]
        """,
    )
    output = Output(_start(run_file, home))
    try:
        output.wait_for("== APP - callee == listening on")
        output.wait_for("You're up and running!")  # the sidecar's log is on the console
    finally:
        output.process.send_signal(signal.SIGTERM)
    assert output.finish() == 0, output.text
    assert output.wait_for("Exited Dapr successfully")
    assert not list((tmp_path / "callee" / ".dapr" / "logs").glob("*.log"))  # console only


def test_an_invalid_run_file_fails_with_the_reason(tmp_path: Path, home: Path) -> None:
    run_file = _write(tmp_path / "dapr.yaml", "apps:\n  - appDirPath: .\n")
    output = Output(_start(run_file, home))
    assert output.finish() == 1
    assert "Error getting apps from config file:" in output.text
    assert "required field 'version' not found" in output.text
