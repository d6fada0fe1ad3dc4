"""``topic_trigger``: one agent run per pub/sub event, through a streaming subscription.

The subscription is a streaming one (``SubscribeTopicEventsAlpha1``) on ``ctx.dapr_client``'s
channel in every hosting mode, ``serve()`` included: it needs no app port and no
``/dapr/subscribe`` route, and it works with daprd and the dev sidecar alike (which delivers
only to streaming subscriptions). The SDK's own ``Subscription`` (1.18.3) is not used because
its start can race (the request writer sees the stream inactive and half-closes it) and its
writer thread never ends after ``close()``; this module drives the same RPC with a writer that
ends when the trigger closes, so shutting down leaves no thread behind.

One topic trigger per pub/sub topic per sidecar in a process: daprd gives each stream to a
topic a consumer of its own, so a second trigger would either get every event again
(``pubsub.in-memory``) or split the events with the first (brokers with consumer groups, such as
``pubsub.redis``, whose group is the app id), depending on the component, and with daprd 1.18's
in-memory bus closing one of two streams can silence the other. Hosting a second one therefore
fails before it subscribes.

One worker thread per trigger reads events one at a time and acknowledges each only after its
run is scheduled (or it was found to be a duplicate, filtered out, or dead-lettered). With
``max_concurrency=N`` it waits for one of its N unfinished runs to end before scheduling the
next, and does not acknowledge meanwhile, so the sidecar holds further deliveries back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from dapr.proto import api_v1, appcallback_v1
from google.protobuf.json_format import MessageToDict

from ._errors import TriggerConfigError, TriggerError
from ._events import (
    MapperResult,
    TopicEvent,
    decode_data,
    default_payload,
    normalize_payload,
)
from ._ledger import Dedupe, Ledger, ledger_namespace
from ._runs import InflightRuns, RunStarter, StoppedError, TriggerStats

if TYPE_CHECKING:
    from dapr_agents.agents.durable import DurableAgent
    from dapr_agents.types.activation import ActivationContext

logger = logging.getLogger(__name__)

SUCCESS = appcallback_v1.TopicEventResponse.SUCCESS
RETRY = appcallback_v1.TopicEventResponse.RETRY
DROP = appcallback_v1.TopicEventResponse.DROP

_OPEN_TIMEOUT = 15.0
_JOIN_TIMEOUT = 15.0

# (sidecar address, pubsub, topic) of every hosted topic trigger in this process -> (its hosting's
# token, its repr).
_claimed: dict[tuple[str, str, str], tuple[object, str]] = {}
_claimed_lock = threading.Lock()


def _sidecar_address(client: Any) -> str:
    """The gRPC address ``client`` talks to (the SDK keeps it as ``_uri``)."""
    uri = getattr(client, "_uri", None)
    return str(getattr(uri, "endpoint", None) or id(client))


class _Stream:
    """One streaming subscription; ``close()`` ends both directions and the writer."""

    def __init__(self, stub: Any, pubsub: str, topic: str, dead_letter_topic: str | None) -> None:
        self._outbox: queue.Queue[Any] = queue.Queue()
        initial = api_v1.SubscribeTopicEventsRequestAlpha1(
            initial_request=api_v1.SubscribeTopicEventsRequestInitialAlpha1(
                pubsub_name=pubsub, topic=topic, dead_letter_topic=dead_letter_topic or ""
            )
        )

        def requests() -> Iterator[Any]:
            yield initial
            while True:
                item = self._outbox.get()
                if item is None:
                    return
                yield item

        self._call = stub.SubscribeTopicEventsAlpha1(requests())
        try:
            next(self._call)  # the initial response: the sidecar accepted the subscription
        except BaseException:
            self.close()
            raise

    def __iter__(self) -> Iterator[Any]:
        for response in self._call:
            if response.HasField("event_message"):
                yield response.event_message

    def respond(self, event_id: str, status: int) -> None:
        self._outbox.put(
            api_v1.SubscribeTopicEventsRequestAlpha1(
                event_processed=api_v1.SubscribeTopicEventsRequestProcessedAlpha1(
                    id=event_id,
                    status=appcallback_v1.TopicEventResponse(status=status),  # type: ignore[arg-type]
                )
            )
        )

    def close(self) -> None:
        self._outbox.put(None)
        with contextlib.suppress(Exception):  # already finished
            self._call.cancel()


def _event(message: Any) -> TopicEvent:
    extensions = MessageToDict(message.extensions) if message.HasField("extensions") else {}
    return TopicEvent(
        id=message.id,
        source=message.source,
        type=message.type,
        topic=message.topic,
        pubsub=message.pubsub_name,
        data=decode_data(message.data, message.data_content_type),
        data_content_type=message.data_content_type,
        raw=bytes(message.data),
        extensions=extensions,
    )


class TopicTrigger:
    """The activation callback ``topic_trigger`` registers; call it only through the runner."""

    def __init__(
        self,
        agent: DurableAgent,
        *,
        pubsub: str,
        topic: str,
        mapper: Callable[[TopicEvent], MapperResult] | None,
        filter: Callable[[TopicEvent], bool] | None,
        dead_letter_topic: str | None,
        max_concurrency: int | None,
        dedupe: Dedupe | None,
    ) -> None:
        self.agent_name = str(agent.name)
        self.pubsub = pubsub
        self.topic = topic
        self.mapper = mapper
        self.filter = filter
        self.dead_letter_topic = dead_letter_topic
        self.max_concurrency = max_concurrency
        self.dedupe = dedupe
        self.stats = TriggerStats()
        # The runner names a failing callback by its __qualname__.
        self.__qualname__ = f"topic_trigger(pubsub={pubsub!r}, topic={topic!r})"

    def __repr__(self) -> str:
        return f"<{self.__qualname__} agent={self.agent_name!r}>"

    def instance_id_for(self, key: str) -> str:
        """The workflow instance id the run of dedupe key ``key`` gets."""
        from ._ids import instance_id

        return instance_id(self.agent_name, "topic", f"{self.pubsub}.{self.topic}", key)

    # -- activation ---------------------------------------------------------------------------

    def __call__(self, ctx: ActivationContext) -> Callable[[], None]:
        ledger = (
            Ledger(
                ctx.dapr_client,
                self.dedupe,
                ledger_namespace(self.agent_name, "topic", f"{self.pubsub}.{self.topic}"),
            )
            if self.dedupe is not None
            else None
        )
        starter = RunStarter(ctx, ledger, "topic", f"{self.pubsub}.{self.topic}")
        inflight = InflightRuns(ctx, self.max_concurrency)
        stop = threading.Event()
        stub = ctx.dapr_client._stub  # the client's (authenticated) channel
        claim = (_sidecar_address(ctx.dapr_client), self.pubsub, self.topic)
        token = object()
        with _claimed_lock:
            holder = _claimed.setdefault(claim, (token, repr(self)))
        if holder[0] is not token:
            raise TriggerError(
                f"{self!r}: {holder[1]} already consumes topic {self.topic!r} of {self.pubsub!r} through "
                "this sidecar. Each trigger would have a subscription of its own, and depending on the "
                "component both would get every event (pubsub.in-memory) or they would split the "
                "events (pubsub.redis and other consumer-group brokers). Register one topic_trigger per "
                "topic (its filter and mapper can route events), or consume the topic in another app."
            )

        def release() -> None:
            with _claimed_lock:
                if _claimed.get(claim, (None,))[0] is token:
                    del _claimed[claim]

        # Opened here, synchronously, so a bad pub/sub name fails the hosting call and events
        # published once hosting returns are delivered.
        try:
            first = _Stream(stub, self.pubsub, self.topic, self.dead_letter_topic)
        except BaseException:
            release()
            raise
        streams: list[_Stream] = [first]
        thread = threading.Thread(
            target=self._loop,
            args=(ctx, stub, first, streams, starter, inflight, stop),
            name=f"topic-trigger-{self.pubsub}-{self.topic}",
            daemon=True,
        )
        thread.start()
        closed = threading.Lock()
        done = [False]

        def close() -> None:
            try:
                with closed:
                    if done[0]:
                        return
                    done[0] = True
                stop.set()
                for stream in list(streams):
                    stream.close()
                if thread is not threading.current_thread():  # closed from a mapper: no self-join
                    thread.join(_JOIN_TIMEOUT)
                if thread.is_alive() and thread is not threading.current_thread():
                    logger.warning("%r: the worker thread did not stop within %ss", self, _JOIN_TIMEOUT)
            except Exception:  # a closer must never raise
                logger.exception("%r: error while closing", self)
            finally:
                release()

        return close

    # -- the worker ---------------------------------------------------------------------------

    def _loop(
        self,
        ctx: ActivationContext,
        stub: Any,
        stream: _Stream | None,
        streams: list[_Stream],
        starter: RunStarter,
        inflight: InflightRuns,
        stop: threading.Event,
    ) -> None:
        backoff = 0.2
        while not stop.is_set():
            if stream is None:
                try:
                    stream = _Stream(stub, self.pubsub, self.topic, self.dead_letter_topic)
                except Exception as exc:
                    if stop.is_set():
                        break
                    logger.warning("%r: cannot subscribe (%s); retrying in %.1fs", self, exc, backoff)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                streams[:] = [stream]
                if stop.is_set():  # close() ran while we were opening
                    stream.close()
                    break
                logger.info("%r: subscription re-established", self)
            backoff = 0.2
            try:
                for message in stream:
                    status = self._handle(ctx, message, starter, inflight, stop)
                    stream.respond(message.id, status)
            except Exception as exc:
                if not stop.is_set():
                    logger.warning("%r: subscription stream ended (%s); reconnecting", self, exc)
            finally:
                stream.close()
            stream = None
            if not stop.is_set():
                stop.wait(backoff)

    def _dead_letter(
        self, ctx: ActivationContext, event: TopicEvent, stage: str, error: BaseException
    ) -> int:
        reason = f"{stage} raised {type(error).__name__}: {error}"
        if not self.dead_letter_topic:
            logger.warning(
                "%r: event %s dropped (%s); set dead_letter_topic= to keep such events",
                self,
                event.id,
                reason,
            )
            self.stats.add("dead_lettered")
            return DROP
        message = {
            "reason": reason,
            "stage": stage,
            "agent": self.agent_name,
            "trigger": self.__qualname__,
            "event": event.describe(),
        }
        try:
            ctx.dapr_client.publish_event(
                self.pubsub,
                self.dead_letter_topic,
                json.dumps(message, default=str),
                data_content_type="application/json",
            )
        except Exception:
            logger.warning(
                "%r: could not publish event %s to the dead-letter topic; asking for redelivery",
                self,
                event.id,
                exc_info=True,
            )
            self.stats.add("retried")
            return RETRY
        logger.info("%r: event %s sent to %s (%s)", self, event.id, self.dead_letter_topic, stage)
        self.stats.add("dead_lettered")
        return SUCCESS

    def _handle(
        self,
        ctx: ActivationContext,
        message: Any,
        starter: RunStarter,
        inflight: InflightRuns,
        stop: threading.Event,
    ) -> int:
        self.stats.add("received")
        try:
            event = _event(message)
        except ValueError as exc:
            event = TopicEvent(
                id=message.id, source=message.source, type=message.type, topic=message.topic,
                pubsub=message.pubsub_name, data=bytes(message.data), data_content_type=message.data_content_type,
                raw=bytes(message.data),
            )  # fmt: skip
            return self._dead_letter(ctx, event, "decoding", exc)
        if self.filter is not None:
            try:
                keep = self.filter(event)
            except Exception as exc:
                return self._dead_letter(ctx, event, "filter", exc)
            if not keep:
                self.stats.add("skipped")
                return SUCCESS
        try:
            raw = self.mapper(event) if self.mapper is not None else default_payload(event.data)
            payload = normalize_payload(raw, "the mapper" if self.mapper else "the default mapper")
        except Exception as exc:
            return self._dead_letter(ctx, event, "mapper", exc)
        if payload is None:
            self.stats.add("skipped")
            return SUCCESS
        try:
            key = (
                self.dedupe.key(event)
                if self.dedupe is not None and self.dedupe.key is not None
                else event.id
            )
            if not isinstance(key, str) or not key:
                raise TriggerConfigError(f"the dedupe key must be a non-empty str, got {key!r}")
        except Exception as exc:
            return self._dead_letter(ctx, event, "key", exc)
        try:
            # Only when it would have to wait for a slot: a duplicate must not wait (the claim
            # below recognises duplicates too, one call fewer in the common case).
            if not inflight.has_slot() and starter.is_duplicate(key):
                self.stats.add("duplicates")
                return SUCCESS
            inflight.wait_for_slot(stop)
            result = starter.start(key, payload, should_stop=stop.is_set, wait=stop.wait)
        except StoppedError:
            self.stats.add("retried")
            return RETRY
        except Exception:
            logger.warning(
                "%r: could not start a run for event %s; asking for redelivery", self, event.id, exc_info=True
            )
            self.stats.add("retried")
            return RETRY
        if result.duplicate:
            self.stats.add("duplicates")
        else:
            inflight.add(result.instance_id)
            self.stats.add("started")
        return SUCCESS


def _positive_int_or_none(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TriggerConfigError(f"{name}={value!r}: use a positive int, or None for no limit")
    return value


def _dedupe(value: Dedupe | bool | None) -> Dedupe | None:
    if value is True:
        return Dedupe()
    if value is False or value is None:
        return None
    if isinstance(value, Dedupe):
        return value
    raise TriggerConfigError(f"dedupe={value!r}: pass Dedupe(store=..., ttl=...), True (defaults) or False")


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TriggerConfigError(f"{what}={value!r}: name a Dapr component/topic with a non-empty string")
    return value


def topic_trigger(
    agent: DurableAgent,
    *,
    pubsub: str,
    topic: str,
    mapper: Callable[[TopicEvent], MapperResult] | None = None,
    filter: Callable[[TopicEvent], bool] | None = None,
    dead_letter_topic: str | None = None,
    max_concurrency: int | None = 16,
    dedupe: Dedupe | bool | None = True,
) -> TopicTrigger:
    """Start one run of ``agent`` per event on ``pubsub``/``topic``.

    Args:
        agent: the ``DurableAgent``; the trigger is registered on it now and comes up when the
            agent is hosted (``serve``, ``subscribe``, ``workflow``, ``run``).
        pubsub, topic: the Dapr pub/sub component and topic.
        mapper: ``TopicEvent -> {"task": ...} | str | None`` (``None`` skips the event). Default:
            a dict with ``task`` is used as is, text is the task, other data becomes JSON text.
        filter: ``TopicEvent -> bool``; events it rejects are acknowledged and skipped.
        dead_letter_topic: where events go whose filter, mapper or key function raised (with the
            reason), and, through Dapr, events whose redeliveries ran out. Without it such
            events are dropped (logged).
        max_concurrency: at most this many runs started by this trigger unfinished at once; the
            next event is not acknowledged until one ends (back-pressure). ``None``: no limit.
        dedupe: :class:`Dedupe` settings; ``True`` for the defaults, ``False`` to rely on the
            deterministic instance id only (a redelivery after the run finished starts another).

    Returns:
        The activation callback (already registered with ``agent.add_activation``).
    """
    trigger = TopicTrigger(
        agent,
        pubsub=_name(pubsub, "pubsub"),
        topic=_name(topic, "topic"),
        mapper=_callable_or_none(mapper, "mapper"),
        filter=_callable_or_none(filter, "filter"),
        dead_letter_topic=None
        if dead_letter_topic is None
        else _name(dead_letter_topic, "dead_letter_topic"),
        max_concurrency=_positive_int_or_none(max_concurrency, "max_concurrency"),
        dedupe=_dedupe(dedupe),
    )
    if dead_letter_topic is not None and dead_letter_topic == topic:
        raise TriggerConfigError(
            f"dead_letter_topic={dead_letter_topic!r} is the trigger's own topic; dead letters would come back"
        )
    agent.add_activation(trigger)
    return trigger


def _callable_or_none(value: Any, name: str) -> Any:
    if value is not None and not callable(value):
        raise TriggerConfigError(f"{name}={value!r} is not callable; pass a function of the event, or None")
    return value
