"""Fixtures: an A2A server app behind its own sidecar, and a caller's sidecar to reach it through.

The server app runs as a process of its own (``server_app.py``) so tests can SIGKILL it; its
sidecar (a dev sidecar, or a real daprd with ``DAPR_TEST_SIDECAR=daprd``) keeps running and
hands the workflow back when the app starts again. The stores are SQLite files, durable across
those restarts. Callers use the official a2a-sdk client through their own sidecar's
``/v1.0/invoke/<app-id>/method`` route, as the Dapr A2A blog's client does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dapr_agents.ext.devsidecar.testing import SidecarEndpoint, free_port, write_components

HERE = Path(__file__).parent


def unique_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def endpoint_of(sidecar: Any) -> SidecarEndpoint:
    endpoint = sidecar.endpoint
    return endpoint() if callable(endpoint) else endpoint


def wait_until(condition: Callable[[], Any], timeout: float = 120.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout} s")


@dataclass
class ServerApp:
    """``server_app.py`` behind its sidecar; ``start()`` again after ``kill()``."""

    app_id: str
    port: int
    sidecar: SidecarEndpoint
    workdir: Path
    app_token: str | None = None
    script: Path = HERE / "server_app.py"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> ServerApp:
        env = {**os.environ, **self.sidecar.env(), "A2A_TEST_DIR": str(self.workdir), "APP_ID": self.app_id}
        env.pop("APP_API_TOKEN", None)
        if self.app_token:
            env["APP_API_TOKEN"] = self.app_token
        self.process = subprocess.Popen([sys.executable, str(self.script), str(self.port)], env=env)
        headers = {"dapr-api-token": self.app_token} if self.app_token else {}

        def card_served() -> bool:
            assert self.process is not None and self.process.poll() is None, "the server app exited"
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.port}/.well-known/agent-card.json", headers=headers
            )
            try:
                with urllib.request.urlopen(request, timeout=2) as answer:
                    return answer.status == 200
            except (urllib.error.URLError, OSError):
                return False

        wait_until(card_served, what="the server app listening")
        return self

    def kill(self) -> None:
        """SIGKILL, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def runs(self) -> list[dict[str, Any]]:
        import json

        log = self.workdir / "runs.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@dataclass
class Apps:
    server: ServerApp
    caller: SidecarEndpoint

    @property
    def base_url(self) -> str:
        """The server's A2A base URL through the caller's sidecar."""
        return f"{self.caller.http_endpoint}/v1.0/invoke/{self.server.app_id}/method"


@pytest.fixture
def components(tmp_path: Path) -> Path:
    """SQLite stores (durable across app restarts): the workflow store, and the stores a
    dapr-agents DurableAgent uses (``agent-registry``, ``statestore``)."""
    folder = tmp_path / "components"
    write_components(
        folder,
        state_backend="sqlite",
        state_store="agent-workflow",
        sqlite_path=folder / "workflow.db",
        pubsub=None,
    )
    for name in ("agent-registry", "statestore"):
        (folder / f"store-{name}.yaml").write_text(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n"
            f"  name: {name}\nspec:\n  type: state.sqlite\n  version: v1\n  metadata:\n"
            f"  - name: connectionString\n    value: {json.dumps(str(folder / (name + '.db')))}\n"
        )
    return folder


@pytest.fixture
def make_apps(
    tmp_path: Path, components: Path, dapr_sidecar_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Apps]]:
    monkeypatch.setenv("DAPR_DEVSIDECAR_HOME", str(tmp_path / "home"))
    servers: list[ServerApp] = []

    def make(
        app_token: str | None = None,
        *,
        caller_id: str | None = None,
        config: Path | None = None,
        enable_mtls: bool = False,
    ) -> Apps:
        """The server app behind a sidecar (with ``config``, e.g. an access control list), and a
        caller's sidecar (``caller_id``); ``enable_mtls`` on both (daprd's ACLs need it)."""
        server_id, port = unique_id("a2a-server"), free_port()
        mtls = {"enable_mtls": True} if enable_mtls else {}
        sidecar = dapr_sidecar_factory.start(
            components,
            app_id=server_id,
            app_port=port,
            app_api_token=app_token,
            **({"config": config} if config else {}),
            **mtls,
        )
        caller = dapr_sidecar_factory.start(components, app_id=caller_id or unique_id("a2a-caller"), **mtls)
        workdir = tmp_path / f"work-{server_id}"
        workdir.mkdir()
        server = ServerApp(server_id, port, endpoint_of(sidecar), workdir, app_token)
        servers.append(server)
        return Apps(server.start(), endpoint_of(caller))

    try:
        yield make
    finally:
        for server in servers:
            server.stop()
