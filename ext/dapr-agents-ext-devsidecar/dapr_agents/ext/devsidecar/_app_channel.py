"""The app channel: how the sidecar reaches its own app, over HTTP or gRPC, as daprd's does.

daprd dials the app's port every 100 ms until it accepts a TCP connection and only then declares
itself ready (``/v1.0/healthz`` answers 500 until then; ``/v1.0/healthz/outbound`` does not wait),
reads the app's ``GET /dapr/config`` once it is up, optionally probes ``--app-health-check-path``
and refuses to call an unhealthy app. Requests to an HTTP app carry the caller's headers with
daprd's additions and ``dapr-api-token`` when ``APP_API_TOKEN`` is set; a gRPC app gets the same
as metadata on ``AppCallback.OnInvoke`` (or on any method, for gRPC proxying).

Other building blocks reach the app through the same channel: :meth:`AppChannel.on_health_change`
tells them when the app becomes (un)healthy (daprd starts and stops subscriptions on it), and
:meth:`HttpAppChannel.request` / :attr:`GrpcAppChannel.app_callback` call it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    import aiohttp

_log = logging.getLogger(__name__)

#: Metadata values: text, or bytes for keys ending in ``-bin``.
Metadata = list[tuple[str, Any]]

#: What daprd adds when tracing is off and the caller sent no ``traceparent``.
EMPTY_TRACEPARENT = "00-00000000000000000000000000000000-0000000000000000-00"

# Headers that describe one hop and are never forwarded (Go's list, plus host).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "http2-settings",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-authenticate",
    }
)

# HTTP headers daprd renames to "dapr-<name>" when it turns HTTP headers into gRPC metadata.
PERMANENT_HTTP_HEADERS = frozenset(
    h.lower()
    for h in (
        "Accept",
        "Accept-Charset",
        "Accept-Language",
        "Accept-Ranges",
        "Connection",
        "Keep-Alive",
        "Proxy-Connection",
        "Transfer-Encoding",
        "Upgrade",
        "Cache-Control",
        "Content-Type",
        "Content-Length",
        "Cookie",
        "Date",
        "Expect",
        "From",
        "Host",
        "If-Match",
        "If-Modified-Since",
        "If-None-Match",
        "If-Schedule-Tag-Match",
        "If-Unmodified-Since",
        "Max-Forwards",
        "Origin",
        "Pragma",
        "Referer",
        "Via",
        "Warning",
    )
)

# Metadata keys gRPC itself owns; never copied onto an outgoing call.
_GRPC_OWNED = frozenset({"user-agent", "te", "content-type", "host", "grpc-timeout", "grpc-encoding"})

_STATUS_TEXT_OVERRIDES = {414: "Request URI Too Long", 418: "I'm a teapot"}


def status_text(code: int) -> str:
    """Go's ``http.StatusText``: the reason phrase daprd puts into errors ("" if unknown)."""
    from http import HTTPStatus

    if code in _STATUS_TEXT_OVERRIDES:
        return _STATUS_TEXT_OVERRIDES[code]
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return ""


def canonical_header(name: str) -> str:
    """Go's canonical header form (``x-custom`` -> ``X-Custom``), as daprd sends them."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def grpc_to_http_code(code: int) -> int:
    """daprd's gRPC status -> HTTP status mapping (``invokev1.HTTPStatusFromCode``)."""
    return {
        0: 200,
        1: 408,
        2: 500,
        3: 400,
        4: 504,
        5: 404,
        6: 409,
        7: 403,
        8: 429,
        9: 400,
        10: 409,
        11: 400,
        12: 501,
        13: 500,
        14: 503,
        15: 500,
        16: 401,
    }.get(code, 500)


def http_to_grpc_code(status: int) -> grpc.StatusCode:
    """daprd's HTTP status -> gRPC status mapping (``invokev1.CodeFromHTTPStatus``)."""
    if 200 <= status < 300:
        return grpc.StatusCode.OK
    return {
        408: grpc.StatusCode.CANCELLED,
        500: grpc.StatusCode.UNKNOWN,
        400: grpc.StatusCode.INTERNAL,
        504: grpc.StatusCode.DEADLINE_EXCEEDED,
        404: grpc.StatusCode.NOT_FOUND,
        409: grpc.StatusCode.ALREADY_EXISTS,
        403: grpc.StatusCode.PERMISSION_DENIED,
        401: grpc.StatusCode.UNAUTHENTICATED,
        429: grpc.StatusCode.RESOURCE_EXHAUSTED,
        501: grpc.StatusCode.UNIMPLEMENTED,
        503: grpc.StatusCode.UNAVAILABLE,
    }.get(status, grpc.StatusCode.UNKNOWN)


def grpc_code(value: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN


# -- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AppHealthCheck:
    """``--enable-app-health-check`` and its settings, with daprd's defaults."""

    path: str = "/healthz"
    interval: float = 5.0  # seconds (--app-health-probe-interval)
    timeout: float = 0.5  # seconds (--app-health-probe-timeout is in milliseconds)
    threshold: int = 3


@dataclass(frozen=True)
class AppConnection:
    """Where and how the sidecar reaches its app (``--app-port``, ``--app-protocol``, ...)."""

    port: int
    protocol: str = "http"
    address: str = "127.0.0.1"
    api_token: str | None = None  # APP_API_TOKEN: sent to the app as dapr-api-token
    health_check: AppHealthCheck | None = None

    def __post_init__(self) -> None:
        if self.protocol not in {"http", "grpc"}:
            raise ValueError(
                f"app protocol {self.protocol!r} is not supported by the dev sidecar; use 'http' or "
                "'grpc' (daprd also has https, grpcs and h2c: use --runtime daprd for those)"
            )
        if not 0 < self.port < 65536:
            raise ValueError(f"app port {self.port} is not a TCP port")
        check = self.health_check
        if check is not None and (check.interval <= 0 or check.timeout > check.interval):
            raise ValueError(
                "app health checks need a probe interval above 0 and a probe timeout no longer than "
                f"it (got interval {check.interval}s, timeout {check.timeout}s)"
            )


def _go_duration(seconds: float) -> str:
    # Go's time.Duration.String() for the round values daprd's flags produce (5s, 500ms, 1m0s).
    if seconds >= 60:
        minutes, rest = divmod(seconds, 60)
        return f"{int(minutes)}m{rest:g}s"
    if seconds >= 1 or seconds == 0:
        return f"{seconds:g}s"
    return f"{seconds * 1000:g}ms"


def connection_properties(connection: AppConnection | None) -> dict[str, Any]:
    """``appConnectionProperties`` of the metadata document, as daprd reports it."""
    if connection is None:
        return {"protocol": "http", "channelAddress": "127.0.0.1"}
    properties: dict[str, Any] = {
        "port": connection.port,
        "protocol": connection.protocol,
        "channelAddress": connection.address,
    }
    check = connection.health_check
    if check is not None:
        health: dict[str, Any] = {}
        if connection.protocol == "http":
            health["healthCheckPath"] = check.path
        health.update(
            healthProbeInterval=_go_duration(check.interval),
            healthProbeTimeout=_go_duration(check.timeout),
            healthThreshold=check.threshold,
        )
        properties["health"] = health
    return properties


# -- requests and replies --------------------------------------------------------------------


@dataclass
class Invocation:
    """One service-invocation request, whichever API it came in through.

    ``metadata`` is the caller's HTTP headers or gRPC metadata (already without the caller's
    ``dapr-api-token`` and ``dapr-app-id``), plus what daprd adds between apps. ``verb`` is None
    for a gRPC ``InvokeService`` without an HTTP extension.
    """

    method: str
    verb: str | None
    query: str = ""
    metadata: Metadata = field(default_factory=list)
    body: bytes = b""
    content_type: str = ""
    grpc_origin: bool = False
    traceparent: str = EMPTY_TRACEPARENT
    #: The ``type_url`` of an ``InvokeService`` request's ``Any`` data, passed to a gRPC app as is.
    type_url: str = ""


@dataclass
class AppReply:
    """What the app answered: an HTTP response (``status`` is the HTTP status) or a gRPC one
    (``status`` is the gRPC code, ``headers``/``trailers`` its initial and trailing metadata)."""

    protocol: str
    status: int
    headers: Metadata = field(default_factory=list)
    body: bytes = b""
    content_type: str = ""
    message: str = ""
    trailers: Metadata = field(default_factory=list)
    details: bytes = b""  # a gRPC app's google.rpc.Status details (grpc-status-details-bin)
    type_url: str = ""  # a gRPC app's InvokeResponse data type_url, passed back as is
    #: The rest of the body, still arriving from the app (after ``body``); None once complete.
    #: Whoever takes the reply reads it to the end or closes it (``aclose``), which closes the
    #: app's connection. It raises :class:`AppChannelError` (or, between sidecars, the invoke
    #: module's error) when the app's reply breaks off.
    stream: AsyncIterator[bytes] | None = None


async def complete(reply: AppReply) -> AppReply:
    """``reply`` with its whole body read into ``body``."""
    if reply.stream is not None:
        stream, reply.stream = reply.stream, None
        parts = [reply.body]
        try:
            async for chunk in stream:
                parts.append(chunk)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        reply.body = b"".join(parts)
    return reply


async def discard(reply: AppReply) -> None:
    """Stop reading the rest of ``reply`` (closes the app's connection if it is still sending)."""
    if reply.stream is not None:
        stream, reply.stream = reply.stream, None
        with contextlib.suppress(Exception):
            await stream.aclose()  # type: ignore[attr-defined]


class AppChannelError(Exception):
    """The app could not be called; the message is daprd's text for the failure."""


APP_UNHEALTHY = "rpc error: code = Internal desc = app is not in a healthy state"


# -- the channels ----------------------------------------------------------------------------

HealthListener = Callable[[bool], Awaitable[None] | None]


class AppChannel:
    """Common part of the HTTP and gRPC channels: readiness, health probes, listeners."""

    def __init__(self, connection: AppConnection, app_id: str) -> None:
        self.connection = connection
        self.app_id = app_id
        self.listening = asyncio.Event()  # the app's port accepted a connection once
        # daprd's app health starts out unhealthy (failures = threshold) until a probe passes.
        check = connection.health_check
        self._healthy = check is None
        self._failures = check.threshold if check is not None else 0
        self._initialized = False
        self._listeners: list[HealthListener] = []
        self._tasks: list[asyncio.Task[None]] = []
        #: The app's ``GET /dapr/config`` answer (HTTP apps), read once the app is up.
        self.app_config: bytes | None = None

    @property
    def protocol(self) -> str:
        return self.connection.protocol

    @property
    def healthy(self) -> bool:
        """False while health checks are enabled and the app has not passed one (or failed
        ``threshold`` in a row), as daprd's app health starts out unhealthy."""
        return self._healthy

    def on_health_change(self, listener: HealthListener) -> None:
        """Call ``listener(healthy)`` whenever the app's health flips; with health checks off it
        is called once with True when the app's port first accepts a connection."""
        self._listeners.append(listener)

    async def start(self) -> None:
        await self._open()
        self._tasks.append(asyncio.create_task(self._become_ready(), name=f"app-channel-{self.app_id}"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self._close()

    async def _become_ready(self) -> None:
        await self._wait_listening()
        self.listening.set()
        _log.info("application discovered on port %d", self.connection.port)
        check = self.connection.health_check
        if check is None:
            await self._notify(True)
            return
        while True:
            ok = await self.probe()
            await self._record(ok, check.threshold)
            await asyncio.sleep(check.interval)

    async def _wait_listening(self) -> None:
        # daprd dials every 100 ms with a 500 ms timeout until the port accepts a connection.
        while True:
            try:
                _reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.connection.address, self.connection.port), 0.5
                )
            except (OSError, asyncio.TimeoutError):
                await asyncio.sleep(0.1)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    async def _record(self, ok: bool, threshold: int) -> None:
        if ok:
            self._failures = 0
            if not self._healthy:
                self._healthy = True
                _log.info("app %r is healthy", self.app_id)
                await self._notify(True)
            return
        self._failures += 1
        if self._healthy and self._failures >= threshold:
            self._healthy = False
            _log.warning("app %r is unhealthy after %d failed probes", self.app_id, self._failures)
            await self._notify(False)

    async def _notify(self, healthy: bool) -> None:
        if healthy and not self._initialized:
            # The first time the app is healthy daprd completes its init (GET /dapr/config).
            self._initialized = True
            await self._after_listening()
        for listener in list(self._listeners):
            try:
                result = listener(healthy)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                _log.exception("an app health listener failed")

    def _check_healthy(self) -> None:
        if not self._healthy and self.connection.health_check is not None:
            raise AppChannelError(APP_UNHEALTHY)

    # -- per protocol -------------------------------------------------------------------------

    async def _open(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    async def _after_listening(self) -> None:
        return None

    async def probe(self) -> bool:
        raise NotImplementedError

    async def invoke(self, invocation: Invocation, *, stream: bool = False) -> AppReply:
        """Call the app; ``stream=True`` lets an HTTP app's reply body arrive as
        :attr:`AppReply.stream` (a gRPC app's reply is always complete)."""
        raise NotImplementedError


def _http_headers(invocation: Invocation, token: str | None) -> list[tuple[str, str]]:
    connection_listed = {
        token_.strip().lower()
        for key, value in invocation.metadata
        if key.lower() == "connection" and isinstance(value, str)
        for token_ in value.split(",")
    }
    headers: list[tuple[str, str]] = []
    for key, value in invocation.metadata:
        lowered = key.lower()
        if (
            lowered in HOP_BY_HOP
            or lowered in connection_listed
            or lowered in {"content-type", "content-length", "host", "traceparent", "dapr-api-token"}
            or lowered.endswith("-bin")
            or not isinstance(value, str)
        ):
            continue
        if invocation.grpc_origin:
            if lowered.startswith(":"):
                lowered = "dapr-" + lowered[1:]
            elif lowered.startswith("grpc-"):
                lowered = "dapr-" + lowered
        headers.append((canonical_header(lowered), value))
    if invocation.content_type:
        headers.append(("Content-Type", invocation.content_type))
    headers.append(("Traceparent", invocation.traceparent))
    if token:
        headers.append(("Dapr-Api-Token", token))
    return headers


def _go_dial_error(verb: str, url: str, address: str, exc: BaseException) -> str:
    op = verb[:1].upper() + verb[1:].lower()
    cause = exc.__cause__ or exc
    if isinstance(cause, ConnectionRefusedError) or "Connect call failed" in str(exc):
        detail = f"dial tcp {address}: connect: connection refused"
    else:
        detail = str(exc) or type(exc).__name__
    return f'{op} "{url}": {detail}'


class HttpAppChannel(AppChannel):
    """Calls an HTTP app with aiohttp: no automatic headers, no decompression, no timeout."""

    def __init__(self, connection: AppConnection, app_id: str) -> None:
        super().__init__(connection, app_id)
        self.base_url = f"http://{connection.address}:{connection.port}"
        self._session: aiohttp.ClientSession | None = None

    async def _open(self) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )

    async def _close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _after_listening(self) -> None:
        # daprd reads the app's configuration (actors, entities) once the app is up.
        headers = [("Content-Type", "application/json"), ("Dapr-App-Id", self.app_id)]
        if self.connection.api_token:
            headers.append(("Dapr-Api-Token", self.connection.api_token))
        try:
            reply = await self.request("GET", "/dapr/config", headers)
        except AppChannelError as exc:
            _log.debug("GET /dapr/config on the app failed: %s", exc)
            return
        if reply.status == 200:
            self.app_config = reply.body  # the actors block reads its entities

    async def request(
        self,
        verb: str,
        path_and_query: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        stream: bool = False,
    ) -> AppReply:
        """One HTTP request to the app, as is; transport failures raise :class:`AppChannelError`.

        ``stream=True``: a body that has not fully arrived with the head is left in
        :attr:`AppReply.stream`, read from the app as the caller reads it (aiohttp stops reading
        the socket while its buffer is full, so a slow caller slows the app down). A body that
        came whole with the head (most small replies) is read at once, as without ``stream``."""
        import aiohttp

        if self._session is None:
            raise AppChannelError("the app channel is closed")
        url = self.base_url + path_and_query
        try:
            response = await self._session.request(
                verb, url, headers=list(headers), data=body if body else None, allow_redirects=False
            )
        except (aiohttp.ClientError, OSError) as exc:
            address = f"{self.connection.address}:{self.connection.port}"
            raise AppChannelError(_go_dial_error(verb, url, address, exc)) from exc
        reply = AppReply(
            "http",
            response.status,
            [(k, v) for k, v in response.headers.items()],
            content_type=response.headers.get("Content-Type", ""),
        )
        if stream and not response.content.is_eof():
            reply.stream = _body(response, verb, url)
            return reply
        try:
            reply.body = await response.read()
        except (aiohttp.ClientError, OSError) as exc:
            response.close()
            address = f"{self.connection.address}:{self.connection.port}"
            raise AppChannelError(_go_dial_error(verb, url, address, exc)) from exc
        response.release()
        return reply

    async def probe(self) -> bool:
        import aiohttp

        if self._session is None:
            return False
        check = self.connection.health_check or AppHealthCheck()
        path = "/" + check.path.lstrip("/")
        try:
            async with self._session.get(
                self.base_url + path, timeout=aiohttp.ClientTimeout(total=check.timeout)
            ) as response:
                await response.read()
                return 200 <= response.status < 300
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
            return False

    async def invoke(self, invocation: Invocation, *, stream: bool = False) -> AppReply:
        if invocation.verb is None:
            raise AppChannelError("rpc error: code = InvalidArgument desc = missing HTTP extension field")
        if invocation.verb == "CONNECT":
            raise AppChannelError("rpc error: code = InvalidArgument desc = invalid HTTP verb")
        self._check_healthy()
        path = "/" + invocation.method.lstrip("/") if invocation.method else "/"
        if invocation.query:
            path += "?" + invocation.query
        headers = _http_headers(invocation, self.connection.api_token)
        return await self.request(invocation.verb, path, headers, invocation.body, stream=stream)


async def _body(response: aiohttp.ClientResponse, verb: str, url: str) -> AsyncIterator[bytes]:
    """The body of ``response`` as it arrives; the connection goes back to the pool at the end,
    and is closed if the reply breaks off or the reader stops early."""
    import aiohttp

    finished = False
    try:
        while True:
            try:
                chunk = await response.content.readany()
            except (aiohttp.ClientError, OSError) as exc:
                # Go's words for a body that breaks off (daprd: "unexpected EOF").
                cause = "unexpected EOF" if isinstance(exc, aiohttp.ClientPayloadError) else str(exc)
                raise AppChannelError(f"reading the reply of {verb} {url!r}: {cause}") from exc
            if not chunk:
                finished = True
                return
            yield chunk
    finally:
        if finished:
            response.release()
        else:
            response.close()


def grpc_metadata(invocation: Invocation, token: str | None) -> Metadata:
    """The metadata a gRPC app gets for ``invocation`` (daprd's HTTP -> gRPC renaming)."""
    metadata: Metadata = []
    for key, value in invocation.metadata:
        lowered = key.lower()
        if lowered in {"traceparent", "tracestate", "dapr-api-token", "destination-app-id"}:
            continue
        if not invocation.grpc_origin and lowered in PERMANENT_HTTP_HEADERS:
            lowered = "dapr-" + lowered
        if lowered.startswith(":") or lowered.startswith("grpc-") or lowered in _GRPC_OWNED:
            continue
        if lowered.endswith("-bin") != isinstance(value, bytes):
            continue
        metadata.append((lowered, value))
    metadata.append(("traceparent", invocation.traceparent))
    if token:
        metadata.append(("dapr-api-token", token))
    return metadata


def _metadata_list(metadata: Any) -> Metadata:
    return [(key, value) for key, value in (metadata or ())]


class GrpcAppChannel(AppChannel):
    """Calls a gRPC app: ``AppCallback.OnInvoke`` for invocation, any method for proxying."""

    def __init__(self, connection: AppConnection, app_id: str) -> None:
        super().__init__(connection, app_id)
        self.target = f"{connection.address}:{connection.port}"
        self.channel: grpc.aio.Channel | None = None

    async def _open(self) -> None:
        self.channel = grpc.aio.insecure_channel(
            self.target,
            options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
        )

    async def _close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
            self.channel = None

    @property
    def app_callback(self) -> Any:
        """An ``AppCallbackStub`` on the app (topic events, bindings, jobs)."""
        from dapr.proto.runtime.v1 import appcallback_pb2_grpc

        if self.channel is None:
            raise AppChannelError("the app channel is closed")
        return appcallback_pb2_grpc.AppCallbackStub(self.channel)

    def token_metadata(self) -> Metadata:
        return [("dapr-api-token", self.connection.api_token)] if self.connection.api_token else []

    async def probe(self) -> bool:
        from dapr.proto.runtime.v1 import appcallback_pb2_grpc
        from google.protobuf import empty_pb2

        if self.channel is None:
            return False
        check = self.connection.health_check or AppHealthCheck()
        stub = appcallback_pb2_grpc.AppCallbackHealthCheckStub(self.channel)
        try:
            await stub.HealthCheck(empty_pb2.Empty(), timeout=check.timeout, metadata=self.token_metadata())
        except grpc.RpcError:
            return False
        return True

    async def invoke(self, invocation: Invocation, *, stream: bool = False) -> AppReply:
        from dapr.proto.common.v1 import common_pb2
        from google.protobuf import any_pb2

        self._check_healthy()
        request = common_pb2.InvokeRequest(
            method=invocation.method,
            data=any_pb2.Any(type_url=invocation.type_url, value=invocation.body),
            content_type=invocation.content_type,
        )
        if invocation.verb is not None:
            request.http_extension.verb = common_pb2.HTTPExtension.Verb.Value(invocation.verb)
            request.http_extension.querystring = invocation.query
        call = self.app_callback.OnInvoke(
            request, metadata=grpc_metadata(invocation, self.connection.api_token)
        )
        try:
            response = await call
        except grpc.aio.AioRpcError as exc:
            details = b""
            for key, value in exc.trailing_metadata() or ():
                if key == "grpc-status-details-bin":
                    details = value
            return AppReply(
                "grpc",
                exc.code().value[0],
                _metadata_list(exc.initial_metadata()),
                message=exc.details() or "",
                trailers=[
                    (k, v)
                    for k, v in _metadata_list(exc.trailing_metadata())
                    if k != "grpc-status-details-bin"
                ],
                details=details,
            )
        return AppReply(
            "grpc",
            0,
            _metadata_list(await call.initial_metadata()),
            response.data.value,
            response.content_type,
            trailers=_metadata_list(await call.trailing_metadata()),
            type_url=response.data.type_url,
        )


def open_channel(connection: AppConnection, app_id: str) -> AppChannel:
    """The channel for ``connection``'s protocol (not started yet)."""
    if connection.protocol == "grpc":
        return GrpcAppChannel(connection, app_id)
    return HttpAppChannel(connection, app_id)
