"""Starting one agent run per key: claim in the ledger, schedule with a deterministic instance id,
record it. Shared by the topic and webhook triggers (the I/O is the same, only the caller differs).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import grpc

from ._ids import instance_id
from ._ledger import Claim, Ledger

if TYPE_CHECKING:
    from dapr_agents.types.activation import ActivationContext

logger = logging.getLogger(__name__)

_TERMINAL = {"COMPLETED", "FAILED", "TERMINATED"}
# created_at comes from the sidecar's clock and claimed_at from ours; allow some skew.
_CLOCK_SKEW_SECONDS = 5.0


class StoppedError(Exception):
    """The trigger is shutting down while waiting (for a claim or a concurrency slot)."""


def already_exists(error: BaseException) -> bool:
    """True when scheduling failed because an instance with that id is still running."""
    code = getattr(error, "code", None)
    if callable(code) and code() == grpc.StatusCode.ALREADY_EXISTS:
        return True
    return "already exists" in str(error).lower()


@dataclass(frozen=True)
class StartResult:
    instance_id: str
    duplicate: bool


@dataclass
class TriggerStats:
    """Counters of one trigger since it was created (all triggers share this shape)."""

    received: int = 0
    started: int = 0
    duplicates: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    retried: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)


def status_name(state: Any) -> str:
    status = getattr(state, "runtime_status", None)
    return str(getattr(status, "name", status))


class RunStarter:
    """Schedules the agent's entry workflow once per key, through ``ctx.runner``."""

    def __init__(self, ctx: ActivationContext, ledger: Ledger | None, kind: str, scope: str) -> None:
        self._ctx = ctx
        self._ledger = ledger
        self._kind = kind
        self._scope = scope
        self._entry = ctx.runner.discover_entry(ctx.agent)

    def instance_id(self, key: str) -> str:
        return instance_id(str(self._ctx.agent.name), self._kind, self._scope, key)

    def is_duplicate(self, key: str) -> bool:
        """A cheap pre-check (no claim): the key's run has already started."""
        if self._ledger is None:
            return False
        record, _ = self._ledger.read(key)
        return record is not None and record.get("status") == "started"

    def _started_since(self, iid: str, claim: Claim) -> bool:
        state = self._ctx.wf_client.get_workflow_state(iid, fetch_payloads=False)
        if state is None:
            return False
        created = getattr(state, "created_at", None)
        if not isinstance(created, datetime):
            return True
        if created.tzinfo is None:
            created = created.replace(tzinfo=timezone.utc)
        claimed = datetime.fromtimestamp(float(claim.record.get("claimed_at", 0)), timezone.utc)
        return created.timestamp() >= claimed.timestamp() - _CLOCK_SKEW_SECONDS

    def start(
        self,
        key: str,
        payload: dict[str, Any],
        *,
        should_stop: Callable[[], bool] = lambda: False,
        wait: Callable[[float], Any] = time.sleep,
    ) -> StartResult:
        iid = self.instance_id(key)
        claim: Claim | None = None
        if self._ledger is not None:
            while True:
                claim = self._ledger.claim(key, iid)
                if claim.outcome == "started":
                    return StartResult(iid, True)
                if claim.outcome == "claimed":
                    break
                # Another consumer holds an unexpired claim: it is scheduling right now (or
                # crashed, and its lease will run out). Wait rather than start a second run.
                if should_stop():
                    raise StoppedError(key)
                wait(0.1)
            if not claim.fresh and self._started_since(iid, claim):
                self._ledger.mark_started(key, claim)
                return StartResult(iid, True)
        try:
            self._ctx.runner.run_workflow(self._entry, payload, instance_id=iid)
        except Exception as exc:
            if not already_exists(exc):
                raise
            logger.debug("instance %s is already running; not starting it again", iid)
            if self._ledger is not None and claim is not None:
                self._ledger.mark_started(key, claim)
            return StartResult(iid, True)
        if self._ledger is not None and claim is not None:
            try:
                self._ledger.mark_started(key, claim)
            except Exception:
                # The run is scheduled; a redelivery finds our claim and the running instance.
                logger.warning("could not record the start of %s in the dedupe ledger", iid, exc_info=True)
        return StartResult(iid, False)


class InflightRuns:
    """The runs a trigger started and that have not finished, capped at ``limit``.

    A caller waits for a free slot *before* acknowledging the next event, so the broker holds
    back further deliveries: back-pressure, not an in-process queue.
    """

    def __init__(self, ctx: ActivationContext, limit: int | None, poll: float = 0.1) -> None:
        self._ctx = ctx
        self._limit = limit
        self._poll = poll
        self._ids: list[str] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._ids)

    def add(self, iid: str) -> None:
        if self._limit is not None:
            with self._lock:
                if iid not in self._ids:
                    self._ids.append(iid)

    def _reap(self) -> None:
        with self._lock:
            ids = list(self._ids)
        finished = []
        for iid in ids:
            try:
                state = self._ctx.wf_client.get_workflow_state(iid, fetch_payloads=False)
            except Exception:
                logger.debug("could not read the state of %s", iid, exc_info=True)
                continue
            if state is None or status_name(state) in _TERMINAL:
                finished.append(iid)
        with self._lock:
            self._ids = [iid for iid in self._ids if iid not in finished]

    def has_slot(self) -> bool:
        with self._lock:
            return self._limit is None or len(self._ids) < self._limit

    def wait_for_slot(self, stop: threading.Event) -> None:
        if self._limit is None:
            return
        while True:
            with self._lock:
                if len(self._ids) < self._limit:
                    return
            if stop.is_set():
                raise StoppedError("waiting for a concurrency slot")
            self._reap()
            with self._lock:
                if len(self._ids) < self._limit:
                    return
            stop.wait(self._poll)
