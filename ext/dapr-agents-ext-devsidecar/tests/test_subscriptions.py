"""Subscriptions delivered to the app, on the dev sidecar and on real daprd
(``DAPR_TEST_SIDECAR=daprd``): the sidecar reads an HTTP app's ``GET /dapr/subscribe``, posts each
event to its route as a CloudEvent, maps the app's answer to SUCCESS/RETRY/DROP as daprd does,
follows routing rules and dead-letter topics, retries under a Resiliency inbound policy, and
lists the subscriptions in the metadata."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from unittest import mock

import grpc
import pytest
from apps import GrpcApp, HttpApp, Received, Reply, endpoint_of, http, unique_id, wait_until
from dapr.clients import DaprClient
from dapr.conf import settings
from dapr.proto.runtime.v1 import appcallback_pb2, dapr_pb2_grpc, metadata_pb2

from dapr_agents.ext.devsidecar.testing import write_components

pytestmark = pytest.mark.starts_sidecars

RESILIENCY = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: inbound-retries
spec:
  policies:
    retries:
      three:
        policy: constant
        duration: 50ms
        maxRetries: 2
  targets:
    components:
      pubsub:
        inbound:
          retry: three
"""


@pytest.fixture
def components(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DAPR_DEVSIDECAR_HOME", str(tmp_path / "home"))
    return write_components(tmp_path / "components", actor_state_store=False)


def subscriber_app(subscriptions: list[dict], answers: dict[str, Reply] | None = None) -> HttpApp:
    answers = answers or {}

    def answer(request: Received) -> Reply:
        if request.path == "/dapr/subscribe":
            return Reply(200, json.dumps(subscriptions).encode(), [("Content-Type", "application/json")])
        return answers.get(request.path, Reply(200))

    return HttpApp(answer)


def start(dapr_sidecar_factory, components: Path, app: HttpApp):
    sidecar = dapr_sidecar_factory.start(components, app_id=unique_id("sub"), app_port=app.port)
    endpoint = endpoint_of(sidecar)
    wait_until(lambda: http(f"{endpoint.http_endpoint}/v1.0/healthz").status == 204, what="sidecar ready")
    wait_until(
        lambda: len(http(f"{endpoint.http_endpoint}/v1.0/metadata").json().get("subscriptions") or []) > 0,
        what="the app's subscriptions listed",
    )
    return sidecar, endpoint


def publish(endpoint, topic: str, data: object, **kwargs) -> None:
    # The SDK's health check reads the HTTP port from its settings, not from the address.
    with mock.patch.object(settings, "DAPR_HTTP_PORT", endpoint.http_port):
        client = DaprClient(address=endpoint.grpc_address)
    with client:
        client.publish_event(
            "pubsub", topic, json.dumps(data), data_content_type="application/json", **kwargs
        )


def test_an_event_is_posted_to_the_route_as_a_cloudevent(components: Path, dapr_sidecar_factory) -> None:
    with subscriber_app([{"pubsubname": "pubsub", "topic": "orders", "route": "/orders"}]) as app:
        sidecar, endpoint = start(dapr_sidecar_factory, components, app)
        subscribe_call = app.requests_to("/dapr/subscribe")[0]
        assert subscribe_call.method == "GET"
        assert subscribe_call.header("dapr-app-id") == sidecar.app_id
        publish(endpoint, "orders", {"n": 1}, publish_metadata={"cloudevent.type": "order.created"})
        (request,) = app.wait_for("/orders")
        assert request.method == "POST"
        assert request.header("Content-Type") == "application/cloudevents+json"
        assert request.header("pubsubname") == "pubsub"
        assert request.header("traceparent") == "00-00000000000000000000000000000000-0000000000000000-00"
        event = json.loads(request.body)
        assert event["data"] == {"n": 1}
        assert event["type"] == "order.created"
        assert (event["topic"], event["pubsubname"], event["source"]) == ("orders", "pubsub", sidecar.app_id)
        assert event["datacontenttype"] == "application/json"
        assert event["specversion"] == "1.0"
        listed = http(f"{endpoint.http_endpoint}/v1.0/metadata").json()["subscriptions"]
        assert listed == [
            {
                "pubsubname": "pubsub",
                "topic": "orders",
                "rules": [{"path": "/orders"}],
                "deadLetterTopic": "",
                "type": "PROGRAMMATIC",
            }
        ]


def test_routing_rules_pick_the_path_by_cel_match(components: Path, dapr_sidecar_factory) -> None:
    routes = {
        "rules": [
            {"match": 'event.type == "widget"', "path": "/widgets"},
            {"match": 'event.type == "gadget" && event.data.size == 2', "path": "/gadgets"},
        ],
        "default": "/products",
    }
    with subscriber_app([{"pubsubname": "pubsub", "topic": "products", "routes": routes}]) as app:
        _sidecar, endpoint = start(dapr_sidecar_factory, components, app)
        publish(endpoint, "products", {"size": 1}, publish_metadata={"cloudevent.type": "widget"})
        publish(endpoint, "products", {"size": 2}, publish_metadata={"cloudevent.type": "gadget"})
        publish(endpoint, "products", {"size": 3}, publish_metadata={"cloudevent.type": "gadget"})
        assert json.loads(app.wait_for("/widgets")[0].body)["data"] == {"size": 1}
        assert json.loads(app.wait_for("/gadgets")[0].body)["data"] == {"size": 2}
        assert json.loads(app.wait_for("/products")[0].body)["data"] == {"size": 3}


@pytest.mark.parametrize(
    ("reply", "attempts", "dead_lettered"),
    [
        (Reply(200), 1, False),
        (Reply(200, b'{"status": "SUCCESS"}'), 1, False),
        (Reply(200, b"not json"), 1, False),
        (Reply(200, b'{"status": "DROP"}'), 1, True),
        (Reply(404), 1, True),
        (Reply(200, b'{"status": "RETRY"}'), 3, True),
        (Reply(200, b'{"status": "whatever"}'), 3, True),
        (Reply(500), 3, True),
    ],
    ids=["empty-2xx", "success", "not-json", "drop", "404", "retry", "unknown-status", "500"],
)
def test_the_apps_answer_is_mapped_as_daprd_maps_it(
    components: Path, dapr_sidecar_factory, reply: Reply, attempts: int, dead_lettered: bool
) -> None:
    (components / "resiliency.yaml").write_text(RESILIENCY)
    subscriptions = [
        {"pubsubname": "pubsub", "topic": "jobs", "route": "/jobs", "deadLetterTopic": "jobs-dead"},
        {"pubsubname": "pubsub", "topic": "jobs-dead", "route": "/dead"},
    ]
    with subscriber_app(subscriptions, {"/jobs": reply}) as app:
        _sidecar, endpoint = start(dapr_sidecar_factory, components, app)
        publish(endpoint, "jobs", {"job": 7})
        app.wait_for("/jobs", count=attempts)
        if dead_lettered:
            (dead,) = app.wait_for("/dead")
            assert json.loads(dead.body)["data"] == {"job": 7}
        time.sleep(0.5)
        assert len(app.requests_to("/jobs")) == attempts
        assert len(app.requests_to("/dead")) == (1 if dead_lettered else 0)


@pytest.mark.parametrize(
    ("reply", "logged"),
    [
        (
            Reply(200, b'{"status": "RETRY"}'),
            "RETRY status returned from app while processing pub/sub event {id}",
        ),
        (
            Reply(200, b'{"status": "later"}'),
            "unknown status returned from app while processing pub/sub event {id}",
        ),
        (
            Reply(503, b"busy"),
            "retriable error returned from app while processing pub/sub event {id}, topic: jobs",
        ),
    ],
    ids=["retry", "unknown-status", "503"],
)
def test_a_redelivery_is_logged_with_daprds_words(
    components: Path, dapr_sidecar_factory, caplog, reply: Reply, logged: str
) -> None:
    """What users grep for (the Dapr SDK's pubsub example expects the RETRY line in the output)."""
    subscriptions = [{"pubsubname": "pubsub", "topic": "jobs", "route": "/jobs"}]
    with subscriber_app(subscriptions, {"/jobs": reply}) as app, caplog.at_level("WARNING"):
        sidecar, endpoint = start(dapr_sidecar_factory, components, app)
        publish(endpoint, "jobs", {"job": 7})
        (first, *_) = app.wait_for("/jobs")
        expected = logged.format(id=json.loads(first.body)["id"])

        def log_text() -> str:
            daprd_log = getattr(sidecar, "log", None)  # real daprd writes its own log file
            if isinstance(daprd_log, Path):
                return daprd_log.read_text(errors="replace")
            return "\n".join(record.getMessage() for record in caplog.records)

        wait_until(lambda: expected in log_text(), what=f"{expected!r} in the sidecar's log")


class TopicApp(GrpcApp):
    """A gRPC app subscribed through ``ListTopicSubscriptions``; ``OnTopicEvent`` answers
    ``statuses[topic]`` (SUCCESS by default) and records each request with its metadata."""

    def __init__(self, subscriptions: list, statuses: dict[str, int] | None = None) -> None:
        super().__init__()
        self.subscriptions = subscriptions
        self.statuses = statuses or {}
        self.events: list[tuple[appcallback_pb2.TopicEventRequest, dict[str, str]]] = []

    def ListTopicSubscriptions(self, request, context):  # noqa: N802
        return appcallback_pb2.ListTopicSubscriptionsResponse(subscriptions=self.subscriptions)

    def OnTopicEvent(self, request, context):  # noqa: N802
        self.events.append((request, dict(context.invocation_metadata())))
        return appcallback_pb2.TopicEventResponse(status=self.statuses.get(request.topic, 0))

    def events_on(self, topic: str, count: int = 1) -> list:
        wait_until(
            lambda: len([e for e in self.events if e[0].topic == topic]) >= count, what=f"{count} on {topic}"
        )
        return [e for e in self.events if e[0].topic == topic]


def start_grpc(dapr_sidecar_factory, components: Path, app: GrpcApp):
    sidecar = dapr_sidecar_factory.start(
        components, app_id=unique_id("sub"), app_port=app.port, app_protocol="grpc"
    )
    endpoint = endpoint_of(sidecar)
    wait_until(
        lambda: len(http(f"{endpoint.http_endpoint}/v1.0/metadata").json().get("subscriptions") or []) > 0,
        what="the app's subscriptions listed",
    )
    return sidecar, endpoint


def test_a_grpc_app_gets_on_topic_event_with_the_matching_path(
    components: Path, dapr_sidecar_factory
) -> None:
    routes = appcallback_pb2.TopicRoutes(
        rules=[appcallback_pb2.TopicRule(match='event.type == "big"', path="/big")], default="/small"
    )
    subscriptions = [
        appcallback_pb2.TopicSubscription(pubsub_name="pubsub", topic="sizes", routes=routes),
        appcallback_pb2.TopicSubscription(pubsub_name="pubsub", topic="plain"),
    ]
    with TopicApp(subscriptions) as app:
        sidecar, endpoint = start_grpc(dapr_sidecar_factory, components, app)
        publish(endpoint, "sizes", {"n": 9}, publish_metadata={"cloudevent.type": "big"})
        publish(endpoint, "sizes", {"n": 1})
        publish(endpoint, "plain", {"n": 0})
        big, small = (request for request, _ in app.events_on("sizes", 2))
        assert (big.path, small.path) == ("/big", "/small")
        assert json.loads(big.data) == {"n": 9}
        assert (big.type, big.source, big.spec_version) == ("big", sidecar.app_id, "1.0")
        assert (big.topic, big.pubsub_name, big.data_content_type) == ("sizes", "pubsub", "application/json")
        assert big.extensions["pubsubname"] == "pubsub"
        (plain, metadata) = app.events_on("plain")[0]
        assert plain.path == ""
        assert metadata["pubsubname"] == "pubsub"
        assert metadata["traceparent"] == "00-00000000000000000000000000000000-0000000000000000-00"
        listed = http(f"{endpoint.http_endpoint}/v1.0/metadata").json()["subscriptions"]
        assert {
            "pubsubname": "pubsub",
            "topic": "plain",
            "rules": [{}],
            "deadLetterTopic": "",
            "type": "PROGRAMMATIC",
        } in listed


def test_a_grpc_app_drop_goes_to_the_dead_letter_topic_and_retry_is_retried(
    components: Path, dapr_sidecar_factory
) -> None:
    (components / "resiliency.yaml").write_text(RESILIENCY)
    subscriptions = [
        appcallback_pb2.TopicSubscription(pubsub_name="pubsub", topic="drop", dead_letter_topic="dead"),
        appcallback_pb2.TopicSubscription(pubsub_name="pubsub", topic="retry", dead_letter_topic="dead"),
        appcallback_pb2.TopicSubscription(pubsub_name="pubsub", topic="dead"),
    ]
    with TopicApp(subscriptions, {"drop": 2, "retry": 1}) as app:
        _sidecar, endpoint = start_grpc(dapr_sidecar_factory, components, app)
        publish(endpoint, "drop", {"n": 1})
        app.events_on("dead", 1)
        publish(endpoint, "retry", {"n": 2})
        app.events_on("dead", 2)
        time.sleep(0.5)
        assert len(app.events_on("retry")) == 3
        assert [json.loads(request.data) for request, _ in app.events_on("dead", 2)] == [{"n": 1}, {"n": 2}]


DECLARATIVE_V1 = """\
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata:
  name: orders-v1
spec:
  pubsubname: pubsub
  topic: declared-v1
  route: /v1-orders
  deadLetterTopic: declared-dead
"""

DECLARATIVE_V2 = """\
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: orders-v2
spec:
  pubsubname: pubsub
  topic: declared-v2
  routes:
    rules:
      - match: event.type == "special"
        path: /special
    default: /v2-orders
scopes:
  - {app_id}
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: not-for-us
spec:
  pubsubname: pubsub
  topic: declared-other
  routes:
    default: /other
scopes:
  - someone-else
"""


def test_declarative_subscriptions_v1_and_v2_with_scopes(components: Path, dapr_sidecar_factory) -> None:
    app_id = unique_id("decl")
    (components / "sub-v1.yaml").write_text(DECLARATIVE_V1)
    (components / "sub-v2.yaml").write_text(DECLARATIVE_V2.format(app_id=app_id))
    programmatic = [{"pubsubname": "pubsub", "topic": "declared-dead", "route": "/dead"}]
    with subscriber_app(programmatic, {"/v1-orders": Reply(404)}) as app:
        sidecar = dapr_sidecar_factory.start(components, app_id=app_id, app_port=app.port)
        endpoint = endpoint_of(sidecar)
        wait_until(
            lambda: (
                len(http(f"{endpoint.http_endpoint}/v1.0/metadata").json().get("subscriptions") or []) == 3
            ),
            what="three subscriptions listed",
        )
        publish(endpoint, "declared-v2", {"n": 1}, publish_metadata={"cloudevent.type": "special"})
        publish(endpoint, "declared-v2", {"n": 2})
        publish(endpoint, "declared-other", {"n": 3})
        publish(endpoint, "declared-v1", {"n": 4})
        assert json.loads(app.wait_for("/special")[0].body)["data"] == {"n": 1}
        assert json.loads(app.wait_for("/v2-orders")[0].body)["data"] == {"n": 2}
        assert json.loads(app.wait_for("/dead")[0].body)["data"] == {"n": 4}
        time.sleep(0.3)
        assert app.requests_to("/other") == []
        listed = http(f"{endpoint.http_endpoint}/v1.0/metadata").json()["subscriptions"]
        # daprd lists the declarative subscriptions first.
        assert listed == [
            {
                "pubsubname": "pubsub",
                "topic": "declared-v1",
                "rules": [{"path": "/v1-orders"}],
                "deadLetterTopic": "declared-dead",
                "type": "DECLARATIVE",
            },
            {
                "pubsubname": "pubsub",
                "topic": "declared-v2",
                "rules": [{"match": 'event.type == "special"', "path": "/special"}, {"path": "/v2-orders"}],
                "deadLetterTopic": "",
                "type": "DECLARATIVE",
            },
            {
                "pubsubname": "pubsub",
                "topic": "declared-dead",
                "rules": [{"path": "/dead"}],
                "deadLetterTopic": "",
                "type": "PROGRAMMATIC",
            },
        ]


def test_get_metadata_lists_them_with_their_types(components: Path, dapr_sidecar_factory) -> None:
    (components / "sub-v1.yaml").write_text(DECLARATIVE_V1)
    routes = {"rules": [{"match": 'event.type == "x"', "path": "/x"}], "default": "/y"}
    programmatic = [
        {
            "pubsubname": "pubsub",
            "topic": "prog",
            "routes": routes,
            "deadLetterTopic": "d",
            "metadata": {"k": "v"},
        }
    ]
    with subscriber_app(programmatic) as app:
        _sidecar, endpoint = start(dapr_sidecar_factory, components, app)
        wait_until(
            lambda: (
                len(http(f"{endpoint.http_endpoint}/v1.0/metadata").json().get("subscriptions") or []) == 2
            ),
            what="two subscriptions listed",
        )
        with grpc.insecure_channel(endpoint.grpc_address) as channel:
            response = dapr_pb2_grpc.DaprStub(channel).GetMetadata(
                metadata_pb2.GetMetadataRequest(), timeout=10
            )
    listed = [
        (
            s.pubsub_name,
            s.topic,
            dict(s.metadata),
            [(r.match, r.path) for r in s.rules.rules],
            s.dead_letter_topic,
            metadata_pb2.PubsubSubscriptionType.Name(s.type),
        )
        for s in response.subscriptions
    ]
    assert listed == [
        ("pubsub", "declared-v1", {}, [("", "/v1-orders")], "declared-dead", "DECLARATIVE"),
        ("pubsub", "prog", {"k": "v"}, [('event.type == "x"', "/x"), ("", "/y")], "d", "PROGRAMMATIC"),
    ]


def test_raw_payload_subscriptions_get_the_bytes_wrapped_in_data_base64(
    components: Path, dapr_sidecar_factory
) -> None:
    programmatic = [
        {"pubsubname": "pubsub", "topic": "raw", "route": "/raw", "metadata": {"rawPayload": "true"}}
    ]
    with subscriber_app(programmatic) as app:
        _sidecar, endpoint = start(dapr_sidecar_factory, components, app)
        publish(endpoint, "raw", {"n": 1}, publish_metadata={"rawPayload": "true"})
        (request,) = app.wait_for("/raw")
        assert request.header("Content-Type") == "application/cloudevents+json"
        event = json.loads(request.body)
        assert sorted(event) == [
            "data_base64",
            "datacontenttype",
            "id",
            "pubsubname",
            "source",
            "specversion",
            "topic",
            "traceid",
            "tracestate",
            "type",
        ]
        assert base64.b64decode(event["data_base64"]) == b'{"n": 1}'
        assert event["datacontenttype"] == "application/octet-stream"
        assert (event["topic"], event["pubsubname"], event["type"], event["source"]) == (
            "raw",
            "pubsub",
            "com.dapr.event.sent",
            "Dapr",
        )


def test_cel_comparisons_and_evaluation_errors_as_daprd(components: Path, dapr_sidecar_factory) -> None:
    routes = {
        "rules": [
            {"match": "event.data.size > 1", "path": "/big"},
            {"match": "event.data.size == 1", "path": "/one"},
        ],
        "default": "/small",
    }
    subscriptions = [
        {"pubsubname": "pubsub", "topic": "cel", "routes": routes, "deadLetterTopic": "dead"},
        {"pubsubname": "pubsub", "topic": "dead", "route": "/dead"},
    ]
    with subscriber_app(subscriptions) as app:
        _sidecar, endpoint = start(dapr_sidecar_factory, components, app)
        # A missing key and a string compared with a number are CEL errors: dead-lettered.
        for data in ({"size": 2}, {"size": 1}, {"size": 0}, {"other": 1}, {"size": "x"}, {"size": 1.5}):
            publish(endpoint, "cel", data)
        wait_until(lambda: len([r for r in app.received if r.method == "POST"]) >= 6, what="six deliveries")
        time.sleep(0.3)
        # Dead letters are published again, so they may arrive after later events.
        delivered = sorted(
            (r.path, json.dumps(json.loads(r.body)["data"])) for r in app.received if r.method == "POST"
        )
        assert delivered == [
            ("/big", '{"size": 1.5}'),
            ("/big", '{"size": 2}'),
            ("/dead", '{"other": 1}'),
            ("/dead", '{"size": "x"}'),
            ("/one", '{"size": 1}'),
            ("/small", '{"size": 0}'),
        ]


def test_bulk_subscribe_is_not_implemented_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    from dapr_agents.ext.devsidecar._subscriptions import parse_programmatic

    entry = {"pubsubname": "pubsub", "topic": "t", "route": "/t", "bulkSubscribe": {"enabled": True}}
    (subscription,) = parse_programmatic([entry])
    assert subscription.route({}) == "/t"
    assert "bulkSubscribe, which the dev sidecar does not implement" in caplog.text
