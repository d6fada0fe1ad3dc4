"""Fixtures: one dev sidecar per state backend for the session, and checkpointers on it.

Starting a sidecar per test would dominate the run (243 conformance cases), so each backend's
sidecar is shared by the session and every test gets its own ``key_prefix`` instead. With
``DAPR_TEST_SIDECAR=external`` the tests use the daprd named by ``DAPR_GRPC_PORT`` (store
``statestore``).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from dapr_agents.ext.devsidecar.testing import (
    STATE_BACKENDS,
    SidecarEndpoint,
    external_endpoint,
    external_mode,
    write_components,
)
from dapr_agents.ext.langgraph import DaprCheckpointer


def _backends() -> list[str]:
    if external_mode():
        return ["external"]
    requested = os.environ.get("DAPR_TEST_STATE_BACKENDS")
    if not requested:
        return list(STATE_BACKENDS)
    return [b.strip() for b in requested.split(",") if b.strip()]


@pytest.fixture(scope="session", params=_backends())
def backend(request: pytest.FixtureRequest) -> str:
    """The state backend (``in-memory``, ``sqlite``, ``redis`` or ``external``)."""
    return str(request.param)


@pytest.fixture(scope="session")
def sidecar(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[SidecarEndpoint]:
    """A dev sidecar serving store ``statestore`` on ``backend``, shared by the session."""
    if backend == "external":
        yield external_endpoint()
        return
    from dapr_agents.ext.devsidecar import DevSidecar

    redis_address = request.getfixturevalue("redis_server").address if backend == "redis" else None
    folder = write_components(
        tmp_path_factory.mktemp(f"components-{backend}"), state_backend=backend, redis_address=redis_address
    )
    with DevSidecar(app_id="lg-tests", resources_paths=[folder]) as dev:
        yield dev.endpoint()


@pytest.fixture
def sdk(sidecar: SidecarEndpoint) -> Iterator[SidecarEndpoint]:
    """The Dapr SDK pointed at the session's sidecar for this test."""
    with sidecar.sdk_configured():
        yield sidecar


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def saver(sdk: SidecarEndpoint, prefix: str) -> AsyncIterator[DaprCheckpointer]:
    """A checkpointer with its own key prefix; its async client is closed after the test."""
    checkpointer = DaprCheckpointer("statestore", prefix)
    try:
        yield checkpointer
    finally:
        await checkpointer.aclose()


class SyncThroughAsync:
    """Presents a checkpointer's *sync* methods as the async API the conformance suite calls,
    so the same suite checks the sync implementation too (each call runs in a worker thread)."""

    def __init__(self, inner: DaprCheckpointer) -> None:
        self.inner = inner
        self.serde = inner.serde

    def __getattr__(self, name: str) -> Any:
        if name.startswith("a") and hasattr(self.inner, name[1:]) and name != "alist":
            method = getattr(self.inner, name[1:])

            async def call(*args: Any, **kwargs: Any) -> Any:
                return await asyncio.to_thread(method, *args, **kwargs)

            return call
        return getattr(self.inner, name)

    async def alist(self, config: Any, **kwargs: Any) -> AsyncIterator[Any]:
        for item in await asyncio.to_thread(lambda: list(self.inner.list(config, **kwargs))):
            yield item


@pytest.fixture(params=["async", "sync"])
async def any_saver(request: pytest.FixtureRequest, saver: DaprCheckpointer) -> AsyncIterator[Any]:
    """The checkpointer through its async methods, and through its sync methods."""
    if request.param == "async":
        yield saver
    else:
        yield SyncThroughAsync(saver)
        saver.close()


class AgentApp:
    """One app for the agents-as-tools tests: a sidecar and the app's one ``WorkflowRuntime``.

    Tests register hosts on ``runtime`` and then call :meth:`start` (daprd hands work items to
    any worker stream of an app, so an app must not run a second runtime).
    """

    def __init__(self, endpoint: SidecarEndpoint) -> None:
        import dapr.ext.workflow as wf

        self.endpoint = endpoint
        self.runtime = wf.WorkflowRuntime(host=endpoint.host, port=str(endpoint.grpc_port))
        self.started = False

    def start(self) -> AgentApp:
        self.runtime.start()
        self.started = True
        return self

    def workflow_client(self) -> Any:
        import dapr.ext.workflow as wf

        return wf.DaprWorkflowClient(host=self.endpoint.host, port=str(self.endpoint.grpc_port))

    def stop(self) -> None:
        if self.started:
            # An activity that finishes after shutdown can crash the 1.18 SDK: let stragglers end.
            time.sleep(0.3)
            self.runtime.shutdown()
            self.started = False


@pytest.fixture
def agent_app(tmp_path: Any, dapr_sidecar_factory: Any) -> Iterator[AgentApp]:
    """An app with an in-memory ``statestore`` (also the workflow store), SDK pointed at it."""
    if external_mode():
        endpoint = external_endpoint()
    else:
        folder = write_components(tmp_path / "components", state_backend="in-memory", pubsub=None)
        sidecar = dapr_sidecar_factory.start(folder, app_id="lg-agents")
        endpoint = SidecarEndpoint(sidecar.grpc_port, sidecar.http_port, app_id="lg-agents")
    with endpoint.sdk_configured():
        app = AgentApp(endpoint)
        try:
            yield app
        finally:
            app.stop()
