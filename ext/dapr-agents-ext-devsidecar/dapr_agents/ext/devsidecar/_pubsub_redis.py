"""``pubsub.redis``: daprd's Redis Streams layout and protocol, so that dev sidecars and daprds
sharing one Redis publish to and consume from the same topics.

The layout, as components-contrib's ``pubsub/redis`` (checked against daprd 1.18.2 with
MONITOR): a topic is a stream of that name; ``XADD <topic> [MAXLEN ~ n] * data <bytes>
[metadata <JSON of the publish metadata>]``, where ``data`` is what daprd hands the component
(the CloudEvent JSON, or the raw payload). Each subscription creates the consumer group
``consumerID`` (default: the app id) at ``0`` with ``MKSTREAM``, so a group sees the whole
stream, including what was published before it existed. It reads with ``XREADGROUP GROUP g g
COUNT queueDepth BLOCK 0 STREAMS <topic> >`` (the consumer is named like the group, in every
sidecar of the app): sidecars of one app split a topic's events, other apps each get all.

The component hands messages to ``concurrency`` workers through a queue of ``queueDepth``, so a
subscriber may have several unacknowledged events at once and order is not kept. A message is
acknowledged (``XACK``) once daprd's handler is done with it: SUCCESS, DROP, dead-lettered, and
also a RETRY left without a dead-letter topic once the resiliency policy gives up. It stays
pending when the stream closed first, and when the handler failed after ``processingTimeout``.
Every ``redeliverInterval`` each subscription looks at the group's first ``queueDepth`` pending
entries (``XPENDING``) and claims (``XCLAIM``) those idle for ``processingTimeout``: they are
delivered again, possibly while the first delivery still waits for its answer. A
``processingTimeout`` or ``redeliverInterval`` of 0 turns redelivery off. Like daprd, a plain
number for either is milliseconds, and ``redeliverInterval`` accepts nothing else (daprd's
decoder skips that field: a duration string such as ``30s`` leaves the default, 15 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._components import Component, ComponentPolicy, parse_duration
from ._errors import ComponentError
from ._gojson import encode as go_encode
from ._pubsub import BusMessage, Outcome, PubSub, Subscriber, _raw_payload_flag
from ._redis import redis_address, redis_client

_log = logging.getLogger(__name__)

#: How long a poll loop waits after a Redis error before reading again (daprd retries at once,
#: through go-redis's own backoff).
_ERROR_PAUSE = 0.5
#: go-redis' dial timeout in daprd's Redis components (``dialTimeout``, default 5 s).
_DIAL_TIMEOUT = 5.0


def _where(component: Component) -> str:
    return f"{component.source}: component {component.name!r} ({component.type})"


def _milliseconds_or_duration(component: Component, key: str, default: float) -> float:
    """``processingTimeout``: a plain number is milliseconds (daprd's legacy rule), anything else
    a Go duration."""
    text = (component.metadata_value(key) or "").strip()
    if not text:
        return default
    if text.isdigit():
        return int(text) / 1000.0
    try:
        return parse_duration(text, key)
    except ComponentError as exc:
        raise ComponentError(f"{_where(component)}: redis client configuration error: {exc}") from exc


def _unsigned(component: Component, key: str, default: int) -> int:
    text = (component.metadata_value(key) or "").strip()
    if not text:
        return default
    if not text.isdigit():
        raise ComponentError(f"{_where(component)}: {key} {text!r} is not a whole number >= 0")
    return int(text)


@dataclass(frozen=True)
class RedisStreamsSettings:
    """The ``pubsub.redis`` metadata that shapes delivery, with daprd's defaults."""

    consumer_id: str
    processing_timeout: float = 60.0
    redeliver_interval: float = 15.0
    queue_depth: int = 100
    concurrency: int = 10
    max_len_approx: int = 0
    stream_ttl: float = 0.0

    @property
    def redelivers(self) -> bool:
        return self.processing_timeout > 0 and self.redeliver_interval > 0

    @classmethod
    def from_component(cls, component: Component, app_id: str) -> RedisStreamsSettings:
        consumer_id = (component.metadata_value("consumerID") or "").strip() or app_id
        redeliver = (component.metadata_value("redeliverInterval") or "").strip()
        redeliver_interval = 15.0
        if redeliver.isdigit():
            redeliver_interval = int(redeliver) / 1000.0
        elif redeliver:
            _log.warning(
                "%s: redeliverInterval %r is ignored, as by daprd, which reads it only as a number "
                "of milliseconds; redelivery checks run every 15 s",
                _where(component),
                redeliver,
            )
        max_len = (component.metadata_value("maxLenApprox") or "").strip()
        try:
            max_len_approx = int(max_len) if max_len else 0
        except ValueError as exc:
            raise ComponentError(f"{_where(component)}: maxLenApprox {max_len!r} is not a number") from exc
        ttl_text = (component.metadata_value("streamTTL") or "").strip()
        stream_ttl = parse_duration(ttl_text, f"{_where(component)}: streamTTL") if ttl_text else 0.0
        settings = cls(
            consumer_id=consumer_id,
            processing_timeout=_milliseconds_or_duration(component, "processingTimeout", 60.0),
            redeliver_interval=redeliver_interval,
            queue_depth=_unsigned(component, "queueDepth", 100),
            concurrency=_unsigned(component, "concurrency", 10),
            max_len_approx=max_len_approx,
            stream_ttl=stream_ttl,
        )
        if settings.max_len_approx > 0 and settings.stream_ttl > 0:
            _log.warning(
                "%s: maxLenApprox and streamTTL cannot be used together; maxLenApprox trims the streams",
                _where(component),
            )
        if settings.concurrency == 0:
            _log.warning(
                "%s: concurrency is 0: no event will be delivered (as with daprd)", _where(component)
            )
        return settings


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


class RedisPubSub(PubSub):
    """A ``pubsub.redis`` component (a single Redis node; no cluster or Sentinel)."""

    capabilities = ()  # daprd lists none for pubsub.redis (no wildcard subscriptions)

    def __init__(self, component: Component, inbound: ComponentPolicy | None = None, *, app_id: str) -> None:
        super().__init__(component, inbound)
        self._where = _where(component)
        self.settings = RedisStreamsSettings.from_component(component, app_id)
        # go-redis connects to localhost:6379 when no host is given.
        self._host = "{}:{}".format(*redis_address(component, default_host="localhost:6379"))
        self._client = redis_client(component, default_host="localhost:6379")
        self._client.connection_pool.connection_kwargs.setdefault("socket_connect_timeout", _DIAL_TIMEOUT)
        # go-redis' retries in daprd's pub/sub (3, backing off 8 ms to 512 ms) rather than
        # redis-py's (seconds apart): an unreachable Redis fails the start within a second.
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff

        self._client.set_retry(Retry(ExponentialBackoff(cap=0.512, base=0.008), 3))
        # daprd's channel of queueDepth (unbuffered for 0: one message at a time).
        self._queue: asyncio.Queue[tuple[Subscriber, str, BusMessage]] = asyncio.Queue(
            maxsize=self.settings.queue_depth or 1
        )
        self._workers: list[asyncio.Task[None]] = []
        self._loops: dict[Subscriber, list[asyncio.Task[None]]] = {}
        self._closed = False

    @property
    def group(self) -> str:
        return self.settings.consumer_id

    async def open(self) -> None:
        """Connect (daprd pings Redis in the component's init, and fails the init if it cannot)
        and start the workers."""
        import redis.exceptions

        try:
            await self._client.ping()
        except (redis.exceptions.RedisError, OSError) as exc:
            await self._client.aclose()
            raise ComponentError(
                f"{self._where}: redis streams: error connecting to redis at {self._host}: {exc}"
            ) from exc
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._worker()) for _ in range(self.settings.concurrency)]

    # -- publishing ---------------------------------------------------------------------------

    async def publish(self, topic: str, message: BusMessage) -> None:
        import redis.exceptions

        if self._closed:
            raise RuntimeError("component is closed")
        fields: dict[str, bytes] = {"data": message.data}
        if message.metadata:
            fields["metadata"] = go_encode(dict(message.metadata))
        trim: dict[str, Any] = {}
        if self.settings.max_len_approx > 0:
            trim = {"maxlen": self.settings.max_len_approx, "approximate": True}
        elif self.settings.stream_ttl > 0:
            oldest = int((time.time() - self.settings.stream_ttl) * 1000)
            trim = {"minid": f"{oldest}-1", "approximate": True}
        try:
            await self._client.xadd(topic, fields, **trim)
        except (redis.exceptions.RedisError, OSError) as exc:
            raise RuntimeError(f"redis streams: error from publish: {exc}") from exc

    async def _publish_dead_letter(self, subscriber: Subscriber, message: BusMessage) -> None:
        # daprd's handler adds the component's name to the message metadata before it republishes.
        metadata = {**message.metadata, "pubsubName": self.name}
        await self.publish(
            subscriber.dead_letter_topic, BusMessage(message.data, message.content_type, metadata)
        )

    # -- subscribing --------------------------------------------------------------------------

    async def _create_group(self, topic: str) -> None:
        import redis.exceptions

        try:
            await self._client.xgroup_create(topic, self.group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def subscribe(
        self, topic: str, dead_letter_topic: str = "", metadata: Mapping[str, str] | None = None
    ) -> Subscriber:
        import redis.exceptions

        if self._closed:
            raise RuntimeError("component is closed")
        try:
            await self._create_group(topic)
        except (redis.exceptions.RedisError, OSError) as exc:
            raise RuntimeError(str(exc)) from exc
        subscriber = Subscriber(
            pubsub=self.name,
            topic=topic,
            dead_letter_topic=dead_letter_topic,
            raw_payload=_raw_payload_flag(metadata),
        )
        loop = asyncio.get_running_loop()
        loops = [loop.create_task(self._poll(subscriber))]
        if self.settings.redelivers:
            loops.append(loop.create_task(self._redeliver(subscriber)))
        self._loops[subscriber] = loops
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        # What this stream read but did not settle stays pending in the group: another
        # subscriber of the app claims it once it has been idle for processingTimeout.
        self._cancel_pending(subscriber)
        for task in self._loops.pop(subscriber, ()):
            task.cancel()

    def _message(self, entry_id: str, fields: Mapping[Any, Any]) -> BusMessage:
        values = {_text(key): value for key, value in fields.items()}
        data = values.get("data") or b""
        if isinstance(data, str):
            data = data.encode()
        metadata: dict[str, str] = {}
        raw_metadata = values.get("metadata")
        if raw_metadata is not None:
            try:
                parsed = json.loads(raw_metadata)
                if not isinstance(parsed, dict):
                    raise ValueError("not a JSON object")
                metadata = {str(k): str(v) for k, v in parsed.items()}
            except ValueError as exc:
                _log.warning(
                    "%s: could not extract the metadata of Redis message %s: %s", self._where, entry_id, exc
                )
        return BusMessage(data=data, content_type="", metadata=metadata)

    async def _enqueue(self, subscriber: Subscriber, entries: list[Any]) -> None:
        for entry_id, fields in entries:
            if entry_id is None or fields is None:
                continue
            entry = _text(entry_id)
            await self._queue.put((subscriber, entry, self._message(entry, fields)))

    async def _poll(self, subscriber: Subscriber) -> None:
        import redis.exceptions

        topic, count = subscriber.topic, self.settings.queue_depth or None
        while not subscriber.closed:
            try:
                answer = await self._client.xreadgroup(
                    self.group, self.group, {topic: ">"}, count=count, block=0
                )
            except redis.exceptions.ResponseError as exc:
                _log.error("%s: error reading from stream %s: %s", self._where, topic, exc)
                if "NOGROUP" in str(exc):
                    _log.warning(
                        "%s: consumer group %s does not exist for stream %s (data loss, or the "
                        "group or stream was deleted); recreating it",
                        self._where,
                        self.group,
                        topic,
                    )
                    with contextlib.suppress(redis.exceptions.RedisError, OSError):
                        await self._create_group(topic)
                await asyncio.sleep(_ERROR_PAUSE)
                continue
            except (redis.exceptions.RedisError, OSError) as exc:
                _log.error("%s: error reading from stream %s: %s", self._where, topic, exc)
                await asyncio.sleep(_ERROR_PAUSE)
                continue
            for _stream, entries in answer or ():
                await self._enqueue(subscriber, entries)

    async def _redeliver(self, subscriber: Subscriber) -> None:
        while not subscriber.closed:
            await self._reclaim(subscriber)
            await asyncio.sleep(self.settings.redeliver_interval)

    async def _reclaim(self, subscriber: Subscriber) -> None:
        """Claim the group's pending entries idle for processingTimeout and deliver them again."""
        import redis.exceptions

        topic = subscriber.topic
        min_idle = int(self.settings.processing_timeout * 1000)
        while not subscriber.closed:
            try:
                pending = await self._client.xpending_range(
                    topic, self.group, "-", "+", self.settings.queue_depth or 1
                )
            except (redis.exceptions.RedisError, OSError) as exc:
                _log.error("%s: error retrieving pending Redis messages: %s", self._where, exc)
                return
            ids = [_text(p["message_id"]) for p in pending if p["time_since_delivered"] >= min_idle]
            if not ids:
                return
            try:
                claimed = await self._client.xclaim(topic, self.group, self.group, min_idle, ids)
            except (redis.exceptions.RedisError, OSError) as exc:
                _log.error("%s: error claiming pending Redis messages: %s", self._where, exc)
                return
            await self._enqueue(subscriber, claimed)
            if any(entry_id is None for entry_id, _fields in claimed):
                # Redis before 7 answers nil for entries deleted from the stream (trimmed): take
                # them off the pending list one by one, as daprd does.
                found = {_text(entry_id) for entry_id, _fields in claimed if entry_id is not None}
                await self._forget_deleted(subscriber, [i for i in ids if i not in found])

    async def _forget_deleted(self, subscriber: Subscriber, ids: list[str]) -> None:
        import redis.exceptions

        for entry_id in ids:
            try:
                single = await self._client.xclaim(subscriber.topic, self.group, self.group, 0, [entry_id])
                if any(found is None for found, _fields in single):
                    await self._client.xack(subscriber.topic, self.group, entry_id)
                else:
                    await self._enqueue(subscriber, single)
            except (redis.exceptions.RedisError, OSError) as exc:
                _log.error("%s: error claiming pending Redis message %s: %s", self._where, entry_id, exc)

    # -- handling -----------------------------------------------------------------------------

    async def _worker(self) -> None:
        import redis.exceptions

        loop = asyncio.get_running_loop()
        while True:
            subscriber, entry_id, message = await self._queue.get()
            if subscriber.closed:
                continue  # left pending, as daprd's handler does for a subscription that ended
            started = loop.time()
            try:
                outcome = await self.deliver(subscriber, subscriber.topic, message)
            except Exception:  # a worker must outlive any one message, as daprd's goroutines do
                _log.exception("%s: error processing Redis message %s", self._where, entry_id)
                continue
            if outcome is Outcome.ABANDONED:
                continue
            if (
                outcome is Outcome.FAILED
                and self.settings.redelivers
                and loop.time() - started >= self.settings.processing_timeout
            ):
                # daprd's handler context expired: the message stays pending and is claimed again.
                continue
            try:
                await self._client.xack(subscriber.topic, self.group, entry_id)
            except (redis.exceptions.RedisError, OSError) as exc:
                _log.error("%s: error acknowledging Redis message %s: %s", self._where, entry_id, exc)

    async def close(self) -> None:
        self._closed = True
        tasks = self._workers + [task for loops in self._loops.values() for task in loops]
        for subscriber in list(self._loops):
            self.unsubscribe(subscriber)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._workers = []
        await self._client.aclose()
