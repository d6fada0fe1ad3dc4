"""Name resolution between apps on one machine.

Two ``dapr-devsidecar run`` processes sharing a ``DAPR_DEVSIDECAR_HOME`` find each other by app id:
with the dev sidecar through its registry of files, with ``--runtime daprd`` (selected when the
suite runs with ``DAPR_TEST_SIDECAR=daprd``) through Dapr's ``nameresolution.sqlite`` component,
which the command configures there. Replicas of one app id share the calls.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from apps import HttpApp, Received, Reply, answers, endpoint_of, http, unique_id, wait_until

from dapr_agents.ext.devsidecar._nameresolution import Registry, _process_start, daprd_configuration
from dapr_agents.ext.devsidecar.testing import free_port, sidecar_mode, write_components

CLI = [sys.executable, "-m", "dapr_devsidecar", "run"]


# -- the registry -----------------------------------------------------------------------------


def _dead_sidecar_entry(app_id: str, address: str) -> dict[str, object]:
    """An entry as a sidecar writes it, left behind by a SIGKILL: its process is gone. The
    process's start time keeps the tests right when the machine has reused the pid since."""
    dead = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = _process_start(dead.pid)
    assert started is not None
    dead.kill()
    dead.wait()
    return {"appID": app_id, "address": address, "pid": dead.pid, "started": started}


def test_the_registry_resolves_live_entries_and_forgets_stale_ones(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    entry = registry.register("orders", "", "127.0.0.1:5000")
    assert registry.resolve("orders") == "127.0.0.1:5000"
    assert registry.resolve("orders", "default") == "127.0.0.1:5000"  # "" is the default namespace
    assert registry.resolve("orders", "other") is None
    assert registry.resolve("payments") is None
    # An entry whose process is gone (a SIGKILLed sidecar) is ignored and removed.
    stale = entry.path.with_name("dead-5001.json")
    stale.write_text(json.dumps(_dead_sidecar_entry("orders", "127.0.0.1:5001")))
    assert registry.addresses("orders") == ["127.0.0.1:5000"]
    assert not stale.exists()
    registry.unregister(entry)
    assert registry.resolve("orders") is None


def test_registering_sweeps_what_dead_sidecars_left(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    folder = tmp_path / "apps" / "default" / "crashed"
    folder.mkdir(parents=True)
    stale = folder / "dead-5002.json"
    stale.write_text(json.dumps(_dead_sidecar_entry("crashed", "127.0.0.1:5002")))
    registry.register("orders", "", "127.0.0.1:5000")
    assert not stale.exists()


def test_replicas_are_all_resolved(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.register("orders", "", "127.0.0.1:5000")
    second = registry.register("orders", "", "127.0.0.1:5001")
    assert sorted(registry.addresses("orders")) == ["127.0.0.1:5000", "127.0.0.1:5001"]
    assert {registry.resolve("orders") for _ in range(50)} == {"127.0.0.1:5000", "127.0.0.1:5001"}
    registry.unregister(second)
    assert registry.addresses("orders") == ["127.0.0.1:5000"]


def test_daprd_gets_the_sqlite_resolver_unless_its_configuration_names_one(tmp_path: Path) -> None:
    written, ours = daprd_configuration(None, tmp_path, "orders")
    assert ours and written is not None and written.parent == tmp_path / "configs"
    document = yaml.safe_load(written.read_text())
    assert document["kind"] == "Configuration"
    assert document["spec"]["nameResolution"] == {
        "component": "sqlite",
        "version": "v1",
        "configuration": {"connectionString": str(tmp_path / "nameresolution.db")},
    }
    user = tmp_path / "config.yaml"
    user.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: mine\n"
        "spec:\n  tracing:\n    samplingRate: '1'\n"
    )
    merged, ours = daprd_configuration(user, tmp_path, "orders")
    assert ours and merged != user
    document = yaml.safe_load(merged.read_text())
    assert document["metadata"]["name"] == "mine"
    assert document["spec"]["tracing"] == {"samplingRate": "1"}
    assert document["spec"]["nameResolution"]["component"] == "sqlite"
    user.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: mine\n"
        "spec:\n  nameResolution:\n    component: mdns\n"
    )
    assert daprd_configuration(user, tmp_path, "orders") == (user, False)


# -- sidecars in one process ------------------------------------------------------------------


@pytest.mark.starts_sidecars
def test_replicas_of_an_app_share_the_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dapr_sidecar_factory
) -> None:
    monkeypatch.setenv("DAPR_DEVSIDECAR_HOME", str(tmp_path / "home"))
    components = write_components(tmp_path / "components", pubsub=None, actor_state_store=False)
    app_id = unique_id("orders")
    with HttpApp() as first, HttpApp() as second:
        for app in (first, second):
            sidecar = dapr_sidecar_factory.start(components, app_id=app_id, app_port=app.port)
            wait_until(lambda s=sidecar: http(f"{endpoint_of(s).http_endpoint}/v1.0/healthz").status == 204)
        caller = endpoint_of(dapr_sidecar_factory.start(components, app_id=unique_id("caller")))
        for _ in range(30):
            assert http(f"{caller.http_endpoint}/v1.0/invoke/{app_id}/method/work").status == 200
        assert first.requests_to("/work") and second.requests_to("/work")
        assert len(first.requests_to("/work")) + len(second.requests_to("/work")) == 30


# -- dapr-devsidecar run processes ------------------------------------------------------------

CALLEE = """
import os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from {os.environ['APP_ID']} to {self.headers['dapr-caller-app-id']}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(os.environ["APP_PORT"])), Handler).serve_forever()
"""

CALLER = """
import os, sys, time, urllib.request, urllib.error
url = f"http://127.0.0.1:{os.environ['DAPR_HTTP_PORT']}/v1.0/invoke/{sys.argv[1]}/method/greet"
deadline = time.monotonic() + 60
while True:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            print("REPLY", answer.read().decode(), flush=True)
            break
    except urllib.error.HTTPError as exc:
        if time.monotonic() > deadline:
            print("FAILED", exc.code, exc.read().decode(), flush=True)
            sys.exit(1)
        time.sleep(0.2)
"""


def _runtime() -> list[str]:
    return ["--runtime", "daprd"] if sidecar_mode() == "daprd" else []


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "home"
    yield folder
    if sidecar_mode() == "daprd":  # the shared placement and scheduler the runs started there
        subprocess.run(
            [sys.executable, "-m", "dapr_devsidecar", "uninit"],
            env={**os.environ, "DAPR_DEVSIDECAR_HOME": str(folder)},
            capture_output=True,
            timeout=60,
        )


def _env(home: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("DAPR_") and k not in {"APP_ID", "APP_PORT"}
    }
    if "DAPR_INSTALL_DIR" in os.environ:
        env["DAPR_INSTALL_DIR"] = os.environ["DAPR_INSTALL_DIR"]
    env.update(PYTHONUNBUFFERED="1", DAPR_DEVSIDECAR_HOME=str(home))
    return env


def _run(app_id: str, components: Path, *options: str) -> list[str]:
    return [*CLI, *_runtime(), "--app-id", app_id, "--resources-path", str(components), *options]


@pytest.mark.starts_sidecars
def test_apps_of_separate_runs_call_each_other_by_app_id(tmp_path: Path, home: Path) -> None:
    components = write_components(tmp_path / "components", pubsub=None, actor_state_store=False)
    callee_id, caller_id = unique_id("callee"), unique_id("caller")
    callee_port, callee_http = free_port(), free_port()
    callee_app = [sys.executable, "-c", textwrap.dedent(CALLEE)]
    callee = subprocess.Popen(
        _run(
            callee_id, components, "--app-port", str(callee_port), "--dapr-http-port", str(callee_http), "--"
        )
        + callee_app,
        env=_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    caller_app = [sys.executable, "-c", textwrap.dedent(CALLER), callee_id]
    try:
        wait_until(
            lambda: callee.poll() is not None or answers(f"http://127.0.0.1:{callee_http}/v1.0/healthz"),
            timeout=90,
            what="the callee's sidecar and app",
        )
        assert callee.poll() is None, callee.stdout.read() if callee.stdout else ""
        caller = subprocess.run(
            [*_run(caller_id, components, "--"), *caller_app],
            env=_env(home),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert caller.returncode == 0, caller.stdout + caller.stderr
        assert f"REPLY hello from {callee_id} to {caller_id}" in caller.stdout
    finally:
        callee.send_signal(signal.SIGTERM)
        callee.wait(30)
    if sidecar_mode() != "daprd":
        # A stopped sidecar takes its entry with it.
        assert Registry(home).addresses(callee_id) == []
    impatient = [sys.executable, "-c", textwrap.dedent(CALLER).replace("60", "3"), callee_id]
    gone = subprocess.run(
        [*_run(caller_id, components, "--"), *impatient],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert gone.returncode == 1
    assert "FAILED 500" in gone.stdout and '"ERR_DIRECT_INVOKE"' in gone.stdout


@pytest.mark.starts_sidecars
def test_a_stopped_callee_is_no_longer_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dapr_sidecar_factory
) -> None:
    monkeypatch.setenv("DAPR_DEVSIDECAR_HOME", str(tmp_path / "home"))
    components = write_components(tmp_path / "components", pubsub=None, actor_state_store=False)

    def hello(request: Received) -> Reply:
        return Reply(200, b"hello")

    with HttpApp(hello) as app:
        app_id = unique_id("callee")
        callee = dapr_sidecar_factory.start(components, app_id=app_id, app_port=app.port)
        caller = endpoint_of(dapr_sidecar_factory.start(components, app_id=unique_id("caller")))
        url = f"{caller.http_endpoint}/v1.0/invoke/{app_id}/method/x"
        wait_until(lambda: http(url).status == 200, what="the callee answering")
        callee.stop()
        reply = http(url)
        assert reply.status == 500
        assert reply.json()["message"].startswith(f"failed to invoke, id: {app_id}, err: ")
