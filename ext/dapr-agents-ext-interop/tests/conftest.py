"""Fixtures: an app (a dev sidecar, components dapr-agents expects, one WorkflowRuntime) per test.

Tests register their workflows on ``app.runtime`` and then call ``app.start()``: one runtime per
app, as daprd requires (it hands work items to any worker stream of the app).

With ``DAPR_TEST_SIDECAR=external`` the app is the daprd named by ``DAPR_GRPC_PORT`` (app id
``APP_ID``), started with ``tests/external-components``; tests needing two apps (marked
``starts_sidecars``) are skipped. With ``DAPR_TEST_SIDECAR=daprd`` those tests get a real daprd
per app instead, sharing the SQLite stores as two dev sidecars would.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf
import pytest

from dapr_agents.ext.devsidecar import DevSidecar, ScriptedChatServer, ScriptedReply
from dapr_agents.ext.devsidecar.testing import SidecarEndpoint, external_endpoint, external_mode, sidecar_mode

#: Every registry team the tests write to (cleared between tests on an external daprd).
TEAMS = ("default", "blue")


def component(name: str, backend: str, metadata: dict[str, str]) -> str:
    lines = [
        "apiVersion: dapr.io/v1alpha1",
        "kind: Component",
        "metadata:",
        f"  name: {name}",
        "spec:",
        f"  type: state.{backend}",
        "  version: v1",
        "  metadata:" + ("" if metadata else " []"),
    ]
    for key, value in metadata.items():
        lines += [f"  - name: {key}", f'    value: "{value}"']
    return "\n".join(lines) + "\n"


def write_agent_components(folder: Path, backend: str, redis_address: str | None = None) -> Path:
    """The state stores a dapr-agents app uses (workflow state, registry) and ``statestore``."""
    folder.mkdir(parents=True, exist_ok=True)

    def meta(name: str) -> dict[str, str]:
        if backend == "sqlite":
            return {"connectionString": str(folder / f"{name}.db")}
        if backend == "redis":
            assert redis_address
            return {"redisHost": redis_address}
        return {}

    (folder / "workflow.yaml").write_text(
        component("agent-workflow", backend, {**meta("workflow"), "actorStateStore": "true"})
    )
    (folder / "registry.yaml").write_text(component("agent-registry", backend, meta("registry")))
    # Where the framework packages keep their state (sessions, checkpoints) by default.
    (folder / "statestore.yaml").write_text(component("statestore", backend, meta("statestore")))
    return folder


class App:
    """One Dapr app under test: its sidecar and its one WorkflowRuntime."""

    def __init__(self, endpoint: SidecarEndpoint, sidecar: DevSidecar | None = None) -> None:
        self.sidecar = sidecar  # None on an external daprd
        self.app_id = endpoint.app_id
        self.endpoint = endpoint
        self.runtime = wf.WorkflowRuntime(host=endpoint.host, port=str(endpoint.grpc_port))
        self.started = False

    def start(self) -> App:
        self.runtime.start()
        self.started = True
        return self

    def workflow_client(self) -> wf.DaprWorkflowClient:
        return wf.DaprWorkflowClient(host=self.endpoint.host, port=str(self.endpoint.grpc_port))

    def stop(self) -> None:
        # Always: a DurableAgent (or anything else) may have started the runtime. Let activities
        # still in flight finish first: one finishing after shutdown crashes the SDK.
        time.sleep(0.2)
        with contextlib.suppress(Exception):
            self.runtime.shutdown()
        self.started = False


@pytest.fixture
def backend() -> str:
    return "in-memory"


@pytest.fixture
def make_app(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., App]]:
    """``make_app(app_id, backend="in-memory")``: apps made by one test share their stores."""
    apps: list[App] = []
    sidecars: list[DevSidecar] = []
    flushed: list[bool] = []

    def make(app_id: str = "test-app", backend: str = "in-memory") -> App:
        if sidecar_mode() == "daprd" and request.node.get_closest_marker("starts_sidecars"):
            return real_daprd_app(app_id, backend)
        if external_mode():
            return external_app()
        redis_address = None
        if backend == "redis":
            server = request.getfixturevalue("redis_server")
            if not flushed:  # the server is shared by the session; each test starts empty
                server.flushall()
                flushed.append(True)
            redis_address = server.address
        folder = write_agent_components(tmp_path / f"components-{backend}", backend, redis_address)
        sidecar = DevSidecar(app_id=app_id, resources_paths=[folder])
        sidecar.start()
        sidecars.append(sidecar)
        app = App(sidecar.endpoint(), sidecar)
        apps.append(app)
        return app

    def real_daprd_app(app_id: str, backend: str) -> App:
        folder = write_agent_components(tmp_path / f"components-{backend}", backend)
        daprd = request.getfixturevalue("dapr_sidecar_factory").start(folder, app_id=app_id)
        app = App(daprd.endpoint)
        apps.append(app)
        return app

    def external_app() -> App:
        if apps:
            pytest.fail("one external daprd is one app: mark tests needing two apps devsidecar_only")
        endpoint = external_endpoint()
        with endpoint.sdk_configured():
            clear_registry()
        app = App(endpoint)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.stop()
    for sidecar in sidecars:
        sidecar.stop()


@pytest.fixture
def app(make_app: Callable[..., App], backend: str) -> Iterator[App]:
    """A single app with the in-process SDK pointed at its sidecar."""
    created = make_app("test-app", backend)
    with created.endpoint.sdk_configured():
        yield created


def clear_registry() -> None:
    """Empty the registry: an external daprd keeps it from test to test, a fresh dev sidecar
    starts without one (tests count the agents they registered)."""
    from dapr.clients import DaprClient

    with DaprClient() as client:
        for team in TEAMS:
            index = f"agents:{team}:_index"
            data = client.get_state("agent-registry", index).data
            for name in json.loads(data)["agents"] if data else []:
                client.delete_state("agent-registry", f"agents:{team}:{name}")
            client.delete_state("agent-registry", index)


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


#: dapr-agents asks for a conversation summary after each DurableAgent run; every script answers it.
SUMMARY = ScriptedReply('{"summary": "done"}', when="Summarize the following conversation", repeat=True)


@pytest.fixture
def llm() -> Iterator[Callable[[list[ScriptedReply]], ScriptedChatServer]]:
    """Scripted model servers (``llm([...replies])``), each answering the summary request too."""
    servers: list[ScriptedChatServer] = []

    def make(replies: list[ScriptedReply]) -> ScriptedChatServer:
        server = ScriptedChatServer([SUMMARY, *replies]).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
