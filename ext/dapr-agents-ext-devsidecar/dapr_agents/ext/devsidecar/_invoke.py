"""Service invocation: ``/v1.0/invoke``, the ``dapr-app-id`` header, gRPC ``InvokeService`` and
gRPC proxying, to this sidecar's app or, through the other app's sidecar, to another app.

As in daprd, a call for another app id goes sidecar to sidecar: the caller's sidecar resolves the
id (the machine's registry, :mod:`._nameresolution`), adds ``dapr-caller-app-id``,
``dapr-callee-app-id``, ``dapr-caller-namespace`` and the ``Forwarded`` headers, and sends the call
to the callee sidecar's internal gRPC port, which hands it to its app over the app channel
(:mod:`._app_channel`). A call for the sidecar's own id goes straight to its app. Errors carry
daprd's texts (``failed to invoke, id: <id>, err: ...``, ``ERR_DIRECT_INVOKE``), and replies map
between HTTP and gRPC with daprd's tables.

The internal port speaks a private protocol between dev sidecars (daprd's internal API is not
published in the SDK), and every other method there is proxied to the app as raw gRPC:

- ``CallLocal`` (unary): an :class:`~._app_channel.Invocation` as JSON plus its body; the answer
  is the app's reply head as JSON plus its body. A reply the app is still writing when its head
  arrives (a stream, a large body) is answered with the head, the body so far and a ticket;
- ``ReadReply`` (server streaming), called with the ticket, sends the rest of that body chunk by
  chunk as it comes from the app, as daprd's ``CallLocalStream`` does, under gRPC's flow control.

Small replies so keep the cost of one unary call, and an HTTP caller gets a streamed reply as it
arrives, with chunked transfer encoding (:mod:`._http`), as from daprd.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import os
import socket
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from ._acl import AccessControlList, Caller
from ._app_channel import (
    EMPTY_TRACEPARENT,
    HOP_BY_HOP,
    PERMANENT_HTTP_HEADERS,
    AppChannel,
    AppChannelError,
    AppReply,
    GrpcAppChannel,
    Invocation,
    Metadata,
    canonical_header,
    complete,
    discard,
    grpc_code,
    grpc_to_http_code,
    http_to_grpc_code,
    status_text,
)
from ._nameresolution import Registration, Registry
from ._status import ApiError

_log = logging.getLogger(__name__)

#: How a proxied gRPC call tells the callee's dev sidecar the caller's namespace (daprd reads it
#: from the caller's certificate); never forwarded to the app.
_CALLER_NAMESPACE = "dapr-devsidecar-caller-namespace"

#: The methods of the internal port; everything else there is proxied to the app.
CALL_LOCAL = "/dapr.devsidecar.internal.v1.ServiceInvocation/CallLocal"
READ_REPLY = "/dapr.devsidecar.internal.v1.ServiceInvocation/ReadReply"

#: How long a streamed reply waits for its caller's ``ReadReply`` before it is dropped.
_UNCLAIMED_REPLY_SECONDS = 30.0

_VERBS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")


class InvokeError(Exception):
    """A failed invocation; ``str()`` is the ``err:`` part of daprd's message. ``permission_denied``:
    the callee's access control list refused it (daprd answers HTTP callers 403 then, not 500)."""

    def __init__(self, message: str, *, permission_denied: bool = False) -> None:
        super().__init__(message)
        self.permission_denied = permission_denied


def error_message(app_id: str, error: str) -> str:
    return f"failed to invoke, id: {app_id}, err: {error}"


def go_quote(text: str) -> str:
    """Go's ``%q`` for the texts that reach error messages."""
    return json.dumps(text, ensure_ascii=False)


def clean_path(path: str) -> str:
    """Go's ``path.Clean``: one slash between parts, ``.`` and ``..`` resolved."""
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    cleaned = ("/" if rooted else "") + "/".join(parts)
    return cleaned or "."


def normalize_method(method: str) -> str:
    """daprd's method normalization: forbidden characters refused, traversal resolved."""
    if any(c in method for c in "#?\x00"):
        raise InvokeError(
            "rpc error: code = InvalidArgument desc = invalid method: method contains forbidden "
            f"character: {go_quote(method)}"
        )
    for index, char in enumerate(method):
        if ord(char) < 0x20 or ord(char) == 0x7F:
            raise InvokeError(
                "rpc error: code = InvalidArgument desc = invalid method: method contains control "
                f"character at position {index}: {go_quote(method)}"
            )
    cleaned = clean_path(method)
    while cleaned.startswith("../"):
        cleaned = cleaned[3:]
    return "" if cleaned in (".", "..") else cleaned


def _valid_metadata(key: str, value: Any) -> bool:
    if not key or key != key.lower() or any(not (c.isalnum() or c in "-_.") for c in key):
        return False
    if key.endswith("-bin"):
        return isinstance(value, bytes)
    return isinstance(value, str) and all(0x20 <= ord(c) < 0x7F for c in value)


def _encode_metadata(metadata: Metadata) -> list[list[Any]]:
    return [
        [key, {"b64": base64.b64encode(value).decode()} if isinstance(value, bytes) else value]
        for key, value in metadata
    ]


def _decode_metadata(items: list[list[Any]]) -> Metadata:
    return [
        (key, base64.b64decode(value["b64"]) if isinstance(value, dict) else value) for key, value in items
    ]


def _pack(header: dict[str, Any], body: bytes) -> bytes:
    encoded = json.dumps(header).encode("utf-8")
    return len(encoded).to_bytes(4, "big") + encoded + body


def _unpack(payload: bytes) -> tuple[dict[str, Any], bytes]:
    size = int.from_bytes(payload[:4], "big")
    return json.loads(payload[4 : 4 + size]), payload[4 + size :]


def encode_invocation(invocation: Invocation, streams: bool = False) -> bytes:
    """``streams``: the caller reads a reply that is still arriving with ``ReadReply`` (dev
    sidecars of earlier versions neither send nor read it, and get whole replies)."""
    header = {
        "method": invocation.method,
        "verb": invocation.verb,
        "query": invocation.query,
        "metadata": _encode_metadata(invocation.metadata),
        "contentType": invocation.content_type,
        "grpcOrigin": invocation.grpc_origin,
        "traceparent": invocation.traceparent,
    }
    if invocation.type_url:
        header["typeUrl"] = invocation.type_url
    if streams:
        header["streams"] = True
    return _pack(header, invocation.body)


def decode_invocation(payload: bytes) -> tuple[Invocation, bool]:
    header, body = _unpack(payload)
    return Invocation(
        method=header["method"],
        verb=header["verb"],
        query=header["query"],
        metadata=_decode_metadata(header["metadata"]),
        body=body,
        content_type=header["contentType"],
        grpc_origin=header["grpcOrigin"],
        traceparent=header["traceparent"],
        type_url=header.get("typeUrl", ""),
    ), bool(header.get("streams"))


#: The gRPC status codes an internal ``CallLocal`` failure carries, by grpc-go name.
INTERNAL, PERMISSION_DENIED = "Internal", "PermissionDenied"


def encode_reply(
    reply: AppReply | None, error: str | None = None, code: str = INTERNAL, ticket: str = ""
) -> bytes:
    """An app reply's head and its body so far; ``ticket``: ``ReadReply`` sends the rest."""
    if reply is None:
        return _pack({"error": error or "unknown error", "code": code}, b"")
    header = {
        "protocol": reply.protocol,
        "status": reply.status,
        "headers": _encode_metadata(reply.headers),
        "contentType": reply.content_type,
        "message": reply.message,
        "trailers": _encode_metadata(reply.trailers),
        "details": base64.b64encode(reply.details).decode(),
    }
    if reply.type_url:
        header["typeUrl"] = reply.type_url
    if ticket:
        header["more"] = ticket
    return _pack(header, reply.body)


def decode_reply(
    payload: bytes, rest: Callable[[str], AsyncIterator[bytes]] | None = None
) -> AppReply | InvokeError:
    """A reply; one with a ticket gets ``rest(ticket)`` as the rest of its body."""
    header, body = _unpack(payload)
    if "error" in header:
        code = str(header.get("code") or INTERNAL)
        return InvokeError(
            f"rpc error: code = {code} desc = {header['error']}", permission_denied=code == PERMISSION_DENIED
        )
    return AppReply(
        protocol=header["protocol"],
        status=header["status"],
        headers=_decode_metadata(header["headers"]),
        body=body,
        content_type=header["contentType"],
        message=header["message"],
        trailers=_decode_metadata(header["trailers"]),
        details=base64.b64decode(header["details"]),
        type_url=header.get("typeUrl", ""),
        stream=rest(header["more"]) if header.get("more") and rest is not None else None,
    )


@dataclass
class HttpReply:
    """An HTTP response for the sidecar's HTTP server to write: ``body``, then ``stream`` (the
    rest, as it arrives) if there is one. An app's reply is written as daprd relays it, chunked;
    the sidecar's own answers (``own``: errors) with a Content-Length, as daprd writes them."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    own: bool = False


def _json_error(status: int, code: str, message: str) -> HttpReply:
    body = json.dumps({"errorCode": code, "message": message}, separators=(",", ":")).encode()
    return HttpReply(status, [("Content-Type", "application/json")], body, own=True)


_NO_APP_ID = "failed getting app id either from the URL path or the header dapr-app-id"


def find_target(path: str, headers: list[tuple[str, str]]) -> tuple[str, str, list[tuple[str, str]]]:
    """daprd's ``findTargetIDAndMethod``: the app id and method of an HTTP request, from the
    ``dapr-app-id`` header, Basic auth ``dapr-app-id:<id>``, or ``/v1.0/invoke/<id>/method/<m>``;
    returns the headers to forward (without ``dapr-app-id``). ``("", "", headers)`` if none."""
    for key, value in headers:
        if key.lower() == "dapr-app-id" and value:
            forwarded = [(k, v) for k, v in headers if k.lower() != "dapr-app-id"]
            return value, clean_path(path).lstrip("/"), forwarded
    for key, value in headers:
        if key.lower() == "authorization" and value.startswith("Basic "):
            with contextlib.suppress(ValueError):
                pair = base64.b64decode(value[6:], validate=True).decode().split(":")
                if len(pair) == 2 and pair[0].lower() == "dapr-app-id":
                    return pair[1], clean_path(path).lstrip("/"), headers
    parts = path.split("/")
    found, index = 0, 0
    for index, part in enumerate(parts):  # noqa: B007 - index is used after the loop
        if not part:
            continue
        if found < 2 and part == ("v1.0", "invoke")[found]:
            found += 1
            continue
        break
    if found == 2:
        rest = "/".join(parts[index:])
        position = rest.find("/method/")
        if position > 0:
            target = urllib.parse.unquote(rest[:position]) or rest[:position]
            method = clean_path(rest[position + len("/method/") :])
            return target, "" if method == "." else method, headers
    return "", "", headers


def _http_headers_from_grpc_metadata(metadata: Metadata) -> list[tuple[str, str]]:
    # daprd's InternalMetadataToHTTPHeader for a gRPC app's metadata.
    headers = []
    for key, value in metadata:
        lowered = key.lower()
        if (
            lowered.endswith("-bin")
            or lowered in {"content-type", "content-length", "traceparent", "tracestate"}
            or lowered in HOP_BY_HOP
            or not isinstance(value, str)
        ):
            continue
        if lowered.startswith(":"):
            lowered = "dapr-" + lowered[1:]
        elif lowered.startswith("grpc-"):
            lowered = "dapr-" + lowered
        headers.append((canonical_header(lowered), value))
    return headers


def _status_json(reply: AppReply) -> bytes:
    # protojson of google.rpc.Status, as daprd writes a gRPC app's error to an HTTP caller.
    document: dict[str, Any] = {"code": reply.status}
    if reply.message:
        document["message"] = reply.message
    if reply.details:
        from google.protobuf import json_format
        from google.rpc import status_pb2

        with contextlib.suppress(Exception):
            status = status_pb2.Status.FromString(reply.details)
            if status.details:
                document["details"] = json_format.MessageToDict(status)["details"]
    return json.dumps(document, separators=(",", ":")).encode()


def http_reply(reply: AppReply, traceparent: str, head: bool = False) -> HttpReply:
    """What daprd answers an HTTP caller for ``reply``."""
    if reply.protocol == "http":
        headers = [
            (k, v)
            for k, v in reply.headers
            if k.lower() not in HOP_BY_HOP and k.lower() not in {"content-length", "traceparent"}
        ]
        headers.append(("Traceparent", traceparent))
        return HttpReply(reply.status, headers, b"" if head else reply.body, None if head else reply.stream)
    headers = _http_headers_from_grpc_metadata(reply.headers)
    headers.append(("Traceparent", traceparent))
    if reply.status == 0:
        # daprd's InvokeMethodResponse.ContentType: typed data is protobuf, whatever the app said.
        content_type = "application/x-protobuf" if reply.type_url else reply.content_type
        if content_type:
            headers.append(("Content-Type", content_type))
        return HttpReply(200, headers, reply.body)
    headers.append(("Content-Type", "text/plain; charset=utf-8"))
    return HttpReply(grpc_to_http_code(reply.status), headers, _status_json(reply))


def _grpc_metadata_from_http_headers(headers: Metadata, status: int, traceparent: str) -> Metadata:
    # daprd's InternalMetadataToGrpcMetadata(headers, httpHeaderConversion=true) + dapr-http-status.
    metadata: Metadata = [("traceparent", traceparent)]
    for key, value in headers:
        lowered = key.lower()
        if lowered in {"content-length", "traceparent", "tracestate"} or lowered in HOP_BY_HOP:
            continue
        if lowered in PERMANENT_HTTP_HEADERS:
            lowered = "dapr-" + lowered
        if _valid_metadata(lowered, value):
            metadata.append((lowered, value))
    metadata.append(("dapr-http-status", str(status)))
    return metadata


class ServiceInvocation:
    """Service invocation for one sidecar: its registry entry and internal port, and the
    handlers the HTTP and gRPC API servers delegate to. The app channel belongs to the sidecar
    (other building blocks use it too); this only calls it."""

    def __init__(
        self,
        *,
        app_id: str,
        namespace: str,
        host: str,
        channel: AppChannel | None,
        registry: Registry | None,
        internal_port: int = 0,
        access_control: AccessControlList | None = None,
        mtls: bool = False,
    ) -> None:
        self.app_id = app_id
        self.namespace = namespace
        self.host = host
        self.channel = channel
        self.app = channel.connection if channel is not None else None
        self.registry = registry
        self.access_control = access_control
        self.mtls = mtls
        self._requested_internal_port = internal_port
        self.internal_port = 0
        self._internal: grpc.aio.Server | None = None
        self._registration: Registration | None = None
        self._peers: dict[str, grpc.aio.Channel] = {}
        # Replies still arriving from the app, by ticket, until their caller reads them.
        self._unclaimed: dict[str, AsyncIterator[bytes]] = {}
        self._host_address = os.environ.get("DAPR_HOST_IP") or "127.0.0.1"
        self._host_name = socket.gethostname()

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def internal_address(self) -> str:
        host = "127.0.0.1" if self.host in {"0.0.0.0", "::", ""} else self.host
        return f"{host}:{self.internal_port}"

    async def start(self) -> None:
        self._internal = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", -1),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 0),
            ]
        )
        self._internal.add_generic_rpc_handlers((_InternalHandler(self),))
        port = self._internal.add_insecure_port(f"{self.host}:{self._requested_internal_port}")
        if port == 0:
            await self.stop()
            raise OSError(
                f"cannot listen on {self.host}:{self._requested_internal_port} for internal gRPC (port in use?)"
            )
        self.internal_port = port
        await self._internal.start()
        if self.registry is not None:
            try:
                self._registration = self.registry.register(
                    self.app_id, self.namespace, self.internal_address
                )
            except OSError as exc:
                _log.warning("could not register app %r in %s: %s", self.app_id, self.registry.root, exc)

    async def stop(self) -> None:
        if self._registration is not None and self.registry is not None:
            self.registry.unregister(self._registration)
            self._registration = None
        if self._internal is not None:
            await self._internal.stop(0.5)
            self._internal = None
        for channel in self._peers.values():
            await channel.close()
        self._peers.clear()
        for ticket in list(self._unclaimed):
            self._drop_unclaimed(ticket)

    # -- the core -----------------------------------------------------------------------------

    def _split_target(self, target: str) -> tuple[str, str]:
        parts = target.split(".")
        if len(parts) == 1:
            return target, self.namespace
        if len(parts) == 2:
            return parts[0], parts[1]
        raise InvokeError(f"invalid app id {target}")

    def _is_self(self, app_id: str, namespace: str) -> bool:
        return app_id == self.app_id and (namespace or "default") == (self.namespace or "default")

    async def invoke(self, target: str, invocation: Invocation, *, stream: bool = False) -> AppReply:
        """Call ``invocation.method`` of app ``target``; raises :class:`InvokeError`. With
        ``stream=True`` the reply's body may still be arriving (:attr:`AppReply.stream`)."""
        invocation.method = normalize_method(invocation.method)
        if target.startswith(("http://", "https://")):
            raise InvokeError(
                f"the dev sidecar does not call external HTTP endpoints ({target}); use --runtime daprd"
            )
        app_id, namespace = self._split_target(target)
        if self._is_self(app_id, namespace):
            return await self.invoke_local(invocation, stream=stream)
        if self.registry is None:
            raise InvokeError(f"couldn't find service: {app_id}")
        self._add_forwarding_metadata(invocation, app_id)
        attempts, last = 0, ""
        while attempts < 3:
            address = self.registry.resolve(app_id, namespace)
            if address is None:
                if last:
                    break
                raise InvokeError(f"couldn't find service: {app_id}")
            attempts += 1
            peer = self._peer(address)
            try:
                payload = await peer.unary_unary(CALL_LOCAL)(encode_invocation(invocation, streams=True))
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise InvokeError(
                        f"rpc error: code = {_go_code(exc.code())} desc = {exc.details()}"
                    ) from exc
                # The sidecar behind this entry does not answer although its process runs.
                last = exc.details() or "connection refused"
                self.registry.forget(app_id, namespace, address)
                await self._drop_peer(address)
                continue
            decoded = decode_reply(payload, functools.partial(_rest_of_reply, peer))
            if isinstance(decoded, InvokeError):
                raise decoded
            return decoded if stream else await complete(decoded)
        raise InvokeError(
            f"failed to invoke target {app_id} after {attempts} retries. Error: rpc error: code = "
            f"Unavailable desc = connection error: desc = {go_quote('transport: ' + last)}"
        )

    async def invoke_local(self, invocation: Invocation, *, stream: bool = False) -> AppReply:
        if self.channel is None:
            raise InvokeError("cannot invoke local endpoint: app channel not initialized")
        try:
            return await self.channel.invoke(invocation, stream=stream)
        except AppChannelError as exc:
            raise InvokeError(str(exc)) from exc

    def _caller(self, metadata: Metadata, namespace_key: str = "dapr-caller-namespace") -> Caller | None:
        """The calling app as daprd knows it from its mTLS certificate; None without mTLS (daprd
        then has no caller identity). Between dev sidecars: what the calling sidecar states."""
        if not self.mtls:
            return None
        app_id = next((v for k, v in metadata if k.lower() == "dapr-caller-app-id"), "")
        namespace = next((v for k, v in metadata if k.lower() == namespace_key), "")
        if not isinstance(app_id, str) or not app_id:
            return None
        return Caller(app_id, namespace if isinstance(namespace, str) and namespace else "default")

    def _denial(self, caller: Caller | None, operation: str, verb: str | None) -> str | None:
        if self.access_control is None:
            return None
        return self.access_control.denial(caller, operation, verb)

    async def _serve_local(self, invocation: Invocation, stream: bool = False) -> AppReply | tuple[str, str]:
        # The callee side of a sidecar-to-sidecar call: daprd's CallLocal (app channel, then ACL).
        if self.channel is None:
            return "app channel is not initialized", INTERNAL
        try:
            invocation.method = normalize_method(invocation.method)
        except InvokeError as exc:
            return str(exc).removeprefix("rpc error: code = InvalidArgument desc = "), "InvalidArgument"
        denied = self._denial(self._caller(invocation.metadata), invocation.method, invocation.verb)
        if denied is not None:
            return denied, PERMISSION_DENIED
        try:
            return await self.channel.invoke(invocation, stream=stream)
        except AppChannelError as exc:
            return f"error invoking app channel: {exc}", INTERNAL

    def _hold(self, stream: AsyncIterator[bytes]) -> str:
        """Keep ``stream`` for the caller's ``ReadReply``; closed if it is not read in time."""
        ticket = uuid.uuid4().hex
        self._unclaimed[ticket] = stream
        asyncio.get_running_loop().call_later(_UNCLAIMED_REPLY_SECONDS, self._drop_unclaimed, ticket)
        return ticket

    def _drop_unclaimed(self, ticket: str) -> None:
        stream = self._unclaimed.pop(ticket, None)
        if stream is not None:
            task = asyncio.ensure_future(stream.aclose())  # type: ignore[attr-defined]
            task.add_done_callback(lambda done: done.cancelled() or done.exception())

    def _add_forwarding_metadata(self, invocation: Invocation, callee: str) -> None:
        metadata = invocation.metadata

        def append(name: str, value: str) -> None:
            for index, (key, existing) in enumerate(metadata):
                if key.lower() == name.lower() and isinstance(existing, str):
                    metadata[index] = (key, f"{existing}, {value}")
                    return
            metadata.append((name, value))

        address = self._host_address
        forwarded = f"for={address};by={address};host={self._host_name}"
        append("x-forwarded-for", address)
        append("x-forwarded-host", self._host_name)
        append("forwarded", forwarded)
        for name in ("dapr-caller-namespace", "dapr-caller-app-id", "dapr-callee-app-id"):
            metadata[:] = [(k, v) for k, v in metadata if k.lower() != name]
        metadata.append(("dapr-caller-namespace", self.namespace or "default"))
        metadata.append(("dapr-caller-app-id", self.app_id))
        metadata.append(("dapr-callee-app-id", callee))

    def _peer(self, address: str) -> grpc.aio.Channel:
        channel = self._peers.get(address)
        if channel is None:
            channel = grpc.aio.insecure_channel(
                address,
                options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
            )
            self._peers[address] = channel
        return channel

    async def _drop_peer(self, address: str) -> None:
        channel = self._peers.pop(address, None)
        if channel is not None:
            await channel.close()

    # -- HTTP: /v1.0/invoke/..., dapr-app-id --------------------------------------------------

    async def handle_http(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> HttpReply:
        """An HTTP request no other route took: an invocation, or daprd's 404."""
        raw_path, _, query = target.partition("?")
        path = urllib.parse.unquote(raw_path)
        app_id, app_method, forwarded = find_target(path, headers)
        if not app_id:
            return _json_error(404, "ERR_DIRECT_INVOKE", _NO_APP_ID)
        metadata: Metadata = [
            (k, v) for k, v in forwarded if k.lower() not in {"dapr-api-token", "content-length", "host"}
        ]
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
        traceparent = next((v for k, v in headers if k.lower() == "traceparent"), EMPTY_TRACEPARENT)
        verb = method.upper()
        invocation = Invocation(
            method=app_method,
            verb=verb if verb in _VERBS else "GET",
            query=query,
            metadata=metadata,
            body=body,
            content_type=content_type,
            traceparent=traceparent,
        )
        try:
            reply = await self.invoke(app_id, invocation, stream=True)
        except InvokeError as exc:
            # daprd keeps ERR_DIRECT_INVOKE but answers 403 for the callee's access control denial.
            status = 403 if exc.permission_denied else 500
            return _json_error(status, "ERR_DIRECT_INVOKE", error_message(app_id, str(exc)))
        if verb == "HEAD":
            await discard(reply)
        return http_reply(reply, traceparent, head=verb == "HEAD")

    # -- gRPC: InvokeService ------------------------------------------------------------------

    async def invoke_service(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """``Dapr.InvokeService`` (the SDK's ``invoke_method`` over gRPC)."""
        from dapr.proto.common.v1 import common_pb2
        from google.protobuf import any_pb2

        from ._status import abort

        message = request.message
        incoming = [(k, v) for k, v in (context.invocation_metadata() or ())]
        metadata = [(k, v) for k, v in incoming if k.lower() not in {"dapr-api-token", "dapr-app-id"}]
        traceparent = next((v for k, v in incoming if k == "traceparent"), EMPTY_TRACEPARENT)
        extension = message.http_extension if message.HasField("http_extension") else None
        verb = None
        if extension is not None and extension.verb != common_pb2.HTTPExtension.NONE:
            verb = common_pb2.HTTPExtension.Verb.Name(extension.verb)
        invocation = Invocation(
            method=message.method,
            verb=verb,
            query=extension.querystring if extension is not None else "",
            metadata=metadata,
            body=message.data.value,
            content_type=message.content_type,
            grpc_origin=True,
            traceparent=traceparent,
            type_url=message.data.type_url,
        )
        try:
            reply = await self.invoke(request.id, invocation)
        except InvokeError as exc:
            await abort(context, ApiError(grpc.StatusCode.INTERNAL, error_message(request.id, str(exc))))
        response = common_pb2.InvokeResponse(
            data=any_pb2.Any(type_url=reply.type_url, value=reply.body), content_type=reply.content_type
        )
        if reply.protocol == "http":
            if not 200 <= reply.status < 300:
                text = status_text(reply.status)
                detail = reply.body[:63].decode("utf-8", errors="replace")
                await abort(
                    context,
                    ApiError(
                        http_to_grpc_code(reply.status),
                        text,
                        reason=text,
                        metadata={"http.code": str(reply.status), "http.error_message": detail},
                    ),
                )
            await context.send_initial_metadata(
                _grpc_metadata_from_http_headers(reply.headers, reply.status, traceparent)
            )
            return response
        trailers = [("traceparent", traceparent)] + [
            (k, v) for k, v in reply.trailers if _valid_metadata(k, v)
        ]
        if reply.status != 0:
            if reply.details:
                trailers.append(("grpc-status-details-bin", reply.details))
            await context.abort(grpc_code(reply.status), reply.message, tuple(trailers))
        initial = [("traceparent", traceparent)] + [(k, v) for k, v in reply.headers if _valid_metadata(k, v)]
        await context.send_initial_metadata(tuple(initial))
        context.set_trailing_metadata(tuple(trailers))
        return response

    # -- gRPC proxying ------------------------------------------------------------------------

    def proxy_handler(self) -> grpc.GenericRpcHandler:
        """The API server's last handler: any method it does not know is proxied to the app
        named by the ``dapr-app-id`` metadata, as daprd's gRPC proxy does."""
        return _ProxyHandler(self._proxy_from_api)

    async def _proxy_from_api(
        self, method: str, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        incoming = list(context.invocation_metadata() or ())
        target = next((v for k, v in incoming if k in ("dapr-app-id", "dapr-callee-app-id")), "")
        if not target:
            await context.abort(
                grpc.StatusCode.UNKNOWN,
                "cannot proxy request: missing dapr-callee-app-id or dapr-app-id metadata",
            )
        metadata = [
            (k, v)
            for k, v in incoming
            if k
            not in {
                "dapr-app-id",
                "dapr-api-token",
                "dapr-callee-app-id",
                "dapr-caller-app-id",
                _CALLER_NAMESPACE,
            }
            and _forwardable(k, v)
        ]
        app_id, namespace = target, self.namespace
        with contextlib.suppress(InvokeError):
            app_id, namespace = self._split_target(target)
        if self._is_self(app_id, namespace):
            # daprd applies the access control list here too, with no caller identity (the API
            # port has no mTLS): only its defaultAction.
            async for message in self._proxy_to_app(method, requests, context, metadata, None):
                yield message
            return
        address = self.registry.resolve(app_id, namespace) if self.registry is not None else None
        if address is None:
            await context.abort(grpc.StatusCode.UNKNOWN, f"timeout waiting for address for app id {app_id}")
        assert address is not None
        metadata += [
            ("dapr-caller-app-id", self.app_id),
            ("dapr-callee-app-id", app_id),
            (_CALLER_NAMESPACE, self.namespace or "default"),
        ]
        async for message in _relay(self._peer(address), method, requests, context, metadata):
            yield message

    async def _proxy_to_app(
        self,
        method: str,
        requests: AsyncIterator[bytes],
        context: grpc.aio.ServicerContext,
        metadata: Metadata,
        caller: Caller | None,
    ) -> AsyncIterator[bytes]:
        if self.access_control is not None:
            with contextlib.suppress(InvokeError):
                method = normalize_method(method)
            denied = self._denial(caller, method, None)
            if denied is not None:
                await _drain(requests)
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, denied)
        channel = self.channel
        if not isinstance(channel, GrpcAppChannel) or channel.channel is None:
            port = self.app.port if self.app is not None else 0
            detail = (
                "error reading server preface: http2: frame too large"
                if channel is not None
                else f"transport: Error while dialing: dial tcp 127.0.0.1:{port}: connect: connection refused"
            )
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"connection error: desc = {go_quote(detail)}")
        assert isinstance(channel, GrpcAppChannel) and channel.channel is not None
        metadata = [(k, v) for k, v in metadata if k != "dapr-api-token"] + channel.token_metadata()
        async for message in _relay(channel.channel, method, requests, context, metadata):
            yield message


def _go_code(code: grpc.StatusCode) -> str:
    # grpc-go's code names in "rpc error: code = <Name>".
    return "".join(part.capitalize() for part in code.name.split("_")).replace("Ok", "OK")


def _forwardable(key: str, value: Any) -> bool:
    return not (
        key.startswith(":") or key.startswith("grpc-") or key in {"user-agent", "te", "content-type"}
    ) and (_valid_metadata(key, value))


async def _rest_of_reply(peer: grpc.aio.Channel, ticket: str) -> AsyncIterator[bytes]:
    """The rest of a reply's body, read with ``ReadReply``; the call is cancelled if the reader
    stops early (the other sidecar then closes the app's connection)."""
    call = peer.unary_stream(READ_REPLY)(ticket.encode())
    try:
        while True:
            try:
                message = await call.read()
            except grpc.aio.AioRpcError as exc:
                raise InvokeError(f"rpc error: code = {_go_code(exc.code())} desc = {exc.details()}") from exc
            if message is grpc.aio.EOF:
                return
            yield bytes(message)
    finally:
        if not call.done():
            call.cancel()


async def _drain(requests: AsyncIterator[bytes], seconds: float = 1.0) -> None:
    """Read what the caller sends (for at most ``seconds``) before refusing the call: a status sent
    while the caller's sidecar is still writing reaches it, now and then, as INTERNAL "Internal
    error from Core" instead of the status (grpc-python's client)."""

    async def consume() -> None:
        async for _ in requests:
            pass

    with contextlib.suppress(Exception):
        await asyncio.wait_for(consume(), seconds)


async def _relay(
    channel: grpc.aio.Channel,
    method: str,
    requests: AsyncIterator[bytes],
    context: grpc.aio.ServicerContext,
    metadata: Metadata,
) -> AsyncIterator[bytes]:
    """Pass one call through to ``channel`` as raw messages: metadata, messages both ways, status."""
    call = channel.stream_stream(method)(metadata=tuple(metadata))

    async def pump() -> None:
        try:
            async for message in requests:
                await call.write(message)
            await call.done_writing()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            return

    pumping = asyncio.create_task(pump())
    try:
        try:
            initial = await call.initial_metadata()
            if initial:
                await context.send_initial_metadata(tuple((k, v) for k, v in initial if _forwardable(k, v)))
            while True:
                message = await call.read()
                if message is grpc.aio.EOF:
                    break
                yield message
            trailing = await call.trailing_metadata()
        except grpc.aio.AioRpcError as exc:
            trailers = tuple((k, v) for k, v in (exc.trailing_metadata() or ()) if _forwardable(k, v))
            details = [(k, v) for k, v in (exc.trailing_metadata() or ()) if k == "grpc-status-details-bin"]
            await context.abort(exc.code(), exc.details() or "", trailers + tuple(details))
        context.set_trailing_metadata(tuple((k, v) for k, v in (trailing or ()) if _forwardable(k, v)))
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pumping
        if not call.done():
            call.cancel()


_Relay = Callable[[str, AsyncIterator[bytes], grpc.aio.ServicerContext], AsyncIterator[bytes]]


class _ProxyHandler(grpc.GenericRpcHandler):
    """Takes every method (it is registered last) as a raw bidirectional stream."""

    def __init__(self, relay: _Relay) -> None:
        self._relay = relay

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        relay = self._relay

        async def behaviour(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[bytes]:
            async for message in relay(method, requests, context):
                yield message

        return grpc.stream_stream_rpc_method_handler(behaviour)


class _InternalHandler(grpc.GenericRpcHandler):
    """The internal port: ``CallLocal`` and ``ReadReply`` from other sidecars, and proxied gRPC
    calls for the app."""

    def __init__(self, invocation: ServiceInvocation) -> None:
        self._invocation = invocation
        self._proxy = _ProxyHandler(self._proxy_to_app)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        if handler_call_details.method == CALL_LOCAL:
            return grpc.unary_unary_rpc_method_handler(self._call_local)
        if handler_call_details.method == READ_REPLY:
            return grpc.unary_stream_rpc_method_handler(self._read_reply)
        return self._proxy.service(handler_call_details)

    async def _call_local(self, payload: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            invocation, streams = decode_invocation(payload)
        except (ValueError, KeyError, TypeError) as exc:
            return encode_reply(None, f"malformed internal request: {exc}")
        result = await self._invocation._serve_local(invocation, stream=streams)
        if isinstance(result, tuple):
            return encode_reply(None, *result)
        if result.stream is None:
            return encode_reply(result)
        return encode_reply(result, ticket=self._invocation._hold(result.stream))

    async def _read_reply(self, ticket: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        stream = self._invocation._unclaimed.pop(ticket.decode(errors="replace"), None)
        if stream is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no reply waits for this ticket")
        assert stream is not None
        try:
            # Each chunk is sent once the caller's sidecar has room for it (gRPC flow control),
            # and the app is read no faster than that.
            async for chunk in stream:
                yield chunk
        except AppChannelError as exc:
            await context.abort(grpc.StatusCode.INTERNAL, f"error invoking app channel: {exc}")
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]

    def _proxy_to_app(
        self, method: str, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        incoming = list(context.invocation_metadata() or ())
        caller = self._invocation._caller(incoming, _CALLER_NAMESPACE)
        metadata = [(k, v) for k, v in incoming if _forwardable(k, v) and k != _CALLER_NAMESPACE]
        return self._invocation._proxy_to_app(method, requests, context, metadata, caller)


#: Signature of the HTTP server's fallback hook.
HttpFallback = Callable[[str, str, list[tuple[str, str]], bytes], Awaitable[HttpReply]]
