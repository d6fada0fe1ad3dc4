"""The sidecar's HTTP port: the health endpoints the SDK polls, and the metadata document.

Every ``DaprClient`` construction polls ``GET /v1.0/healthz/outbound`` (dapr-agents builds a
client per state call), so this is a minimal HTTP/1.1 server on asyncio streams with keep-alive
and no framework: a health answer costs one read and one write. Health routes are exempt from
the API token, as in daprd; every other route requires it.

Service-invocation replies are written as daprd writes them: a body with chunked transfer
encoding (daprd copies the app's body through a writer that flushes every write, so Go's server
never knows the length), sent on as it arrives from the app, each chunk once the caller's socket
has taken the previous one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING

from ._auth import tokens_match
from ._blocks import HttpRequest, Route

if TYPE_CHECKING:
    from ._invoke import HttpFallback, HttpReply

_log = logging.getLogger(__name__)

_HEALTH_ROUTES = {"/v1.0/healthz", "/v1.0/healthz/outbound"}
_REASONS = {
    200: "OK",
    204: "No Content",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    500: "Internal Server Error",
    405: "Method Not Allowed",
    400: "Bad Request",
}
_MAX_HEADER_BYTES = 64 * 1024

MetadataProvider = Callable[[], Awaitable[dict[str, object]]]


class HttpApiServer:
    """Serves the HTTP side of the sidecar on one port."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        api_token: str | None,
        metadata: MetadataProvider,
        routes: Sequence[Route] = (),
        ready: Callable[[], bool] | None = None,
        app_id: str = "",
        fallback: HttpFallback | None = None,
    ) -> None:
        self._ready = ready  # /v1.0/healthz answers 500 until it is true (the app is listening)
        self._app_id = app_id
        self._fallback = fallback  # routes nobody else serves: service invocation (_invoke.py)
        self._routes = list(routes)  # the building blocks' routes (secrets, configuration, ...)
        self._host = host
        self._port = port
        self._token = api_token
        self._metadata = metadata
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        if not isinstance(self._server, asyncio.Server):
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._connections):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    async def _respond(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes = b"",
        content_type: str = "application/json",
    ) -> None:
        head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        if status != 204:
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode("latin-1") + b"\r\n" + (body if status != 204 else b""))
        await writer.drain()

    async def _write_reply(self, writer: asyncio.StreamWriter, reply: HttpReply, version: str) -> bool:
        """Write ``reply``; False if the connection cannot carry another request (an HTTP/1.0
        stream ended by closing it, or a stream that broke off and was cut)."""
        stream = reply.stream
        try:
            try:
                reason = HTTPStatus(reply.status).phrase
            except ValueError:
                reason = "Status"
            lines = [f"HTTP/1.1 {reply.status} {reason}"]
            lines += [f"{name}: {value}" for name, value in reply.headers]
            with_body = reply.status >= 200 and reply.status not in (204, 304)
            chunked = version != "HTTP/1.0"  # an HTTP/1.0 client reads a stream until the close
            if not with_body:
                pass
            elif stream is None and (not reply.body or not chunked or reply.own):
                lines.append(f"Content-Length: {len(reply.body)}")
            elif chunked:
                lines.append("Transfer-Encoding: chunked")
            head = "\r\n".join(lines).encode("latin-1", errors="replace") + b"\r\n\r\n"
            if not with_body:
                writer.write(head)
                await writer.drain()
                return True
            if stream is None:
                # The fast path: the whole reply in one write.
                if chunked and reply.body and not reply.own:
                    writer.write(b"%s%x\r\n%s\r\n0\r\n\r\n" % (head, len(reply.body), reply.body))
                else:
                    writer.write(head + reply.body)
                await writer.drain()
                return True
            writer.write(head + (_chunk(reply.body) if chunked else reply.body))
            await writer.drain()
            try:
                async for data in stream:
                    if data:
                        writer.write(_chunk(data) if chunked else data)
                        await writer.drain()
            except (ConnectionError, asyncio.CancelledError):
                raise
            except Exception as exc:
                # The app's reply broke off. daprd ends the body there as if it were complete
                # (and, for an "Accept: text/event-stream" call of its own app, appends its
                # ERR_DIRECT_INVOKE error to the body); cutting the connection lets the caller
                # see that the reply is incomplete.
                _log.warning("HTTP service invocation failed to complete with error: %s", exc)
                writer.transport.abort()
                return False
            if not chunked:
                return False
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        finally:
            if stream is not None:
                with contextlib.suppress(Exception):
                    await stream.aclose()  # type: ignore[attr-defined]

    @staticmethod
    def _error(code: str, message: str) -> bytes:
        return json.dumps({"errorCode": code, "message": message}).encode("utf-8")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                except asyncio.LimitOverrunError:
                    await self._respond(
                        writer, 400, self._error("ERR_MALFORMED_REQUEST", "headers too large")
                    )
                    return
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                if len(parts) != 3:
                    await self._respond(writer, 400, self._error("ERR_MALFORMED_REQUEST", "bad request line"))
                    return
                method, target, version = parts
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        key, value = name.strip().lower(), value.strip()
                        # Repeated headers are one comma-separated header (RFC 9110, 5.3).
                        headers[key] = f"{headers[key]}, {value}" if key in headers else value
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    body = await _read_chunked(reader)
                else:
                    length = int(headers.get("content-length", "0") or 0)
                    body = await reader.readexactly(length) if length else b""
                path, _, query = target.partition("?")
                keep = await self._route(writer, method, path, headers, query, body, version)
                if not keep or headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _route(
        self,
        writer: asyncio.StreamWriter,
        method: str,
        path: str,
        headers: dict[str, str],
        query: str = "",
        body: bytes = b"",
        version: str = "HTTP/1.1",
    ) -> bool:
        if path in _HEALTH_ROUTES:
            if method != "GET":
                await self._respond(
                    writer, 405, self._error("ERR_METHOD_NOT_ALLOWED", f"{method} not allowed on {path}")
                )
            elif path == "/v1.0/healthz" and self._ready is not None and not self._ready():
                # daprd is not ready until its app listens (outbound health does not wait).
                await self._respond(
                    writer, 500, self._error("ERR_HEALTH_NOT_READY", "dapr is not ready: [runtime]")
                )
            elif (
                path == "/v1.0/healthz"
                and "appid=" in query
                and self._app_id not in urllib.parse.parse_qs(query).get("appid", [self._app_id])
            ):
                await self._respond(
                    writer, 500, self._error("ERR_HEALTH_APPID_NOT_MATCH", "dapr app-id does not match")
                )
            else:
                await self._respond(writer, 204)
            return True
        if self._token is not None and not tokens_match(headers.get("dapr-api-token"), self._token):
            await self._respond(writer, 401, self._error("ERR_UNAUTHORIZED", "invalid api token"))
            return True
        if path == "/v1.0/metadata" and method == "GET":
            body = json.dumps(await self._metadata()).encode("utf-8")
            await self._respond(writer, 200, body)
            return True
        for candidate in self._routes:
            params = candidate.match(method, path)
            if params is not None:
                request = HttpRequest(
                    method, path, urllib.parse.parse_qs(query, keep_blank_values=True), headers, body, params
                )
                response = await candidate.handler(request)
                await self._respond(writer, response.status, response.body, response.content_type)
                return True
        if self._fallback is not None:
            target = f"{path}?{query}" if query else path
            reply = await self._fallback(method, target, list(headers.items()), body)
            return await self._write_reply(writer, reply, version)
        await self._respond(
            writer,
            404,
            self._error("ERR_NOT_FOUND", f"{method} {path} is not served by the dev sidecar"),
        )
        return True


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A ``Transfer-Encoding: chunked`` request body (trailers are read and dropped)."""
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)
