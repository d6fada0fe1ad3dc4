"""Pub/sub conformance through streaming subscriptions of the official sync and aio clients.

daprd 1.18's rules for ``pubsub.in-memory``: every stream is a subscriber and gets every event
(several streams to one topic included); RETRY is redelivered only under a resiliency retry
policy (``pubsub-retry`` has one, 2 retries; daprd applies a Resiliency only as the first
document of its file), otherwise the event goes once to the dead-letter topic or is lost; DROP
goes to the dead-letter topic when there is one.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import urllib.request

import grpc
import pytest
from conftest import Dapr
from dapr.proto.runtime.v1 import metadata_pb2
from helpers import rpc_fails

from dapr_agents.ext.devsidecar.testing import external_mode

PUBSUB = "pubsub"


@pytest.fixture
def dapr_state_backend() -> str:
    """Pub/sub does not depend on the state store: one backend is enough."""
    return "external" if external_mode() else "in-memory"


async def test_json_event_arrives_as_a_cloud_event(dapr, unique):
    topic = f"{unique}-orders"
    subscription = await dapr.subscribe(PUBSUB, topic)
    await dapr.call(
        "publish_event",
        PUBSUB,
        topic,
        json.dumps({"order": 7, "items": ["a"]}),
        data_content_type="application/json",
    )
    message = await subscription.next()
    assert message.data() == {"order": 7, "items": ["a"]}
    assert message.data_content_type() == "application/json"
    assert message.type() == "com.dapr.event.sent"
    assert message.spec_version() == "1.0"
    assert message.source() == "test-app" or message.source()  # the publishing app id
    assert message.topic() == topic
    assert message.pubsub_name() == PUBSUB
    assert re.fullmatch(r"[0-9a-f-]{36}", message.id())
    extensions = message.extensions()
    assert extensions["topic"] == topic
    assert extensions["pubsubname"] == PUBSUB
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)", extensions["time"])
    await subscription.respond(message, "success")


async def test_text_and_binary_payloads(dapr, unique):
    topic = f"{unique}-mixed"
    subscription = await dapr.subscribe(PUBSUB, topic)
    await dapr.call("publish_event", PUBSUB, topic, "plain words", data_content_type="text/plain")
    text = await subscription.next()
    assert text.raw_data() == b"plain words"
    assert text.data() == "plain words"
    await subscription.respond(text, "success")
    await dapr.call(
        "publish_event", PUBSUB, topic, b"\x00\xffbinary", data_content_type="application/octet-stream"
    )
    binary = await subscription.next()
    assert binary.raw_data() == b"\x00\xffbinary"
    assert binary.data_content_type() == "application/octet-stream"
    await subscription.respond(binary, "success")


async def test_cloudevent_metadata_overrides_envelope_fields(dapr, unique):
    topic = f"{unique}-override"
    subscription = await dapr.subscribe(PUBSUB, topic)
    await dapr.call(
        "publish_event",
        PUBSUB,
        topic,
        json.dumps({"x": 1}),
        data_content_type="application/json",
        publish_metadata={
            "cloudevent.id": f"{unique}-id",
            "cloudevent.type": "OrderPlaced",
            "cloudevent.source": "checkout",
            "cloudevent.subject": "order-1",
        },
    )
    message = await subscription.next()
    assert message.id() == f"{unique}-id"
    assert message.type() == "OrderPlaced"
    assert message.source() == "checkout"
    assert message.extensions()["subject"] == "order-1"
    await subscription.respond(message, "success")


def streams(raw_stub, topic: str) -> list:
    """The metadata's subscriptions to ``topic`` (the SDK's GetMetadataResponse omits them)."""
    response = raw_stub.GetMetadata(metadata_pb2.GetMetadataRequest(), metadata=raw_stub.call_metadata)
    return [s for s in response.subscriptions if s.topic == topic]


def http_streams(sidecar, topic: str) -> list:
    """The subscriptions to ``topic`` in the HTTP metadata document (``GET /v1.0/metadata``)."""
    headers = {"dapr-api-token": sidecar.api_token} if sidecar.api_token else {}
    request = urllib.request.Request(f"{sidecar.http_endpoint}/v1.0/metadata", headers=headers)
    with urllib.request.urlopen(request, timeout=5) as answer:
        return [s for s in json.load(answer).get("subscriptions", []) if s["topic"] == topic]


async def wait_listed(raw_stub, topic: str, count: int) -> list:
    """The metadata's streams to ``topic`` once there are ``count`` (a closed stream leaves the
    list when daprd has torn it down, shortly after the client closed it)."""
    deadline = asyncio.get_running_loop().time() + 5
    while len(listed := await asyncio.to_thread(streams, raw_stub, topic)) != count:
        assert asyncio.get_running_loop().time() < deadline, f"{len(listed)} streams listed, not {count}"
        await asyncio.sleep(0.05)
    return listed


async def test_several_streaming_subscriptions_to_one_topic_each_get_every_event(
    dapr, raw_stub, dapr_sidecar, unique
):
    """daprd 1.18 accepts any number of streams to one pub/sub topic, from one client or several
    (each has its own connection id), lists each in its metadata as STREAMING in subscription
    order, and ``pubsub.in-memory`` hands every event to every stream.

    Streams are closed oldest first here. daprd 1.18.2 has a bug when a newer stream closes while
    an older one to the same topic is open: ``pubsub.in-memory`` unsubscribes by comparing handler
    functions, which all look alike, so it removes the oldest stream's handler instead of the
    closed one's; the oldest stream stays open and listed but gets nothing more. The dev sidecar
    keeps delivering to it (see the README, "Known differences from daprd")."""
    topic, dead = f"{unique}-streams", f"{unique}-streams-dead"
    other = await Dapr(dapr.kind).open()
    try:
        first = await dapr.subscribe(PUBSUB, topic)
        second = await dapr.subscribe(PUBSUB, topic, dead_letter_topic=dead)  # the same client
        third = await other.subscribe(PUBSUB, topic)  # another client, another channel
        listed = await asyncio.to_thread(streams, raw_stub, topic)
        assert [(s.pubsub_name, s.type, s.dead_letter_topic) for s in listed] == [
            (PUBSUB, metadata_pb2.PubsubSubscriptionType.STREAMING, ""),
            (PUBSUB, metadata_pb2.PubsubSubscriptionType.STREAMING, dead),
            (PUBSUB, metadata_pb2.PubsubSubscriptionType.STREAMING, ""),
        ]
        assert [[rule.path for rule in s.rules.rules] for s in listed] == [["/"]] * 3
        documented = await asyncio.to_thread(http_streams, dapr_sidecar, topic)
        assert documented == [
            {
                "pubsubname": PUBSUB,
                "topic": topic,
                "rules": [{"path": "/"}],
                "deadLetterTopic": "",
                "type": "STREAMING",
            },
            {
                "pubsubname": PUBSUB,
                "topic": topic,
                "rules": [{"path": "/"}],
                "deadLetterTopic": dead,
                "type": "STREAMING",
            },
            {
                "pubsubname": PUBSUB,
                "topic": topic,
                "rules": [{"path": "/"}],
                "deadLetterTopic": "",
                "type": "STREAMING",
            },
        ]

        async def everyone_gets(number: int, subscriptions: list) -> None:
            await dapr.call(
                "publish_event",
                PUBSUB,
                topic,
                json.dumps({"n": number}),
                data_content_type="application/json",
            )
            ids = set()
            for subscription in subscriptions:
                message = await subscription.next()
                assert message.data() == {"n": number}
                ids.add(message.id())
                await subscription.respond(message, "success")
            assert len(ids) == 1  # one event, handed to each stream

        await everyone_gets(1, [first, second, third])
        await first.close()
        await wait_listed(raw_stub, topic, 2)
        await everyone_gets(2, [second, third])
        await second.close()
        assert [s.dead_letter_topic for s in await wait_listed(raw_stub, topic, 1)] == [""]
        await everyone_gets(3, [third])
        await third.close()
        await wait_listed(raw_stub, topic, 0)
        again = await dapr.subscribe(PUBSUB, topic)
        await everyone_gets(4, [again])
    finally:
        await other.close()


async def test_retry_without_policy_goes_once_to_the_dead_letter_topic(dapr, unique):
    topic, dead = f"{unique}-work", f"{unique}-dead"
    dead_letters = await dapr.subscribe(PUBSUB, dead)
    subscription = await dapr.subscribe(PUBSUB, topic, dead_letter_topic=dead)
    await dapr.call(
        "publish_event", PUBSUB, topic, json.dumps({"job": 1}), data_content_type="application/json"
    )
    message = await subscription.next()
    await subscription.respond(message, "retry")
    letter = await dead_letters.next()
    assert letter.id() == message.id()
    assert letter.data() == {"job": 1}
    assert letter.topic() == dead
    assert letter.extensions()["topic"] == topic  # the envelope keeps the original topic
    await dead_letters.respond(letter, "success")
    # Not redelivered: the next event on the stream is the next one published.
    await dapr.call(
        "publish_event", PUBSUB, topic, json.dumps({"job": 2}), data_content_type="application/json"
    )
    following = await subscription.next()
    assert following.data() == {"job": 2}
    await subscription.respond(following, "success")


async def test_drop_goes_to_the_dead_letter_topic(dapr, unique):
    topic, dead = f"{unique}-drop", f"{unique}-drop-dead"
    dead_letters = await dapr.subscribe(PUBSUB, dead)
    subscription = await dapr.subscribe(PUBSUB, topic, dead_letter_topic=dead)
    await dapr.call("publish_event", PUBSUB, topic, "poison", data_content_type="text/plain")
    message = await subscription.next()
    await subscription.respond(message, "drop")
    letter = await dead_letters.next()
    assert letter.raw_data() == b"poison"
    await dead_letters.respond(letter, "success")


async def test_retry_is_redelivered_under_a_resiliency_policy_then_dead_lettered(dapr, unique):
    """``pubsub-retry``'s inbound policy (constant 20 ms, maxRetries 2, in a file of its own):
    daprd redelivers a RETRY twice, about 20 ms apart, then sends the event once to the
    dead-letter topic; the stream then gets the next event published, not a fourth delivery."""
    topic, dead = f"{unique}-flaky", f"{unique}-flaky-dead"
    dead_letters = await dapr.subscribe("pubsub-retry", dead)
    subscription = await dapr.subscribe("pubsub-retry", topic, dead_letter_topic=dead)
    await dapr.call(
        "publish_event", "pubsub-retry", topic, json.dumps({"try": 1}), data_content_type="application/json"
    )
    ids, times = [], []
    for _ in range(3):  # the first delivery plus maxRetries=2 redeliveries
        message = await subscription.next()
        ids.append(message.id())
        times.append(asyncio.get_running_loop().time())
        await subscription.respond(message, "retry")
    assert len(set(ids)) == 1
    assert min(later - earlier for earlier, later in itertools.pairwise(times)) >= 0.018
    letter = await dead_letters.next()
    assert letter.id() == ids[0]
    assert letter.data() == {"try": 1}
    await dead_letters.respond(letter, "success")
    await dapr.call(
        "publish_event", "pubsub-retry", topic, json.dumps({"try": 2}), data_content_type="application/json"
    )
    following = await subscription.next()
    assert following.data() == {"try": 2}
    await subscription.respond(following, "success")


async def test_retry_then_success_is_delivered_once_more_only(dapr, unique):
    """Under ``pubsub-retry``'s policy a RETRY is redelivered with the same id; the SUCCESS that
    follows ends it: no further delivery and nothing for the dead-letter topic."""
    topic, dead = f"{unique}-eventually", f"{unique}-eventually-dead"
    dead_letters = await dapr.subscribe("pubsub-retry", dead)
    subscription = await dapr.subscribe("pubsub-retry", topic, dead_letter_topic=dead)
    await dapr.call("publish_event", "pubsub-retry", topic, "x", data_content_type="text/plain")
    first = await subscription.next()
    await subscription.respond(first, "retry")
    second = await subscription.next()
    assert second.id() == first.id()
    assert second.raw_data() == b"x"
    await subscription.respond(second, "success")
    await dapr.call("publish_event", "pubsub-retry", topic, "y", data_content_type="text/plain")
    following = await subscription.next()
    assert following.raw_data() == b"y"
    await subscription.respond(following, "success")
    # The dead-letter stream's first event is one published to it now, not the "x" event.
    await dapr.call("publish_event", "pubsub-retry", dead, "marker", data_content_type="text/plain")
    marker = await dead_letters.next()
    assert marker.raw_data() == b"marker"
    await dead_letters.respond(marker, "success")


async def test_a_resiliency_after_the_first_document_of_its_file_is_not_applied(dapr, unique):
    """``pubsub-late-policy`` has the same retry policy as ``pubsub-retry``, but as the second
    document of its file (see conftest and external-components). daprd reads a Resiliency only as
    the first document of a file, so a RETRY is not redelivered: it goes once to the dead-letter
    topic."""
    topic, dead = f"{unique}-late", f"{unique}-late-dead"
    dead_letters = await dapr.subscribe("pubsub-late-policy", dead)
    subscription = await dapr.subscribe("pubsub-late-policy", topic, dead_letter_topic=dead)
    await dapr.call("publish_event", "pubsub-late-policy", topic, "once", data_content_type="text/plain")
    message = await subscription.next()
    await subscription.respond(message, "retry")
    letter = await dead_letters.next()
    assert letter.id() == message.id()
    await dead_letters.respond(letter, "success")
    await dapr.call("publish_event", "pubsub-late-policy", topic, "next", data_content_type="text/plain")
    following = await subscription.next()
    assert following.raw_data() == b"next"
    await subscription.respond(following, "success")


async def test_publishing_to_an_unknown_pubsub_is_refused(dapr):
    with rpc_fails() as failure:
        await dapr.call("publish_event", "no-such-pubsub", "t", "x")
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.details == "pubsub no-such-pubsub is not found"
    assert failure.reason == "DAPR_PUBSUB_NOT_FOUND"


async def test_publishing_without_a_topic_is_refused(dapr):
    with rpc_fails() as failure:
        await dapr.call("publish_event", PUBSUB, "", "x")
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.details == f"topic is empty in pubsub {PUBSUB}"


async def test_raw_payload_is_delivered_as_is_to_a_raw_subscriber(dapr, unique):
    topic = f"{unique}-raw"
    subscription = await dapr.subscribe(PUBSUB, topic, metadata={"rawPayload": "true"})
    await dapr.call("publish_event", PUBSUB, topic, b"\x01\x02raw", publish_metadata={"rawPayload": "true"})
    message = await subscription.next()
    assert message.raw_data() == b"\x01\x02raw"
    assert message.data_content_type() == "application/octet-stream"
    await subscription.respond(message, "success")


async def test_an_invalid_raw_payload_flag_is_refused(dapr, unique):
    with rpc_fails() as failure:
        await dapr.call("publish_event", PUBSUB, f"{unique}-t", "x", publish_metadata={"rawPayload": "maybe"})
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "rawPayload value must be a valid boolean: actual is 'maybe'" in failure.details


async def test_invalid_json_travels_as_a_json_string(dapr, unique):
    topic = f"{unique}-notjson"
    subscription = await dapr.subscribe(PUBSUB, topic)
    await dapr.call("publish_event", PUBSUB, topic, "{broken", data_content_type="application/json")
    message = await subscription.next()
    assert message.raw_data() == b'"{broken"'
    await subscription.respond(message, "success")


async def test_subscribing_to_an_unknown_pubsub_fails(dapr, unique):
    with pytest.raises(Exception) as failure:
        await dapr.subscribe("no-such-pubsub", f"{unique}-t")
    assert "pubsub no-such-pubsub is not found" in str(failure.value) or "not found" in repr(
        failure.value.__cause__
    )


async def test_bulk_publish_reaches_the_subscriber(dapr, unique):
    if dapr.kind == "aio":
        pytest.skip("the aio client has no publish_events")
    topic = f"{unique}-bulk"
    subscription = await dapr.subscribe(PUBSUB, topic)
    # daprd publishes the entries in parallel and answers when all are handed over; the in-memory
    # bus hands a subscriber one event at a time, so the call returns once the subscriber acked.
    publishing = asyncio.ensure_future(
        dapr.call(
            "publish_events",
            PUBSUB,
            topic,
            [json.dumps({"i": i}) for i in range(3)],
            data_content_type="application/json",
        )
    )
    received = []
    for _ in range(3):
        message = await subscription.next()
        received.append(message.data()["i"])
        await subscription.respond(message, "success")
    response = await asyncio.wait_for(publishing, 5)
    assert not response.failed_entries
    assert sorted(received) == [0, 1, 2]


async def test_a_ttl_sets_the_expiration(dapr, unique):
    topic = f"{unique}-ttl"
    subscription = await dapr.subscribe(PUBSUB, topic)
    await dapr.call(
        "publish_event",
        PUBSUB,
        topic,
        "soon",
        data_content_type="text/plain",
        publish_metadata={"ttlInSeconds": "60"},
    )
    message = await subscription.next()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", message.extensions()["expiration"])
    await subscription.respond(message, "success")


async def test_base64_binary_round_trip_is_exact(dapr, unique):
    topic = f"{unique}-b64"
    payload = bytes(range(256))
    subscription = await dapr.subscribe(PUBSUB, topic)
    await dapr.call("publish_event", PUBSUB, topic, payload, data_content_type="application/octet-stream")
    message = await subscription.next()
    assert message.raw_data() == payload
    assert base64.b64encode(message.raw_data()) == base64.b64encode(payload)
    await subscription.respond(message, "success")


async def test_events_published_before_subscribing_are_not_delivered(dapr, unique):
    topic = f"{unique}-late"
    await dapr.call("publish_event", PUBSUB, topic, "early", data_content_type="text/plain")
    subscription = await dapr.subscribe(PUBSUB, topic)
    await dapr.call("publish_event", PUBSUB, topic, "late", data_content_type="text/plain")
    message = await subscription.next()
    assert message.raw_data() == b"late"
    await subscription.respond(message, "success")


async def test_a_second_event_waits_for_the_first_acknowledgement(dapr, unique):
    # daprd's in-memory bus gives a subscriber one event at a time: a publish blocks until the
    # subscriber acknowledged the previous event.
    topic = f"{unique}-serial"
    subscription = await dapr.subscribe(PUBSUB, topic)
    await dapr.call("publish_event", PUBSUB, topic, "one", data_content_type="text/plain")
    first = await subscription.next()
    second_publish = asyncio.ensure_future(
        dapr.call("publish_event", PUBSUB, topic, "two", data_content_type="text/plain")
    )
    await asyncio.sleep(0.3)
    assert not second_publish.done()
    await subscription.respond(first, "success")
    await asyncio.wait_for(second_publish, 5)
    second = await subscription.next()
    assert second.raw_data() == b"two"
    await subscription.respond(second, "success")
