"""Subscriptions delivered to the app through the app channel, as daprd 1.18 does.

Once the app is up the sidecar asks it for its programmatic subscriptions (HTTP
``GET /dapr/subscribe``, gRPC ``ListTopicSubscriptions``), subscribes to each topic on its pub/sub
component and hands every event to the app (HTTP ``POST /<route>``, gRPC ``OnTopicEvent``). The component's shared delivery logic (resiliency inbound
retries, dead-letter topics, expiry) lives in ``_pubsub.PubSub.deliver``: this module is one more
consumer of a :class:`~._pubsub.Subscriber` outbox, like a streaming subscription, and turns the
app's answer into SUCCESS/RETRY/DROP with daprd's mapping:

- transport errors and non-2xx statuses are RETRY, except 404, which is DROP;
- gRPC: the ``TopicEventResponse`` status; an error is RETRY, except UNIMPLEMENTED (SUCCESS);
- a 2xx answer is SUCCESS unless its body is a JSON object whose ``status`` says otherwise
  (``RETRY``, ``DROP``; an unknown status is RETRY; Go decodes the key case-insensitively);
- an event no routing rule matches is skipped (and, with a dead-letter topic, sent there).

Routing rules use CEL in daprd. This evaluates the subset the SDK examples use: comparisons
``event.<field> <op> <literal>`` (``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``; string, number,
bool literals) joined by ``&&``/``||`` with parentheses, failing as CEL fails on a missing key or
mismatched types; a subscription whose rule falls outside it is refused with an error naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc

from ._app_channel import EMPTY_TRACEPARENT, AppChannelError, GrpcAppChannel, HttpAppChannel
from ._errors import ComponentError
from ._gojson import encode as go_encode
from ._pubsub import (
    CLOUDEVENTS_JSON,
    STATUS_DROP,
    STATUS_RETRY,
    STATUS_SUCCESS,
    Subscriber,
    event_data_bytes,
    event_extensions,
)

if TYPE_CHECKING:
    from ._pubsub import PubSub

_log = logging.getLogger(__name__)

PROGRAMMATIC = "PROGRAMMATIC"
DECLARATIVE = "DECLARATIVE"


class SubscriptionError(ValueError):
    """A subscription the sidecar cannot serve (an unsupported routing expression)."""


# -- CEL subset ------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<op>&&|\|\||==|!=|<=|>=|<|>|\(|\))|(?P<str>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')"
    r"|(?P<num>-?\d+(?:\.\d+)?)|(?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*))"
)


def _tokens(expression: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = expression.rstrip()
    while position < len(text):
        found = _TOKEN.match(text, position)
        if found is None or found.end() == position:
            raise SubscriptionError(f"unsupported routing expression {expression!r} at {text[position:]!r}")
        kind = found.lastgroup or ""
        tokens.append((kind, found.group(kind)))
        position = found.end()
    return tokens


@dataclass(frozen=True)
class Match:
    """A compiled routing expression of the supported CEL subset."""

    expression: str
    tree: Any

    @classmethod
    def compile(cls, expression: str) -> Match:
        tokens = _tokens(expression)
        tree, rest = _parse_or(tokens, expression)
        if rest:
            raise SubscriptionError(f"unsupported routing expression {expression!r}")
        return cls(expression, tree)

    def evaluate(self, event: Mapping[str, Any]) -> bool:
        return bool(_evaluate(self.tree, event))


def _parse_or(tokens: list[tuple[str, str]], source: str) -> tuple[Any, list[tuple[str, str]]]:
    left, tokens = _parse_and(tokens, source)
    while tokens and tokens[0] == ("op", "||"):
        right, tokens = _parse_and(tokens[1:], source)
        left = ("or", left, right)
    return left, tokens


def _parse_and(tokens: list[tuple[str, str]], source: str) -> tuple[Any, list[tuple[str, str]]]:
    left, tokens = _parse_atom(tokens, source)
    while tokens and tokens[0] == ("op", "&&"):
        right, tokens = _parse_atom(tokens[1:], source)
        left = ("and", left, right)
    return left, tokens


def _operand(token: tuple[str, str], source: str) -> Any:
    kind, text = token
    if kind == "str":
        return (
            "lit",
            json.loads('"' + text[1:-1].replace('"', '\\"') + '"') if text[0] == "'" else json.loads(text),
        )
    if kind == "num":
        return ("lit", float(text))
    if kind == "ident" and text in {"true", "false"}:
        return ("lit", text == "true")
    if kind == "ident" and text.startswith("event."):
        return ("field", text.split(".")[1:])
    raise SubscriptionError(f"unsupported routing expression {source!r}: {text!r}")


def _parse_atom(tokens: list[tuple[str, str]], source: str) -> tuple[Any, list[tuple[str, str]]]:
    if not tokens:
        raise SubscriptionError(f"unsupported routing expression {source!r}")
    if tokens[0] == ("op", "("):
        inner, rest = _parse_or(tokens[1:], source)
        if not rest or rest[0] != ("op", ")"):
            raise SubscriptionError(f"unsupported routing expression {source!r}: unbalanced parentheses")
        return inner, rest[1:]
    if len(tokens) < 3 or tokens[1][0] != "op" or tokens[1][1] not in _COMPARISONS:
        raise SubscriptionError(f"unsupported routing expression {source!r}")
    return ("cmp", tokens[1][1], _operand(tokens[0], source), _operand(tokens[2], source)), tokens[3:]


_COMPARISONS = {"==", "!=", "<", "<=", ">", ">="}


class CelError(Exception):
    """Evaluating a rule failed as CEL fails (no such key, no such overload): daprd then sends
    the event to the dead-letter topic, or fails its delivery."""


def _value(operand: Any, event: Mapping[str, Any]) -> Any:
    if operand[0] == "lit":
        return operand[1]
    value: Any = event
    for name in operand[1]:
        if not isinstance(value, Mapping) or name not in value:
            raise CelError(f"no such key: {name}")
        value = value[name]
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"  # CEL compares int, uint and double across types
    return type(value).__name__


def _evaluate(tree: Any, event: Mapping[str, Any]) -> bool:
    if tree[0] == "or":
        return _evaluate(tree[1], event) or _evaluate(tree[2], event)
    if tree[0] == "and":
        return _evaluate(tree[1], event) and _evaluate(tree[2], event)
    _, op, left, right = tree
    a, b = _value(left, event), _value(right, event)
    if _kind(a) != _kind(b):
        raise CelError(f"no such overload: {_kind(a)} {op} {_kind(b)}")
    if op in {"==", "!="}:
        return (a == b) == (op == "==")
    if _kind(a) not in {"number", "str"}:
        raise CelError(f"no such overload: {_kind(a)} {op} {_kind(b)}")
    return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op])


# -- subscriptions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    path: str
    match: Match | None = None


@dataclass
class Subscription:
    """One subscription of the app to a topic, with daprd's routing rules."""

    pubsub: str
    topic: str
    rules: list[Rule]
    dead_letter_topic: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    kind: str = PROGRAMMATIC

    def route(self, event: Mapping[str, Any]) -> str | None:
        """The path of the first rule that matches (a rule without a match always does)."""
        for rule in self.rules:
            if rule.match is None or rule.match.evaluate(event):
                return rule.path
        return None

    def metadata_entry(self) -> dict[str, object]:
        """This subscription as daprd's ``GET /v1.0/metadata`` lists it."""
        entry: dict[str, object] = {"pubsubname": self.pubsub, "topic": self.topic}
        if self.metadata:
            entry["metadata"] = dict(self.metadata)
        # daprd leaves out an empty match and an empty path (omitempty).
        entry["rules"] = [
            {
                **({"match": rule.match.expression} if rule.match else {}),
                **({"path": rule.path} if rule.path else {}),
            }
            for rule in self.rules
        ]
        entry["deadLetterTopic"] = self.dead_letter_topic
        entry["type"] = self.kind
        return entry


def _warn_bulk(enabled: Any, topic: str) -> None:
    if enabled is True or str(enabled).lower() == "true":
        _log.warning(
            "subscription to topic %r asks for bulkSubscribe, which the dev sidecar does not implement: "
            "its events are posted one by one as single CloudEvents; use --runtime daprd for bulk delivery",
            topic,
        )


def _rules(routes: Mapping[str, Any] | None, route: str) -> list[Rule]:
    # daprd: the rules in order, then `default` (or, without one, v1's single `route`) last.
    routes = routes or {}
    rules = [
        Rule(str(r.get("path", "")), Match.compile(str(r["match"])) if r.get("match") else None)
        for r in routes.get("rules") or []
    ]
    if routes.get("default"):
        rules.append(Rule(str(routes["default"])))
    elif route:
        rules.append(Rule(route))
    return rules


def parse_programmatic(document: Any) -> list[Subscription]:
    """The subscriptions in an app's ``/dapr/subscribe`` answer (daprd's JSON shape)."""
    if not isinstance(document, list):
        raise SubscriptionError("the app's /dapr/subscribe answer is not a JSON array")
    subscriptions = []
    for item in document:
        if not isinstance(item, dict):
            raise SubscriptionError("an entry of the app's /dapr/subscribe answer is not a JSON object")
        # Go's decoder matches keys case-insensitively.
        item = {str(k).lower(): v for k, v in (item or {}).items()}
        _warn_bulk(
            {str(k).lower(): v for k, v in (item.get("bulksubscribe") or {}).items()}.get("enabled"),
            str(item.get("topic", "")),
        )
        subscriptions.append(
            Subscription(
                pubsub=str(item.get("pubsubname", "")),
                topic=str(item.get("topic", "")),
                rules=_rules(
                    {str(k).lower(): v for k, v in (item.get("routes") or {}).items()}, item.get("route", "")
                ),
                dead_letter_topic=str(item.get("deadlettertopic", "") or ""),
                metadata={str(k): str(v) for k, v in (item.get("metadata") or {}).items()},
            )
        )
    # daprd drops a subscription without any route, with a warning.
    for subscription in subscriptions:
        if not subscription.rules:
            _log.warning("topic %s has an empty routes. removing from subscriptions list", subscription.topic)
    return [subscription for subscription in subscriptions if subscription.rules]


def parse_programmatic_grpc(response: Any) -> list[Subscription]:
    """The subscriptions in a gRPC app's ``ListTopicSubscriptionsResponse``."""
    subscriptions = []
    for item in response.subscriptions:
        rules = [Rule(r.path, Match.compile(r.match) if r.match else None) for r in item.routes.rules]
        _warn_bulk(item.bulk_subscribe.enabled, item.topic)
        if item.routes.default:
            rules.append(Rule(item.routes.default))
        # daprd gives a gRPC subscription without rules one rule to the empty path.
        subscriptions.append(
            Subscription(
                pubsub=item.pubsub_name,
                topic=item.topic,
                rules=rules or [Rule("")],
                dead_letter_topic=item.dead_letter_topic,
                metadata=dict(item.metadata),
            )
        )
    return subscriptions


def topic_event_request(subscription: Subscription, path: str, event: Mapping[str, Any]) -> Any:
    """The ``TopicEventRequest`` daprd sends a gRPC app for ``event``."""
    from dapr.proto.runtime.v1 import appcallback_pb2
    from google.protobuf import struct_pb2

    def text(key: str) -> str:
        value = event.get(key)
        return value if isinstance(value, str) else ""

    extensions = struct_pb2.Struct()
    extensions.update(event_extensions(event))
    return appcallback_pb2.TopicEventRequest(
        id=text("id"),
        source=text("source"),
        type=text("type"),
        spec_version=text("specversion"),
        data_content_type=text("datacontenttype"),
        data=event_data_bytes(event),
        topic=subscription.topic,
        pubsub_name=subscription.pubsub,
        path=path,
        extensions=extensions,
    )


def parse_declarative(
    documents: Sequence[tuple[str, Mapping[str, Any]]], *, app_id: str, namespace: str = ""
) -> list[Subscription]:
    """The ``kind: Subscription`` documents (v1alpha1 ``route``, v2alpha1 ``routes``) that apply
    to ``app_id``: daprd skips one of another namespace or whose ``scopes`` leave the app out.
    ``ComponentError`` names the file of a subscription that cannot be served."""
    subscriptions = []
    for source, doc in documents:
        meta = doc.get("metadata") or {}
        name = str(meta.get("name") or "")
        if namespace and meta.get("namespace") and meta.get("namespace") != namespace:
            continue
        scopes = doc.get("scopes") or []
        if scopes and app_id not in scopes:
            continue
        spec = doc.get("spec") or {}
        if not isinstance(spec, dict) or not spec.get("pubsubname") or not spec.get("topic"):
            raise ComponentError(f"{source}: subscription {name!r} needs spec.pubsubname and spec.topic")
        _warn_bulk((spec.get("bulkSubscribe") or {}).get("enabled"), str(spec["topic"]))
        try:
            rules = _rules(spec.get("routes"), str(spec.get("route") or ""))
        except SubscriptionError as exc:
            raise ComponentError(f"{source}: subscription {name!r}: {exc}") from exc
        subscriptions.append(
            Subscription(
                pubsub=str(spec["pubsubname"]),
                topic=str(spec["topic"]),
                rules=rules,
                dead_letter_topic=str(spec.get("deadLetterTopic") or ""),
                metadata={str(k): str(v) for k, v in (spec.get("metadata") or {}).items()},
                kind=DECLARATIVE,
            )
        )
    return subscriptions


def _retry(subscription: Subscription, reason: str) -> int:
    """A delivery to redo, logged with daprd's words (its postman's error, which the component logs)."""
    _log.warning(
        "encountered a retriable error while publishing a subscribed message to topic %s, err: %s",
        subscription.topic,
        reason,
    )
    return STATUS_RETRY


def _answer_status(body: bytes) -> object:
    """The ``status`` of a 2xx answer's JSON ("" when it is empty, not JSON or has none)."""
    try:
        answer = json.loads(body)
    except ValueError:
        return ""  # empty or not JSON: the status check is skipped
    if not isinstance(answer, dict):
        return ""
    return next((v for k, v in answer.items() if k.lower() == "status"), "")


def http_status(status: int, body: bytes) -> int:
    """daprd's reading of an HTTP app's answer to an event."""
    if 200 <= status <= 299:
        value = _answer_status(body)
        return {"": STATUS_SUCCESS, "SUCCESS": STATUS_SUCCESS, "DROP": STATUS_DROP}.get(
            value if isinstance(value, str) else "?", STATUS_RETRY
        )
    if status == 404:
        return STATUS_DROP
    return STATUS_RETRY


class AppSubscriptions:
    """The app's subscriptions: loaded once the app is up, each fed by a pub/sub subscriber."""

    def __init__(self, pubsubs: Mapping[str, PubSub], declared: Sequence[Subscription] = ()) -> None:
        self._pubsubs = pubsubs
        self._declared = list(declared)
        self.active: list[Subscription] = []
        self._subscribers: list[tuple[PubSub, Subscriber]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False

    async def start(self, channel: Any) -> None:
        """Subscribe the declared subscriptions and those the app asks for (once)."""
        if self._started:
            return
        self._started = True
        subscriptions = list(self._declared)
        if isinstance(channel, HttpAppChannel):
            subscriptions += await self._programmatic_http(channel)
        elif isinstance(channel, GrpcAppChannel):
            subscriptions += await self._programmatic_grpc(channel)
        for subscription in subscriptions:
            pubsub = self._pubsubs.get(subscription.pubsub)
            if pubsub is None:
                _log.warning(
                    "subscription to topic %r: pub/sub %r is not a loaded component; skipped",
                    subscription.topic,
                    subscription.pubsub,
                )
                continue
            result = pubsub.subscribe(
                subscription.topic, subscription.dead_letter_topic, subscription.metadata
            )
            subscriber = await result if inspect.isawaitable(result) else result
            self.active.append(subscription)
            self._subscribers.append((pubsub, subscriber))
            self._spawn(self._pump(channel, subscription, subscriber))

    async def _programmatic_http(self, channel: HttpAppChannel) -> list[Subscription]:
        headers = [("Content-Type", "application/json"), ("Dapr-App-Id", channel.app_id)]
        if channel.connection.api_token:
            headers.append(("Dapr-Api-Token", channel.connection.api_token))
        try:
            reply = await channel.request("GET", "/dapr/subscribe", headers)
        except AppChannelError as exc:
            _log.error("cannot read the app's subscriptions: %s", exc)
            return []
        if reply.status == 404:
            return []
        if reply.status != 200:
            _log.error("app returned http status code %d from subscription endpoint", reply.status)
            return []
        if not reply.body.strip():
            return []
        try:
            return parse_programmatic(json.loads(reply.body))
        except (ValueError, AttributeError) as exc:
            _log.error("cannot use the app's subscriptions: %s", exc)
            return []

    async def _programmatic_grpc(self, channel: GrpcAppChannel) -> list[Subscription]:
        from google.protobuf import empty_pb2

        try:
            response = await channel.app_callback.ListTopicSubscriptions(
                empty_pb2.Empty(), metadata=channel.token_metadata()
            )
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                _log.error("error getting topics from app: %s", exc)
            return []
        try:
            return parse_programmatic_grpc(response)
        except SubscriptionError as exc:
            _log.error("cannot use the app's subscriptions: %s", exc)
            return []

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pump(self, channel: Any, subscription: Subscription, subscriber: Subscriber) -> None:
        while True:
            event = await subscriber.outbox.get()
            self._spawn(self._handle(channel, subscription, subscriber, event))

    async def _handle(
        self, channel: Any, subscription: Subscription, subscriber: Subscriber, event: dict[str, Any]
    ) -> None:
        event_id = str(event.get("id", ""))
        try:
            path = subscription.route(event)
        except CelError as exc:
            # daprd: to the dead-letter topic if there is one, else the delivery fails.
            _log.error("error finding matching route for event %s: %s", event_id, exc)
            subscriber.acknowledge(event_id, STATUS_DROP if subscription.dead_letter_topic else STATUS_RETRY)
            return
        if path is None:
            # daprd skips it as handled, and hands it to the dead-letter topic when there is one.
            subscriber.acknowledge(
                event_id, STATUS_DROP if subscription.dead_letter_topic else STATUS_SUCCESS
            )
            return
        if isinstance(channel, GrpcAppChannel):
            status = await self._on_topic_event(channel, subscription, path, event)
        else:
            status = await self._post(channel, subscription, path, event)
        subscriber.acknowledge(event_id, status)

    async def _on_topic_event(
        self, channel: GrpcAppChannel, subscription: Subscription, path: str, event: dict[str, Any]
    ) -> int:
        try:
            request = topic_event_request(subscription, path, event)
        except ValueError as exc:  # data_base64 that is not base64: daprd retries
            _log.warning("cannot build the event for the app: %s", exc)
            return STATUS_RETRY
        traceparent = event.get("traceparent") or event.get("traceid")
        if not isinstance(traceparent, str) or not traceparent:
            traceparent = EMPTY_TRACEPARENT
        metadata = [
            ("traceparent", traceparent),
            ("pubsubname", subscription.pubsub),
            *channel.token_metadata(),
        ]
        try:
            response = await channel.app_callback.OnTopicEvent(request, metadata=metadata)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                _log.warning(
                    "non-retriable error returned from app while processing pub/sub event %s", request.id
                )
                return STATUS_SUCCESS
            return _retry(
                subscription, f"error returned from app while processing pub/sub event {request.id}: {exc}"
            )
        if response.status in (STATUS_SUCCESS, STATUS_DROP):
            if response.status == STATUS_DROP:
                _log.warning("DROP status returned from app while processing pub/sub event %s", request.id)
            return int(response.status)
        if response.status == STATUS_RETRY:
            return _retry(
                subscription, f"RETRY status returned from app while processing pub/sub event {request.id}"
            )
        return _retry(
            subscription,
            f"unknown status returned from app while processing pub/sub event {request.id}: {response.status}",
        )

    async def _post(
        self, channel: HttpAppChannel, subscription: Subscription, path: str, event: dict[str, Any]
    ) -> int:
        event = dict(event)
        if subscription.metadata.get("rawPayload", "").lower() == "true":
            event.setdefault("topic", subscription.topic)
            event.setdefault("pubsubname", subscription.pubsub)
            if not event.get("traceparent"):
                # daprd's raw wrapper only carries a traceparent the message metadata had.
                event.pop("traceparent", None)
        # daprd's Go HTTP client canonicalises names; its tracing always sends a traceparent.
        traceparent = event.get("traceparent") or event.get("traceid")
        if not isinstance(traceparent, str) or not traceparent:
            traceparent = EMPTY_TRACEPARENT
        headers = [
            ("Content-Type", CLOUDEVENTS_JSON),
            ("Pubsubname", subscription.pubsub),
            ("Traceparent", traceparent),
        ]
        if channel.connection.api_token:
            headers.append(("Dapr-Api-Token", channel.connection.api_token))
        try:
            reply = await channel.request("POST", "/" + path.lstrip("/"), headers, go_encode(event))
        except AppChannelError as exc:
            return _retry(
                subscription, f"error returned from app channel while sending pub/sub event to app: {exc}"
            )
        status = http_status(reply.status, reply.body)
        event_id = event.get("id")
        if reply.status == 404:
            _log.error(
                "non-retriable error returned from app while processing pub/sub event %s: %s. status code returned: %d",
                event_id,
                reply.body.decode("utf-8", "replace"),
                reply.status,
            )
        elif status == STATUS_DROP:
            _log.warning("DROP status returned from app while processing pub/sub event %s", event_id)
        elif status == STATUS_RETRY and 200 <= reply.status <= 299:
            answered = _answer_status(reply.body)
            if answered == "RETRY":
                return _retry(
                    subscription, f"RETRY status returned from app while processing pub/sub event {event_id}"
                )
            return _retry(
                subscription,
                f"unknown status returned from app while processing pub/sub event {event_id}, status: {answered}",
            )
        elif status == STATUS_RETRY:
            return _retry(
                subscription,
                f"retriable error returned from app while processing pub/sub event {event_id}, topic: "
                f"{subscription.topic}, body: {reply.body.decode('utf-8', 'replace')}. status code returned: "
                f"{reply.status}",
            )
        return status

    def metadata(self) -> list[dict[str, object]]:
        return [subscription.metadata_entry() for subscription in self.active]

    def add_to_metadata(self, response: Any) -> None:
        """Add the subscriptions to a ``GetMetadataResponse`` (before the streaming ones, as daprd)."""
        from dapr.proto.runtime.v1 import metadata_pb2

        for subscription in self.active:
            entry = response.subscriptions.add(
                pubsub_name=subscription.pubsub,
                topic=subscription.topic,
                dead_letter_topic=subscription.dead_letter_topic,
                metadata=subscription.metadata,
                type=metadata_pb2.PubsubSubscriptionType.Value(subscription.kind),
            )
            for rule in subscription.rules:
                entry.rules.rules.add(match=rule.match.expression if rule.match else "", path=rule.path)

    async def close(self) -> None:
        for pubsub, subscriber in self._subscribers:
            pubsub.unsubscribe(subscriber)
        self._subscribers.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
