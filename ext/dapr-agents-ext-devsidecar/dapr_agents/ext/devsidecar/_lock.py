"""The distributed lock building block: ``lock.redis`` and ``TryLockAlpha1``/``UnlockAlpha1``.

A lock is a plain Redis string holding the owner, set only if absent with the expiry
(``SET NX EX``), under daprd's key: ``lock||<app id>||<resource>`` by default; the component's
``keyPrefix`` selects ``lock||<resource>`` (``none``), ``lock||<store name>||<resource>``
(``name``) or ``lock||<prefix, lower-cased>||<resource>``. A dev sidecar and daprd sharing a
Redis therefore contend for the same locks. Unlocking deletes the key only for its owner and
answers ``SUCCESS``, ``LOCK_DOES_NOT_EXIST`` or ``LOCK_BELONGS_TO_OTHERS``; there is no renewal,
and a lock expires after its ``expiryInSeconds`` whoever holds it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
from dapr.proto.runtime.v1 import lock_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from ._blocks import BlockError, HttpRequest, HttpResponse, Route, abort_with, json_response, route
from ._components import Component
from ._errors import ComponentError
from ._redis import redis_client

_log = logging.getLogger(__name__)

LOCK_TYPES = ("lock.redis",)

# Status numbers of lock_pb2.UnlockResponse.Status.
SUCCESS = lock_pb2.UnlockResponse.SUCCESS
LOCK_DOES_NOT_EXIST = lock_pb2.UnlockResponse.LOCK_DOES_NOT_EXIST
LOCK_BELONGS_TO_OTHERS = lock_pb2.UnlockResponse.LOCK_BELONGS_TO_OTHERS

# Deletes the lock only for its owner, in one step; answers the unlock status number.
_RELEASE = f"""
local owner = redis.call("GET", KEYS[1])
if owner == false then return {LOCK_DOES_NOT_EXIST} end
if owner ~= ARGV[1] then return {LOCK_BELONGS_TO_OTHERS} end
redis.call("DEL", KEYS[1])
return {SUCCESS}
"""

_SEPARATOR = "||"


class LockStoreError(Exception):
    """A lock store could not answer."""


def _illegal(key: str) -> str | None:
    if _SEPARATOR in key:
        return f"input key/keyPrefix '{key}' can't contain '{_SEPARATOR}'"
    return None


class RedisLockStore:
    """``lock.redis`` (a single Redis node, as daprd's standalone lock)."""

    def __init__(self, component: Component, app_id: str) -> None:
        self.name = component.name
        self.type = component.type
        self._where = f"{component.source}: component {component.name!r} ({component.type})"
        strategy = (component.metadata_value("keyPrefix") or "appid").lower()
        problem = _illegal(strategy)
        if problem:
            raise ComponentError(f"{self._where}: {problem}")
        if strategy == "none" or (strategy == "appid" and not app_id):
            self._prefix = "lock||"
        elif strategy == "appid":
            self._prefix = f"lock||{app_id}||"
        elif strategy == "name":
            self._prefix = f"lock||{component.name}||"
        else:
            self._prefix = f"lock||{strategy}||"
        self._client = redis_client(component)
        self._release = self._client.register_script(_RELEASE)

    def key(self, resource_id: str) -> str:
        """The Redis key of a resource's lock; raises ``ValueError`` for a key daprd refuses."""
        problem = _illegal(resource_id)
        if problem:
            raise ValueError(problem)
        return self._prefix + resource_id

    async def open(self) -> None:
        import redis.exceptions

        try:
            await self._client.ping()
        except (redis.exceptions.RedisError, OSError) as exc:
            await self._client.aclose()
            raise ComponentError(f"{self._where}: error connecting to Redis: {exc}") from exc

    async def try_lock(self, key: str, owner: str, expiry_seconds: int) -> bool:
        import redis.exceptions

        try:
            return bool(await self._client.set(key, owner, nx=True, ex=expiry_seconds))
        except redis.exceptions.RedisError as exc:
            raise LockStoreError(str(exc)) from exc

    async def unlock(self, key: str, owner: str) -> int:
        import redis.exceptions

        try:
            return int(await self._release(keys=[key], args=[owner]))
        except redis.exceptions.RedisError as exc:
            raise LockStoreError(str(exc)) from exc

    async def close(self) -> None:
        await self._client.aclose()


async def open_lock_store(component: Component, app_id: str) -> RedisLockStore:
    if component.type != "lock.redis":
        raise ComponentError(
            f"{component.source}: component {component.name!r}: no lock store for {component.type}"
        )
    store = RedisLockStore(component, app_id)
    await store.open()
    return store


def _malformed(message: str) -> BlockError:
    return BlockError(grpc.StatusCode.INVALID_ARGUMENT, 400, "ERR_MALFORMED_REQUEST", message)


def _parse_body(body: bytes, message: Message) -> None:
    """Fill ``message`` from a JSON body as daprd's protojson does (unknown fields ignored; an
    empty body is an empty request)."""
    if not body.strip():
        return
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise _malformed(f"failed deserializing HTTP body: proto: syntax error: {exc}") from exc
    if not isinstance(document, dict):
        raise _malformed(
            f"failed deserializing HTTP body: proto: syntax error (line 1:1): unexpected token "
            f"{json.dumps(document)[:40]}"
        )
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise _malformed(f"failed deserializing HTTP body: proto: {exc}") from exc


class LockBlock:
    """``TryLockAlpha1``/``UnlockAlpha1`` on gRPC; ``/v1.0-alpha1/lock`` and ``/unlock`` on HTTP."""

    def __init__(self, stores: Mapping[str, RedisLockStore]) -> None:
        self._stores = dict(stores)

    def _store(self, name: str, resource_id: str, owner: str) -> RedisLockStore:
        # daprd's checks, in daprd's order.
        if not self._stores:
            raise BlockError(
                grpc.StatusCode.FAILED_PRECONDITION,
                500,
                "ERR_LOCK_STORE_NOT_CONFIGURED",
                "lock store is not configured",
            )
        if not resource_id:
            raise _malformed(f"ResourceId is empty in lock store {name}")
        if not owner:
            raise _malformed(f"LockOwner is empty in lock store {name}")
        store = self._stores.get(name)
        if store is None:
            raise BlockError(
                grpc.StatusCode.INVALID_ARGUMENT,
                400,
                "ERR_LOCK_STORE_NOT_FOUND",
                f"lock store {name} not found",
            )
        return store

    async def try_lock(self, request: lock_pb2.TryLockRequest) -> bool:
        if request.expiry_in_seconds <= 0:
            raise _malformed(f"ExpiryInSeconds is not positive in lock store {request.store_name}")
        store = self._store(request.store_name, request.resource_id, request.lock_owner)
        try:
            return await store.try_lock(
                store.key(request.resource_id), request.lock_owner, request.expiry_in_seconds
            )
        except (ValueError, LockStoreError) as exc:
            raise BlockError(
                grpc.StatusCode.INTERNAL, 500, "ERR_TRY_LOCK", f"failed to try acquiring lock: {exc}"
            ) from exc

    async def unlock(self, request: lock_pb2.UnlockRequest) -> int:
        store = self._store(request.store_name, request.resource_id, request.lock_owner)
        try:
            return await store.unlock(store.key(request.resource_id), request.lock_owner)
        except (ValueError, LockStoreError) as exc:
            raise BlockError(
                grpc.StatusCode.INTERNAL, 500, "ERR_UNLOCK", f"failed to release lock: {exc}"
            ) from exc

    # -- gRPC --

    async def _grpc_try_lock(
        self, request: lock_pb2.TryLockRequest, context: grpc.aio.ServicerContext
    ) -> lock_pb2.TryLockResponse:
        try:
            return lock_pb2.TryLockResponse(success=await self.try_lock(request))
        except BlockError as error:
            await abort_with(context, error)

    async def _grpc_unlock(
        self, request: lock_pb2.UnlockRequest, context: grpc.aio.ServicerContext
    ) -> lock_pb2.UnlockResponse:
        try:
            return lock_pb2.UnlockResponse(status=await self.unlock(request))  # type: ignore[arg-type]
        except BlockError as error:
            await abort_with(context, error)

    # -- HTTP --

    async def _http_lock(self, request: HttpRequest) -> HttpResponse:
        message = lock_pb2.TryLockRequest()
        try:
            _parse_body(request.body, message)
            message.store_name = request.params["store"]
            return json_response({"success": await self.try_lock(message)})
        except BlockError as error:
            return error.http_response()

    async def _http_unlock(self, request: HttpRequest) -> HttpResponse:
        message = lock_pb2.UnlockRequest()
        try:
            _parse_body(request.body, message)
            message.store_name = request.params["store"]
            # daprd reports the status as its number here.
            return json_response({"status": await self.unlock(message)})
        except BlockError as error:
            return error.http_response()

    # -- wiring --

    def grpc_methods(self) -> Mapping[str, Callable[..., Any]]:
        return {"TryLockAlpha1": self._grpc_try_lock, "UnlockAlpha1": self._grpc_unlock}

    def http_routes(self) -> Sequence[Route]:
        return [
            route("POST", "/v1.0-alpha1/lock/{store}", self._http_lock),
            route("POST", "/v1.0-alpha1/unlock/{store}", self._http_unlock),
        ]

    def capabilities(self) -> Mapping[str, Sequence[str]]:
        return {}

    async def close(self) -> None:
        for store in self._stores.values():
            try:
                await store.close()
            except Exception:
                _log.exception("closing lock store %r failed", store.name)
