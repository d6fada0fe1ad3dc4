"""Service-invocation replies stream, on the dev sidecar and on real daprd (``DAPR_TEST_SIDECAR=
daprd``): an HTTP app's reply reaches the caller as the app writes it, through the app's own
sidecar and through another app's sidecar, and a gRPC-proxied server stream message by message.

The apps wait between two parts of a reply until the test has read the first one, so a sidecar
that buffers replies fails these tests without any timing assertion: the app gives up waiting
after a while and says so in its second part.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPResponse, IncompleteRead
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from apps import endpoint_of, http, unique_id, wait_until

from dapr_agents.ext.devsidecar.testing import SidecarEndpoint, free_port, sidecar_mode, write_components

pytestmark = pytest.mark.starts_sidecars

#: How long an app waits for the test before giving up (only a buffering sidecar makes it wait).
PATIENCE = 20.0
BIG = 8 * 1024 * 1024


def _pattern(size: int) -> bytes:
    block = bytes(range(256)) * 64
    return (block * (size // len(block) + 1))[:size]


class StreamingApp:
    """An HTTP app whose replies are written in parts: ``/sse/<token>`` writes one event, waits
    until :meth:`release` is called with ``token`` (or ``PATIENCE`` passed), then a second one;
    ``/big`` writes ``BIG`` bytes in 64 KiB chunks (``?length=1``: with a Content-Length);
    ``/drop`` writes one event and closes the connection mid-reply; ``/empty`` answers an empty
    body, anything else a small JSON one, with a Content-Length."""

    def __init__(self) -> None:
        self.port = free_port()
        self._gates: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def gate(self, token: str) -> threading.Event:
        with self._lock:
            return self._gates.setdefault(token, threading.Event())

    def release(self, token: str) -> None:
        self.gate(token).set()

    def start(self) -> StreamingApp:
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

            def _head(self, content_type: str, length: int | None = None) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Cache-Control", "no-cache")
                self.send_header("X-App", "streaming")
                if length is None:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Content-Length", str(length))
                self.end_headers()

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                if path.startswith("/sse/"):
                    self._head("text/event-stream")
                    self._chunk(b"data: one\n\n")
                    released = app.gate(path.removeprefix("/sse/")).wait(PATIENCE)
                    self._chunk(b"data: two (released)\n\n" if released else b"data: two (gave up)\n\n")
                    self._chunk(b"")
                elif path == "/big":
                    data = _pattern(BIG)
                    if "length=1" in query:
                        self._head("application/octet-stream", len(data))
                        for start in range(0, len(data), 65536):
                            self.wfile.write(data[start : start + 65536])
                    else:
                        self._head("application/octet-stream")
                        for start in range(0, len(data), 65536):
                            self._chunk(data[start : start + 65536])
                        self._chunk(b"")
                elif path == "/drop":
                    self._head("text/event-stream")
                    self._chunk(b"data: one\n\n")
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif path == "/empty":
                    self._head("application/json", 0)
                else:
                    body = b'{"ok":true}'
                    self._head("application/json", len(body))
                    self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        for gate in list(self._gates.values()):
            gate.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@dataclass
class Sidecars:
    app_id: str
    app: StreamingApp
    own: SidecarEndpoint  # the streaming app's sidecar
    other: SidecarEndpoint  # another app's sidecar (no app of its own)

    def callers(self) -> list[tuple[str, SidecarEndpoint]]:
        return [("own sidecar", self.own), ("other sidecar", self.other)]


@pytest.fixture
def sidecars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dapr_sidecar_factory: Any
) -> Iterator[Sidecars]:
    monkeypatch.setenv("DAPR_DEVSIDECAR_HOME", str(tmp_path / "home"))
    components = write_components(tmp_path / "components", pubsub=None, actor_state_store=False)
    app = StreamingApp().start()
    try:
        app_id = unique_id("stream")
        own = dapr_sidecar_factory.start(components, app_id=app_id, app_port=app.port)
        other = dapr_sidecar_factory.start(components, app_id=unique_id("caller"))
        endpoint = endpoint_of(own)
        wait_until(lambda: http(f"{endpoint.http_endpoint}/v1.0/healthz").status == 204)
        yield Sidecars(app_id, app, endpoint, endpoint_of(other))
    finally:
        app.stop()


def _get(endpoint: SidecarEndpoint, path: str, **headers: str) -> HTTPResponse:
    connection = HTTPConnection("127.0.0.1", endpoint.http_port, timeout=3 * PATIENCE)
    connection.request("GET", path, headers=headers)
    return connection.getresponse()


def _event(response: HTTPResponse) -> bytes:
    lines = []
    while True:
        line = response.readline()
        if line in (b"\n", b""):
            return b"".join(lines)
        lines.append(line)


@pytest.mark.parametrize("accept", ["text/event-stream", "*/*"])
def test_an_sse_reply_reaches_the_caller_event_by_event(sidecars: Sidecars, accept: str) -> None:
    # daprd has two paths: "Accept: text/event-stream" (pkg/sse) and any other reply (a
    # flushing copy); both stream.
    for label, caller in sidecars.callers():
        token = unique_id("gate")
        response = _get(caller, f"/v1.0/invoke/{sidecars.app_id}/method/sse/{token}", Accept=accept)
        assert response.status == 200, label
        assert response.getheader("Content-Type") == "text/event-stream", label
        assert response.getheader("Content-Length") is None, label
        assert response.chunked, label
        assert _event(response) == b"data: one\n", label
        sidecars.app.release(token)
        assert _event(response) == b"data: two (released)\n", label
        assert response.read() == b"", label
        response.close()


def test_a_large_reply_streams_intact(sidecars: Sidecars) -> None:
    expected = hashlib.sha256(_pattern(BIG)).hexdigest()
    for label, caller in sidecars.callers():
        for query in ("", "?length=1"):
            response = _get(caller, f"/v1.0/invoke/{sidecars.app_id}/method/big{query}")
            assert (response.status, response.getheader("X-App")) == (200, "streaming"), (label, query)
            digest, size = hashlib.sha256(), 0
            while chunk := response.read1(1 << 20):
                digest.update(chunk)
                size += len(chunk)
            assert (size, digest.hexdigest()) == (BIG, expected), (label, query)
            response.close()


def test_small_and_empty_replies_carry_daprds_headers(sidecars: Sidecars) -> None:
    # daprd copies a reply through a writer that flushes every write: Go's server never learns
    # the length, so even a small body is chunked; an empty one gets "Content-Length: 0".
    for label, caller in sidecars.callers():
        response = _get(caller, f"/v1.0/invoke/{sidecars.app_id}/method/small")
        assert (response.status, response.read()) == (200, b'{"ok":true}'), label
        assert response.chunked and response.getheader("Content-Length") is None, label
        assert response.getheader("Content-Type") == "application/json", label
        assert (response.getheader("X-App"), response.getheader("Cache-Control")) == ("streaming", "no-cache")
        assert response.getheader("Traceparent") is not None, label
        response = _get(caller, f"/v1.0/invoke/{sidecars.app_id}/method/empty")
        assert (response.status, response.read()) == (200, b""), label
        assert not response.chunked and response.getheader("Content-Length") == "0", label
    # The sidecar's own answers are written whole.
    nobody = unique_id("nobody")
    response = _get(sidecars.other, f"/v1.0/invoke/{nobody}/method/x")
    body = response.read()
    assert (response.status, response.getheader("Content-Length")) == (500, str(len(body)))
    assert not response.chunked


def test_an_app_dropping_the_connection_mid_reply(sidecars: Sidecars) -> None:
    for label, caller in sidecars.callers():
        for accept in ("text/event-stream", "*/*"):
            response = _get(caller, f"/v1.0/invoke/{sidecars.app_id}/method/drop", Accept=accept)
            assert (response.status, response.getheader("Content-Type")) == (200, "text/event-stream")
            try:
                rest, complete = response.read(), True
            except IncompleteRead as exc:
                rest, complete = exc.partial, False
            except ConnectionError:
                rest, complete = b"", False
            response.close()
            if sidecar_mode() == "daprd":
                # daprd ends the body where the app stopped, as if it were complete (Go's
                # io.ErrUnexpectedEOF is taken as the end, pkg/channel/http), and on the "Accept:
                # text/event-stream" path of its own app appends its error to the body.
                assert complete, (label, accept)
                assert rest.startswith(b"data: one\n\n"), (label, accept, rest)
                if rest != b"data: one\n\n":
                    assert b'"errorCode":"ERR_DIRECT_INVOKE"' in rest, (label, accept, rest)
            else:
                # The dev sidecar cuts the connection: the caller sees the reply is incomplete.
                assert not complete, (label, accept, rest)
                assert b"data: one\n\n".startswith(rest), (label, accept, rest)


# -- gRPC proxying ----------------------------------------------------------------------------


class StreamingGrpcApp:
    """A gRPC app with ``test.Stream/Events`` (server streaming): ``one``, then, once the test
    called :meth:`release` with the request's token, ``two (released)``."""

    def __init__(self) -> None:
        self.port = free_port()
        self._gates: dict[bytes, threading.Event] = {}
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None

    def gate(self, token: bytes) -> threading.Event:
        with self._lock:
            return self._gates.setdefault(token, threading.Event())

    def release(self, token: bytes) -> None:
        self.gate(token).set()

    def _events(self, token: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield b"one"
        yield b"two (released)" if self.gate(token).wait(PATIENCE) else b"two (gave up)"

    def start(self) -> StreamingGrpcApp:
        server = grpc.server(futures.ThreadPoolExecutor(4))
        handler = grpc.unary_stream_rpc_method_handler(self._events)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("test.Stream", {"Events": handler}),)
        )
        server.add_insecure_port(f"127.0.0.1:{self.port}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        for gate in list(self._gates.values()):
            gate.set()
        if self._server is not None:
            self._server.stop(0).wait()
            self._server = None


def test_a_proxied_grpc_server_stream_arrives_message_by_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dapr_sidecar_factory: Any
) -> None:
    monkeypatch.setenv("DAPR_DEVSIDECAR_HOME", str(tmp_path / "home"))
    components = write_components(tmp_path / "components", pubsub=None, actor_state_store=False)
    app = StreamingGrpcApp().start()
    try:
        app_id = unique_id("grpc-stream")
        own = endpoint_of(
            dapr_sidecar_factory.start(components, app_id=app_id, app_port=app.port, app_protocol="grpc")
        )
        other = endpoint_of(dapr_sidecar_factory.start(components, app_id=unique_id("caller")))
        wait_until(lambda: http(f"{own.http_endpoint}/v1.0/healthz").status == 204)
        for label, caller in (("own sidecar", own), ("other sidecar", other)):
            token = unique_id("gate").encode()
            with grpc.insecure_channel(caller.grpc_address) as channel:
                events = channel.unary_stream("/test.Stream/Events")(
                    token, metadata=(("dapr-app-id", app_id),), timeout=3 * PATIENCE
                )
                assert next(events) == b"one", label
                app.release(token)
                assert list(events) == [b"two (released)"], label
    finally:
        app.stop()
