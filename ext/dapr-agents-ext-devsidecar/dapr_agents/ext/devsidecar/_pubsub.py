"""Pub/sub as daprd's runtime does it around a component: the CloudEvent envelope, the delivery
rules shared by every component (:class:`PubSub`), and ``pubsub.in-memory``.

What daprd does, and so what this does:
- Publishing wraps the payload in a CloudEvent (``build_cloud_event``) and hands the JSON bytes
  to the component. ``pubsub.in-memory`` fans them out to every current subscriber of the topic;
  an event published while nobody subscribes is gone. Each streaming subscription is a
  subscriber of its own, so several streams to one topic (from one client or several) each get
  every event. (``pubsub.redis``, in ``_pubsub_redis``, keeps them in Redis streams instead.)
- ``pubsub.in-memory`` gives each subscriber one event at a time: a publish waits while a
  subscriber of the topic is still handling the previous event (daprd's in-memory bus holds a
  per-handler lock).
- Handing an event to a subscriber (:meth:`PubSub.deliver`, the same for every component): an
  acknowledgement of ``SUCCESS`` ends a delivery. ``RETRY`` is an error: it is redelivered only
  under a resiliency retry policy targeting the component's inbound direction; when retries are
  spent (or there is no policy) the original event goes to the subscription's dead-letter topic,
  or the delivery fails without one. ``DROP`` goes to the dead-letter topic when there is one and
  is otherwise discarded. The component learns how it ended (an :class:`Outcome`): the in-memory
  bus forgets the event whatever happened (events in flight when a stream closes are lost), Redis
  acknowledges it or leaves it pending.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import enum
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from ._components import Component, ComponentPolicy, parse_duration
from ._errors import ComponentError
from ._gojson import encode as go_encode

_log = logging.getLogger(__name__)

STATUS_SUCCESS = 0
STATUS_RETRY = 1
STATUS_DROP = 2

CLOUDEVENTS_JSON = "application/cloudevents+json"
_BINARY_TYPES = {"application/octet-stream", "application/cloudevents+protobuf"}
_OVERRIDABLE = ("id", "source", "type", "traceid", "tracestate", "traceparent", "subject")
_NOT_EXTENSIONS = {"id", "source", "type", "specversion", "datacontenttype", "data", "data_base64"}


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _rfc3339_seconds(moment: datetime) -> str:
    # Go's time.RFC3339: whole seconds, "Z" for UTC, otherwise the numeric offset.
    text = moment.replace(microsecond=0).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _message_ttl(metadata: Mapping[str, str]) -> float | None:
    for key, value in metadata.items():
        if key.lower() in {"ttl", "ttlinseconds"} and value:
            try:
                seconds = parse_duration(value, "ttl")
            except ComponentError:
                return None  # daprd ignores a TTL it cannot parse
            return seconds if seconds >= 0 else None
    return None


def build_cloud_event(
    *,
    app_id: str,
    pubsub_name: str,
    topic: str,
    data: bytes,
    content_type: str,
    metadata: Mapping[str, str],
) -> dict[str, Any]:
    """Build the envelope daprd publishes for a ``PublishEvent`` call.

    Raises ``ValueError`` when an ``application/cloudevents+json`` payload is not a JSON object.
    """
    now = datetime.now().astimezone()
    if _media_type(content_type) == CLOUDEVENTS_JSON:
        # The payload already is a CloudEvent: keep it, fill in what is missing, no overrides.
        try:
            event = json.loads(data)
        except ValueError as exc:
            raise ValueError("cannot create cloudevent") from exc
        if not isinstance(event, dict):
            raise ValueError("cannot create cloudevent")
        for key, default in (("source", "Dapr"), ("type", "com.dapr.event.sent"), ("specversion", "1.0")):
            if event.get(key) is None:
                event[key] = default
        event.setdefault("time", _rfc3339_seconds(now))
        if "traceid" not in event:
            event["traceid"] = event["traceparent"] = ""
        event.setdefault("tracestate", "")
    else:
        overrides = {
            key.split(".", 1)[1].lower(): value
            for key, value in metadata.items()
            if key.lower().startswith("cloudevent.") and value
        }
        media = _media_type(content_type)
        event = {
            "id": str(uuid.uuid4()),
            "specversion": "1.0",
            "datacontenttype": content_type or "text/plain",
            "source": app_id or "Dapr",
            "type": "com.dapr.event.sent",
            "traceid": "",
            "traceparent": "",
            "tracestate": "",
            "time": _rfc3339_seconds(now),
        }
        for key in _OVERRIDABLE:
            if key in overrides:
                event[key] = overrides[key]
        if overrides.get("traceparent"):
            event["traceid"] = overrides["traceparent"]
        if media == "application/json":
            try:
                event["data"] = json.loads(data) if data else ""
            except ValueError:
                # daprd does not reject it: the body travels as a JSON string.
                event["data"] = data.decode("utf-8", errors="replace")
        elif media in _BINARY_TYPES:
            event["data_base64"] = base64.b64encode(data).decode("ascii")
        else:
            event["data"] = data.decode("utf-8", errors="replace")
    ttl = _message_ttl(metadata)
    if ttl is not None:
        event["expiration"] = _rfc3339_seconds(datetime.now(timezone.utc) + timedelta(seconds=ttl))
    event["topic"] = topic
    event["pubsubname"] = pubsub_name
    return event


@dataclass(frozen=True)
class BusMessage:
    """What travels on the in-memory bus: the bytes daprd hands to the component."""

    data: bytes
    content_type: str
    metadata: Mapping[str, str] = field(default_factory=dict)


def encode_event(event: Mapping[str, Any]) -> bytes:
    return go_encode(dict(event))


def parse_delivered_event(message: BusMessage, raw_payload: bool) -> dict[str, Any]:
    """Turn bus bytes into the CloudEvent a subscriber gets; ``ValueError`` if impossible."""
    if raw_payload:
        return {
            "id": str(uuid.uuid4()),
            "source": "Dapr",
            "type": "com.dapr.event.sent",
            "specversion": "1.0",
            "datacontenttype": "application/octet-stream",
            "data_base64": base64.b64encode(message.data).decode("ascii"),
            "traceid": message.metadata.get("traceid", ""),
            "traceparent": message.metadata.get("traceid", ""),
            "tracestate": message.metadata.get("tracestate", ""),
        }
    # Go decodes into map[string]any: every number becomes a float64.
    event = json.loads(message.data, parse_int=float)
    if not isinstance(event, dict):
        raise ValueError("the message is not a JSON object")
    return event


def event_data_bytes(event: Mapping[str, Any]) -> bytes:
    """The ``data`` bytes of a delivered ``TopicEventRequest``, by daprd's rules."""
    if "data_base64" in event:
        value = event["data_base64"]
        if not isinstance(value, str):
            raise ValueError("data_base64 is not a string")
        return base64.b64decode(value)
    data = event.get("data")
    if data is None:
        return b""
    media = _media_type(str(event.get("datacontenttype", "")))
    if media.startswith("text/") or media == "application/xml":
        return data.encode("utf-8") if isinstance(data, str) else b""
    if media in {"application/json", CLOUDEVENTS_JSON}:
        return go_encode(data)
    return b""  # daprd leaves data empty for every other content type


def event_extensions(event: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in event.items() if key not in _NOT_EXTENSIONS}


def _expired(event: Mapping[str, Any]) -> bool:
    expiration = event.get("expiration")
    if not isinstance(expiration, str):
        return False
    try:
        moment = datetime.fromisoformat(expiration.replace("Z", "+00:00"))
    except ValueError:
        return False
    return moment <= datetime.now(timezone.utc)


@dataclass(eq=False)
class Subscriber:
    """A streaming subscription. The API layer drains ``outbox`` and reports acknowledgements."""

    pubsub: str
    topic: str
    dead_letter_topic: str = ""
    raw_payload: bool = False
    outbox: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    busy: asyncio.Lock = field(default_factory=asyncio.Lock)
    pending: dict[str, asyncio.Future[int]] = field(default_factory=dict)
    closed: bool = False

    def acknowledge(self, event_id: str, status: int) -> bool:
        """Resolve the delivery waiting for ``event_id``; False when none is (daprd logs it)."""
        future = self.pending.get(event_id)
        if future is None or future.done():
            return False
        future.set_result(status)
        return True


class Outcome(enum.Enum):
    """How one delivery of one message to one subscriber ended, as the broker sees it."""

    #: Handled (SUCCESS, DROP, dead-lettered, expired): daprd's handler returned no error.
    DONE = "done"
    #: RETRY (or no answer within the resiliency timeout) until the policy gave up, and no
    #: dead-letter topic: daprd's handler returned an error.
    FAILED = "failed"
    #: The stream closed before the app settled the event: daprd's handler waited for the
    #: subscription to end and returned the context's error.
    ABANDONED = "abandoned"


class _StreamClosedError(Exception):
    pass


def _raw_payload_flag(metadata: Mapping[str, str] | None) -> bool:
    return str((metadata or {}).get("rawPayload", "")).lower() == "true"


class PubSub(abc.ABC):
    """What daprd's runtime does around a pub/sub component, whatever the broker.

    Subclasses are the brokers: they store and route messages (``publish``), register
    subscribers and decide when a message is handed to one. Handing it over is the same
    everywhere and lives here (:meth:`deliver`): the CloudEvent a subscriber gets, the
    resiliency inbound policy (timeout and retries), the dead-letter topic.
    """

    #: The component's features as GetMetadata lists them.
    capabilities: tuple[str, ...] = ()

    def __init__(self, component: Component, inbound: ComponentPolicy | None = None) -> None:
        self.name = component.name
        self.type = component.type
        self._inbound = inbound or ComponentPolicy()

    @abc.abstractmethod
    async def subscribe(
        self, topic: str, dead_letter_topic: str = "", metadata: Mapping[str, str] | None = None
    ) -> Subscriber:
        """Register a streaming subscription; it gets messages until :meth:`unsubscribe`."""

    @abc.abstractmethod
    def unsubscribe(self, subscriber: Subscriber) -> None:
        """End a subscription; deliveries waiting for its acknowledgement end ``ABANDONED``."""

    @abc.abstractmethod
    async def publish(self, topic: str, message: BusMessage) -> None:
        """Hand ``message`` to the broker; ``RuntimeError`` when it cannot take it."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop delivering and release the broker's resources."""

    @staticmethod
    def _cancel_pending(subscriber: Subscriber) -> None:
        subscriber.closed = True
        for future in subscriber.pending.values():
            if not future.done():
                future.cancel()

    async def _attempt(self, subscriber: Subscriber, event: dict[str, Any]) -> int:
        if subscriber.closed:
            raise _StreamClosedError
        event_id = str(event.get("id", ""))
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        subscriber.pending[event_id] = future
        try:
            await subscriber.outbox.put(event)
            if self._inbound.timeout is not None:
                return await asyncio.wait_for(future, self._inbound.timeout)
            return await future
        except asyncio.CancelledError:
            if subscriber.closed:
                raise _StreamClosedError from None
            raise
        except asyncio.TimeoutError:
            return STATUS_RETRY
        finally:
            if subscriber.pending.get(event_id) is future:
                del subscriber.pending[event_id]

    async def deliver(self, subscriber: Subscriber, topic: str, message: BusMessage) -> Outcome:
        """Hand one message to one subscriber by daprd's rules and say how it ended."""
        try:
            event = parse_delivered_event(message, subscriber.raw_payload)
        except ValueError as exc:
            _log.warning("cannot deliver a message on %s/%s: %s", self.name, topic, exc)
            return await self._dead_letter_or_fail(subscriber, message, "unparseable")
        if _expired(event):
            await self._dead_letter_or_fail(subscriber, message, "expired")
            return Outcome.DONE
        retries = 0
        policy = self._inbound.retry
        while True:
            try:
                status = await self._attempt(subscriber, event)
            except _StreamClosedError:
                return Outcome.ABANDONED
            if status == STATUS_SUCCESS:
                return Outcome.DONE
            if status == STATUS_DROP:
                await self._dead_letter_or_fail(subscriber, message, "dropped by the subscriber")
                return Outcome.DONE
            retries += 1
            if policy is None or not policy.allows(retries):
                break
            await asyncio.sleep(policy.delay(retries))
        return await self._dead_letter_or_fail(subscriber, message, f"RETRY after {retries} attempt(s)")

    async def _dead_letter_or_fail(self, subscriber: Subscriber, message: BusMessage, why: str) -> Outcome:
        """Send ``message`` to the subscription's dead-letter topic: ``DONE`` when it went there,
        ``FAILED`` when there is none (or it could not be published)."""
        if subscriber.dead_letter_topic and not subscriber.closed:
            _log.info(
                "event on %s/%s (%s) sent to dead-letter topic %s",
                self.name,
                subscriber.topic,
                why,
                subscriber.dead_letter_topic,
            )
            try:
                await self._publish_dead_letter(subscriber, message)
            except RuntimeError as exc:
                _log.error(
                    "error sending a message to dead-letter topic %s of %s/%s: %s",
                    subscriber.dead_letter_topic,
                    self.name,
                    subscriber.topic,
                    exc,
                )
                return Outcome.FAILED
            return Outcome.DONE
        _log.warning("event on %s/%s (%s) discarded: no dead-letter topic", self.name, subscriber.topic, why)
        return Outcome.FAILED

    async def _publish_dead_letter(self, subscriber: Subscriber, message: BusMessage) -> None:
        await self.publish(subscriber.dead_letter_topic, message)


class InMemoryPubSub(PubSub):
    """A ``pubsub.in-memory`` component."""

    capabilities = ("SUBSCRIBE_WILDCARDS",)

    def __init__(self, component: Component, inbound: ComponentPolicy | None = None) -> None:
        super().__init__(component, inbound)
        self._subscribers: dict[str, list[Subscriber]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def subscribe(
        self, topic: str, dead_letter_topic: str = "", metadata: Mapping[str, str] | None = None
    ) -> Subscriber:
        subscriber = Subscriber(
            pubsub=self.name,
            topic=topic,
            dead_letter_topic=dead_letter_topic,
            raw_payload=_raw_payload_flag(metadata),
        )
        self._subscribers.setdefault(topic, []).append(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        subscribers = self._subscribers.get(subscriber.topic, [])
        if subscriber in subscribers:
            subscribers.remove(subscriber)
        self._cancel_pending(subscriber)

    def _matching(self, topic: str) -> list[Subscriber]:
        matched = list(self._subscribers.get(topic, ()))
        for pattern, subscribers in self._subscribers.items():
            # daprd's bus: "orders*" matches "orders.eu" but not "orders" itself.
            if pattern.endswith("*") and pattern != topic:
                stem = pattern[:-1]
                if topic.startswith(stem) and topic != stem:
                    matched.extend(subscribers)
        return matched

    async def publish(self, topic: str, message: BusMessage) -> None:
        """Hand ``message`` to every subscriber, waiting for each one to be free (as daprd)."""
        if self._closed:
            raise RuntimeError("component is closed")
        for subscriber in self._matching(topic):
            await subscriber.busy.acquire()
            if subscriber.closed:
                subscriber.busy.release()
                continue
            task = asyncio.get_running_loop().create_task(self._deliver(subscriber, topic, message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, subscriber: Subscriber, topic: str, message: BusMessage) -> None:
        # An event gone from memory is gone whatever the outcome: events in flight when a stream
        # closes are lost, as with daprd's in-memory bus.
        try:
            await self.deliver(subscriber, topic, message)
        finally:
            subscriber.busy.release()

    async def _publish_dead_letter(self, subscriber: Subscriber, message: BusMessage) -> None:
        # Released first so a dead-letter topic equal to the topic cannot deadlock.
        subscriber.busy.release()
        try:
            await super()._publish_dead_letter(subscriber, message)
        finally:
            await subscriber.busy.acquire()

    async def close(self) -> None:
        self._closed = True
        for subscribers in list(self._subscribers.values()):
            for subscriber in list(subscribers):
                self.unsubscribe(subscriber)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def open_pubsub(component: Component, inbound: ComponentPolicy | None, *, app_id: str) -> PubSub:
    """Create and connect the pub/sub for ``component`` (``ComponentError`` when it cannot start,
    as daprd fails the component's init)."""
    if component.type == "pubsub.in-memory":
        return InMemoryPubSub(component, inbound)
    if component.type == "pubsub.redis":
        from ._pubsub_redis import RedisPubSub

        pubsub = RedisPubSub(component, inbound, app_id=app_id)
        await pubsub.open()
        return pubsub
    raise ComponentError(f"{component.source}: component {component.name!r}: no pub/sub for {component.type}")
