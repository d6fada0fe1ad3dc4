"""The dedupe ledger: one record per trigger key in a Dapr state store, claimed first-write-wins.

Why a ledger and not only a deterministic instance id: Dapr refuses a second instance with the
same id only while the first is running; once it has finished the id may be reused, so a late
redelivery would start a second run. The record outlives the run (for ``ttl``) and says
"this key already started its run".

A record goes ``claimed`` (a consumer owns the key and is about to schedule) -> ``started``.
A claim carries a lease: another consumer that finds an unexpired claim waits; one that finds
an expired claim (its owner crashed between claim and schedule) takes it over with an etag-guarded
write, so of two consumers only one can win, and before scheduling it checks whether the crashed
owner had already started the instance.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Union

import grpc
from dapr.clients import DaprClient
from dapr.clients.grpc._state import Concurrency, StateOptions

from ._errors import TriggerConfigError
from ._ids import part

logger = logging.getLogger(__name__)

Seconds = Union[timedelta, float, int]  # noqa: UP007 (a runtime alias on 3.10)


def seconds(value: Seconds, name: str, *, minimum: float = 0.0) -> float:
    """A duration given as ``timedelta`` or seconds, validated."""
    if isinstance(value, bool) or not isinstance(value, (timedelta, int, float)):
        raise TriggerConfigError(f"{name} must be a timedelta or a number of seconds, got {value!r}")
    result = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if result < minimum:
        raise TriggerConfigError(f"{name}={value!r} is too small; use at least {minimum:g} second(s)")
    return result


@dataclass(frozen=True)
class Dedupe:
    """Where and how long a trigger remembers which keys already started a run.

    Attributes:
        store: Dapr state store holding the ledger (default ``agent-workflow``, the store every
            ``DurableAgent`` already needs).
        ttl: How long a key is remembered after its run started. A redelivery within it never
            starts a second run; after it, the key counts as new.
        key: Function of the event giving its dedupe key (default: the CloudEvent id for topics,
            the idempotency header for webhooks). The workflow instance id is derived from it.
        lease: How long a claim by another consumer is honoured before it counts as abandoned
            (its owner crashed between claim and schedule) and may be taken over.
    """

    store: str = "agent-workflow"
    ttl: Seconds = timedelta(hours=24)
    key: Callable[[Any], str] | None = None
    lease: Seconds = timedelta(seconds=30)

    def __post_init__(self) -> None:
        if not isinstance(self.store, str) or not self.store:
            raise TriggerConfigError(f"Dedupe(store={self.store!r}): name a Dapr state store component")
        ttl = seconds(self.ttl, "Dedupe(ttl=...)", minimum=1)
        lease = seconds(self.lease, "Dedupe(lease=...)", minimum=0.1)
        if lease >= ttl:
            raise TriggerConfigError(f"Dedupe(lease={self.lease!r}) must be shorter than ttl={self.ttl!r}")
        if self.key is not None and not callable(self.key):
            raise TriggerConfigError(
                f"Dedupe(key={self.key!r}) must be a function of the event returning a str"
            )

    @property
    def ttl_seconds(self) -> int:
        return max(1, int(seconds(self.ttl, "ttl")))

    @property
    def lease_seconds(self) -> float:
        return seconds(self.lease, "lease")


def ledger_namespace(agent: str, kind: str, scope: str) -> str:
    """The key prefix of one trigger's ledger records (the key is appended after a colon)."""
    return f"dapr-agents-triggers:{part(agent)}:{kind}:{part(scope)}"


def is_conflict(error: BaseException) -> bool:
    """True for the first-write / etag mismatch answer (``ABORTED``) of a state save."""
    code = getattr(error, "code", None)
    return callable(code) and code() == grpc.StatusCode.ABORTED


@dataclass
class Claim:
    """The outcome of :meth:`Ledger.claim`."""

    outcome: str  # "claimed" | "started" | "busy"
    record: dict[str, Any]
    etag: str | None = None
    fresh: bool = True  # False when taken over or re-entered: the instance may already exist


class Ledger:
    """The dedupe records of one trigger, read and written through a ``DaprClient``."""

    def __init__(self, client: DaprClient, dedupe: Dedupe, namespace: str) -> None:
        self._client = client
        self._dedupe = dedupe
        self._namespace = namespace
        # A claim names its owner so a consumer that retries its own claim proceeds at once.
        self.owner = uuid.uuid4().hex

    def key(self, dedupe_key: str) -> str:
        # daprd refuses "||" in keys (its own app-id separator): parts are made id-safe.
        return f"{self._namespace}:{part(dedupe_key)}"

    def _save(self, key: str, record: dict[str, Any], etag: str | None) -> None:
        self._client.save_state(
            self._dedupe.store,
            key,
            json.dumps(record),
            etag=etag,
            options=StateOptions(concurrency=Concurrency.first_write),
            state_metadata={"ttlInSeconds": str(self._dedupe.ttl_seconds), "contentType": "application/json"},
        )

    def read(self, dedupe_key: str) -> tuple[dict[str, Any] | None, str | None]:
        item = self._client.get_state(self._dedupe.store, self.key(dedupe_key))
        if not item.data:
            return None, None
        try:
            record = json.loads(item.data)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            logger.warning(
                "ledger record %s in %s is not JSON; treating it as absent", dedupe_key, self._dedupe.store
            )
            return None, None
        return record, item.etag or None

    def claim(self, dedupe_key: str, instance_id: str) -> Claim:
        key = self.key(dedupe_key)
        for _ in range(5):
            now = time.time()
            record = {
                "status": "claimed",
                "instance_id": instance_id,
                "owner": self.owner,
                "claimed_at": now,
                "lease_until": now + self._dedupe.lease_seconds,
            }
            try:
                self._save(key, record, None)
                return Claim("claimed", record)
            except Exception as exc:
                if not is_conflict(exc):
                    raise
            existing, etag = self.read(dedupe_key)
            if existing is None:
                continue  # expired between the two calls: try the insert again
            if existing.get("status") == "started":
                return Claim("started", existing, etag)
            if existing.get("owner") == self.owner:
                return Claim("claimed", existing, etag, fresh=False)
            if float(existing.get("lease_until", 0)) > now:
                return Claim("busy", existing, etag)
            try:
                self._save(key, record, etag)
                logger.info("took over the abandoned claim of %s (instance %s)", dedupe_key, instance_id)
                return Claim(
                    "claimed", {**record, "claimed_at": existing.get("claimed_at", now)}, None, fresh=False
                )
            except Exception as exc:
                if not is_conflict(exc):
                    raise
        raise RuntimeError(
            f"could not claim dedupe key {dedupe_key!r} in {self._dedupe.store!r}: it keeps changing"
        )

    def mark_started(self, dedupe_key: str, claim: Claim) -> None:
        record = {**claim.record, "status": "started", "started_at": time.time()}
        record.pop("lease_until", None)
        # Last write wins here on purpose: only the owner of the claim gets this far.
        self._client.save_state(
            self._dedupe.store,
            self.key(dedupe_key),
            json.dumps(record),
            state_metadata={"ttlInSeconds": str(self._dedupe.ttl_seconds), "contentType": "application/json"},
        )
