"""Small apps for the app-channel and invocation tests: an HTTP app and a gRPC app that record
what the sidecar sends them and answer as told, plus helpers that treat a ``DevSidecar`` and a
real ``DaprdProcess`` alike (the tests run on both)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc
from google.protobuf import any_pb2

from dapr_agents.ext.devsidecar.testing import SidecarEndpoint, free_port


def unique_id(prefix: str = "app") -> str:
    """An app id no other test (or test run on this machine) uses: daprd's mDNS and the dev
    sidecar's registry are machine-wide."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def endpoint_of(sidecar: Any, api_token: str | None = None) -> SidecarEndpoint:
    """The endpoint of a ``DevSidecar`` or a ``DaprdProcess``."""
    return SidecarEndpoint(sidecar.grpc_port, sidecar.http_port, api_token=api_token, app_id=sidecar.app_id)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Received:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def _echo(request: Received) -> Reply:
    document = {"method": request.method, "path": request.path, "body": request.body.decode(errors="replace")}
    return Reply(200, json.dumps(document).encode(), [("Content-Type", "application/json"), ("X-App", "yes")])


class HttpApp:
    """An HTTP app on a loopback port; ``answer`` maps a request to a :class:`Reply` (default:
    a JSON echo of method, path and body). Every response closes its connection, so a stopped
    app really refuses the next call."""

    def __init__(self, answer: Callable[[Received], Reply] = _echo, port: int = 0) -> None:
        self.answer = answer
        self.port = port or free_port()
        self.received: list[Received] = []
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> HttpApp:
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _any(self) -> None:
                request = Received(self.command, self.path, list(self.headers.items()), self._body())
                app.received.append(request)
                reply = app.answer(request)
                self.send_response(reply.status)
                for name, value in reply.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _any  # noqa: N815

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def requests_to(self, path: str) -> list[Received]:
        return [r for r in list(self.received) if r.path.split("?")[0] == path]

    def wait_for(self, path: str, timeout: float = 30.0, count: int = 1) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.requests_to(path)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"the app got {len(self.requests_to(path))} request(s) to {path}, not {count}")

    def __enter__(self) -> HttpApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class GrpcCall:
    kind: str
    metadata: list[tuple[str, Any]]
    request: Any = None


class GrpcApp(appcallback_pb2_grpc.AppCallbackServicer, appcallback_pb2_grpc.AppCallbackHealthCheckServicer):
    """A gRPC app: ``AppCallback.OnInvoke`` answers ``reply:<data>`` (method ``fail...`` aborts
    with NOT_FOUND), and an extra service ``test.Echo`` (``Say`` unary, ``Chat`` streaming) for
    gRPC proxying. Calls are recorded with their metadata."""

    def __init__(self, port: int = 0) -> None:
        self.port = port or free_port()
        self.calls: list[GrpcCall] = []
        self.healthy = True
        self._server: grpc.Server | None = None

    def _record(self, kind: str, context: grpc.ServicerContext, request: Any = None) -> None:
        self.calls.append(GrpcCall(kind, list(context.invocation_metadata()), request))

    def OnInvoke(self, request: common_pb2.InvokeRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self._record("OnInvoke", context, request)
        if request.method.startswith("fail"):
            context.set_trailing_metadata((("x-app-trailer", "t"),))
            context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        context.send_initial_metadata((("x-app-header", "h"),))
        if request.method == "typed":  # a typed Any back, as the SDK's invoke-custom-data example
            return common_pb2.InvokeResponse(
                data=any_pb2.Any(type_url=request.data.type_url + ".Reply", value=request.data.value),
                content_type="text/plain",
            )
        return common_pb2.InvokeResponse(
            data=any_pb2.Any(value=b"reply:" + request.data.value), content_type="text/plain"
        )

    def HealthCheck(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self._record("HealthCheck", context)
        if not self.healthy:
            context.abort(grpc.StatusCode.UNAVAILABLE, "unhealthy")
        return appcallback_pb2.HealthCheckResponse()

    def _say(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._record("Say", context, request)
        context.send_initial_metadata((("x-echo-header", "e"),))
        if request == b"fail":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "nope")
        return b"echo:" + request

    def _chat(self, requests: Any, context: grpc.ServicerContext) -> Any:
        self._record("Chat", context)
        for message in requests:
            yield b"chat:" + message

    def start(self) -> GrpcApp:
        server = grpc.server(futures.ThreadPoolExecutor(8))
        appcallback_pb2_grpc.add_AppCallbackServicer_to_server(self, server)
        appcallback_pb2_grpc.add_AppCallbackHealthCheckServicer_to_server(self, server)
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "test.Echo",
                    {
                        "Say": grpc.unary_unary_rpc_method_handler(self._say),
                        "Chat": grpc.stream_stream_rpc_method_handler(self._chat),
                    },
                ),
            )
        )
        server.add_insecure_port(f"127.0.0.1:{self.port}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(0).wait()
            self._server = None

    def calls_of(self, kind: str) -> list[GrpcCall]:
        return [c for c in list(self.calls) if c.kind == kind]

    def __enter__(self) -> GrpcApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def metadata_value(metadata: list[tuple[str, Any]], key: str) -> Any:
    return next((v for k, v in metadata if k == key), None)


@dataclass
class HttpAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> HttpAnswer:
    """One HTTP call that reports error statuses instead of raising."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return HttpAnswer(answer.status, list(answer.headers.items()), answer.read())
    except urllib.error.HTTPError as exc:
        return HttpAnswer(exc.code, list(exc.headers.items()), exc.read())


def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def answers(url: str, status: int = 204) -> bool:
    """True when ``url`` answers ``status`` (False while nothing listens yet)."""
    try:
        return http(url).status == status
    except (urllib.error.URLError, OSError):
        return False
