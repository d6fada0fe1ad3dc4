"""The actors building block: the actor API (``/v1.0/actors/...`` and the ``Dapr`` gRPC methods),
hosting the app's actor types, turn-based calls to the app, actor state, timers and reminders.

daprd learns the app's actor types from its ``GET /dapr/config``, asks the placement service which
sidecar hosts an actor id, calls the app at ``PUT /actors/{type}/{id}/method/{method}`` one call at
a time per actor id (``pkg/actors/targets/app``), keeps actor state in the ``actorStateStore``
component under ``<app id>||<type>||<id>||<key>`` (``pkg/actors/state``), timers in memory
(``pkg/actors/timers``) and reminders as jobs of the scheduler service
(``pkg/actors/internal/scheduler``). The dev sidecar has no placement or scheduler process: its own
app hosts the types it declares, other apps' types are found in the machine's registry (the same
folder name resolution uses, under ``actors/``) and the call is forwarded to that sidecar's actor
port; reminders are kept the way jobs are, in the actor state store, and re-armed at start.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from ._app_channel import AppChannel, AppChannelError, HttpAppChannel, Invocation, complete
from ._blocks import BlockError, HttpRequest, HttpResponse, Route, abort_with, route
from ._gojson import encode as encode_go_json
from ._jobs_schedule import (
    ScheduleError,
    add_date,
    parse_go_duration,
    parse_iso8601_duration,
    parse_point_in_time,
)
from ._nameresolution import Registration, Registry, registry_home
from ._state import DeleteOp, SetOp, StateBackend, StateOp
from ._state_memory import InMemoryStateBackend

_log = logging.getLogger(__name__)

#: The forwarding method of a dev sidecar's actor port (between dev sidecars only).
_CALL = "/dapr.devsidecar.internal.v1.Actors/Call"
_REENTRANCY_HEADER = "Dapr-Reentrancy-Id"
_ERROR_HEADER = "x-daprerrorresponseheader"
_CANCEL_HEADER = "x-daprremindercancel"
_MAX_SLEEP = 30.0


# -- daprd's errors (pkg/messages/predefined.go) -----------------------------------------------


def _error(grpc_code: grpc.StatusCode, http_status: int, code: str, message: str) -> BlockError:
    return BlockError(grpc_code, http_status, code, message)


def _runtime_not_found() -> BlockError:
    return _error(
        grpc.StatusCode.INTERNAL,
        500,
        "ERR_ACTOR_RUNTIME_NOT_FOUND",
        "the state store is not configured to use the actor runtime. Have you set the - name: "
        'actorStateStore value: "true" in your state store component file?',
    )


def _not_hosted() -> BlockError:
    return _error(
        grpc.StatusCode.PERMISSION_DENIED,
        403,
        "ERR_ACTOR_REMINDER_NON_HOSTED",
        "operations on actor reminders are only possible on hosted actor types",
    )


def _no_address(actor_type: str, actor_id: str) -> BlockError:
    # placement's ErrActorNoAddress, wrapped by the router into ERR_ACTOR_INVOKE_METHOD.
    return _invoke_error(
        "failed to lookup actor: api error: code = FailedPrecondition desc = "
        f"did not find address for actor '{actor_type}/{actor_id}'"
    )


def _instance_missing() -> BlockError:
    return _error(grpc.StatusCode.INTERNAL, 400, "ERR_ACTOR_INSTANCE_MISSING", "actor instance is missing")


def _invoke_error(message: str) -> BlockError:
    return _error(
        grpc.StatusCode.INTERNAL, 500, "ERR_ACTOR_INVOKE_METHOD", f"error invoke actor method: {message}"
    )


def _malformed(message: str) -> BlockError:
    return _error(
        grpc.StatusCode.INVALID_ARGUMENT,
        400,
        "ERR_MALFORMED_REQUEST",
        f"failed deserializing HTTP body: {message}",
    )


def _reserved(actor_type: str) -> BlockError | None:
    if actor_type.startswith("dapr.internal."):
        return _error(
            grpc.StatusCode.PERMISSION_DENIED,
            403,
            "ERR_ACTOR_TYPE_RESERVED",
            f"actor type {json.dumps(actor_type)} is reserved for the Dapr workflow runtime; "
            "direct actor API access is not permitted",
        )
    return None


# -- times -----------------------------------------------------------------------------------


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String()``."""
    if seconds == 0:
        return "0s"
    nanos = round(abs(seconds) * 1e9)
    sign = "-" if seconds < 0 else ""
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if nanos >= size:
                return sign + f"{nanos / size:.9f}".rstrip("0").rstrip(".") + unit
    hours, rest = divmod(nanos, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    secs = f"{rest / 1e9:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}"
    if minutes:
        return f"{sign}{minutes}m{secs}"
    return sign + secs


@dataclass(frozen=True)
class Period:
    """dapr/kit's ``ParseDuration``: a Go duration, or ISO 8601 with an optional ``R<n>/``."""

    years: int = 0
    months: int = 0
    days: int = 0
    seconds: float = 0.0
    repeats: int = -1  # -1: forever

    @classmethod
    def parse(cls, text: str) -> Period:
        try:
            return cls(seconds=parse_go_duration(text))
        except ScheduleError:
            pass
        years, months, days, seconds, repeats = parse_iso8601_duration(text)
        return cls(years, months, days, seconds, repeats)

    @property
    def empty(self) -> bool:
        return not (self.years or self.months or self.days or self.seconds)

    def following(self, moment: float) -> float:
        return add_date(moment, self.years, self.months, self.days) + self.seconds


def _compact_json(raw: bytes) -> bytes:
    """Go's ``json.Compact`` (what ``json.Marshal`` does to a ``RawMessage``)."""
    out = bytearray()
    in_string = escaped = False
    for byte in raw:
        if in_string:
            out.append(byte)
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte in b" \t\r\n":
            continue
        else:
            out.append(byte)
            in_string = byte == 0x22
    return bytes(out)


def _callback_body(fields: Sequence[tuple[str, str]], data: bytes | None) -> bytes:
    # api.ReminderResponse / api.TimerResponse MarshalJSON: "data" (raw JSON, omitted when
    # unset) first, then the struct's other fields in order.
    parts = [b'"data":' + _compact_json(data)] if data else []
    parts += [encode_go_json(name) + b":" + encode_go_json(value) for name, value in fields]
    return b"{" + b",".join(parts) + b"}"


# -- the app's actor configuration (GET /dapr/config) --------------------------------------------


@dataclass
class TypeConfig:
    idle_timeout: float = 3600.0
    reentrancy: bool = False
    max_stack_depth: int = 32


@dataclass
class HostConfig:
    types: dict[str, TypeConfig] = field(default_factory=dict)
    drain_timeout: float = 60.0

    @classmethod
    def parse(cls, body: bytes) -> HostConfig:
        """``pkg/actors/hostconfig`` / ``config.ApplicationConfig``: entities, actorIdleTimeout,
        drainOngoingCallTimeout, reentrancy, and entitiesConfig overriding them per type."""
        try:
            document = json.loads(body or b"{}")
        except ValueError:
            return cls()
        if not isinstance(document, dict):
            return cls()

        def duration(value: Any, default: float) -> float:
            try:
                return parse_go_duration(str(value)) if value else default
            except ScheduleError:
                return default

        def reentrancy(value: Any, base: TypeConfig) -> tuple[bool, int]:
            if not isinstance(value, dict):
                return base.reentrancy, base.max_stack_depth
            depth = value.get("maxStackDepth")
            return bool(value.get("enabled")), int(depth) if isinstance(depth, int) and depth > 0 else 32

        base = TypeConfig(idle_timeout=duration(document.get("actorIdleTimeout"), 3600.0))
        base.reentrancy, base.max_stack_depth = reentrancy(document.get("reentrancy"), base)
        config = cls(drain_timeout=duration(document.get("drainOngoingCallTimeout"), 60.0))
        for name in document.get("entities") or []:
            config.types[str(name)] = TypeConfig(base.idle_timeout, base.reentrancy, base.max_stack_depth)
        for entry in document.get("entitiesConfig") or []:
            if not isinstance(entry, dict):
                continue
            for name in entry.get("entities") or []:
                if str(name) not in config.types:
                    continue
                # api.TranslateEntityConfig: an entry's own values or daprd's defaults (60m, no
                # reentrancy), never the app-wide ones.
                per = TypeConfig(duration(entry.get("actorIdleTimeout"), 3600.0))
                per.reentrancy, per.max_stack_depth = reentrancy(entry.get("reentrancy"), TypeConfig())
                config.types[str(name)] = per
        return config


# -- turn-based concurrency ------------------------------------------------------------------


class _Actor:
    """One active actor: its turn lock (reentrant by ``Dapr-Reentrancy-Id`` when enabled), its
    idle deadline, its timers."""

    def __init__(self, actor_type: str, actor_id: str) -> None:
        self.actor_type = actor_type
        self.actor_id = actor_id
        self.lock = asyncio.Lock()
        self.owner: str | None = None
        self.depth = 0
        self.busy = 0
        self.idle_at = 0.0
        self.timers: dict[str, asyncio.Task[None]] = {}
        self.closed = False

    @contextlib.asynccontextmanager
    async def turn(self, reentrancy_id: str | None, max_depth: int) -> AsyncIterator[None]:
        self.busy += 1
        try:
            if reentrancy_id is not None and reentrancy_id == self.owner:
                # pkg/actors/targets/app/lock: a call of the same chain enters, up to the depth.
                if self.depth + 1 > max_depth:
                    raise _error(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        500,
                        "ERR_ACTOR_STACK_DEPTH",
                        "maximum stack depth exceeded",
                    )
                self.depth += 1
                try:
                    yield
                finally:
                    self.depth -= 1
                return
            async with self.lock:
                self.owner, self.depth = reentrancy_id, 1
                try:
                    yield
                finally:
                    self.owner, self.depth = None, 0
        finally:
            self.busy -= 1


@dataclass
class _Reminder:
    actor_type: str
    actor_id: str
    name: str
    data: bytes | None
    due_time: str
    period: str
    ttl: str
    next: float
    expiry: float | None
    repeats: int  # left; -1 forever
    seconds: float  # the period
    retry_interval: float = 1.0
    max_retries: int | None = 3  # None: retry forever

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "actorType": self.actor_type,
                "actorID": self.actor_id,
                "name": self.name,
                "data": base64.b64encode(self.data).decode() if self.data is not None else None,
                "dueTime": self.due_time,
                "period": self.period,
                "ttl": self.ttl,
                "next": self.next,
                "expiry": self.expiry,
                "repeats": self.repeats,
                "seconds": self.seconds,
                "retryInterval": self.retry_interval,
                "maxRetries": self.max_retries,
            }
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> _Reminder:
        d = json.loads(raw)
        data = d.get("data")
        return cls(
            d["actorType"],
            d["actorID"],
            d["name"],
            base64.b64decode(data) if data is not None else None,
            d.get("dueTime", ""),
            d.get("period", ""),
            d.get("ttl", ""),
            float(d["next"]),
            d.get("expiry"),
            int(d.get("repeats", -1)),
            float(d.get("seconds", 0.0)),
            float(d.get("retryInterval", 1.0)),
            d.get("maxRetries", 3),
        )


@dataclass
class ActorReply:
    status: int
    body: bytes
    content_type: str
    headers: list[tuple[str, str]] = field(default_factory=list)


class ActorsBlock:
    """The actor runtime of one sidecar."""

    def __init__(
        self,
        *,
        app_id: str,
        namespace: str,
        backend: StateBackend | None,
        host: str = "127.0.0.1",
        registry_home_path: Any = None,
    ) -> None:
        self._app_id = app_id
        self._namespace = namespace or "default"
        self._backend = backend
        # daprd keeps reminders in its scheduler, actor store or not; without one they live here
        # in memory and die with the sidecar.
        self._reminder_backend: StateBackend = backend if backend is not None else InMemoryStateBackend()
        self._host = host
        self._registry = Registry(registry_home_path)
        self._registry.root = registry_home(registry_home_path) / "actors"
        self._registrations: list[Registration] = []
        self._config = HostConfig()
        self._channel: AppChannel | None = None
        self._actors: dict[tuple[str, str], _Actor] = {}
        self._reminders: dict[tuple[str, str, str], _Reminder] = {}
        self._reminder_tasks: dict[tuple[str, str, str], asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: grpc.aio.Server | None = None
        self._port = 0
        self._peers: dict[str, grpc.aio.Channel] = {}
        self._store_lock = asyncio.Lock()
        self._prefix = f"{app_id}||dapr.internal.{self._namespace}.{app_id}.reminders"
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def hosted_types(self) -> list[str]:
        return sorted(self._config.types)

    async def start(self, channel: AppChannel | None) -> None:
        self._channel = channel
        if channel is not None:
            channel.on_health_change(self._on_health)

    async def _on_health(self, healthy: bool) -> None:
        if not healthy or self._config.types or self._channel is None:
            return
        raw = getattr(self._channel, "app_config", None)
        self._config = HostConfig.parse(raw or b"")
        if not self._config.types:
            return
        if self._backend is None:
            _log.error(
                "the app hosts actor types %s but no state store sets actorStateStore: "
                "actor state and reminders are refused",
                ", ".join(self._config.types),
            )
        await self._serve()
        address = f"{'127.0.0.1' if self._host in ('0.0.0.0', '') else self._host}:{self._port}"
        for actor_type in self._config.types:
            self._registrations.append(self._registry.register(actor_type, self._namespace, address))
        _log.info("hosting actor types %s", ", ".join(self._config.types))
        await self._load_reminders()

    async def _serve(self) -> None:
        self._server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        handler = grpc.method_handlers_generic_handler(
            "dapr.devsidecar.internal.v1.Actors",
            {"Call": grpc.unary_unary_rpc_method_handler(self._serve_forwarded)},
        )
        self._server.add_generic_rpc_handlers((handler,))
        self._port = self._server.add_insecure_port(f"{self._host}:0")
        await self._server.start()

    async def close(self) -> None:
        self._closed = True
        for registration in self._registrations:
            self._registry.unregister(registration)
        self._registrations.clear()
        tasks = list(self._tasks) + list(self._reminder_tasks.values())
        for actor in self._actors.values():
            tasks += list(actor.timers.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for peer in self._peers.values():
            await peer.close()
        self._peers.clear()
        if self._server is not None:
            await self._server.stop(0.5)
            self._server = None

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- placement ----------------------------------------------------------------------------

    def _address(self, actor_type: str, actor_id: str) -> str | None:
        """The actor port of a sidecar hosting ``actor_type``: one per actor id, the same from
        every caller (a stable hash over the live hosts, as placement's consistent hashing)."""
        addresses = sorted(self._registry.addresses(actor_type, self._namespace))
        if not addresses:
            return None
        digest = hashlib.sha256(actor_id.encode()).digest()
        return addresses[int.from_bytes(digest[:8], "big") % len(addresses)]

    # -- calls (both APIs) --------------------------------------------------------------------

    async def invoke(
        self,
        actor_type: str,
        actor_id: str,
        method: str,
        body: bytes,
        content_type: str,
        headers: list[tuple[str, str]],
        verb: str = "PUT",
        query: str = "",
    ) -> ActorReply:
        if actor_type in self._config.types:
            return await self._invoke_local(
                actor_type, actor_id, "method/" + method, body, content_type, headers, query
            )
        address = self._address(actor_type, actor_id)
        if address is None:
            raise _no_address(actor_type, actor_id)
        return await self._forward(address, actor_type, actor_id, method, body, content_type, headers, query)

    def _activate(self, actor_type: str, actor_id: str) -> _Actor:
        key = (actor_type, actor_id)
        actor = self._actors.get(key)
        if actor is None:
            actor = _Actor(actor_type, actor_id)
            self._actors[key] = actor
            self._spawn(self._idle(actor), f"actor-idle-{actor_type}-{actor_id}")
        return actor

    async def _invoke_local(
        self,
        actor_type: str,
        actor_id: str,
        path: str,
        body: bytes,
        content_type: str,
        headers: list[tuple[str, str]],
        query: str = "",
    ) -> ActorReply:
        channel = self._channel
        if not isinstance(channel, HttpAppChannel):
            raise _error(
                grpc.StatusCode.UNAVAILABLE, 400, "ERR_ACTOR_NO_APP_CHANNEL", "app channel is not initialized"
            )
        config = self._config.types[actor_type]
        metadata = [
            (k, v)
            for k, v in headers
            if k.lower() not in {"dapr-api-token", "content-length", "host", "content-type", "connection"}
        ]
        reentrancy_id: str | None = None
        if config.reentrancy:
            reentrancy_id = next((v for k, v in metadata if k.lower() == _REENTRANCY_HEADER.lower()), None)
            if reentrancy_id is None:
                reentrancy_id = str(uuid.uuid4())
                metadata.append((_REENTRANCY_HEADER, reentrancy_id))
        actor = self._activate(actor_type, actor_id)
        async with actor.turn(reentrancy_id, config.max_stack_depth):
            actor.idle_at = time.monotonic() + config.idle_timeout
            invocation = Invocation(
                method=f"actors/{actor_type}/{actor_id}/{path}",
                verb="PUT",
                query=query,
                metadata=metadata,
                body=body,
                content_type=content_type,
            )
            try:
                reply = await complete(await channel.invoke(invocation))
            except AppChannelError as exc:
                raise _invoke_error(str(exc)) from exc
            actor.idle_at = time.monotonic() + config.idle_timeout
        reply_headers = [
            (k, v) for k, v in reply.headers if k.lower() not in {"content-length", "date", "server"}
        ]
        if reply.status == 404:
            raise _invoke_error(f"actor method not found: actors/{actor_type}/{actor_id}/{path}")
        if reply.status != 200:
            raise _invoke_error(
                f"error from actor service: ({reply.status}) {reply.body.decode(errors='replace')}"
            )
        return ActorReply(200, reply.body, reply.content_type, reply_headers)

    async def _idle(self, actor: _Actor) -> None:
        """Deactivate ``actor`` once idle (``DELETE /actors/{type}/{id}``), as daprd's idler."""
        while True:
            delay = actor.idle_at - time.monotonic() if actor.idle_at else 1.0
            if delay > 0 or actor.busy:
                await asyncio.sleep(min(max(delay, 0.5), _MAX_SLEEP))
                continue
            await self._deactivate(actor)
            return

    async def _deactivate(self, actor: _Actor) -> None:
        if actor.closed:
            return
        actor.closed = True
        self._actors.pop((actor.actor_type, actor.actor_id), None)
        for task in actor.timers.values():
            task.cancel()
        actor.timers.clear()
        channel = self._channel
        if isinstance(channel, HttpAppChannel):
            headers = [("Content-Type", "application/x-protobuf")]
            if channel.connection.api_token:
                headers.append(("Dapr-Api-Token", channel.connection.api_token))
            try:
                await channel.request("DELETE", f"/actors/{actor.actor_type}/{actor.actor_id}", headers)
            except AppChannelError as exc:
                _log.warning("deactivating actor %s||%s failed: %s", actor.actor_type, actor.actor_id, exc)

    # -- forwarding between dev sidecars ------------------------------------------------------

    async def _forward(
        self,
        address: str,
        actor_type: str,
        actor_id: str,
        method: str,
        body: bytes,
        content_type: str,
        headers: list[tuple[str, str]],
        query: str,
    ) -> ActorReply:
        head = {
            "type": actor_type,
            "id": actor_id,
            "method": method,
            "contentType": content_type,
            "headers": [
                [k, v] for k, v in headers if k.lower() not in {"dapr-api-token", "content-length", "host"}
            ],
            "query": query,
        }
        peer = self._peers.get(address)
        if peer is None:
            peer = self._peers[address] = grpc.aio.insecure_channel(address)
        try:
            raw = await peer.unary_unary(_CALL)(_pack(head, body))
        except grpc.aio.AioRpcError as exc:
            raise _invoke_error(f"rpc error: code = {exc.code().name} desc = {exc.details()}") from exc
        answer, data = _unpack(raw)
        if "errorCode" in answer:
            raise _error(
                grpc.StatusCode[answer["grpcCode"]],
                int(answer["status"]),
                answer["errorCode"],
                answer["message"],
            )
        return ActorReply(
            int(answer["status"]),
            data,
            answer.get("contentType", ""),
            [tuple(h) for h in answer.get("headers", [])],
        )

    async def _serve_forwarded(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        head, body = _unpack(request)
        try:
            if head["type"] not in self._config.types:
                raise _no_address(head["type"], head["id"])
            reply = await self._invoke_local(
                head["type"],
                head["id"],
                "method/" + head["method"],
                body,
                head.get("contentType", ""),
                [(k, v) for k, v in head.get("headers", [])],
                head.get("query", ""),
            )
        except BlockError as error:
            return _pack(
                {
                    "errorCode": error.error_code,
                    "message": error.message,
                    "status": error.http_status,
                    "grpcCode": error.code.name,
                },
                b"",
            )
        return _pack(
            {"status": reply.status, "contentType": reply.content_type, "headers": reply.headers}, reply.body
        )

    # -- state --------------------------------------------------------------------------------

    def _state_key(self, actor_type: str, actor_id: str, key: str) -> str:
        return f"{self._app_id}||{actor_type}||{actor_id}||{key}"

    def _store(self) -> StateBackend:
        if self._backend is None:
            raise _runtime_not_found()
        return self._backend

    async def get_state(self, actor_type: str, actor_id: str, key: str) -> bytes:
        reserved = _reserved(actor_type)
        if reserved is not None:
            raise reserved
        store = self._store()
        try:
            item = await store.get(self._state_key(actor_type, actor_id, key))
        except Exception as exc:
            raise _error(
                grpc.StatusCode.INTERNAL, 500, "ERR_ACTOR_STATE_GET", f"error getting actor state: {exc}"
            ) from exc
        return item.value if item is not None else b""

    async def transact_state(self, actor_type: str, actor_id: str, operations: list[dict[str, Any]]) -> None:
        """``operations``: ``{"operation": "upsert"|"delete", "request": {"key", "value", "metadata"}}``
        with the value as JSON bytes already."""
        reserved = _reserved(actor_type)
        if reserved is not None:
            raise reserved
        store = self._store()
        # pkg/actors/state: a transaction needs the actor active on this sidecar.
        if (actor_type, actor_id) not in self._actors:
            raise _instance_missing()
        ops: list[StateOp] = []
        for op in operations:
            kind = op.get("operation")
            request = op.get("request") or {}
            key = self._state_key(actor_type, actor_id, str(request.get("key", "")))
            if kind == "upsert":
                ttl = (request.get("metadata") or {}).get("ttlInSeconds")
                ops.append(SetOp(key=key, value=op["value"], ttl_seconds=int(ttl) if ttl else None))
            elif kind == "delete":
                ops.append(DeleteOp(key=key))
            else:
                raise _error(
                    grpc.StatusCode.INTERNAL,
                    500,
                    "ERR_ACTOR_STATE_TRANSACTION_SAVE",
                    f"error saving actor transaction state: operation type {kind} not supported",
                )
        try:
            await store.transact(ops)
        except Exception as exc:
            raise _error(
                grpc.StatusCode.INTERNAL,
                500,
                "ERR_ACTOR_STATE_TRANSACTION_SAVE",
                f"error saving actor transaction state: {exc}",
            ) from exc

    # -- timers -------------------------------------------------------------------------------

    async def create_timer(
        self,
        actor_type: str,
        actor_id: str,
        name: str,
        due_time: str,
        period: str,
        ttl: str,
        callback: str,
        data: bytes | None,
    ) -> None:
        reserved = _reserved(actor_type)
        if reserved is not None:
            raise reserved

        def failed(message: str) -> BlockError:
            return _error(
                grpc.StatusCode.INTERNAL,
                500,
                "ERR_ACTOR_TIMER_CREATE",
                f"error creating actor timer: {message}",
            )

        if actor_type not in self._config.types:
            raise failed(f"can't create timer for actor {actor_type}||{actor_id}: actor type not registered")
        now = time.time()
        try:
            first = parse_point_in_time(due_time, now) if due_time else now
        except ScheduleError as exc:
            raise failed(f"error parsing timer due time: {exc}") from exc
        try:
            every = Period.parse(period) if period else Period(repeats=0)
        except ScheduleError as exc:
            raise failed(f"invalid timer period: parse error: {exc}") from exc
        if period and every.repeats == 0:
            raise failed("invalid timer period: has zero repetitions")
        expiry = None
        if ttl:
            try:
                expiry = parse_point_in_time(ttl, first)
            except ScheduleError as exc:
                raise failed(f"error parsing timer TTL: {exc}") from exc
            if now > expiry or first > expiry:
                raise failed(f"timer {actor_type}||{actor_id}||{name} has already expired")
        actor = self._activate(actor_type, actor_id)
        old = actor.timers.pop(name, None)
        if old is not None:
            old.cancel()
        body = _callback_body((("callback", callback), ("dueTime", due_time), ("period", period)), data)
        actor.timers[name] = self._spawn(
            self._run_timer(actor, name, first, every, expiry, body),
            f"actor-timer-{actor_type}-{actor_id}-{name}",
        )

    async def _run_timer(
        self, actor: _Actor, name: str, moment: float, every: Period, expiry: float | None, body: bytes
    ) -> None:
        left = every.repeats
        while True:
            while (delay := moment - time.time()) > 0:
                await asyncio.sleep(min(delay, _MAX_SLEEP))
            if expiry is not None and moment > expiry:
                break
            try:
                reply = await self._invoke_local(
                    actor.actor_type, actor.actor_id, "method/timer/" + name, body, "application/json", []
                )
                if _truthy(reply.headers, _CANCEL_HEADER):
                    break
            except BlockError as exc:
                _log.error(
                    "Error executing timer for actor %s||%s: %s",
                    actor.actor_type,
                    actor.actor_id,
                    exc.message,
                )
            if every.empty or left == 1:
                break
            if left > 0:
                left -= 1
            moment = every.following(moment)
        if actor.timers.get(name) is asyncio.current_task():
            actor.timers.pop(name, None)

    async def delete_timer(self, actor_type: str, actor_id: str, name: str) -> None:
        actor = self._actors.get((actor_type, actor_id))
        if actor is not None:
            task = actor.timers.pop(name, None)
            if task is not None:
                task.cancel()

    # -- reminders (durable) ------------------------------------------------------------------

    def _reminder_key(self, key: tuple[str, str, str]) -> str:
        return f"{self._prefix}||" + "||".join(key)

    @property
    def _index_key(self) -> str:
        return f"{self._prefix}||index"

    async def _save_index(self) -> None:
        store = self._reminder_backend
        await store.set(SetOp(key=self._index_key, value=json.dumps(sorted(self._reminders)).encode()))

    async def _load_reminders(self) -> None:
        index = await self._reminder_backend.get(self._index_key)
        for key in json.loads(index.value) if index is not None else []:
            item = await self._reminder_backend.get(self._reminder_key(tuple(key)))  # type: ignore[arg-type]
            if item is None:
                continue
            try:
                reminder = _Reminder.from_json(item.value)
            except (ValueError, KeyError) as exc:
                _log.error("reminder %s cannot be read (%s); skipping it", key, exc)
                continue
            if reminder.actor_type in self._config.types:
                self._arm(reminder)

    def _arm(self, reminder: _Reminder) -> None:
        key = (reminder.actor_type, reminder.actor_id, reminder.name)
        old = self._reminder_tasks.pop(key, None)
        if old is not None and old is not asyncio.current_task():
            old.cancel()
        self._reminders[key] = reminder
        self._reminder_tasks[key] = asyncio.get_running_loop().create_task(
            self._run_reminder(reminder), name=f"actor-reminder-{'-'.join(key)}"
        )

    async def create_reminder(
        self,
        actor_type: str,
        actor_id: str,
        name: str,
        due_time: str,
        period: str,
        ttl: str,
        data: bytes | None,
        overwrite: bool = True,
        policy: Any = None,
    ) -> None:
        """``policy``: a ``common_pb2.JobFailurePolicy`` (None: the scheduler's default)."""
        reserved = _reserved(actor_type)
        if reserved is not None:
            raise reserved
        if actor_type not in self._config.types:
            raise _not_hosted()

        def failed(message: str) -> BlockError:
            return _error(
                grpc.StatusCode.INTERNAL,
                500,
                "ERR_ACTOR_REMINDER_CREATE",
                f"error creating actor reminder: {message}",
            )

        now = time.time()
        # pkg/actors/internal/scheduler scheduleFromPeriod: "@every <duration>", repeats from R<n>.
        seconds, repeats = 0.0, -1
        if period:
            try:
                every = Period.parse(period)
            except ScheduleError:
                raise failed(f"unsupported period format: {period}") from None
            if every.years or every.months or every.days:
                raise failed(f"unsupported period format: {period}")
            seconds, repeats = every.seconds, every.repeats
        try:
            first = parse_point_in_time(due_time, now) if due_time else now
        except ScheduleError as exc:
            raise failed(f"rpc error: code = InvalidArgument desc = {exc}") from exc
        expiry = None
        if ttl:
            try:
                # The scheduler's TTL counts from the due time when there is one.
                expiry = parse_point_in_time(ttl, first)
            except ScheduleError as exc:
                raise failed(f"rpc error: code = InvalidArgument desc = {exc}") from exc
        key = (actor_type, actor_id, name)
        async with self._store_lock:
            if not overwrite and key in self._reminders:
                raise _error(
                    grpc.StatusCode.ALREADY_EXISTS,
                    409,
                    "ERR_ACTOR_REMINDER_ALREADY_EXISTS",
                    f"actor reminder already exists: {name}",
                )
            reminder = _Reminder(
                actor_type,
                actor_id,
                name,
                data,
                due_time,
                period,
                ttl,
                first,
                expiry,
                repeats if period else 1,
                seconds,
                *_retries(policy),
            )
            await self._reminder_backend.set(SetOp(key=self._reminder_key(key), value=reminder.to_json()))
            self._reminders[key] = reminder
            await self._save_index()
            self._arm(reminder)

    async def get_reminder(self, actor_type: str, actor_id: str, name: str) -> _Reminder:
        if actor_type not in self._config.types:
            raise _not_hosted()
        reminder = self._reminders.get((actor_type, actor_id, name))
        if reminder is None:
            raise _error(
                grpc.StatusCode.NOT_FOUND,
                404,
                "ERR_ACTOR_REMINDER_NOT_FOUND",
                f"actor reminder not found: {name}",
            )
        return reminder

    async def delete_reminder(self, actor_type: str, actor_id: str, name: str) -> None:
        if actor_type not in self._config.types:
            raise _not_hosted()
        await self._remove_reminder((actor_type, actor_id, name))

    async def _remove_reminder(self, key: tuple[str, str, str], reminder: _Reminder | None = None) -> None:
        async with self._store_lock:
            current = self._reminders.get(key)
            if current is None or (reminder is not None and current is not reminder):
                return
            del self._reminders[key]
            task = self._reminder_tasks.pop(key, None)
            if task is not None and task is not asyncio.current_task():
                task.cancel()
            await self._reminder_backend.delete(DeleteOp(key=self._reminder_key(key)))
            await self._save_index()

    async def _run_reminder(self, reminder: _Reminder) -> None:
        key = (reminder.actor_type, reminder.actor_id, reminder.name)
        # The scheduler triggers an actor reminder with the job's name and data only
        # (pkg/runtime/scheduler/internal/cluster/streamer.go), so the app gets empty times.
        body = _callback_body((("dueTime", ""), ("period", "")), reminder.data)
        while True:
            while (delay := reminder.next - time.time()) > 0:
                await asyncio.sleep(min(delay, _MAX_SLEEP))
            # go-etcd-cron compares the tick's scheduled time with the expiry, not the clock.
            if reminder.expiry is not None and reminder.next > reminder.expiry:
                break
            cancel = False
            attempt = 0
            while True:
                try:
                    reply = await self._invoke_local(
                        reminder.actor_type,
                        reminder.actor_id,
                        "method/remind/" + reminder.name,
                        body,
                        "application/json",
                        [],
                    )
                    cancel = _truthy(reply.headers, _CANCEL_HEADER)
                    break
                except BlockError as exc:
                    _log.error(
                        "Error executing reminder for actor %s||%s: %s",
                        reminder.actor_type,
                        reminder.actor_id,
                        exc.message,
                    )
                # go-etcd-cron's failure policy: the reminder's own, else 3 retries 1 s apart.
                attempt += 1
                if reminder.max_retries is not None and attempt > reminder.max_retries:
                    break
                await asyncio.sleep(reminder.retry_interval)
            if cancel or reminder.repeats == 1 or reminder.seconds <= 0:
                break
            if reminder.repeats > 0:
                reminder.repeats -= 1
            reminder.next += reminder.seconds
            if reminder.next < time.time():  # missed ticks while down: one late, then on time
                reminder.next = time.time() + reminder.seconds
            async with self._store_lock:
                if self._reminders.get(key) is not reminder:
                    return
                await self._reminder_backend.set(SetOp(key=self._reminder_key(key), value=reminder.to_json()))
        await self._remove_reminder(key, reminder)

    # -- HTTP ---------------------------------------------------------------------------------

    async def _http_invoke(self, request: HttpRequest) -> HttpResponse:
        p = request.params
        try:
            for name in ("actorType", "actorId"):
                if not p[name] or "/" in p[name]:
                    raise _error(grpc.StatusCode.INVALID_ARGUMENT, 400, "ERR_BAD_REQUEST", f"invalid {name}")
            headers = [(k, v) for k, v in request.headers.items()]
            headers.append(("Dapr-Api-Call", "true"))
            query = "&".join(f"{k}={v}" for k, vs in request.query.items() for v in vs)
            reply = await self.invoke(
                p["actorType"],
                p["actorId"],
                p["method"],
                request.body,
                request.headers.get("content-type", ""),
                headers,
                request.method,
                query,
            )
        except BlockError as error:
            return error.http_response()
        return HttpResponse(reply.status, reply.body, reply.content_type)

    async def _http_get_state(self, request: HttpRequest) -> HttpResponse:
        p = request.params
        try:
            data = await self.get_state(p["actorType"], p["actorId"], p["key"])
        except BlockError as error:
            return error.http_response()
        if not data:
            return HttpResponse(204, b"", "")
        return HttpResponse(200, data, "application/json")

    async def _http_transaction(self, request: HttpRequest) -> HttpResponse:
        p = request.params
        try:
            try:
                operations = json.loads(request.body or b"null")
                if not isinstance(operations, list):
                    raise ValueError(
                        "json: cannot unmarshal into Go value of type []api.TransactionalOperation"
                    )
            except ValueError as exc:
                raise _malformed(str(exc)) from exc
            for op in operations:
                req = op.get("request") if isinstance(op, dict) else None
                if isinstance(req, dict) and op.get("operation") == "upsert":
                    op["value"] = encode_go_json(req.get("value"))
            await self.transact_state(p["actorType"], p["actorId"], operations)
        except BlockError as error:
            return error.http_response()
        return HttpResponse(204, b"", "")

    def _reminder_fields(self, request: HttpRequest) -> tuple[dict[str, Any], bytes | None]:
        try:
            document = json.loads(request.body or b"null")
        except ValueError as exc:
            raise _malformed(str(exc)) from exc
        if not isinstance(document, dict):
            document = {}
        data = None
        if "data" in document:
            data = json.dumps(document["data"], separators=(",", ":")).encode()
            raw = _raw_member(request.body, "data")
            if raw is not None:
                data = raw
        return document, data

    async def _http_create_reminder(self, request: HttpRequest) -> HttpResponse:
        p = request.params
        try:
            document, data = self._reminder_fields(request)
            overwrite = document.get("overwrite")
            policy = None
            if isinstance(document.get("failure_policy"), dict):
                from dapr.proto.common.v1 import common_pb2
                from google.protobuf import json_format

                try:
                    policy = json_format.ParseDict(document["failure_policy"], common_pb2.JobFailurePolicy())
                except json_format.ParseError as exc:
                    raise _malformed(str(exc)) from exc
            await self.create_reminder(
                p["actorType"],
                p["actorId"],
                p["name"],
                str(document.get("dueTime") or ""),
                str(document.get("period") or ""),
                str(document.get("ttl") or ""),
                data,
                overwrite if isinstance(overwrite, bool) else True,
                policy,
            )
        except BlockError as error:
            return error.http_response()
        return HttpResponse(204, b"", "")

    async def _http_get_reminder(self, request: HttpRequest) -> HttpResponse:
        p = request.params
        try:
            reminder = await self.get_reminder(p["actorType"], p["actorId"], p["name"])
        except BlockError as error:
            return error.http_response()
        parts = [
            b'"actorID":' + encode_go_json(reminder.actor_id),
            b'"actorType":' + encode_go_json(reminder.actor_type),
        ]
        if reminder.data:
            parts.append(b'"data":' + _compact_json(reminder.data))
        if reminder.due_time:
            parts.append(b'"dueTime":' + encode_go_json(reminder.due_time))
        if reminder.seconds > 0:
            parts.append(b'"period":' + encode_go_json("@every " + go_duration(reminder.seconds)))
        if reminder.expiry is not None:
            parts.append(b'"ttl":' + encode_go_json(_rfc3339(reminder.expiry)))
        return HttpResponse(200, b"{" + b",".join(parts) + b"}", "application/json")

    async def _http_delete_reminder(self, request: HttpRequest) -> HttpResponse:
        p = request.params
        try:
            await self.delete_reminder(p["actorType"], p["actorId"], p["name"])
        except BlockError as error:
            return error.http_response()
        return HttpResponse(204, b"", "")

    async def _http_create_timer(self, request: HttpRequest) -> HttpResponse:
        p = request.params
        try:
            document, data = self._reminder_fields(request)
            await self.create_timer(
                p["actorType"],
                p["actorId"],
                p["name"],
                str(document.get("dueTime") or ""),
                str(document.get("period") or ""),
                str(document.get("ttl") or ""),
                str(document.get("callback") or ""),
                data,
            )
        except BlockError as error:
            return error.http_response()
        return HttpResponse(204, b"", "")

    async def _http_delete_timer(self, request: HttpRequest) -> HttpResponse:
        p = request.params
        await self.delete_timer(p["actorType"], p["actorId"], p["name"])
        return HttpResponse(204, b"", "")

    # -- gRPC ---------------------------------------------------------------------------------

    async def _grpc_invoke(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        from dapr.proto.runtime.v1 import actors_pb2

        try:
            headers = [(k, v) for k, v in request.metadata.items()]
            reply = await self.invoke(
                request.actor_type, request.actor_id, request.method, request.data, "", headers
            )
        except BlockError as error:
            await abort_with(context, error)
        return actors_pb2.InvokeActorResponse(data=reply.body)

    async def _grpc_get_state(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        from dapr.proto.runtime.v1 import actors_pb2

        try:
            data = await self.get_state(request.actor_type, request.actor_id, request.key)
        except BlockError as error:
            await abort_with(context, error)
        return actors_pb2.GetActorStateResponse(data=data)

    async def _grpc_transaction(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        from google.protobuf import empty_pb2

        operations = []
        for op in request.operations:
            item: dict[str, Any] = {
                "operation": op.operationType,
                "request": {"key": op.key, "metadata": dict(op.metadata)},
            }
            if op.operationType == "upsert":
                item["value"] = op.value.value if op.HasField("value") else b""
            operations.append(item)
        try:
            await self.transact_state(request.actor_type, request.actor_id, operations)
        except BlockError as error:
            await abort_with(context, error)
        return empty_pb2.Empty()

    async def _grpc_register_timer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        from google.protobuf import empty_pb2

        try:
            await self.create_timer(
                request.actor_type,
                request.actor_id,
                request.name,
                request.due_time,
                request.period,
                request.ttl,
                request.callback,
                _grpc_data(request.data),
            )
        except BlockError as error:
            await abort_with(context, error)
        return empty_pb2.Empty()

    async def _grpc_unregister_timer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        from google.protobuf import empty_pb2

        await self.delete_timer(request.actor_type, request.actor_id, request.name)
        return empty_pb2.Empty()

    async def _grpc_register_reminder(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        from google.protobuf import empty_pb2

        overwrite = request.overwrite if request.HasField("overwrite") else True
        try:
            await self.create_reminder(
                request.actor_type,
                request.actor_id,
                request.name,
                request.due_time,
                request.period,
                request.ttl,
                _grpc_data(request.data),
                overwrite,
                request.failure_policy if request.HasField("failure_policy") else None,
            )
        except BlockError as error:
            await abort_with(context, error)
        return empty_pb2.Empty()

    async def _grpc_get_reminder(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        from dapr.proto.runtime.v1 import actors_pb2
        from google.protobuf import any_pb2, wrappers_pb2

        try:
            reminder = await self.get_reminder(request.actor_type, request.actor_id, request.name)
        except BlockError as error:
            await abort_with(context, error)
        response = actors_pb2.GetActorReminderResponse(
            actor_type=reminder.actor_type, actor_id=reminder.actor_id
        )
        if reminder.due_time:
            response.due_time = reminder.due_time
        if reminder.seconds > 0:
            response.period = "@every " + go_duration(reminder.seconds)
        if reminder.expiry is not None:
            response.ttl = _rfc3339(reminder.expiry)
        if reminder.data is not None:
            data = any_pb2.Any()
            data.Pack(wrappers_pb2.BytesValue(value=reminder.data))
            response.data.CopyFrom(data)
        return response

    async def _grpc_unregister_reminder(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        from google.protobuf import empty_pb2

        try:
            await self.delete_reminder(request.actor_type, request.actor_id, request.name)
        except BlockError as error:
            await abort_with(context, error)
        return empty_pb2.Empty()

    # -- wiring -------------------------------------------------------------------------------

    def grpc_methods(self) -> Mapping[str, Callable[..., Any]]:
        return {
            "InvokeActor": self._grpc_invoke,
            "GetActorState": self._grpc_get_state,
            "ExecuteActorStateTransaction": self._grpc_transaction,
            "RegisterActorTimer": self._grpc_register_timer,
            "UnregisterActorTimer": self._grpc_unregister_timer,
            "RegisterActorReminder": self._grpc_register_reminder,
            "UnregisterActorReminder": self._grpc_unregister_reminder,
            "GetActorReminder": self._grpc_get_reminder,
        }

    def http_routes(self) -> Sequence[Route]:
        base = "/v1.0/actors/{actorType}/{actorId}"
        # A method may hold slashes (``a/b``), so it takes the rest of the path.
        method_path = re.compile(
            r"/v1\.0/actors/(?P<actorType>[^/]+)/(?P<actorId>[^/]+)/method/(?P<method>.+)"
        )
        routes = [Route(verb, method_path, self._http_invoke) for verb in ("GET", "POST", "DELETE", "PUT")]
        routes += [
            route("POST", base + "/state", self._http_transaction),
            route("PUT", base + "/state", self._http_transaction),
            route("GET", base + "/state/{key}", self._http_get_state),
            route("POST", base + "/reminders/{name}", self._http_create_reminder),
            route("PUT", base + "/reminders/{name}", self._http_create_reminder),
            route("GET", base + "/reminders/{name}", self._http_get_reminder),
            route("DELETE", base + "/reminders/{name}", self._http_delete_reminder),
            route("POST", base + "/timers/{name}", self._http_create_timer),
            route("PUT", base + "/timers/{name}", self._http_create_timer),
            route("DELETE", base + "/timers/{name}", self._http_delete_timer),
        ]
        return routes

    def capabilities(self) -> Mapping[str, Sequence[str]]:
        return {}


def _rfc3339(moment: float) -> str:
    """Go's ``time.RFC3339Nano`` in UTC."""
    from datetime import datetime, timezone

    text = (
        datetime.fromtimestamp(moment, tz=timezone.utc)
        .strftime("%Y-%m-%dT%H:%M:%S.%f")
        .rstrip("0")
        .rstrip(".")
    )
    return text + "Z"


def _retries(policy: Any) -> tuple[float, int | None]:
    """(interval, max retries or None for no limit) of a ``JobFailurePolicy``, as go-etcd-cron
    applies it; without one its default, 3 retries 1 s apart."""
    if policy is None or policy.WhichOneof("policy") is None:
        return 1.0, 3
    if policy.WhichOneof("policy") == "drop":
        return 0.0, 0
    constant = policy.constant
    interval = constant.interval.ToTimedelta().total_seconds() if constant.HasField("interval") else 0.0
    return interval, constant.max_retries if constant.HasField("max_retries") else None


def _grpc_data(data: bytes) -> bytes | None:
    """universal/actors.go: gRPC ``data`` bytes are ``json.Marshal``ed (a base64 JSON string)."""
    return encode_go_json(base64.b64encode(data).decode()) if data else None


def _truthy(headers: Sequence[tuple[str, str]], name: str) -> bool:
    value = next((v for k, v in headers if k.lower() == name), "")
    return value.strip().lower() in {"1", "true", "t", "y", "yes", "on"}


def _pack(head: dict[str, Any], body: bytes) -> bytes:
    encoded = json.dumps(head).encode()
    return len(encoded).to_bytes(4, "big") + encoded + body


def _unpack(payload: bytes) -> tuple[dict[str, Any], bytes]:
    size = int.from_bytes(payload[:4], "big")
    return json.loads(payload[4 : 4 + size]), payload[4 + size :]


def _raw_member(body: bytes, name: str) -> bytes | None:
    """The raw JSON text of a top-level member (daprd keeps a reminder's ``data`` verbatim)."""
    decoder = json.JSONDecoder()
    text = body.decode("utf-8", errors="replace")
    index = text.find("{")
    if index < 0:
        return None
    index += 1
    while index < len(text):
        while index < len(text) and text[index] in " \t\r\n,":
            index += 1
        if index >= len(text) or text[index] == "}":
            return None
        key, index = decoder.raw_decode(text, index)
        while text[index] in " \t\r\n:":
            index += 1
        start = index
        _value, index = decoder.raw_decode(text, index)
        if key == name:
            return text[start:index].encode()
    return None
