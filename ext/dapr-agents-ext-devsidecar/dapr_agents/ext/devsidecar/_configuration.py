"""The configuration building block: ``configuration.redis`` and the configuration API.

Values live in plain Redis strings as ``value||version`` (``version`` optional), exactly where
daprd's component reads them, so a dev sidecar and daprd can share a Redis. ``GetConfiguration``
without keys returns every string key; keys that are missing, not strings or empty are left out.
Subscriptions follow Redis keyspace notifications: like daprd, subscribing first sets
``notify-keyspace-events`` to ``Kg$xe`` (generic, string, expired and evicted events), then
listens on ``__keyspace@<db>__:<key>`` (every key when none are given) and, for each event,
reads the key again and sends it (an empty item when it is gone). The gRPC stream's first
message carries only the subscription id; ``UnsubscribeConfiguration`` ends that stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import configuration_pb2

from ._blocks import BlockError, HttpRequest, HttpResponse, Route, abort_with, json_response, route
from ._components import Component
from ._errors import ComponentError
from ._redis import redis_address, redis_client, redis_db

_log = logging.getLogger(__name__)

CONFIGURATION_TYPES = ("configuration.redis",)

#: What daprd's Redis client asks Redis to notify about before each subscription.
KEYSPACE_EVENTS = "Kg$xe"


class ConfigurationStoreError(Exception):
    """A configuration store could not answer."""


@dataclass(frozen=True)
class ConfigItem:
    value: str = ""
    version: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        # daprd's configuration.Item: every field is omitempty.
        out: dict[str, Any] = {}
        if self.value:
            out["value"] = self.value
        if self.version:
            out["version"] = self.version
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out


UpdateHandler = Callable[[str, dict[str, ConfigItem]], Awaitable[None]]


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def parse_value(raw: str) -> ConfigItem:
    """``value||version``; a third ``||`` part is ignored, as daprd does."""
    parts = raw.split("||")
    return ConfigItem(value=parts[0], version=parts[1] if len(parts) > 1 else "")


class RedisConfigurationStore:
    """``configuration.redis``."""

    def __init__(self, component: Component) -> None:
        self.name = component.name
        self.type = component.type
        self._where = f"{component.source}: component {component.name!r} ({component.type})"
        # go-redis connects to localhost:6379 when no host is given.
        self._host = "{}:{}".format(*redis_address(component, default_host="localhost:6379"))
        self._client = redis_client(component, default_host="localhost:6379")
        self._channel_prefix = f"__keyspace@{redis_db(component)}__:".encode()
        self._subscriptions: dict[str, tuple[asyncio.Task[None], Any]] = {}

    async def open(self) -> None:
        import redis.exceptions

        try:
            await self._client.ping()
        except (redis.exceptions.RedisError, OSError) as exc:
            await self._client.aclose()
            raise ComponentError(
                f"{self._where}: redis store: error connecting to redis at {self._host}: {exc}"
            ) from exc

    async def get(self, keys: Sequence[str]) -> dict[str, ConfigItem]:
        import redis.exceptions

        try:
            raw_keys: list[bytes] = [k.encode() for k in keys] if keys else list(await self._client.keys("*"))
            # MGET answers nil for missing keys and for keys that are not strings, which daprd
            # skips one GET at a time.
            values = await self._client.mget(raw_keys) if raw_keys else []
        except redis.exceptions.RedisError as exc:
            raise ConfigurationStoreError(f"fail to get configuration, error is {exc}") from exc
        items: dict[str, ConfigItem] = {}
        for key, value in zip(raw_keys, values, strict=True):
            if value is None:
                continue
            item = parse_value(_text(value))
            if item.value:
                items[_text(key)] = item
        return items

    async def subscribe(self, keys: Sequence[str], handler: UpdateHandler) -> str:
        import redis.exceptions

        subscription_id = str(uuid.uuid4())
        with contextlib.suppress(redis.exceptions.RedisError):  # daprd ignores a refusal too
            await self._client.config_set("notify-keyspace-events", KEYSPACE_EVENTS)
        pubsub = self._client.pubsub()
        channels = sorted({self._channel_prefix + key.encode() for key in keys})
        if channels:
            await pubsub.subscribe(*channels)
        else:
            await pubsub.psubscribe(self._channel_prefix + b"*")
        # Unlike daprd, answer only once Redis confirmed the subscription: a change made right
        # after the client got its id is then never missed.
        confirmations = len(channels) or 1
        deadline = asyncio.get_running_loop().time() + 10.0
        try:
            while confirmations:
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError("Redis did not confirm the subscription within 10 s")
                message = await pubsub.get_message(timeout=1.0)
                if message and message["type"] in {"subscribe", "psubscribe"}:
                    confirmations -= 1
        except (TimeoutError, redis.exceptions.RedisError) as exc:
            await pubsub.aclose()
            raise ConfigurationStoreError(f"subscribing to keyspace notifications failed: {exc}") from exc
        task = asyncio.get_running_loop().create_task(self._listen(subscription_id, pubsub, handler))
        self._subscriptions[subscription_id] = (task, pubsub)
        return subscription_id

    async def _listen(self, subscription_id: str, pubsub: Any, handler: UpdateHandler) -> None:
        import redis.exceptions

        while True:
            try:
                message = await pubsub.get_message(timeout=1.0)
            except redis.exceptions.RedisError as exc:
                _log.warning("configuration store %r: keyspace notifications: %s; retrying", self.name, exc)
                await asyncio.sleep(1.0)
                continue
            if not message or message["type"] not in {"message", "pmessage"}:
                continue
            key = _text(bytes(message["channel"])[len(self._channel_prefix) :])
            try:
                items = await self.get([key])
            except ConfigurationStoreError as exc:
                _log.warning(
                    "configuration store %r: reading %r after a change failed: %s", self.name, key, exc
                )
                continue
            try:
                await handler(subscription_id, items or {key: ConfigItem()})
            except Exception:
                _log.exception("configuration store %r: delivering a change of %r failed", self.name, key)

    async def unsubscribe(self, subscription_id: str) -> None:
        entry = self._subscriptions.pop(subscription_id, None)
        if entry is None:
            raise ConfigurationStoreError(f"subscription with id {subscription_id} does not exist")
        task, pubsub = entry
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        with contextlib.suppress(Exception):
            await pubsub.aclose()

    async def close(self) -> None:
        for subscription_id in list(self._subscriptions):
            await self.unsubscribe(subscription_id)
        await self._client.aclose()


async def open_configuration_store(component: Component) -> RedisConfigurationStore:
    if component.type != "configuration.redis":
        raise ComponentError(
            f"{component.source}: component {component.name!r}: no configuration store for {component.type}"
        )
    store = RedisConfigurationStore(component)
    await store.open()
    return store


def _go_list(keys: Sequence[str]) -> str:
    return "[" + " ".join(keys) + "]"


def _unsubscribe_failed(subscription_id: str, reason: str) -> str:
    return f"failed to unsubscribe to configuration request {subscription_id}: {reason}"


class ConfigurationBlock:
    """The configuration API: ``GetConfiguration``, ``SubscribeConfiguration``,
    ``UnsubscribeConfiguration`` (and their Alpha1 names) on gRPC, ``/v1.0/configuration`` and
    ``/v1.0-alpha1/configuration`` on HTTP."""

    def __init__(self, stores: Mapping[str, RedisConfigurationStore]) -> None:
        self._stores = dict(stores)
        # Open gRPC subscriptions: id -> (stop, ended).
        self._streams: dict[str, tuple[asyncio.Event, asyncio.Event]] = {}

    def _store(self, name: str) -> RedisConfigurationStore:
        if not self._stores:
            raise BlockError(
                grpc.StatusCode.FAILED_PRECONDITION,
                500,
                "ERR_CONFIGURATION_STORE_NOT_CONFIGURED",
                "configuration stores not configured",
                error_info=True,
            )
        store = self._stores.get(name)
        if store is None:
            raise BlockError(
                grpc.StatusCode.INVALID_ARGUMENT,
                400,
                "ERR_CONFIGURATION_STORE_NOT_FOUND",
                f"configuration store {name} not found",
                error_info=True,
            )
        return store

    async def get_configuration(self, store_name: str, keys: Sequence[str]) -> dict[str, ConfigItem]:
        store = self._store(store_name)
        try:
            return await store.get(keys)
        except ConfigurationStoreError as exc:
            raise BlockError(
                grpc.StatusCode.INTERNAL,
                500,
                "ERR_CONFIGURATION_GET",
                f"failed to get {_go_list(keys)} from Configuration store {store_name}: {exc}",
                error_info=True,
            ) from exc

    # -- gRPC --

    @staticmethod
    def _items(items: Mapping[str, ConfigItem]) -> dict[str, common_pb2.ConfigurationItem]:
        return {
            key: common_pb2.ConfigurationItem(value=item.value, version=item.version, metadata=item.metadata)
            for key, item in items.items()
        }

    async def _grpc_get_configuration(
        self, request: configuration_pb2.GetConfigurationRequest, context: grpc.aio.ServicerContext
    ) -> configuration_pb2.GetConfigurationResponse:
        try:
            items = await self.get_configuration(request.store_name, list(request.keys))
        except BlockError as error:
            await abort_with(context, error)
        return configuration_pb2.GetConfigurationResponse(items=self._items(items))

    async def _grpc_subscribe_configuration(
        self, request: configuration_pb2.SubscribeConfigurationRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[configuration_pb2.SubscribeConfigurationResponse]:
        updates: asyncio.Queue[dict[str, ConfigItem]] = asyncio.Queue()

        async def deliver(_: str, items: dict[str, ConfigItem]) -> None:
            await updates.put(items)

        keys = sorted(request.keys)
        try:
            store = self._store(request.store_name)
            try:
                subscription_id = await store.subscribe(keys, deliver)
            except ConfigurationStoreError as exc:
                raise BlockError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    500,
                    "ERR_CONFIGURATION_SUBSCRIBE",
                    f"failed to subscribe {_go_list(keys)} from Configuration store {request.store_name}: {exc}",
                    error_info=True,
                ) from exc
        except BlockError as error:
            await abort_with(context, error)
        stop, ended = asyncio.Event(), asyncio.Event()
        self._streams[subscription_id] = (stop, ended)
        stopper = asyncio.ensure_future(stop.wait())
        getter: asyncio.Future[dict[str, ConfigItem]] | None = None
        try:
            yield configuration_pb2.SubscribeConfigurationResponse(id=subscription_id)
            while True:
                getter = asyncio.ensure_future(updates.get())
                await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    break
                yield configuration_pb2.SubscribeConfigurationResponse(
                    id=subscription_id, items=self._items(getter.result())
                )
        finally:
            # Also when the client goes away: nothing may be left waiting on this stream.
            pending = [f for f in (getter, stopper) if f is not None and not f.done()]
            for future in pending:
                future.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            self._streams.pop(subscription_id, None)
            with contextlib.suppress(ConfigurationStoreError):
                await store.unsubscribe(subscription_id)
            ended.set()

    async def _grpc_unsubscribe_configuration(
        self, request: configuration_pb2.UnsubscribeConfigurationRequest, context: grpc.aio.ServicerContext
    ) -> configuration_pb2.UnsubscribeConfigurationResponse:
        # As daprd: found by id alone (the store name is not checked) and never an RPC error.
        stream = self._streams.pop(request.id, None)
        if stream is None:
            return configuration_pb2.UnsubscribeConfigurationResponse(
                ok=False, message=_unsubscribe_failed(request.id, "subscription does not exist")
            )
        stop, ended = stream
        stop.set()
        # Let the stream end first (daprd's usually does), so a client that closes its channel
        # right after this answer sees its stream end cleanly rather than cancelled.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(ended.wait(), 1.0)
        return configuration_pb2.UnsubscribeConfigurationResponse(ok=True)

    # -- HTTP --

    async def _http_get(self, request: HttpRequest) -> HttpResponse:
        try:
            items = await self.get_configuration(request.params["store"], list(request.query.get("key", ())))
        except BlockError as error:
            return error.http_response()
        if not items:
            return HttpResponse(204)
        return json_response({key: item.document() for key, item in items.items()}, newline=True)

    async def _http_subscribe(self, request: HttpRequest) -> HttpResponse:
        try:
            self._store(request.params["store"])
        except BlockError as error:
            return error.http_response()
        # HTTP subscriptions deliver changes to the app (POST /configuration/<store>/<key>);
        # without an app channel daprd refuses them with this answer.
        return json_response(
            {
                "errorCode": "ERR_APP_CHANNEL_NIL",
                "message": "app channel is not initialized. cannot subscribe to configuration updates",
            },
            500,
            newline=True,
        )

    async def _http_unsubscribe(self, request: HttpRequest) -> HttpResponse:
        try:
            store = self._store(request.params["store"])
        except BlockError as error:
            return error.http_response()
        subscription_id = request.params["id"]
        try:
            await store.unsubscribe(subscription_id)
        except ConfigurationStoreError as exc:
            return json_response(
                {"message": _unsubscribe_failed(subscription_id, str(exc))}, 500, newline=True
            )
        return json_response({"ok": True}, newline=True)

    # -- wiring --

    def grpc_methods(self) -> Mapping[str, Callable[..., Any]]:
        return {
            "GetConfiguration": self._grpc_get_configuration,
            "GetConfigurationAlpha1": self._grpc_get_configuration,
            "SubscribeConfiguration": self._grpc_subscribe_configuration,
            "SubscribeConfigurationAlpha1": self._grpc_subscribe_configuration,
            "UnsubscribeConfiguration": self._grpc_unsubscribe_configuration,
            "UnsubscribeConfigurationAlpha1": self._grpc_unsubscribe_configuration,
        }

    def http_routes(self) -> Sequence[Route]:
        routes = []
        for version in ("v1.0", "v1.0-alpha1"):
            base = f"/{version}/configuration/{{store}}"
            routes += [
                route("GET", base, self._http_get),
                route("GET", base + "/subscribe", self._http_subscribe),
                route("GET", base + "/{id}/unsubscribe", self._http_unsubscribe),
            ]
        return routes

    def capabilities(self) -> Mapping[str, Sequence[str]]:
        return {}

    async def close(self) -> None:
        for stop, _ in self._streams.values():
            stop.set()
        self._streams.clear()
        for store in self._stores.values():
            try:
                await store.close()
            except Exception:
                _log.exception("closing configuration store %r failed", store.name)
