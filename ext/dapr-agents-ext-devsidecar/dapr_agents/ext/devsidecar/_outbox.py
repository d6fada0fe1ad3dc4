"""The transactional outbox, as daprd 1.18 runs it (``pkg/runtime/pubsub/outbox.go``).

A state store whose metadata names ``outboxPublishPubsub`` and ``outboxPublishTopic`` publishes
every upsert of a state transaction to that topic, once the transaction is committed:

1. Before the transaction runs, each upsert becomes a CloudEvent whose id is a fresh marker key
   ``outbox-<uuid>``, published on an internal topic ``<namespace><app id><topic>outbox`` of
   ``outboxPubsub`` (default: the publish pub/sub). An upsert whose metadata has
   ``outbox.projection`` true is not saved: it is the payload published for the upsert of the
   same key. The transaction is run with one marker upsert (``outbox-<uuid>`` = ``0``, a key
   without the app's prefix) per event.
2. The app's sidecar consumes the internal topic: it waits a second, then looks for the event's
   marker (backing off from 0.5 s up to 3 s, for 10 s). Found, the transaction committed: the
   event goes to the publish topic and the marker is deleted. Not found, the transaction failed:
   the event is dropped with ``outboxDiscardWhenMissingState``, otherwise refused so the broker
   delivers it again.

Sharing the layout (marker keys, internal topic, consumer group) with daprd lets a daprd and a dev
sidecar of one app share a state store and a Redis pub/sub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._components import Component
from ._pubsub import (
    CLOUDEVENTS_JSON,
    STATUS_RETRY,
    STATUS_SUCCESS,
    BusMessage,
    PubSub,
    Subscriber,
    build_cloud_event,
    encode_event,
)
from ._state import DeleteOp, SetOp, StateBackend

_log = logging.getLogger(__name__)

MARKER_PREFIX = "outbox-"
PROJECTION = "outbox.projection"
#: daprd's wait before the first look for a marker (defaultStateScanDelay).
STATE_SCAN_DELAY = 1.0
#: daprd's backoff while the marker is missing: 0.5 s, times 3, at most 3 s, for 10 s.
_BACKOFF_INITIAL, _BACKOFF_MULTIPLIER, _BACKOFF_MAX, _BACKOFF_TOTAL = 0.5, 3.0, 3.0, 10.0
_TRUTHY = {"y", "yes", "true", "t", "on", "1"}


class OutboxError(Exception):
    """The outbox event could not be published before the transaction (daprd's PubSubOutbox)."""


@dataclass(frozen=True)
class OutboxConfig:
    """A state store's outbox settings (metadata names are matched exactly, as daprd does)."""

    publish_pubsub: str
    publish_topic: str
    outbox_pubsub: str
    discard_when_missing_state: bool

    @classmethod
    def of(cls, component: Component) -> OutboxConfig | None:
        metadata = component.metadata
        pubsub = metadata.get("outboxPublishPubsub", "")
        topic = metadata.get("outboxPublishTopic", "")
        if not pubsub or not topic:
            return None
        return cls(
            publish_pubsub=pubsub,
            publish_topic=topic,
            outbox_pubsub=metadata.get("outboxPubsub", "") or pubsub,
            discard_when_missing_state=metadata.get("outboxDiscardWhenMissingState", "").strip().lower()
            in _TRUTHY,
        )


@dataclass(frozen=True)
class Upsert:
    """One transaction upsert as the outbox sees it (the key with the app's prefix)."""

    key: str
    value: bytes
    metadata: Mapping[str, str]

    @property
    def is_projection(self) -> bool:
        return self.metadata.get(PROJECTION, "").strip().lower() in _TRUTHY

    @property
    def content_type(self) -> str:
        return self.metadata.get("contentType", "")


def internal_topic(app_id: str, topic: str, namespace: str = "") -> str:
    return f"{namespace}{app_id}{topic}outbox"


class StateOutbox:
    """The outboxes of one sidecar's state stores."""

    def __init__(
        self,
        *,
        app_id: str,
        namespace: str,
        configs: Mapping[str, OutboxConfig],
        backends: Mapping[str, StateBackend],
        pubsubs: Mapping[str, PubSub],
    ) -> None:
        self._app_id = app_id
        self._namespace = namespace
        self._configs = dict(configs)
        self._backends = backends
        self._pubsubs = pubsubs
        self._subscribers: list[tuple[PubSub, Subscriber]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def enabled(self, store: str) -> bool:
        return store in self._configs

    async def publish_internal(
        self, store: str, upserts: Sequence[Upsert], *, traceparent: str = ""
    ) -> list[str]:
        """Publish the internal event of each saved upsert; the marker keys the transaction must
        write. Projections are the payloads of the upserts of their keys, never saved."""
        config = self._configs[store]
        pubsub = self._pubsubs.get(config.outbox_pubsub)
        if pubsub is None:
            raise OutboxError(f"pubsub '{config.outbox_pubsub}' not found")
        projections = {upsert.key: upsert for upsert in upserts if upsert.is_projection}
        markers = []
        for upsert in upserts:
            if upsert.is_projection:
                continue
            payload = projections.get(upsert.key, upsert)
            marker = f"{MARKER_PREFIX}{uuid.uuid4()}"
            event = build_cloud_event(
                app_id=self._app_id,
                pubsub_name=config.outbox_pubsub,
                topic="",
                data=payload.value,
                content_type=payload.content_type,
                metadata={},
            )
            event.update(id=marker, traceid=traceparent, traceparent=traceparent)
            # daprd copies the saved upsert's metadata into the event, except data and id.
            event.update({k: v for k, v in upsert.metadata.items() if k not in ("data", "id")})
            topic = internal_topic(self._app_id, config.publish_topic, self._namespace)
            try:
                await pubsub.publish(
                    topic, BusMessage(data=encode_event(event), content_type=CLOUDEVENTS_JSON)
                )
            except RuntimeError as exc:
                raise OutboxError(str(exc)) from exc
            markers.append(marker)
        return markers

    @staticmethod
    def marker_op(marker: str) -> SetOp:
        return SetOp(key=marker, value=b"0")

    async def start(self) -> None:
        """Consume the internal topics (daprd: once the app's subscriptions are started)."""
        for store, config in self._configs.items():
            pubsub = self._pubsubs.get(config.outbox_pubsub)
            if pubsub is None:
                _log.warning(
                    "could not subscribe to internal outbox topic: outbox pubsub %s not loaded",
                    config.outbox_pubsub,
                )
                continue
            subscriber = await pubsub.subscribe(
                internal_topic(self._app_id, config.publish_topic, self._namespace)
            )
            self._subscribers.append((pubsub, subscriber))
            self._spawn(self._pump(store, config, subscriber))

    async def close(self) -> None:
        for pubsub, subscriber in self._subscribers:
            pubsub.unsubscribe(subscriber)
        self._subscribers.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pump(self, store: str, config: OutboxConfig, subscriber: Subscriber) -> None:
        while True:
            event = await subscriber.outbox.get()
            self._spawn(self._forward(store, config, subscriber, event))

    async def _forward(
        self, store: str, config: OutboxConfig, subscriber: Subscriber, event: dict[str, Any]
    ) -> None:
        marker = str(event.get("id", ""))
        try:
            status = await self._forward_once(store, config, event, marker)
        except Exception as exc:  # daprd's handler returns the error: the broker redelivers
            _log.error("failed to publish outbox topic to pubsub %s: %s", config.publish_pubsub, exc)
            status = STATUS_RETRY
        subscriber.acknowledge(marker, status)

    async def _forward_once(
        self, store: str, config: OutboxConfig, event: dict[str, Any], marker: str
    ) -> int:
        backend = self._backends[store]
        await asyncio.sleep(STATE_SCAN_DELAY)
        if not await self._marker_found(backend, marker):
            reason = (
                f"cannot publish outbox message to topic {config.publish_topic} with pubsub "
                f"{config.publish_pubsub}: outbox state not found"
            )
            if config.discard_when_missing_state:
                _log.error(
                    "failed to publish outbox topic to pubsub %s: %s, discarding message",
                    config.publish_pubsub,
                    reason,
                )
                return STATUS_SUCCESS
            _log.error(
                "failed to publish outbox topic to pubsub %s: %s, rejecting for later processing",
                config.publish_pubsub,
                reason,
            )
            return STATUS_RETRY
        target = self._pubsubs.get(config.publish_pubsub)
        if target is None:
            raise RuntimeError(f"pubsub {config.publish_pubsub} not found")
        forwarded = {**event, "topic": config.publish_topic, "pubsubname": config.publish_pubsub}
        await target.publish(
            config.publish_topic, BusMessage(data=encode_event(forwarded), content_type=CLOUDEVENTS_JSON)
        )
        await backend.transact([DeleteOp(key=marker)])
        return STATUS_SUCCESS

    @staticmethod
    async def _marker_found(backend: StateBackend, marker: str) -> bool:
        deadline = time.monotonic() + _BACKOFF_TOTAL
        interval = _BACKOFF_INITIAL
        while True:
            item = await backend.get(marker)
            if item is not None and item.value:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(interval * random.uniform(0.9, 1.1))
            interval = min(interval * _BACKOFF_MULTIPLIER, _BACKOFF_MAX)


def outbox_configs(components: Iterable[Component]) -> dict[str, OutboxConfig]:
    """The state stores that have an outbox, by name."""
    found = {}
    for component in components:
        if component.category == "state":
            config = OutboxConfig.of(component)
            if config is not None:
                found[component.name] = config
    return found
