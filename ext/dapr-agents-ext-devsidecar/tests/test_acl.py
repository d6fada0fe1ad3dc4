"""Service-invocation access control (a Configuration's ``accessControl``), on the dev sidecar and on
real daprd with mTLS (``DAPR_TEST_SIDECAR=daprd`` runs sentry too): the callee's sidecar lets app A
call some operations with some verbs, refuses A the others and refuses app C everything, with
daprd's statuses and messages over HTTP, gRPC ``InvokeService`` and gRPC proxying. Then what
daprd does without mTLS (only the global default action), with a policy-only list (the default
action stays allow), and with a policy daprd refuses to start with. The matching rules themselves
(daprd's trie, wildcards, verbs) are checked against daprd's own unit-test cases first."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from apps import GrpcApp, HttpApp, endpoint_of, http, unique_id, wait_until
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import dapr_pb2_grpc, invoke_pb2
from google.protobuf import any_pb2

from dapr_agents.ext.devsidecar import DevSidecarError
from dapr_agents.ext.devsidecar._acl import Caller, parse_access_control
from dapr_agents.ext.devsidecar._errors import ComponentError
from dapr_agents.ext.devsidecar.testing import SidecarEndpoint, write_components

# -- the rules, without sidecars: daprd's pkg/acl/acl_test.go cases -----------------------------------

_DAPRD_TEST_SPEC = {
    "accessControl": {
        "defaultAction": "deny",
        "trustDomain": "abcd",
        "policies": [
            {
                "appId": "app1",
                "defaultAction": "allow",
                "trustDomain": "public",
                "namespace": "ns1",
                "operations": [
                    {"name": "/op1", "httpVerb": ["POST", "GET"], "action": "allow"},
                    {"name": "/op2", "httpVerb": ["*"], "action": "deny"},
                ],
            },
            {
                "appId": "app2",
                "defaultAction": "deny",
                "trustDomain": "domain1",
                "namespace": "ns2",
                "operations": [
                    {"name": "/op3/a/*", "httpVerb": ["PUT", "GET"], "action": "allow"},
                    {"name": "/op4", "httpVerb": ["POST"], "action": "allow"},
                ],
            },
            {
                "appId": "app3",
                "trustDomain": "domain1",
                "namespace": "ns1",
                "operations": [{"name": "/op5", "httpVerb": ["POST"], "action": "allow"}],
            },
            {
                "appId": "app1",
                "defaultAction": "deny",
                "trustDomain": "public",
                "namespace": "ns4",
                "operations": [
                    {"name": "/op6", "action": "allow"},
                    {"name": "/op7/a/b/*", "action": "allow"},
                    {"name": "/op7/a/b/c/f", "action": "allow"},
                    {"name": "/op7/a/b*", "action": "allow"},
                    {"name": "/op7/c/**", "action": "allow"},
                ],
            },
        ],
    }
}

_APP1 = Caller("app1", "ns1", "public")
_APP2 = Caller("app2", "ns2", "domain1")
_APP3 = Caller("app3", "ns1", "domain1")
_APP1_NS4 = Caller("app1", "ns4", "public")


@pytest.mark.parametrize(
    ("caller", "operation", "verb", "is_http", "allowed"),
    [
        (Caller("app1", "ns1", "other"), "op1", "POST", True, False),  # trust domain differs
        (Caller("app1", "ns9", "public"), "op1", "POST", True, False),  # no policy: global deny
        (None, "op1", "POST", True, False),  # no caller identity (no mTLS): global default
        (_APP1, "opX", "POST", True, True),  # no such operation: the app's default
        (_APP1, "Op2", "POST", True, False),  # HTTP: case-insensitive
        (_APP2, "op4", "PUT", True, False),  # verb not listed
        (_APP3, "op5", "PUT", True, False),  # no app default, verb not listed
        (_APP1, "op2", "PUT", True, False),  # verb "*"
        (_APP2, "op4", "POST", True, True),
        (_APP2, "/op4", "POST", True, True),
        (_APP2, "op4", None, True, False),  # HTTP app called without a verb: the app's default
        (_APP2, "/op3/a", "PUT", True, True),  # "/op3/a/*" matches "/op3/a"
        (_APP2, "/OP4", None, False, False),  # gRPC: case-sensitive
        (_APP2, "/op3/b/b", "PUT", True, False),
        (_APP2, "/op3/a/b", "PUT", True, True),
        (_APP2, "op4", None, False, True),  # gRPC: the operation's action, verbs ignored
        (_APP1_NS4, "op6", None, False, True),
        (_APP1_NS4, "op7/a/b/c", None, False, True),
        (_APP1_NS4, "op7/a/b/c/d", None, False, False),
        (_APP1_NS4, "op7/a/b/c/f", None, False, True),
        (_APP1_NS4, "op7/a/bc", None, False, True),
        (_APP1_NS4, "op7/c/d/e", None, False, True),
    ],
)
def test_decisions_match_daprds_unit_tests(
    caller: Caller | None, operation: str, verb: str | None, is_http: bool, allowed: bool
) -> None:
    acl = parse_access_control(_DAPRD_TEST_SPEC, "config.yaml", is_http=is_http)
    assert acl is not None
    assert (acl.denial(caller, operation, verb) is None) is allowed


def test_parsing_follows_daprds_defaults_and_refusals() -> None:
    # No accessControl: daprd's default Configuration (allow, trust domain public).
    acl = parse_access_control({}, "c.yaml", is_http=True)
    assert acl is not None and (acl.default_action, acl.trust_domain) == ("allow", "public")
    assert parse_access_control({"accessControl": None}, "c.yaml", is_http=True) is None
    # A field left out keeps the default's value: policies alone leave defaultAction allow.
    acl = parse_access_control({"accessControl": {"policies": []}}, "c.yaml", is_http=True)
    assert acl is not None and acl.default_action == "allow"
    # An explicitly empty defaultAction with policies is deny.
    spec = {
        "accessControl": {"defaultAction": "", "policies": [_DAPRD_TEST_SPEC["accessControl"]["policies"][0]]}
    }
    acl = parse_access_control(spec, "c.yaml", is_http=True)
    assert acl is not None and acl.default_action == "deny"
    bad = {"accessControl": {"policies": [{"appId": "a", "trustDomain": "public"}, {"namespace": "x"}]}}
    with pytest.raises(ComponentError) as raised:
        parse_access_control(bad, "c.yaml", is_http=True)
    assert str(raised.value) == (
        "configuration file 'c.yaml': invalid access control spec. missing trustdomain for apps: [], "
        "missing namespace for apps: [a], missing app name on at least one of the app policies: true"
    )
    assert (
        acl.denial(Caller("x", "default"), "a/b", "GET")
        == "access control policy has denied access to id: spiffe://public/ns/default/x operation: a/b verb: GET"
    )
    assert (
        acl.denial(None, "a", None)
        == "access control policy has denied access to id:  operation: a verb: NONE"
    )


# -- on the wire, on both runtimes --------------------------------------------------------------------

TOKEN = "caller-secret"


def _configuration(folder: Path, name: str, access_control: dict[str, Any]) -> Path:
    path = folder / f"{name}.yaml"
    document = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Configuration",
        "metadata": {"name": name},
        "spec": {"accessControl": access_control},
    }
    path.write_text(json.dumps(document, indent=2))  # JSON is YAML
    return path


def _policy(app_id: str, operations: list[dict[str, Any]], default_action: str = "deny") -> dict[str, Any]:
    return {
        "appId": app_id,
        "defaultAction": default_action,
        "trustDomain": "public",
        "namespace": "default",
        "operations": operations,
    }


@dataclass
class Acl:
    a: SidecarEndpoint  # allowed some operations
    c: SidecarEndpoint  # not in the list
    http_id: str  # an HTTP app whose sidecar has the list
    http_app: HttpApp
    grpc_id: str  # a gRPC app whose sidecar has the list
    grpc_app: GrpcApp
    grpc_own: SidecarEndpoint  # that app's own sidecar

    def get(self, caller: SidecarEndpoint, path: str, method: str = "GET") -> Any:
        body = b"{}" if method in {"POST", "PUT"} else None
        return http(f"{caller.http_endpoint}{path}", method, body, {"dapr-api-token": TOKEN})


def _denied(callee: str, caller: str, operation: str, verb: str) -> str:
    return (
        f"failed to invoke, id: {callee}, err: rpc error: code = PermissionDenied desc = access control "
        f"policy has denied access to id: spiffe://public/ns/default/{caller} operation: {operation} verb: {verb}"
    )


@pytest.fixture
def acl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dapr_sidecar_factory: Any) -> Iterator[Acl]:
    monkeypatch.setenv("DAPR_DEVSIDECAR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NAMESPACE", raising=False)
    components = write_components(tmp_path / "components", pubsub=None, actor_state_store=False)
    a_id, c_id = unique_id("a"), unique_id("c")
    http_config = _configuration(
        tmp_path,
        "http-callee",
        {
            "defaultAction": "deny",
            "trustDomain": "public",
            "policies": [
                _policy(
                    a_id,
                    [
                        {"name": "/orders/*", "httpVerb": ["GET"], "action": "allow"},
                        {"name": "/reports/**", "httpVerb": ["*"], "action": "allow"},
                        {"name": "/reports/secret", "httpVerb": ["*"], "action": "deny"},
                    ],
                )
            ],
        },
    )
    grpc_config = _configuration(
        tmp_path,
        "grpc-callee",
        {
            "defaultAction": "deny",
            "policies": [
                _policy(
                    a_id,
                    [
                        {"name": "hello", "action": "allow"},
                        {"name": "/test.Echo/Say", "action": "allow"},
                    ],
                )
            ],
        },
    )
    with HttpApp() as http_app, GrpcApp() as grpc_app:
        http_id, grpc_id = unique_id("orders"), unique_id("greeter")
        start = dapr_sidecar_factory.start
        http_sidecar = start(
            components, app_id=http_id, app_port=http_app.port, config=http_config, enable_mtls=True
        )
        grpc_sidecar = start(
            components,
            app_id=grpc_id,
            app_port=grpc_app.port,
            app_protocol="grpc",
            config=grpc_config,
            enable_mtls=True,
        )
        a = start(components, app_id=a_id, api_token=TOKEN, enable_mtls=True)
        c = start(components, app_id=c_id, api_token=TOKEN, enable_mtls=True)
        for sidecar in (http_sidecar, grpc_sidecar):
            endpoint = endpoint_of(sidecar)
            wait_until(lambda e=endpoint: http(f"{e.http_endpoint}/v1.0/healthz").status == 204)
        yield Acl(
            endpoint_of(a, TOKEN),
            endpoint_of(c, TOKEN),
            http_id,
            http_app,
            grpc_id,
            grpc_app,
            endpoint_of(grpc_sidecar),
        )


@pytest.mark.starts_sidecars
def test_http_callee_allows_the_listed_operations_and_verbs_of_app_a(acl: Acl) -> None:
    for path in ("orders/42", "Orders/7", "orders", "reports/2026/q1"):
        reply = acl.get(acl.a, f"/v1.0/invoke/{acl.http_id}/method/{path}")
        assert reply.status == 200, (path, reply.body)
        assert reply.json()["path"] == f"/{path}"
    # daprd's trie: a later, more specific entry under "/reports/**" is never reached.
    assert acl.get(acl.a, f"/v1.0/invoke/{acl.http_id}/method/reports/secret").status == 200
    # The dapr-app-id header is the same invocation.
    reply = http(
        f"{acl.a.http_endpoint}/orders/1", "GET", None, {"dapr-api-token": TOKEN, "dapr-app-id": acl.http_id}
    )
    assert reply.status == 200


@pytest.mark.starts_sidecars
def test_http_callee_refuses_app_a_other_verbs_and_operations(acl: Acl) -> None:
    seen = len(acl.http_app.received)
    for method, path, operation in [
        ("POST", "orders/42", "orders/42"),
        ("DELETE", "orders/42", "orders/42"),
        ("GET", "orders/42/items", "orders/42/items"),
    ]:
        reply = acl.get(acl.a, f"/v1.0/invoke/{acl.http_id}/method/{path}", method)
        assert reply.status == 403, (method, path, reply.body)
        assert reply.json() == {
            "errorCode": "ERR_DIRECT_INVOKE",
            "message": _denied(acl.http_id, acl.a.app_id, operation, method),
        }
    assert len(acl.http_app.received) == seen  # nothing reached the app


@pytest.mark.starts_sidecars
def test_http_callee_refuses_an_app_without_a_policy(acl: Acl) -> None:
    reply = acl.get(acl.c, f"/v1.0/invoke/{acl.http_id}/method/orders/42")
    assert reply.status == 403
    assert reply.json() == {
        "errorCode": "ERR_DIRECT_INVOKE",
        "message": _denied(acl.http_id, acl.c.app_id, "orders/42", "GET"),
    }
    assert not acl.http_app.requests_to("/orders/42")


def _invoke_service(caller: SidecarEndpoint, app_id: str, method: str, verb: str | None) -> Any:
    message = common_pb2.InvokeRequest(method=method, data=any_pb2.Any(value=b"d"), content_type="text/plain")
    if verb is not None:
        message.http_extension.verb = common_pb2.HTTPExtension.Verb.Value(verb)
    with grpc.insecure_channel(caller.grpc_address) as channel:
        return dapr_pb2_grpc.DaprStub(channel).InvokeService(
            invoke_pb2.InvokeServiceRequest(id=app_id, message=message),
            metadata=(("dapr-api-token", TOKEN),),
            timeout=30,
        )


@pytest.mark.starts_sidecars
def test_grpc_invoke_service_of_the_http_callee(acl: Acl) -> None:
    assert (
        json.loads(_invoke_service(acl.a, acl.http_id, "orders/1", "GET").data.value)["path"] == "/orders/1"
    )
    for caller, verb in [(acl.a, "POST"), (acl.a, None), (acl.c, "GET")]:
        with pytest.raises(grpc.RpcError) as raised:
            _invoke_service(caller, acl.http_id, "orders/1", verb)
        assert raised.value.code() == grpc.StatusCode.INTERNAL
        assert raised.value.details() == _denied(acl.http_id, caller.app_id, "orders/1", verb or "NONE")


@pytest.mark.starts_sidecars
def test_grpc_callee_allows_app_a_its_methods_only(acl: Acl) -> None:
    assert _invoke_service(acl.a, acl.grpc_id, "hello", None).data.value == b"reply:d"
    # A gRPC app's operations are case-sensitive and take no verb.
    for caller, method, verb in [(acl.a, "Hello", None), (acl.a, "other", "POST"), (acl.c, "hello", None)]:
        with pytest.raises(grpc.RpcError) as raised:
            _invoke_service(caller, acl.grpc_id, method, verb)
        assert raised.value.code() == grpc.StatusCode.INTERNAL
        assert raised.value.details() == _denied(acl.grpc_id, caller.app_id, method, "NONE")
    assert [c.request.method for c in acl.grpc_app.calls_of("OnInvoke")] == ["hello"]


def _proxy(caller: SidecarEndpoint, app_id: str, method: str) -> Any:
    with grpc.insecure_channel(caller.grpc_address) as channel:
        return channel.unary_unary(method)(
            b"hi", metadata=(("dapr-api-token", TOKEN), ("dapr-app-id", app_id)), timeout=30
        )


@pytest.mark.starts_sidecars
def test_grpc_proxying_to_the_grpc_callee(acl: Acl) -> None:
    assert _proxy(acl.a, acl.grpc_id, "/test.Echo/Say") == b"echo:hi"
    for caller, method in [(acl.a, "/test.Echo/Chat"), (acl.c, "/test.Echo/Say")]:
        with pytest.raises(grpc.RpcError) as raised:
            _proxy(caller, acl.grpc_id, method)
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert raised.value.details() == (
            f"access control policy has denied access to id: spiffe://public/ns/default/{caller.app_id} "
            f"operation: {method} verb: NONE"
        )
    assert len(acl.grpc_app.calls_of("Say")) == 1


@pytest.mark.starts_sidecars
def test_an_app_calling_itself(acl: Acl) -> None:
    # InvokeService of the sidecar's own app id goes straight to the app, unchecked; a gRPC-proxied
    # call of it is checked, with no caller identity (the API port has no mTLS): defaultAction.
    own = acl.grpc_own
    message = common_pb2.InvokeRequest(method="anything", data=any_pb2.Any(value=b"d"))
    with grpc.insecure_channel(own.grpc_address) as channel:
        reply = dapr_pb2_grpc.DaprStub(channel).InvokeService(
            invoke_pb2.InvokeServiceRequest(id=acl.grpc_id, message=message), timeout=30
        )
        assert reply.data.value == b"reply:d"
        with pytest.raises(grpc.RpcError) as raised:
            channel.unary_unary("/test.Echo/Say")(b"hi", metadata=(("dapr-app-id", acl.grpc_id),), timeout=30)
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert raised.value.details() == (
        "access control policy has denied access to id:  operation: /test.Echo/Say verb: NONE"
    )


# -- without mTLS, policies only, policies daprd refuses ---------------------------------------------


@pytest.mark.starts_sidecars
def test_without_mtls_only_the_global_default_action_applies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dapr_sidecar_factory: Any
) -> None:
    monkeypatch.setenv("DAPR_DEVSIDECAR_HOME", str(tmp_path / "home"))
    components = write_components(tmp_path / "components", pubsub=None, actor_state_store=False)
    a_id = unique_id("a")
    config = _configuration(
        tmp_path,
        "callee",
        {
            "defaultAction": "deny",
            "policies": [_policy(a_id, [{"name": "/orders", "action": "allow"}], "allow")],
        },
    )
    with HttpApp() as app:
        callee_id = unique_id("callee")
        callee = dapr_sidecar_factory.start(components, app_id=callee_id, app_port=app.port, config=config)
        a = endpoint_of(dapr_sidecar_factory.start(components, app_id=a_id))
        wait_until(lambda: http(f"{endpoint_of(callee).http_endpoint}/v1.0/healthz").status == 204)
        reply = http(f"{a.http_endpoint}/v1.0/invoke/{callee_id}/method/orders", "POST", b"{}")
        assert reply.status == 403
        assert reply.json()["message"] == (
            f"failed to invoke, id: {callee_id}, err: rpc error: code = PermissionDenied desc = access "
            "control policy has denied access to id:  operation: orders verb: POST"
        )
        assert not app.requests_to("/orders")


@pytest.mark.starts_sidecars
def test_policies_without_a_default_action_allow_other_apps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dapr_sidecar_factory: Any
) -> None:
    monkeypatch.setenv("DAPR_DEVSIDECAR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NAMESPACE", raising=False)
    components = write_components(tmp_path / "components", pubsub=None, actor_state_store=False)
    a_id = unique_id("a")
    config = _configuration(tmp_path, "callee", {"policies": [_policy(a_id, [])]})
    with HttpApp() as app:
        callee_id = unique_id("callee")
        start = dapr_sidecar_factory.start
        callee = start(components, app_id=callee_id, app_port=app.port, config=config, enable_mtls=True)
        a = endpoint_of(start(components, app_id=a_id, enable_mtls=True))
        c = endpoint_of(start(components, app_id=unique_id("c"), enable_mtls=True))
        wait_until(lambda: http(f"{endpoint_of(callee).http_endpoint}/v1.0/healthz").status == 204)
        assert http(f"{c.http_endpoint}/v1.0/invoke/{callee_id}/method/x").status == 200
        reply = http(f"{a.http_endpoint}/v1.0/invoke/{callee_id}/method/x")
        assert reply.status == 403
        assert reply.json()["message"] == _denied(callee_id, a_id, "x", "GET")


@pytest.mark.starts_sidecars
def test_a_policy_without_namespace_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dapr_sidecar_factory: Any
) -> None:
    monkeypatch.setenv("DAPR_DEVSIDECAR_HOME", str(tmp_path / "home"))
    components = write_components(tmp_path / "components", pubsub=None, actor_state_store=False)
    config = _configuration(
        tmp_path, "bad", {"defaultAction": "deny", "policies": [{"appId": "a", "trustDomain": "public"}]}
    )
    with pytest.raises((ComponentError, DevSidecarError)) as raised:
        dapr_sidecar_factory.start(components, app_id=unique_id("bad"), config=config)
    assert (
        "invalid access control spec. missing trustdomain for apps: [], missing namespace for apps: [a], "
        "missing app name on at least one of the app policies: false"
    ) in str(raised.value)


@pytest.mark.starts_sidecars
def test_a_policy_names_the_callers_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dapr_sidecar_factory: Any
) -> None:
    monkeypatch.setenv("DAPR_DEVSIDECAR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NAMESPACE", raising=False)
    components = write_components(tmp_path / "components", pubsub=None, actor_state_store=False)
    a_id = unique_id("a")
    team = {**_policy(a_id, [{"name": "/x", "httpVerb": ["GET"], "action": "allow"}]), "namespace": "team"}
    config = _configuration(tmp_path, "callee", {"defaultAction": "deny", "policies": [team]})
    with HttpApp() as app:
        callee_id = unique_id("callee")
        start = dapr_sidecar_factory.start
        callee = start(components, app_id=callee_id, app_port=app.port, config=config, enable_mtls=True)
        # The same app id in namespace "team" (NAMESPACE, as daprd reads it) and in "default".
        in_team = endpoint_of(start(components, app_id=a_id, enable_mtls=True, env={"NAMESPACE": "team"}))
        in_default = endpoint_of(start(components, app_id=a_id, enable_mtls=True))
        wait_until(lambda: http(f"{endpoint_of(callee).http_endpoint}/v1.0/healthz").status == 204)
        target = f"{callee_id}.default"
        assert http(f"{in_team.http_endpoint}/v1.0/invoke/{target}/method/x").status == 200
        reply = http(f"{in_team.http_endpoint}/v1.0/invoke/{target}/method/y")
        assert reply.status == 403
        assert reply.json()["message"] == (
            f"failed to invoke, id: {target}, err: rpc error: code = PermissionDenied desc = access control "
            f"policy has denied access to id: spiffe://public/ns/team/{a_id} operation: y verb: GET"
        )
        reply = http(f"{in_default.http_endpoint}/v1.0/invoke/{callee_id}/method/x")
        assert reply.status == 403
        assert reply.json()["message"] == _denied(callee_id, a_id, "x", "GET")
