"""Service invocation over the wire, on the dev sidecar and on real daprd (``DAPR_TEST_SIDECAR=
daprd``): app A's sidecar calls app B through B's sidecar, with HTTP (``/v1.0/invoke``, the
``dapr-app-id`` header), gRPC ``InvokeService`` and gRPC proxying, to HTTP and gRPC apps; and
daprd's answers when the app id is unknown, the app is down or unhealthy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from apps import (
    GrpcApp,
    HttpApp,
    Received,
    Reply,
    endpoint_of,
    http,
    metadata_value,
    unique_id,
    wait_until,
)
from dapr.clients import DaprClient
from dapr.clients.grpc.client import DaprGrpcClient
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import dapr_pb2_grpc, invoke_pb2
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from dapr_agents.ext.devsidecar.testing import SidecarEndpoint, write_components

pytestmark = pytest.mark.starts_sidecars

APP_TOKEN = "app-secret"
CALLER_TOKEN = "caller-secret"


def answer(request: Received) -> Reply:
    if request.path.startswith("/status/"):
        code = int(request.path.split("/")[2].split("?")[0])
        return Reply(code, b"status body", [("Content-Type", "text/plain"), ("X-App", "yes")])
    document = {"method": request.method, "path": request.path, "body": request.body.decode(errors="replace")}
    headers = [
        ("Content-Type", "application/json"),
        ("X-App", "yes"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]
    return Reply(200, json.dumps(document).encode(), headers)


@dataclass
class Apps:
    caller: SidecarEndpoint  # app A's sidecar (no app of its own), with an API token
    http_id: str  # app B, an HTTP app
    http_app: HttpApp
    http_sidecar: Any
    grpc_id: str  # app C, a gRPC app
    grpc_app: GrpcApp
    grpc_sidecar: Any
    components: Path

    @property
    def url(self) -> str:
        return self.caller.http_endpoint

    def invoke(self, path: str, method: str = "GET", body: bytes | None = None, **headers: str) -> Any:
        return http(f"{self.url}{path}", method, body, {"dapr-api-token": CALLER_TOKEN, **headers})


@pytest.fixture
def apps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dapr_sidecar_factory) -> Iterator[Apps]:
    monkeypatch.setenv("DAPR_DEVSIDECAR_HOME", str(tmp_path / "home"))
    components = write_components(tmp_path / "components", pubsub=None, actor_state_store=False)
    with HttpApp(answer) as http_app, GrpcApp() as grpc_app:
        http_id, grpc_id = unique_id("http"), unique_id("grpc")
        http_sidecar = dapr_sidecar_factory.start(
            components, app_id=http_id, app_port=http_app.port, app_api_token=APP_TOKEN
        )
        grpc_sidecar = dapr_sidecar_factory.start(
            components, app_id=grpc_id, app_port=grpc_app.port, app_protocol="grpc", app_api_token=APP_TOKEN
        )
        caller = dapr_sidecar_factory.start(components, app_id=unique_id("caller"), api_token=CALLER_TOKEN)
        endpoints = [endpoint_of(http_sidecar), endpoint_of(grpc_sidecar)]
        for endpoint in endpoints:
            wait_until(lambda e=endpoint: http(f"{e.http_endpoint}/v1.0/healthz").status == 204)
        yield Apps(
            endpoint_of(caller, CALLER_TOKEN),
            http_id,
            http_app,
            http_sidecar,
            grpc_id,
            grpc_app,
            grpc_sidecar,
            components,
        )


# -- HTTP callers -----------------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_http_invoke_passes_verb_path_query_headers_and_body(apps: Apps, verb: str) -> None:
    body = b'{"a":1}' if verb in {"POST", "PUT", "PATCH"} else None
    reply = apps.invoke(
        f"/v1.0/invoke/{apps.http_id}/method/orders/42?x=1&y=2&x=3",
        verb,
        body,
        **{"Content-Type": "application/json", "X-Custom": "c1"},
    )
    assert reply.status == 200
    assert reply.json() == {"method": verb, "path": "/orders/42?x=1&y=2&x=3", "body": (body or b"").decode()}
    assert reply.header("X-App") == "yes"
    assert reply.header("Content-Type") == "application/json"
    assert [v for k, v in reply.headers if k.lower() == "set-cookie"] == ["a=1", "b=2"]
    (seen,) = [r for r in apps.http_app.received if r.path.startswith("/orders/42")]
    assert seen.header("X-Custom") == "c1"
    assert seen.header("Content-Type") == "application/json"
    assert seen.header("Dapr-Api-Token") == APP_TOKEN  # the app's token, never the caller's
    assert seen.header("Dapr-Caller-App-Id") == apps.caller.app_id
    assert seen.header("Dapr-Callee-App-Id") == apps.http_id
    assert seen.header("Dapr-Caller-Namespace") == "default"
    assert seen.header("Forwarded") is not None and seen.header("X-Forwarded-For") is not None
    assert seen.header("Traceparent") is not None


def test_http_invoke_passes_the_status_headers_and_body_of_errors(apps: Apps) -> None:
    for code in (418, 500, 404, 302):
        reply = apps.invoke(f"/v1.0/invoke/{apps.http_id}/method/status/{code}", "POST", b"x")
        assert (reply.status, reply.body, reply.header("X-App")) == (code, b"status body", "yes")


def test_the_dapr_app_id_header_invokes_the_request_path(apps: Apps) -> None:
    reply = apps.invoke("/some/path?q=1", **{"dapr-app-id": apps.http_id})
    assert reply.status == 200
    assert reply.json()["path"] == "/some/path?q=1"
    (seen,) = apps.http_app.requests_to("/some/path")
    assert seen.header("dapr-app-id") is None


def test_head_and_a_cleaned_method_path(apps: Apps) -> None:
    head = apps.invoke(f"/v1.0/invoke/{apps.http_id}/method/h", "HEAD")
    assert (head.status, head.body) == (200, b"")
    reply = apps.invoke(f"/v1.0/invoke/{apps.http_id}/method/a%20b/c/../e")
    assert reply.json()["path"] == "/a%20b/e"


def test_http_invoke_of_a_grpc_app(apps: Apps) -> None:
    reply = apps.invoke(
        f"/v1.0/invoke/{apps.grpc_id}/method/m1?x=1",
        "POST",
        b'{"a":1}',
        **{"Content-Type": "application/json"},
    )
    assert (reply.status, reply.body, reply.header("Content-Type")) == (200, b'reply:{"a":1}', "text/plain")
    assert reply.header("X-App-Header") == "h"
    (call,) = apps.grpc_app.calls_of("OnInvoke")
    request = call.request
    assert (request.method, request.data.value, request.content_type) == (
        "m1",
        b'{"a":1}',
        "application/json",
    )
    assert common_pb2.HTTPExtension.Verb.Name(request.http_extension.verb) == "POST"
    assert request.http_extension.querystring == "x=1"
    assert metadata_value(call.metadata, "dapr-api-token") == APP_TOKEN
    assert metadata_value(call.metadata, "dapr-caller-app-id") == apps.caller.app_id
    assert metadata_value(call.metadata, "dapr-callee-app-id") == apps.grpc_id
    assert metadata_value(call.metadata, "dapr-content-type") == "application/json"


def test_a_grpc_app_error_becomes_an_http_status_with_the_status_as_json(apps: Apps) -> None:
    reply = apps.invoke(f"/v1.0/invoke/{apps.grpc_id}/method/fail-now", "POST", b"x")
    assert reply.status == 404
    assert reply.json() == {"code": 5, "message": "no such thing"}


# -- gRPC callers -----------------------------------------------------------------------------


def _invoke_service(
    apps: Apps, app_id: str, method: str, verb: str | None, data: bytes, content_type: str, type_url: str = ""
) -> Any:
    message = common_pb2.InvokeRequest(
        method=method, data=any_pb2.Any(type_url=type_url, value=data), content_type=content_type
    )
    if verb is not None:
        message.http_extension.verb = common_pb2.HTTPExtension.Verb.Value(verb)
        message.http_extension.querystring = "a=1&b=2"
    with grpc.insecure_channel(apps.caller.grpc_address) as channel:
        return dapr_pb2_grpc.DaprStub(channel).InvokeService.with_call(
            invoke_pb2.InvokeServiceRequest(id=app_id, message=message),
            metadata=(("dapr-api-token", CALLER_TOKEN), ("x-grpc-md", "g")),
        )


def test_the_sdk_invokes_an_http_app_over_grpc(apps: Apps) -> None:
    with apps.caller.sdk_configured():
        client = DaprGrpcClient()
        try:
            with pytest.warns(DeprecationWarning):
                response = client.invoke_method(
                    apps.http_id,
                    "orders",
                    data=b'{"x":1}',
                    content_type="application/json",
                    http_verb="POST",
                    http_querystring=(("a", "1"),),
                )
        finally:
            client.close()
    assert json.loads(response.data) == {"method": "POST", "path": "/orders?a=1", "body": '{"x":1}'}
    assert response.content_type == "application/json"
    assert dict(response.headers)["dapr-http-status"] == ["200"]


def test_grpc_invoke_of_an_http_app_maps_error_statuses(apps: Apps) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        _invoke_service(apps, apps.http_id, "status/418", "POST", b"x", "text/plain")
    error = raised.value
    assert (error.code(), error.details()) == (grpc.StatusCode.UNKNOWN, "I'm a teapot")
    status = status_pb2.Status.FromString(dict(error.trailing_metadata())["grpc-status-details-bin"])
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert (info.reason, info.domain) == ("I'm a teapot", "dapr.io")
    assert dict(info.metadata) == {"http.code": "418", "http.error_message": "status body"}
    with pytest.raises(grpc.RpcError) as raised:
        _invoke_service(apps, apps.http_id, "status/404", "GET", b"", "")
    assert (raised.value.code(), raised.value.details()) == (grpc.StatusCode.NOT_FOUND, "Not Found")


def test_grpc_invoke_of_an_http_app_needs_the_http_extension(apps: Apps) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        _invoke_service(apps, apps.http_id, "orders", None, b"", "")
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert raised.value.details() == (
        f"failed to invoke, id: {apps.http_id}, err: rpc error: code = Internal desc = error invoking app "
        "channel: rpc error: code = InvalidArgument desc = missing HTTP extension field"
    )


def test_grpc_invoke_of_a_grpc_app(apps: Apps) -> None:
    response, call = _invoke_service(apps, apps.grpc_id, "m3", None, b"d", "text/plain")
    assert (response.data.value, response.content_type) == (b"reply:d", "text/plain")
    assert metadata_value(list(call.initial_metadata()), "x-app-header") == "h"
    (seen,) = apps.grpc_app.calls_of("OnInvoke")
    assert not seen.request.HasField("http_extension") or seen.request.http_extension.verb == 0
    assert metadata_value(seen.metadata, "x-grpc-md") == "g"
    assert metadata_value(seen.metadata, "dapr-api-token") == APP_TOKEN
    with pytest.raises(grpc.RpcError) as raised:
        _invoke_service(apps, apps.grpc_id, "fail-now", None, b"d", "text/plain")
    assert (raised.value.code(), raised.value.details()) == (grpc.StatusCode.NOT_FOUND, "no such thing")
    assert metadata_value(list(raised.value.trailing_metadata()), "x-app-trailer") == "t"


def test_grpc_invoke_passes_the_type_of_the_data_both_ways(apps: Apps) -> None:
    """The Any's type_url reaches a gRPC app and comes back as the app set it (the SDK's
    invoke-custom-data example unpacks the reply by it)."""
    sent = "type.googleapis.com/example.Custom"
    response, _call = _invoke_service(apps, apps.grpc_id, "typed", None, b"\x08\x01", "", type_url=sent)
    (seen,) = apps.grpc_app.calls_of("OnInvoke")
    assert (seen.request.data.type_url, seen.request.data.value) == (sent, b"\x08\x01")
    assert (response.data.type_url, response.data.value) == (sent + ".Reply", b"\x08\x01")
    # Over gRPC the app's content type stays; over HTTP typed data is protobuf whatever the app
    # said (daprd's InvokeMethodResponse.ContentType), so the SDK's HTTP invoke_method unpacks it.
    assert response.content_type == "text/plain"
    with apps.caller.sdk_configured(), DaprClient() as client:
        over_http = client.invoke_method(apps.grpc_id, "typed", data=b"\x08\x02")
    assert (over_http.content_type, over_http.data) == ("application/x-protobuf", b"\x08\x02")


# -- gRPC proxying ----------------------------------------------------------------------------


def _proxy(apps: Apps, target: str | None, method: str = "Say", body: bytes = b"hi") -> Any:
    metadata = [("dapr-api-token", CALLER_TOKEN), ("x-proxy-md", "p")]
    if target is not None:
        metadata.append(("dapr-app-id", target))
    with grpc.insecure_channel(apps.caller.grpc_address) as channel:
        if method == "Chat":
            chat = channel.stream_stream("/test.Echo/Chat")
            return list(chat(iter([b"a", b"b", b"c"]), metadata=metadata, timeout=30))
        return channel.unary_unary("/test.Echo/Say").with_call(body, metadata=metadata, timeout=30)


def test_grpc_proxying_reaches_any_service_of_a_grpc_app(apps: Apps) -> None:
    response, call = _proxy(apps, apps.grpc_id)
    assert response == b"echo:hi"
    assert metadata_value(list(call.initial_metadata()), "x-echo-header") == "e"
    (seen,) = apps.grpc_app.calls_of("Say")
    assert metadata_value(seen.metadata, "x-proxy-md") == "p"
    assert metadata_value(seen.metadata, "dapr-api-token") == APP_TOKEN
    assert metadata_value(seen.metadata, "dapr-caller-app-id") == apps.caller.app_id
    assert metadata_value(seen.metadata, "dapr-callee-app-id") == apps.grpc_id
    assert metadata_value(seen.metadata, "dapr-app-id") is None
    assert _proxy(apps, apps.grpc_id, "Chat") == [b"chat:a", b"chat:b", b"chat:c"]


def test_grpc_proxying_passes_the_app_status_and_refuses_calls_without_an_app_id(apps: Apps) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        _proxy(apps, apps.grpc_id, body=b"fail")
    assert (raised.value.code(), raised.value.details()) == (grpc.StatusCode.PERMISSION_DENIED, "nope")
    with pytest.raises(grpc.RpcError) as raised:
        _proxy(apps, None)
    assert (raised.value.code(), raised.value.details()) == (
        grpc.StatusCode.UNKNOWN,
        "cannot proxy request: missing dapr-callee-app-id or dapr-app-id metadata",
    )
    nobody = unique_id("nobody")
    with pytest.raises(grpc.RpcError) as raised:
        _proxy(apps, nobody)
    # daprd's mDNS resolver: "timeout waiting for address for app id <id>" (3 s), sqlite: "no host
    # found with the given ID".
    assert raised.value.code() == grpc.StatusCode.UNKNOWN
    with grpc.insecure_channel(apps.caller.grpc_address) as channel, pytest.raises(grpc.RpcError) as raised:
        channel.unary_unary("/test.Echo/Say")(b"x", metadata=(("dapr-app-id", apps.grpc_id),), timeout=30)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


# -- errors -----------------------------------------------------------------------------------


def test_an_unknown_app_id(apps: Apps) -> None:
    # A fresh id for each call: daprd's mDNS resolver answers a second lookup of one unknown id
    # within a few seconds with "timeout waiting for address for app id <id>" instead.
    nobody = unique_id("nobody")
    reply = apps.invoke(f"/v1.0/invoke/{nobody}/method/x")
    assert (reply.status, reply.json()) == (
        500,
        {
            "errorCode": "ERR_DIRECT_INVOKE",
            "message": f"failed to invoke, id: {nobody}, err: couldn't find service: {nobody}",
        },
    )
    nobody = unique_id("nobody")
    with pytest.raises(grpc.RpcError) as raised:
        _invoke_service(apps, nobody, "x", "GET", b"", "")
    assert (raised.value.code(), raised.value.details()) == (
        grpc.StatusCode.INTERNAL,
        f"failed to invoke, id: {nobody}, err: couldn't find service: {nobody}",
    )


def test_no_app_id_and_no_route(apps: Apps) -> None:
    reply = apps.invoke("/v1.0/nothing-here")
    assert (reply.status, reply.json()) == (
        404,
        {
            "errorCode": "ERR_DIRECT_INVOKE",
            "message": "failed getting app id either from the URL path or the header dapr-app-id",
        },
    )


def test_invoking_a_sidecar_without_an_app(apps: Apps) -> None:
    own = apps.invoke(f"/v1.0/invoke/{apps.caller.app_id}/method/x")
    assert (own.status, own.json()["message"]) == (
        500,
        f"failed to invoke, id: {apps.caller.app_id}, err: cannot invoke local endpoint: app channel not initialized",
    )
    remote = http(f"{endpoint_of(apps.http_sidecar).http_endpoint}/v1.0/invoke/{apps.caller.app_id}/method/x")
    assert (remote.status, remote.json()["message"]) == (
        500,
        f"failed to invoke, id: {apps.caller.app_id}, err: rpc error: code = Internal desc = app channel is not "
        "initialized",
    )


def test_an_app_that_went_down(apps: Apps) -> None:
    apps.http_app.stop()
    reply = apps.invoke(f"/v1.0/invoke/{apps.http_id}/method/orders")
    assert reply.status == 500
    document = reply.json()
    assert document["errorCode"] == "ERR_DIRECT_INVOKE"
    assert document["message"].startswith(
        f"failed to invoke, id: {apps.http_id}, err: rpc error: code = Internal desc = error invoking app "
        f'channel: Get "http://127.0.0.1:{apps.http_app.port}/orders": dial tcp'
    )
    assert document["message"].endswith("connect: connection refused")
    apps.grpc_app.stop()
    down = apps.invoke(f"/v1.0/invoke/{apps.grpc_id}/method/m1", "POST", b"x")
    assert (down.status, down.json()["code"]) == (503, 14)


def test_an_unhealthy_app_is_not_called(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dapr_sidecar_factory
) -> None:
    from dapr_agents.ext.devsidecar import AppHealthCheck

    monkeypatch.setenv("DAPR_DEVSIDECAR_HOME", str(tmp_path / "home"))
    components = write_components(tmp_path / "components", pubsub=None, actor_state_store=False)
    healthy = {"now": True}

    def health(request: Received) -> Reply:
        if request.path == "/healthz":
            return Reply(200 if healthy["now"] else 500)
        return answer(request)

    with HttpApp(health) as app:
        app_id = unique_id()
        check = AppHealthCheck(interval=1.0, timeout=0.5, threshold=1)
        callee = endpoint_of(
            dapr_sidecar_factory.start(components, app_id=app_id, app_port=app.port, app_health_check=check)
        )
        caller = endpoint_of(dapr_sidecar_factory.start(components, app_id=unique_id("caller")))
        url = f"{caller.http_endpoint}/v1.0/invoke/{app_id}/method/orders"
        wait_until(lambda: http(url).status == 200, what="the app answering")
        healthy["now"] = False
        wait_until(lambda: http(url).status == 500, what="the app turning unhealthy")
        assert http(url).json()["message"] == (
            f"failed to invoke, id: {app_id}, err: rpc error: code = Internal desc = error invoking app channel: "
            "rpc error: code = Internal desc = app is not in a healthy state"
        )
        local = http(f"{callee.http_endpoint}/v1.0/invoke/{app_id}/method/orders")
        assert local.json()["message"] == (
            f"failed to invoke, id: {app_id}, err: rpc error: code = Internal desc = app is not in a healthy state"
        )
        assert http(f"{callee.http_endpoint}/v1.0/healthz").status == 204  # the sidecar stays ready
        healthy["now"] = True
        wait_until(lambda: http(url).status == 200, what="the app turning healthy again")
