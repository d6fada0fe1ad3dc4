"""Fixtures: sessions on the dev sidecar (parametrized over the in-memory, SQLite and Redis
stores by the dev sidecar's pytest plugin), and raw access to the store for inspecting keys.

With ``DAPR_TEST_SIDECAR=external`` the plugin's ``dapr_sidecar`` is the daprd named by
``DAPR_GRPC_PORT`` (components in ``tests/external-components``) and the backend is ``"external"``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from dapr.aio.clients import DaprClient
from helpers import STORE, RawStore

from dapr_agents.ext.devsidecar.testing import SidecarEndpoint
from dapr_agents.ext.openai_agents import DaprSession


@pytest.fixture
async def dapr_client(dapr_sidecar: SidecarEndpoint) -> AsyncIterator[DaprClient]:
    """The official ``dapr.aio`` client, connected to this test's sidecar."""
    client = DaprClient()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def make_session(dapr_client: DaprClient) -> Callable[..., DaprSession]:
    """``make_session(session_id=None, **kwargs)``: a session sharing the test's client."""

    def make(session_id: str | None = None, **kwargs: Any) -> DaprSession:
        return DaprSession(
            session_id or f"s-{uuid.uuid4().hex[:8]}",
            state_store_name=STORE,
            dapr_client=dapr_client,
            **kwargs,
        )

    return make


@pytest.fixture
async def session(make_session: Callable[..., DaprSession]) -> DaprSession:
    return make_session()


@pytest.fixture
def raw_store(
    dapr_sidecar: SidecarEndpoint, dapr_state_backend: str, request: pytest.FixtureRequest
) -> Iterator[RawStore]:
    redis_address = request.getfixturevalue("redis_server").address if dapr_state_backend == "redis" else None
    store = RawStore(dapr_sidecar, dapr_state_backend, redis_address)
    yield store
    store.close()
