"""What mappers and filters receive (``TopicEvent``, ``WebhookRequest``) and how their results
become the ``{"task": ...}`` payload a ``DurableAgent`` run takes."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Union

#: What a mapper may return: a payload dict with ``task``, a task string, or ``None`` to skip.
MapperResult = Union[Mapping[str, Any], str, None]  # noqa: UP007 (a runtime alias on 3.10)


class MapperOutputError(ValueError):
    """A mapper returned something that is not a TriggerAction-shaped payload."""


def decode_data(data: bytes, content_type: str) -> Any:
    """JSON when the content type says so (or is absent and the bytes parse), text, else bytes."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json") or not media:
        try:
            return json.loads(data) if data else None
        except ValueError:
            if media:
                raise
    if media.startswith("text/") or not media:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data
    return data


@dataclass(frozen=True)
class TopicEvent:
    """One pub/sub delivery, as a topic trigger's mapper, filter and key function see it.

    ``data`` is the event data decoded by its content type (JSON to Python values, ``text/*`` to
    ``str``, anything else ``bytes``); ``raw`` is the undecoded data.
    """

    id: str
    source: str
    type: str
    topic: str
    pubsub: str
    data: Any
    data_content_type: str
    raw: bytes = b""
    extensions: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """A JSON-safe summary for dead-letter messages."""
        data = self.data
        if isinstance(data, bytes):
            data = data.decode("utf-8", errors="replace")
        try:
            json.dumps(data)
        except (TypeError, ValueError):
            data = repr(data)
        return {
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "topic": self.topic,
            "pubsub": self.pubsub,
            "datacontenttype": self.data_content_type,
            "data": data,
        }


@dataclass(frozen=True)
class WebhookRequest:
    """One verified webhook delivery, as a webhook trigger's mapper sees it."""

    path: str
    headers: Mapping[str, str]
    body: bytes
    data: Any
    idempotency_key: str | None


@dataclass(frozen=True)
class Fire:
    """One fire of a schedule, as a schedule trigger's ``task`` callable sees it."""

    schedule: str
    fire_time: datetime
    instance_id: str


def default_payload(data: Any) -> MapperResult:
    """The payload for event data when no mapper is given.

    A dict that already has ``task`` is taken as a TriggerAction (as the agent's own pub/sub
    trigger does); a string is the task; anything else is serialised as JSON text.
    """
    if isinstance(data, Mapping) and "task" in data:
        return data
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    if isinstance(data, str):
        return data
    return json.dumps(data, sort_keys=True, default=str)


def normalize_payload(result: MapperResult, where: str) -> dict[str, Any] | None:
    """Turn a mapper's result into a run payload, or ``None`` to skip; ``MapperOutputError`` else."""
    if result is None:
        return None
    if isinstance(result, str):
        return {"task": result}
    if isinstance(result, Mapping):
        task = result.get("task")
        if not isinstance(task, str) or not task:
            raise MapperOutputError(
                f"{where} returned a dict whose 'task' is {task!r}; return {{'task': '<non-empty text>', ...}}, "
                "a string, or None to skip the event"
            )
        payload = dict(result)
        try:
            json.dumps(payload)
        except (TypeError, ValueError) as exc:
            raise MapperOutputError(
                f"{where} returned a payload that is not JSON-serialisable: {exc}"
            ) from exc
        return payload
    raise MapperOutputError(
        f"{where} returned {type(result).__name__}; return {{'task': ...}}, a string, or None to skip the event"
    )


Mapper = Callable[[Any], MapperResult]
