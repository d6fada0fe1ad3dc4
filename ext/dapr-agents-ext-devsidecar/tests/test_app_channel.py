"""The app channel, on the dev sidecar and on real daprd (``DAPR_TEST_SIDECAR=daprd``): readiness
waits for the app's port, the app's configuration request carries ``APP_API_TOKEN``, health
probes hit the configured path, and the metadata reports the connection as daprd does."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from apps import GrpcApp, HttpApp, endpoint_of, http, unique_id, wait_until
from dapr.proto.runtime.v1 import dapr_pb2_grpc, metadata_pb2

from dapr_agents.ext.devsidecar.testing import free_port, write_components

pytestmark = pytest.mark.starts_sidecars


@pytest.fixture
def components(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Each test's sidecars find each other in a registry of their own (dev sidecar).
    monkeypatch.setenv("DAPR_DEVSIDECAR_HOME", str(tmp_path / "home"))
    return write_components(tmp_path / "components", pubsub=None, actor_state_store=False)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_healthz_waits_for_the_app_port_and_outbound_health_does_not(
    components: Path, dapr_sidecar_factory, protocol: str
) -> None:
    port = free_port()
    sidecar = dapr_sidecar_factory.start(components, app_id=unique_id(), app_port=port, app_protocol=protocol)
    base = endpoint_of(sidecar).http_endpoint
    answer = http(f"{base}/v1.0/healthz")
    # daprd lists every target not ready yet; "runtime" waits for the app (under load daprd may
    # still list others, such as "scheduler-watch-hosts").
    assert (answer.status, answer.json()["errorCode"]) == (500, "ERR_HEALTH_NOT_READY")
    assert answer.json()["message"].startswith("dapr is not ready: [")
    assert "runtime]" in answer.json()["message"]
    assert http(f"{base}/v1.0/healthz/outbound").status == 204
    app = HttpApp(port=port) if protocol == "http" else GrpcApp(port=port)
    with app:
        wait_until(lambda: http(f"{base}/v1.0/healthz").status == 204, what="/v1.0/healthz turning 204")
        assert http(f"{base}/v1.0/healthz?appid={sidecar.app_id}").status == 204
        other = http(f"{base}/v1.0/healthz?appid=someone-else")
        assert (other.status, other.json()) == (
            500,
            {"errorCode": "ERR_HEALTH_APPID_NOT_MATCH", "message": "dapr app-id does not match"},
        )


def test_without_an_app_port_the_sidecar_gets_ready_alone(components: Path, dapr_sidecar_factory) -> None:
    sidecar = dapr_sidecar_factory.start(components, app_id=unique_id())
    url = f"{endpoint_of(sidecar).http_endpoint}/v1.0/healthz"
    wait_until(lambda: http(url).status == 204, what="/v1.0/healthz turning 204 with no app")


def test_the_app_is_asked_for_its_configuration_with_the_app_api_token(
    components: Path, dapr_sidecar_factory
) -> None:
    with HttpApp() as app:
        app_id = unique_id()
        dapr_sidecar_factory.start(components, app_id=app_id, app_port=app.port, app_api_token="app-secret")
        (request,) = app.wait_for("/dapr/config")
        assert request.method == "GET"
        assert request.header("dapr-api-token") == "app-secret"
        assert request.header("dapr-app-id") == app_id
        assert request.header("content-type") == "application/json"


def test_health_probes_hit_the_configured_path_without_the_token(
    components: Path, dapr_sidecar_factory
) -> None:
    from dapr_agents.ext.devsidecar import AppHealthCheck

    check = AppHealthCheck(path="/custom-health", interval=1.0, timeout=0.5, threshold=1)
    with HttpApp() as app:
        dapr_sidecar_factory.start(
            components,
            app_id=unique_id(),
            app_port=app.port,
            app_api_token="app-secret",
            app_health_check=check,
        )
        probes = app.wait_for("/custom-health", count=2)
        assert all(p.method == "GET" and p.header("dapr-api-token") is None for p in probes)
        # The configuration is read once the first probe passed.
        assert app.wait_for("/dapr/config")


def test_grpc_health_probes_call_the_health_check_service(components: Path, dapr_sidecar_factory) -> None:
    with GrpcApp() as app:
        dapr_sidecar_factory.start(
            components, app_id=unique_id(), app_port=app.port, app_protocol="grpc", app_health_check=True
        )
        wait_until(lambda: bool(app.calls_of("HealthCheck")), what="a gRPC health probe")


def test_the_metadata_reports_the_app_connection(components: Path, dapr_sidecar_factory) -> None:
    from dapr_agents.ext.devsidecar import AppHealthCheck

    check = AppHealthCheck(path="/custom-health", interval=1.0, timeout=0.5, threshold=2)
    with HttpApp() as app:
        sidecar = dapr_sidecar_factory.start(
            components, app_id=unique_id(), app_port=app.port, app_health_check=check
        )
        endpoint = endpoint_of(sidecar)
        document = http(f"{endpoint.http_endpoint}/v1.0/metadata").json()
        assert document["appConnectionProperties"] == {
            "port": app.port,
            "protocol": "http",
            "channelAddress": "127.0.0.1",
            "health": {
                "healthCheckPath": "/custom-health",
                "healthProbeInterval": "1s",
                "healthProbeTimeout": "500ms",
                "healthThreshold": 2,
            },
        }
        with grpc.insecure_channel(endpoint.grpc_address) as channel:
            response = dapr_pb2_grpc.DaprStub(channel).GetMetadata(metadata_pb2.GetMetadataRequest())
        connection = response.app_connection_properties
        assert (connection.port, connection.protocol, connection.channel_address) == (
            app.port,
            "http",
            "127.0.0.1",
        )
        assert connection.health.health_check_path == "/custom-health"
        assert connection.health.health_probe_interval == "1s"
        assert connection.health.health_threshold == 2


def test_without_an_app_the_metadata_reports_the_default_connection(
    components: Path, dapr_sidecar_factory
) -> None:
    sidecar = dapr_sidecar_factory.start(components, app_id=unique_id())
    document = http(f"{endpoint_of(sidecar).http_endpoint}/v1.0/metadata").json()
    assert document["appConnectionProperties"] == {"protocol": "http", "channelAddress": "127.0.0.1"}
