"""``pubsub.redis`` over the wire (official sync and aio clients), and the Redis streams it leaves,
which dev sidecars and daprds sharing one Redis must agree on.

Every test starts its sidecars with ``dapr_sidecar_factory``: dev sidecars, or with
``DAPR_TEST_SIDECAR=daprd`` Dapr's real runtime (its ``pubsub.redis`` from components-contrib).
The backend-independent conformance tests of ``test_pubsub_conformance`` run here again, against
``pubsub.redis`` components; the in-memory bus's own rules (fan-out to every stream of an app,
events published before anyone subscribed lost, one event at a time) are replaced here by the
Redis ones: a consumer group per app that starts at the beginning of the stream, streams of one
app splitting the events, several events in flight, redelivery of what was not acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket

import pytest
import redis
from apps import HttpApp, Received, Reply, wait_until
from conftest import RESILIENCY_YAML, Dapr
from dapr.clients import DaprClient
from dapr.proto.runtime.v1 import metadata_pb2
from sidecars import component, components, endpoint_of, raw_stub

# The backend-independent conformance tests, collected again here: with this module's
# ``dapr_sidecar`` they run against pubsub.redis.
from test_pubsub_conformance import (  # noqa: F401
    test_a_resiliency_after_the_first_document_of_its_file_is_not_applied,
    test_a_ttl_sets_the_expiration,
    test_an_invalid_raw_payload_flag_is_refused,
    test_base64_binary_round_trip_is_exact,
    test_bulk_publish_reaches_the_subscriber,
    test_cloudevent_metadata_overrides_envelope_fields,
    test_drop_goes_to_the_dead_letter_topic,
    test_invalid_json_travels_as_a_json_string,
    test_json_event_arrives_as_a_cloud_event,
    test_publishing_to_an_unknown_pubsub_is_refused,
    test_publishing_without_a_topic_is_refused,
    test_raw_payload_is_delivered_as_is_to_a_raw_subscriber,
    test_retry_is_redelivered_under_a_resiliency_policy_then_dead_lettered,
    test_retry_then_success_is_delivered_once_more_only,
    test_retry_without_policy_goes_once_to_the_dead_letter_topic,
    test_subscribing_to_an_unknown_pubsub_fails,
    test_text_and_binary_payloads,
)

from dapr_agents.ext.devsidecar import DevSidecar
from dapr_agents.ext.devsidecar._components import Component
from dapr_agents.ext.devsidecar._errors import ComponentError
from dapr_agents.ext.devsidecar._pubsub_redis import RedisStreamsSettings
from dapr_agents.ext.devsidecar.testing import sidecar_mode

pytestmark = pytest.mark.starts_sidecars

PUBSUB = "pubsub"
# Redelivery within a test's patience: a plain number is milliseconds, as in daprd.
QUICK_REDELIVERY = {"processingTimeout": "1000", "redeliverInterval": "200"}


def redis_pubsub(redis_server, name: str = PUBSUB, **metadata: str) -> str:
    return component(name, "pubsub.redis", {"redisHost": redis_server.address, **metadata})


LATE_POLICY = """\
# Not applied: daprd reads a Resiliency only as the first document of its file.
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: not-applied
spec:
  policies:
    retries:
      quickRetry:
        policy: constant
        duration: 20ms
        maxRetries: 2
  targets:
    components:
      pubsub-late-policy:
        inbound:
          retry: quickRetry
"""


@pytest.fixture
def redis_folder(tmp_path, redis_server):
    """The conformance suite's pub/subs (``pubsub``, ``pubsub-retry`` with its inbound retry
    policy, ``pubsub-late-policy`` whose policy is not applied), as ``pubsub.redis``, plus
    ``pubsub-quick`` that redelivers what is not acknowledged within 1 s and ``pubsub-serial``
    with one worker."""
    folder = components(
        tmp_path / "components",
        redis_pubsub(redis_server),
        redis_pubsub(redis_server, "pubsub-retry"),
        redis_pubsub(redis_server, "pubsub-quick", **QUICK_REDELIVERY),
        redis_pubsub(redis_server, "pubsub-serial", concurrency="1"),
    )
    (folder / "resiliency.yaml").write_text(RESILIENCY_YAML)
    (folder / "late-policy.yaml").write_text(
        redis_pubsub(redis_server, "pubsub-late-policy") + "---\n" + LATE_POLICY
    )
    return folder


@pytest.fixture
def dapr_sidecar(redis_folder, dapr_sidecar_factory):
    """This module's sidecar (``test-app``) serving the ``pubsub.redis`` components."""
    endpoint = endpoint_of(dapr_sidecar_factory.start(redis_folder, app_id="test-app"))
    with endpoint.sdk_configured():
        yield endpoint


@pytest.fixture
def redis_client(redis_server):
    host, port = redis_server.address.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port))
    yield client
    client.close()


@pytest.fixture(params=["sync", "aio"])
def kind(request) -> str:
    return str(request.param)


async def client_of(sidecar, kind: str) -> Dapr:
    with endpoint_of(sidecar).sdk_configured():
        return await Dapr(kind).open()


class Inbox:
    """Reads a subscription in the background, one read at a time. A read given up after a timeout
    does not return its event: the sync SDK's thread still takes the next one, the aio SDK's
    cancelled read ends the stream. So reads here never time out; the inbox is checked instead."""

    def __init__(self, subscription, *, ack: bool = True) -> None:
        self.subscription = subscription
        self.messages: list = []
        self._ack = ack
        self._arrived = asyncio.Event()
        self._task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            try:
                message = await self.subscription.next(3600)
            except (Exception, asyncio.CancelledError):  # the stream ended (the aio SDK: cancelled)
                return
            self.messages.append(message)
            self._arrived.set()
            if self._ack:
                await self.subscription.respond(message, "success")

    async def wait_for(self, count: int, timeout: float = 5.0) -> list:
        """The first ``count`` events, once they arrived."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.messages) < count:
            remaining = deadline - asyncio.get_running_loop().time()
            assert remaining > 0, f"{len(self.messages)} event(s) arrived, not {count}"
            self._arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return self.messages[:count]

    async def quiet(self, period: float = 0.5) -> list:
        """Every event so far, once none came for ``period`` s."""
        while True:
            count = len(self.messages)
            await asyncio.sleep(period)
            if len(self.messages) == count:
                return list(self.messages)

    def data(self) -> list[bytes]:
        return [m.raw_data() for m in self.messages]

    async def close(self) -> None:
        await self.subscription.close()
        try:
            await asyncio.wait_for(self._task, 5)
        except (asyncio.TimeoutError, TimeoutError):
            self._task.cancel()


async def pending_count(redis_client, topic: str, group: str = "test-app") -> int:
    summary = await asyncio.to_thread(redis_client.xpending, topic, group)
    return int(summary["pending"])


async def wait_until_settled(redis_client, topic: str, group: str = "test-app") -> None:
    """The group's pending list is empty once the sidecar acknowledged (XACK) everything."""
    deadline = asyncio.get_running_loop().time() + 5
    while (count := await pending_count(redis_client, topic, group)) != 0:
        assert asyncio.get_running_loop().time() < deadline, f"{count} entries still pending in {group}"
        await asyncio.sleep(0.05)


# -- the Redis layout ------------------------------------------------------------------------


async def test_a_topic_is_a_stream_of_data_and_metadata_fields(dapr, redis_client, unique):
    topic = f"{unique}-layout"
    await dapr.call(
        "publish_event",
        PUBSUB,
        topic,
        json.dumps({"order": 1}),
        data_content_type="application/json",
        publish_metadata={"cloudevent.type": "OrderPlaced", "note": "<&>"},
    )
    await dapr.call("publish_event", PUBSUB, topic, "plain", data_content_type="text/plain")
    await dapr.call("publish_event", PUBSUB, topic, b"\x00raw", publish_metadata={"rawPayload": "true"})
    entries = await asyncio.to_thread(redis_client.xrange, topic)
    assert [sorted(fields) for _id, fields in entries] == [
        [b"data", b"metadata"],
        [b"data"],  # no publish metadata, no metadata field
        [b"data", b"metadata"],
    ]
    event = json.loads(entries[0][1][b"data"])
    assert event["data"] == {"order": 1}
    assert (event["type"], event["topic"], event["pubsubname"], event["source"]) == (
        "OrderPlaced",
        topic,
        PUBSUB,
        "test-app",
    )
    # Go's JSON: keys sorted, <, > and & escaped.
    assert entries[0][1][b"metadata"] == b'{"cloudevent.type":"OrderPlaced","note":"\\u003c\\u0026\\u003e"}'
    assert json.loads(entries[1][1][b"data"])["data"] == "plain"
    assert entries[2][1] == {
        b"data": b"\x00raw",
        b"metadata": b'{"rawPayload":"true","traceid":"","tracestate":""}',
    }


async def test_each_app_reads_through_a_consumer_group_named_after_it(dapr, redis_client, unique):
    topic = f"{unique}-groups"
    subscription = await dapr.subscribe(PUBSUB, topic)
    groups = await asyncio.to_thread(redis_client.xinfo_groups, topic)
    assert [group["name"] for group in groups] == [b"test-app"]
    await dapr.call("publish_event", PUBSUB, topic, "x", data_content_type="text/plain")
    message = await subscription.next()
    assert await pending_count(redis_client, topic) == 1  # read, not yet acknowledged
    await subscription.respond(message, "success")
    await wait_until_settled(redis_client, topic)
    consumers = await asyncio.to_thread(redis_client.xinfo_consumers, topic, "test-app")
    assert [consumer["name"] for consumer in consumers] == [b"test-app"]


async def test_the_metadata_lists_pubsub_redis_without_capabilities(dapr_sidecar):
    with raw_stub(dapr_sidecar) as stub:
        response = stub.GetMetadata(metadata_pb2.GetMetadataRequest())
    listed = {c.name: (c.type, c.version, list(c.capabilities)) for c in response.registered_components}
    assert listed[PUBSUB] == ("pubsub.redis", "v1", [])


async def test_max_len_approx_trims_the_stream(
    tmp_path, dapr_sidecar_factory, redis_server, redis_client, unique
):
    folder = components(tmp_path / "trim", redis_pubsub(redis_server, maxLenApprox="10"))
    sidecar = dapr_sidecar_factory.start(folder, app_id="trimmer")
    topic = f"{unique}-trimmed"
    dapr = await client_of(sidecar, "aio")
    try:
        for number in range(300):
            await dapr.call("publish_event", PUBSUB, topic, str(number), data_content_type="text/plain")
    finally:
        await dapr.close()
    # XADD MAXLEN ~ 10: Redis drops whole nodes of (by default) 100 entries.
    assert await asyncio.to_thread(redis_client.xlen, topic) <= 110


# -- delivery ----------------------------------------------------------------------------------


async def test_an_event_published_before_anyone_subscribed_is_delivered(dapr, redis_client, unique):
    """daprd creates an app's consumer group at ``0``, the start of the stream: its first
    subscription reads what was published before (in any order: ten workers hand events over).

    daprd 1.18.2 starts reading before it registers the stream it reads for: an event read in
    that window fails ("no streamer subscribed") and is acknowledged, so it is lost; on a busy
    machine it happens to what is already in the stream. The dev sidecar registers the stream
    first and delivers them (README, "Known differences from daprd"). Both read the whole
    stream and leave nothing pending."""
    topic = f"{unique}-early"
    for word in ("first", "second"):
        await dapr.call("publish_event", PUBSUB, topic, word, data_content_type="text/plain")
    last_id = (await asyncio.to_thread(redis_client.xrange, topic))[-1][0]
    inbox = Inbox(await dapr.subscribe(PUBSUB, topic))
    if sidecar_mode() == "dev":
        await inbox.wait_for(2)
        assert sorted(inbox.data()) == [b"first", b"second"]
    deadline = asyncio.get_running_loop().time() + 5
    while (await asyncio.to_thread(redis_client.xinfo_groups, topic))[0]["last-delivered-id"] != last_id:
        assert asyncio.get_running_loop().time() < deadline, "the group did not read from the start"
        await asyncio.sleep(0.05)
    await wait_until_settled(redis_client, topic)
    assert set(inbox.data()) <= {b"first", b"second"}
    # Once delivered to the app, not again to its next subscription.
    await inbox.close()
    again = Inbox(await dapr.subscribe(PUBSUB, topic))
    await dapr.call("publish_event", PUBSUB, topic, "third", data_content_type="text/plain")
    await again.wait_for(1)
    assert [m.raw_data() for m in await again.quiet()] == [b"third"]
    await again.close()


async def test_apps_each_get_every_event_and_streams_of_one_app_split_them(
    tmp_path, dapr_sidecar_factory, redis_server, kind, unique
):
    folder = components(tmp_path / "components", redis_pubsub(redis_server))
    orders, shipping = (
        dapr_sidecar_factory.start(folder, app_id=f"{unique}-{name}") for name in ("orders", "ship")
    )
    topic = f"{unique}-shared"
    orders_client, shipping_client = await client_of(orders, kind), await client_of(shipping, kind)
    try:
        first = Inbox(await orders_client.subscribe(PUBSUB, topic))
        second = Inbox(await orders_client.subscribe(PUBSUB, topic))
        shipping_inbox = Inbox(await shipping_client.subscribe(PUBSUB, topic))
        sent = [f"e{number}".encode() for number in range(6)]
        for word in sent:
            await shipping_client.call("publish_event", PUBSUB, topic, word, data_content_type="text/plain")
            await asyncio.sleep(0.1)  # each event wakes the stream that waited longest
        await shipping_inbox.wait_for(6)
        await first.quiet()
        assert sorted(first.data() + second.data()) == sent  # each event once to the app
        assert first.data() and second.data()  # shared between its two streams
        assert sorted(m.raw_data() for m in await shipping_inbox.quiet()) == sent
        for inbox in (first, second, shipping_inbox):
            await inbox.close()
    finally:
        await orders_client.close()
        await shipping_client.close()


async def test_apps_with_one_consumer_id_share_the_events(
    tmp_path, dapr_sidecar_factory, redis_server, redis_client, kind, unique
):
    folder = components(tmp_path / "components", redis_pubsub(redis_server, consumerID=f"{unique}-workers"))
    sidecars = [dapr_sidecar_factory.start(folder, app_id=f"{unique}-{n}") for n in (1, 2)]
    topic = f"{unique}-jobs"
    clients = [await client_of(sidecar, kind) for sidecar in sidecars]
    try:
        inboxes = [Inbox(await client.subscribe(PUBSUB, topic)) for client in clients]
        groups = await asyncio.to_thread(redis_client.xinfo_groups, topic)
        assert [group["name"].decode() for group in groups] == [f"{unique}-workers"]
        for number in range(4):
            await clients[0].call("publish_event", PUBSUB, topic, str(number), data_content_type="text/plain")
            await asyncio.sleep(0.1)
        await wait_until_settled(redis_client, topic, f"{unique}-workers")
        await inboxes[0].quiet()
        assert sorted(inboxes[0].data() + inboxes[1].data()) == [b"0", b"1", b"2", b"3"]
        assert inboxes[0].data() and inboxes[1].data()
        for inbox in inboxes:
            await inbox.close()
    finally:
        for client in clients:
            await client.close()


async def test_several_events_are_in_flight_at_once_unless_concurrency_is_one(dapr, unique):
    """daprd hands Redis messages to ``concurrency`` workers (10 by default): a stream gets the
    next events before it acknowledged the first. With ``concurrency: 1`` it gets one at a time."""
    topic = f"{unique}-parallel"
    subscription = await dapr.subscribe(PUBSUB, topic)
    for word in ("a", "b", "c"):
        await dapr.call("publish_event", PUBSUB, topic, word, data_content_type="text/plain")
    in_flight = [await subscription.next() for _ in range(3)]
    assert sorted(m.raw_data() for m in in_flight) == [b"a", b"b", b"c"]
    for message in in_flight:
        await subscription.respond(message, "success")

    topic = f"{unique}-serial"
    serial = Inbox(await dapr.subscribe("pubsub-serial", topic), ack=False)
    for word in ("one", "two"):
        await dapr.call("publish_event", "pubsub-serial", topic, word, data_content_type="text/plain")
    [first] = await serial.wait_for(1)
    assert first.raw_data() == b"one"
    assert len(await serial.quiet(0.5)) == 1
    await serial.subscription.respond(first, "success")
    second = (await serial.wait_for(2))[1]
    assert second.raw_data() == b"two"
    await serial.subscription.respond(second, "success")
    await serial.close()


async def test_every_verdict_is_acknowledged_and_a_dead_letter_keeps_the_metadata(dapr, redis_client, unique):
    """SUCCESS, DROP and a RETRY the resiliency policy gave up on (none here) all end with XACK:
    nothing stays pending. The dead-letter copy is the same data with the publish metadata plus
    ``pubsubName``."""
    topic, dead = f"{unique}-verdicts", f"{unique}-verdicts-dead"
    subscription = await dapr.subscribe(PUBSUB, topic)
    for verdict in ("success", "drop", "retry"):
        await dapr.call("publish_event", PUBSUB, topic, verdict, data_content_type="text/plain")
        message = await subscription.next()
        await subscription.respond(message, verdict)
    await wait_until_settled(redis_client, topic)

    topic = f"{unique}-to-dead"
    dead_letters = await dapr.subscribe(PUBSUB, dead)
    doomed = await dapr.subscribe(PUBSUB, topic, dead_letter_topic=dead)
    await dapr.call(
        "publish_event", PUBSUB, topic, "doomed", data_content_type="text/plain", publish_metadata={"k": "v"}
    )
    await doomed.respond(await doomed.next(), "retry")
    letter = await dead_letters.next()
    await dead_letters.respond(letter, "success")
    await wait_until_settled(redis_client, topic)
    [(_id, fields)] = await asyncio.to_thread(redis_client.xrange, dead)
    original = (await asyncio.to_thread(redis_client.xrange, topic))[0][1]
    assert fields[b"data"] == original[b"data"]
    assert json.loads(fields[b"metadata"]) == {"k": "v", "pubsubName": PUBSUB}


async def test_an_event_in_flight_when_its_stream_closes_goes_to_the_next_subscriber(dapr, unique):
    """At-least-once: what a closed stream did not settle stays pending in the app's group and is
    claimed (XCLAIM) once idle for ``processingTimeout``, by the app's next subscription."""
    topic = f"{unique}-handover"
    subscription = await dapr.subscribe("pubsub-quick", topic)
    await dapr.call("publish_event", "pubsub-quick", topic, "unfinished", data_content_type="text/plain")
    unfinished = await subscription.next()
    await subscription.close()
    successor = await dapr.subscribe("pubsub-quick", topic)
    again = await successor.next(5)
    assert (again.id(), again.raw_data()) == (unfinished.id(), b"unfinished")
    await successor.respond(again, "success")


async def test_an_event_not_acknowledged_within_processing_timeout_is_delivered_again(
    dapr, redis_client, unique
):
    topic = f"{unique}-slow"
    subscription = await dapr.subscribe("pubsub-quick", topic)
    await dapr.call("publish_event", "pubsub-quick", topic, "slow", data_content_type="text/plain")
    first = await subscription.next()
    started = asyncio.get_running_loop().time()
    second = await subscription.next(5)  # the first delivery still waits for its answer
    assert asyncio.get_running_loop().time() - started >= 0.8
    assert (second.id(), second.raw_data()) == (first.id(), b"slow")
    await subscription.respond(second, "success")
    await wait_until_settled(redis_client, topic)


async def test_a_redeliver_interval_given_as_a_duration_is_ignored(
    tmp_path, dapr_sidecar_factory, redis_server, unique
):
    """daprd reads ``redeliverInterval`` only as milliseconds: "1s" leaves the default, 15 s, so an
    event held past ``processingTimeout`` is not delivered again within a few seconds."""
    folder = components(
        tmp_path / "c", redis_pubsub(redis_server, processingTimeout="300", redeliverInterval="1s")
    )
    dapr = await client_of(dapr_sidecar_factory.start(folder, app_id=f"{unique}-app"), "aio")
    try:
        topic = f"{unique}-held"
        inbox = Inbox(await dapr.subscribe(PUBSUB, topic), ack=False)
        await dapr.call("publish_event", PUBSUB, topic, "held", data_content_type="text/plain")
        [held] = await inbox.wait_for(1)
        await asyncio.sleep(3)
        assert inbox.messages == [held]
        await inbox.subscription.respond(held, "success")
        await inbox.close()
    finally:
        await dapr.close()


def test_an_apps_subscription_gets_what_was_published_before_it_ran(
    tmp_path, dapr_sidecar_factory, redis_server, redis_client, monkeypatch, unique
):
    """Subscriptions to the app read through the app's consumer group too: an app started after
    events were published gets them (daprd delivers these reliably: the app channel is there
    before it reads)."""
    monkeypatch.setenv("DAPR_DEVSIDECAR_HOME", str(tmp_path / "home"))
    folder = components(tmp_path / "c", redis_pubsub(redis_server))
    topic = f"{unique}-for-app"
    publisher = endpoint_of(dapr_sidecar_factory.start(folder, app_id=f"{unique}-publisher"))
    with publisher.sdk_configured(), DaprClient() as client:
        client.publish_event(PUBSUB, topic, json.dumps({"n": 1}), data_content_type="application/json")

    def answer(request: Received) -> Reply:
        if request.path == "/dapr/subscribe":
            routes = [{"pubsubname": PUBSUB, "topic": topic, "route": "/orders"}]
            return Reply(200, json.dumps(routes).encode(), [("Content-Type", "application/json")])
        return Reply(200)

    with HttpApp(answer) as app:
        dapr_sidecar_factory.start(folder, app_id=f"{unique}-consumer", app_port=app.port)
        (request,) = app.wait_for("/orders")
        event = json.loads(request.body)
        assert (event["data"], event["source"], event["topic"]) == ({"n": 1}, f"{unique}-publisher", topic)
        wait_until(
            lambda: int(redis_client.xpending(topic, f"{unique}-consumer")["pending"]) == 0,
            what="the event acknowledged",
        )


# -- start ---------------------------------------------------------------------------------------


def test_an_unreachable_redis_fails_the_start(tmp_path, dapr_sidecar_factory):
    """daprd fails the component's init (it pings Redis) and exits; the dev sidecar refuses to
    start with the same words."""
    with socket.socket() as taken:  # bound, not listening: connections to it are refused
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        folder = components(
            tmp_path / "c", component(PUBSUB, "pubsub.redis", {"redisHost": f"127.0.0.1:{port}"})
        )
        with pytest.raises(Exception) as failure:
            dapr_sidecar_factory.start(folder, app_id="nobody")
    assert f"redis streams: error connecting to redis at 127.0.0.1:{port}" in str(failure.value)
    if sidecar_mode() == "daprd":
        assert "initialization error occurred for pubsub (pubsub.redis/v1)" in str(failure.value)
    else:
        assert isinstance(failure.value, ComponentError)


# -- a dev sidecar and a real daprd on one Redis -------------------------------------------------


async def test_a_dev_sidecar_and_another_sidecar_share_topics_both_ways(
    tmp_path, dapr_sidecar_factory, redis_server, kind, unique
):
    """The other sidecar is a real daprd with ``DAPR_TEST_SIDECAR=daprd`` (another dev sidecar
    otherwise): an event published on either reaches the other app, and sidecars of one app id
    split a topic's events whichever runtime they are."""
    folder = components(tmp_path / "components", redis_pubsub(redis_server))
    topic = f"{unique}-interop"
    other = dapr_sidecar_factory.start(folder, app_id=f"{unique}-other")
    dev = DevSidecar(app_id=f"{unique}-dev", resources_paths=[folder]).start()
    dev_twin = DevSidecar(app_id=f"{unique}-other", resources_paths=[folder]).start()
    clients = [await client_of(s, kind) for s in (other, dev, dev_twin)]
    other_client, dev_client, twin_client = clients
    try:
        on_other = Inbox(await other_client.subscribe(PUBSUB, topic))
        on_dev = Inbox(await dev_client.subscribe(PUBSUB, topic))
        await dev_client.call("publish_event", PUBSUB, topic, "from-dev", data_content_type="text/plain")
        await other_client.call("publish_event", PUBSUB, topic, "from-other", data_content_type="text/plain")
        for inbox in (on_other, on_dev):
            await inbox.wait_for(2)
            assert sorted(inbox.data()) == [b"from-dev", b"from-other"]
        # The same app id on both runtimes: one consumer group, each event to one of them.
        on_twin = Inbox(await twin_client.subscribe(PUBSUB, topic))
        sent = [f"s{number}".encode() for number in range(6)]
        for word in sent:
            await dev_client.call("publish_event", PUBSUB, topic, word, data_content_type="text/plain")
            await asyncio.sleep(0.1)
        await on_dev.wait_for(2 + len(sent))
        await on_other.quiet()
        assert sorted(on_other.data()[2:] + on_twin.data()) == sent
        assert on_other.data()[2:] and on_twin.data()
        assert sorted(on_dev.data()[2:]) == sent
        for inbox in (on_other, on_dev, on_twin):
            await inbox.close()
    finally:
        for client in clients:
            await client.close()
        dev.stop()
        dev_twin.stop()


# -- settings (no sidecar) -----------------------------------------------------------------------


def settings_of(**metadata: str) -> RedisStreamsSettings:
    return RedisStreamsSettings.from_component(
        Component(name="p", type="pubsub.redis", version="v1", metadata=metadata), "my-app"
    )


@pytest.mark.skipif(sidecar_mode() != "dev", reason="no sidecar involved")
def test_settings_follow_daprds_parsing():
    defaults = settings_of()
    assert (defaults.consumer_id, defaults.processing_timeout, defaults.redeliver_interval) == (
        "my-app",
        60.0,
        15.0,
    )
    assert (defaults.queue_depth, defaults.concurrency, defaults.max_len_approx) == (100, 10, 0)
    assert settings_of(processingTimeout="2500").processing_timeout == 2.5  # a number is milliseconds
    assert settings_of(processingTimeout="2s").processing_timeout == 2.0
    assert settings_of(redeliverInterval="500").redeliver_interval == 0.5
    assert settings_of(redeliverInterval="30s").redeliver_interval == 15.0  # ignored, as by daprd
    assert not settings_of(redeliverInterval="0").redelivers
    assert not settings_of(processingTimeout="0").redelivers
    assert settings_of(consumerID="  ").consumer_id == "my-app"
    with pytest.raises(ComponentError, match="queueDepth 'many'"):
        settings_of(queueDepth="many")
    with pytest.raises(ComponentError, match="processingTimeout"):
        settings_of(processingTimeout="soon")
