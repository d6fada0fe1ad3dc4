"""``dapr-devsidecar run``, driven as a user drives ``dapr run``: a real subprocess, a real app
process after ``--``, signals, exit codes, and the official SDK talking to the sidecar."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from dapr.clients import DaprClient
from helpers import rpc_fails

from dapr_agents.ext.devsidecar.testing import SidecarEndpoint, free_port, wait_for_health, write_components

CLI = [sys.executable, "-m", "dapr_devsidecar", "run"]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that would point the SDK elsewhere."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DAPR_") and k not in {"APP_ID", "NAMESPACE", "PYTHONSTARTUP"}
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def child(script: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(script)]


def run_cli(
    args: list[str], *, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(CLI + args, env=env or clean_env(), capture_output=True, text=True, timeout=timeout)


def wait_for_file(path: Path, timeout: float = 30.0, process: subprocess.Popen | None = None) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text()
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the CLI exited with {process.returncode} before {path.name} appeared")
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear within {timeout}s")


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # an unreaped zombie has exited too
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def http_status(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


@contextlib.contextmanager
def cli_process(args: list[str], *, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        CLI + args, env=env or clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


@pytest.fixture
def sqlite_components(tmp_path) -> tuple[Path, Path]:
    db = tmp_path / "state.db"
    return write_components(tmp_path / "components", state_backend="sqlite", sqlite_path=db), db


def test_the_app_gets_the_dapr_environment_and_can_use_the_sdk(sqlite_components):
    folder, db = sqlite_components
    script = """
        import os
        from dapr.clients import DaprClient
        print("env", os.environ["APP_ID"], os.environ["DAPR_GRPC_PORT"], os.environ["DAPR_HTTP_PORT"], flush=True)
        with DaprClient() as client:
            client.save_state("statestore", "greeting", "hello from the app")
            print("value:", client.get_state("statestore", "greeting").data.decode(), flush=True)
    """
    result = run_cli(["--app-id", "cli-app", "--resources-path", str(folder), "--", *child(script)])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "value: hello from the app" in lines
    env_line = next(line for line in lines if line.startswith("env "))
    _, app_id, grpc_port, http_port = env_line.split()
    assert app_id == "cli-app"
    assert int(grpc_port) > 0 and int(http_port) > 0 and grpc_port != http_port
    # The write went through the sidecar, with daprd's app-id prefix, into the configured file.
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert [row[0] for row in conn.execute("SELECT key FROM state")] == ["cli-app||greeting"]


def test_explicit_ports_are_the_ones_given_to_the_app(sqlite_components):
    folder, _ = sqlite_components
    grpc_port, http_port = free_port(), free_port()
    script = """
        import os
        print(os.environ["DAPR_GRPC_PORT"], os.environ["DAPR_HTTP_PORT"], flush=True)
    """
    result = run_cli(
        [
            "--app-id",
            "ports",
            "--resources-path",
            str(folder),
            "--dapr-grpc-port",
            str(grpc_port),
            "--dapr-http-port",
            str(http_port),
            "--",
            *child(script),
        ]
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(grpc_port), str(http_port)]


def test_the_app_output_is_passed_through_and_its_exit_code_is_the_cli_exit_code(sqlite_components):
    folder, _ = sqlite_components
    script = """
        import sys
        print("line one from the app")
        print("line two from the app", flush=True)
        print("app complaint", file=sys.stderr, flush=True)
        sys.exit(7)
    """
    result = run_cli(["--app-id", "exits", "--resources-path", str(folder), "--", *child(script)])
    assert result.returncode == 7
    assert result.stdout.splitlines() == ["line one from the app", "line two from the app"]
    assert "app complaint" in result.stderr
    assert "app exited with code 7" in result.stderr


def test_a_successful_app_makes_the_cli_exit_zero(sqlite_components):
    folder, _ = sqlite_components
    result = run_cli(["--app-id", "ok", "--resources-path", str(folder), "--", *child("print('done')")])
    assert result.returncode == 0
    assert result.stdout.strip() == "done"


def test_sigterm_stops_the_cli_and_its_long_running_app(sqlite_components, tmp_path):
    folder, _ = sqlite_components
    pid_file = tmp_path / "child.pid"
    script = f"""
        import os, time
        tmp = {str(pid_file)!r} + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(os.getpid()))
        os.replace(tmp, {str(pid_file)!r})
        time.sleep(120)
        print("the app was not stopped", flush=True)
    """
    with cli_process(["--app-id", "sleeper", "--resources-path", str(folder), "--", *child(script)]) as cli:
        child_pid = int(wait_for_file(pid_file, process=cli))
        assert not process_gone(child_pid)
        started = time.monotonic()
        cli.send_signal(signal.SIGTERM)
        returncode = cli.wait(timeout=15)
        elapsed = time.monotonic() - started
        stdout, _ = cli.communicate(timeout=5)
    assert elapsed < 5, f"the CLI took {elapsed:.1f}s to stop"
    # The app died of the forwarded SIGTERM; the CLI reports it the shell's way (128 + 15).
    assert returncode == 128 + signal.SIGTERM
    assert "the app was not stopped" not in stdout
    deadline = time.monotonic() + 5
    while not process_gone(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_gone(child_pid), "the app outlived the CLI"


def test_sidecar_only_mode_serves_until_sigterm_and_exits_zero(sqlite_components):
    folder, _ = sqlite_components
    grpc_port, http_port = free_port(), free_port()
    http = f"http://127.0.0.1:{http_port}"
    with cli_process(
        [
            "--app-id",
            "alone",
            "--resources-path",
            str(folder),
            "--dapr-grpc-port",
            str(grpc_port),
            "--dapr-http-port",
            str(http_port),
        ]
    ) as cli:
        wait_for_health(http, timeout=30)
        assert http_status(f"{http}/v1.0/healthz") == 204
        assert http_status(f"{http}/v1.0/healthz/outbound") == 204
        with SidecarEndpoint(grpc_port, http_port, app_id="alone").sdk_configured():
            client = DaprClient()
        with client:
            client.save_state("statestore", "k", "served")
            assert client.get_state("statestore", "k").data == b"served"
        time.sleep(0.3)
        assert cli.poll() is None, "sidecar-only mode must keep running without an app"
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=15) == 0
        _, stderr = cli.communicate(timeout=5)
    assert "alone" in stderr  # the start-up banner names the app
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{http}/v1.0/healthz", timeout=2)


def test_an_unsupported_component_makes_the_cli_fail_naming_it_without_starting_the_app(tmp_path):
    folder = tmp_path / "components"
    folder.mkdir()
    (folder / "orders.yaml").write_text(
        textwrap.dedent(
            """\
            apiVersion: dapr.io/v1alpha1
            kind: Component
            metadata:
              name: orders-db
            spec:
              type: state.mongodb
              version: v1
              metadata: []
            """
        )
    )
    marker = tmp_path / "app-ran"
    script = f"open({str(marker)!r}, 'w').close()"
    result = run_cli(["--app-id", "bad", "--resources-path", str(folder), "--", *child(script)])
    assert result.returncode != 0
    assert "orders-db" in result.stderr
    assert "state.mongodb" in result.stderr
    assert str(folder / "orders.yaml") in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists(), "the app must not start when the sidecar cannot"


def test_a_missing_resources_path_makes_the_cli_fail(tmp_path):
    missing = tmp_path / "nowhere"
    result = run_cli(["--app-id", "bad", "--resources-path", str(missing), "--", *child("print('ran')")])
    assert result.returncode != 0
    assert str(missing) in result.stderr
    assert "ran" not in result.stdout


def test_with_an_api_token_the_app_can_call_and_a_client_without_it_is_refused(sqlite_components, tmp_path):
    folder, _ = sqlite_components
    token = "s3cret-token-for-tests"
    grpc_port, http_port = free_port(), free_port()
    ready, done = tmp_path / "ready", tmp_path / "done"
    script = f"""
        import os, time
        from dapr.clients import DaprClient
        assert os.environ["DAPR_API_TOKEN"] == {token!r}
        with DaprClient() as client:
            client.save_state("statestore", "secret", "written by the app")
            print("app read:", client.get_state("statestore", "secret").data.decode(), flush=True)
        open({str(ready)!r}, "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists({str(done)!r}) and time.monotonic() < deadline:
            time.sleep(0.05)
    """
    http = f"http://127.0.0.1:{http_port}"
    with cli_process(
        [
            "--app-id",
            "guarded",
            "--resources-path",
            str(folder),
            "--dapr-grpc-port",
            str(grpc_port),
            "--dapr-http-port",
            str(http_port),
            "--",
            *child(script),
        ],
        env=clean_env(DAPR_API_TOKEN=token),
    ) as cli:
        try:
            wait_for_file(ready, process=cli)
            # Health is exempt from the token, as in daprd; other HTTP routes are not.
            assert http_status(f"{http}/v1.0/healthz") == 204
            assert http_status(f"{http}/v1.0/healthz/outbound") == 204
            assert http_status(f"{http}/v1.0/metadata") == 401
            assert http_status(f"{http}/v1.0/metadata", {"dapr-api-token": token}) == 200

            with SidecarEndpoint(grpc_port, http_port, app_id="guarded").sdk_configured():
                anonymous = DaprClient()  # construction only polls health, which needs no token
            with anonymous, rpc_fails() as failure:
                anonymous.get_state("statestore", "secret")
            assert failure.code == grpc.StatusCode.UNAUTHENTICATED
            assert failure.details == "Unauthorized"

            with SidecarEndpoint(
                grpc_port, http_port, api_token="wrong-token", app_id="guarded"
            ).sdk_configured():
                impostor = DaprClient()
            with impostor, rpc_fails() as failure:
                impostor.save_state("statestore", "secret", "overwritten")
            assert failure.code == grpc.StatusCode.UNAUTHENTICATED

            with SidecarEndpoint(grpc_port, http_port, api_token=token, app_id="guarded").sdk_configured():
                trusted = DaprClient()
            with trusted:
                assert trusted.get_state("statestore", "secret").data == b"written by the app"
        finally:
            done.touch()
        assert cli.wait(timeout=30) == 0
        stdout, _ = cli.communicate(timeout=5)
    assert "app read: written by the app" in stdout.splitlines()
