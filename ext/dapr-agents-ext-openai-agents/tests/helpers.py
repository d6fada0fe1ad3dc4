"""Helpers shared by the tests: item builders and raw access to the store's keys."""

from __future__ import annotations

from typing import Any

import grpc
from dapr.proto.runtime.v1 import dapr_pb2_grpc, state_pb2

from dapr_agents.ext.devsidecar.testing import SidecarEndpoint

STORE = "statestore"


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def texts(items: list[Any]) -> list[str]:
    return [item["content"] for item in items]


class RawStore:
    """Reads the store's keys the way daprd reports them (values, and TTL metadata the SDK
    does not surface)."""

    def __init__(self, endpoint: SidecarEndpoint, backend: str, redis_address: str | None) -> None:
        self._channel = grpc.insecure_channel(endpoint.grpc_address)
        self._stub = dapr_pb2_grpc.DaprStub(self._channel)
        self._app_id = endpoint.app_id
        self.backend = backend
        self._redis_address = redis_address

    def get(self, key: str) -> tuple[bytes, dict[str, str]]:
        answer = self._stub.GetState(state_pb2.GetStateRequest(store_name=STORE, key=key))
        return bytes(answer.data), dict(answer.metadata)

    def put(self, key: str, value: bytes) -> None:
        """Overwrite a key (with its current etag: Redis refuses etag-less writes to keys
        written with first-write concurrency, as the session writes all of its keys)."""
        from dapr.proto.common.v1 import common_pb2

        etag = self._stub.GetState(state_pb2.GetStateRequest(store_name=STORE, key=key)).etag
        item = common_pb2.StateItem(key=key, value=value, etag=common_pb2.Etag(value=etag) if etag else None)
        self._stub.SaveState(state_pb2.SaveStateRequest(store_name=STORE, states=[item]))

    def delete(self, key: str) -> None:
        self._stub.DeleteState(state_pb2.DeleteStateRequest(store_name=STORE, key=key))

    def has_expiry(self, key: str) -> bool:
        """Whether the stored key has a TTL (Redis does not report it through Dapr)."""
        if self.backend == "redis":
            import redis

            host, port = str(self._redis_address).rsplit(":", 1)
            with redis.Redis(host=host, port=int(port)) as client:
                return int(client.ttl(f"{self._app_id}||{key}")) > 0
        return "ttlExpireTime" in self.get(key)[1]

    def keys(self, session_id: str) -> list[str]:
        """Every key of a session (Redis only: the other stores have no key listing)."""
        import redis

        host, port = str(self._redis_address).rsplit(":", 1)
        prefix = f"{self._app_id}||{session_id}:"
        with redis.Redis(host=host, port=int(port)) as client:
            return sorted(k.decode()[len(self._app_id) + 2 :] for k in client.scan_iter(match=prefix + "*"))

    def close(self) -> None:
        self._channel.close()
