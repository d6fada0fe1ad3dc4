"""Shared fixtures: the official sync and aio Dapr clients behind one async interface, so each
conformance test runs through both, on every state backend, over the wire."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from dapr.aio.clients import DaprClient as AioDaprClient
from dapr.clients import DaprClient
from dapr.clients.grpc.subscription import Subscription as SyncSubscription
from dapr.proto.runtime.v1 import dapr_pb2_grpc

from dapr_agents.ext.devsidecar.testing import SidecarEndpoint, write_components

RESILIENCY_YAML = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: test-resiliency
spec:
  policies:
    retries:
      quickRetry:
        policy: constant
        duration: 20ms
        maxRetries: 2
  targets:
    components:
      pubsub-retry:
        inbound:
          retry: quickRetry
"""

RETRY_PUBSUB_YAML = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub-retry
spec:
  type: pubsub.in-memory
  version: v1
  metadata: []
"""


LATE_POLICY_YAML = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub-late-policy
spec:
  type: pubsub.in-memory
  version: v1
  metadata: []
---
# Not applied: daprd reads a Resiliency only as the first document of its file.
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: not-applied
spec:
  policies:
    retries:
      quickRetry:
        policy: constant
        duration: 20ms
        maxRetries: 2
  targets:
    components:
      pubsub-late-policy:
        inbound:
          retry: quickRetry
"""


@pytest.fixture
def dapr_components(dapr_state_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Path | None:
    """The plugin's components plus a pub/sub with an inbound retry policy and one whose policy
    daprd does not apply (the second document of its file), as in ``external-components``."""
    if dapr_state_backend == "external":
        return None
    redis_address = None
    if dapr_state_backend == "redis":
        server = request.getfixturevalue("redis_server")
        server.flushall()
        redis_address = server.address
    folder = write_components(
        tmp_path / "components",
        state_backend=dapr_state_backend,
        redis_address=redis_address,
        conversation="echo",
    )
    (folder / "pubsub-retry.yaml").write_text(RETRY_PUBSUB_YAML)
    (folder / "resiliency.yaml").write_text(RESILIENCY_YAML)
    (folder / "pubsub-late-policy.yaml").write_text(LATE_POLICY_YAML)
    return folder


class Subscription:
    """A streaming subscription from either client, with a timeout on reads."""

    def __init__(self, kind: str, inner: Any) -> None:
        self._kind = kind
        self._inner = inner

    async def next(self, timeout: float = 5.0) -> Any:
        if self._kind == "aio":
            return await asyncio.wait_for(self._inner.next_message(), timeout)
        return await asyncio.wait_for(asyncio.to_thread(self._inner.next_message), timeout)

    async def respond(self, message: Any, verdict: str) -> None:
        method = getattr(self._inner, f"respond_{verdict}")
        if self._kind == "aio":
            await method(message)
        else:
            method(message)

    async def close(self) -> None:
        if self._kind == "aio":
            await self._inner.close()
        else:
            self._inner.close()


class Dapr:
    """The official ``DaprClient`` (sync, called from worker threads) or ``dapr.aio`` client."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._client: Any = None
        self._subscriptions: list[Subscription] = []

    async def open(self) -> Dapr:
        if self.kind == "aio":
            self._client = AioDaprClient()
        else:
            self._client = await asyncio.to_thread(DaprClient)
        return self

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        function = getattr(self._client, method)
        if self.kind == "aio":
            return await function(*args, **kwargs)
        return await asyncio.to_thread(function, *args, **kwargs)

    async def subscribe(self, pubsub: str, topic: str, **kwargs: Any) -> Subscription:
        if self.kind == "sync":
            # The sync SDK (1.18.3) marks its stream active only after gRPC has started pulling
            # the request iterator, which may then see it inactive and half-close the stream at
            # once; daprd (and the dev sidecar) end such a stream. Marking it active first
            # avoids that SDK race, which is not what these tests are about.
            inner = SyncSubscription(
                self._client._stub, pubsub, topic, kwargs.get("metadata"), kwargs.get("dead_letter_topic")
            )
            inner._set_stream_active()
            await asyncio.to_thread(inner.start)
        else:
            inner = await self.call("subscribe", pubsub, topic, **kwargs)
        subscription = Subscription(self.kind, inner)
        self._subscriptions.append(subscription)
        return subscription

    async def close(self) -> None:
        for subscription in self._subscriptions:
            await subscription.close()
        if self.kind == "aio":
            await self._client.close()
        else:
            self._client.close()


@pytest.fixture(params=["sync", "aio"])
async def dapr(request: pytest.FixtureRequest, dapr_sidecar: SidecarEndpoint) -> AsyncIterator[Dapr]:
    """An official Dapr client of both kinds, connected to this test's sidecar."""
    client = await Dapr(request.param).open()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def raw_stub(dapr_sidecar: SidecarEndpoint) -> Any:
    """The generated gRPC stub, for response fields the SDK does not surface (item metadata)."""
    metadata = (("dapr-api-token", dapr_sidecar.api_token),) if dapr_sidecar.api_token else ()
    channel = grpc.insecure_channel(dapr_sidecar.grpc_address)
    stub = dapr_pb2_grpc.DaprStub(channel)
    stub.call_metadata = metadata
    yield stub
    channel.close()


@pytest.fixture
def unique() -> str:
    """A per-test prefix so tests can share an external daprd's stores."""
    return f"t{uuid.uuid4().hex[:10]}"
