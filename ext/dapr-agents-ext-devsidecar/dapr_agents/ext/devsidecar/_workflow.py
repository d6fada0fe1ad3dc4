"""A durable workflow engine with daprd's semantics behind Dapr's ``TaskHubSidecarService``.

Each workflow instance is a history of events plus an inbox of events not yet seen by the
workflow code. A *turn* sends the worker the history as ``pastEvents`` and
``[WorkflowStarted] + inbox`` as ``newEvents``; the worker answers with actions, which the engine
applies in one state-store transaction (history appended, inbox consumed, activities, timers and
children recorded), and only then acts on them. Everything an instance needs to resume lives in
the state store marked ``actorStateStore``, so a sidecar killed at any point restarts from what
was committed: turns whose answer was not committed are simply sent again, activities that were
not acknowledged are redelivered (at least once), timers are re-armed.

Keys, under the store's raw key space (like daprd's actor state):
``<app>||dapr.internal.<ns>.<app>.workflow||<instance>||metadata`` (JSON: status, payloads,
pending activities and timers, inbox sequence numbers, history length),
``...||history-NNNNNN`` and ``...||inbox-NNNNNN`` (serialized ``HistoryEvent`` protobufs), and
``<app>||dapr.internal.<ns>.<app>.workflow||active`` (JSON list of unfinished instance ids, which
is how a restarted sidecar finds them: Dapr's state API cannot list keys).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import dapr.ext.workflow._durabletask.internal.protos as pb
from google.protobuf import timestamp_pb2, wrappers_pb2

from ._errors import DevSidecarError, EtagMismatchError
from ._state import DeleteOp, SetOp, StateBackend, StateOp

_log = logging.getLogger(__name__)

RUNNING = pb.ORCHESTRATION_STATUS_RUNNING
COMPLETED = pb.ORCHESTRATION_STATUS_COMPLETED
CONTINUED_AS_NEW = pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW
FAILED = pb.ORCHESTRATION_STATUS_FAILED
CANCELED = pb.ORCHESTRATION_STATUS_CANCELED
TERMINATED = pb.ORCHESTRATION_STATUS_TERMINATED
PENDING = pb.ORCHESTRATION_STATUS_PENDING
SUSPENDED = pb.ORCHESTRATION_STATUS_SUSPENDED
STALLED = pb.ORCHESTRATION_STATUS_STALLED
TERMINAL = frozenset({COMPLETED, FAILED, CANCELED, TERMINATED})

#: Timers further out than this are never armed (the SDK's "wait forever" sentinel is 9999-12-31).
_FOREVER_SECONDS = 365 * 24 * 3600
_MAX_CONTINUE_AS_NEW = 20
#: Raw key of an app's cross-app mailbox in the shared actor state store.
MAILBOX = "dapr.devsidecar.workflow-mailbox"
_MAILBOX_POLL_SECONDS = 0.1


class WorkflowError(DevSidecarError):
    """A workflow request that cannot be served; ``code`` names the gRPC status to answer with."""

    def __init__(self, message: str, code: str = "NOT_FOUND") -> None:
        super().__init__(message)
        self.code = code


def _refuse_if_held(instance: Instance, prefix: str = "") -> None:
    """daprd's answer while a stalled workflow's actor holds its lock (until the sidecar restarts)."""
    if instance.held:
        raise WorkflowError(
            f"{prefix}failed to invoke method for workflow '{instance.id}': actor is stalled", "UNKNOWN"
        )


def _stall_reason(
    history: list[pb.HistoryEvent], new_events: list[pb.HistoryEvent], response: pb.WorkflowResponse
) -> tuple[int, str] | None:
    """Why daprd 1.18 would stall this turn (orchestrator/versioning.go), or None."""
    if any(action.HasField("workflowVersionNotAvailable") for action in response.actions):
        first = next((e.workflowStarted for e in history if e.HasField("workflowStarted")), None)
        name = first.version.name if first is not None else ""
        return pb.VERSION_NOT_AVAILABLE, f"Version not available: {name}"
    recorded = [
        patch for e in history if e.HasField("workflowStarted") for patch in e.workflowStarted.version.patches
    ]
    current = next(
        (
            list(e.workflowStarted.version.patches)
            for e in reversed(new_events)
            if e.HasField("workflowStarted") and e.workflowStarted.HasField("version")
        ),
        [],
    )
    if not recorded or current[: len(recorded)] == recorded:
        return None
    return (
        pb.PATCH_MISMATCH,
        f"Patch mismatch. History patches: [{', '.join(recorded)}], current patches: [{', '.join(current)}]. ",
    )


def _compact_patches(history: list[pb.HistoryEvent], new_events: list[pb.HistoryEvent]) -> None:
    """daprd's compactPatches: a turn's ``workflowStarted`` keeps only the patches not already
    recorded in the history, so the history holds each patch once."""
    for event in new_events:
        if not event.HasField("workflowStarted") or not event.workflowStarted.HasField("version"):
            continue
        version = event.workflowStarted.version
        if not version.patches:
            continue
        counts: dict[str, int] = {}
        for old in history:
            if old.HasField("workflowStarted"):
                for patch in old.workflowStarted.version.patches:
                    counts[patch] = counts.get(patch, 0) + 1
        fresh = []
        for patch in version.patches:
            if counts.get(patch, 0) > 0:
                counts[patch] -= 1
            else:
                fresh.append(patch)
        if fresh:
            event.workflowStarted.version.CopyFrom(pb.WorkflowVersion(patches=fresh))
        else:
            event.workflowStarted.ClearField("version")


class CorruptStateError(WorkflowError):
    """Persisted workflow state cannot be decoded; names the instance and the key."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "INTERNAL")


def _now_ts() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


def _string(value: str | None) -> wrappers_pb2.StringValue | None:
    return None if value is None else wrappers_pb2.StringValue(value=value)


def _new_meta(
    name: str,
    payload: str | None,
    execution_id: str,
    *,
    parent: dict[str, Any] | None = None,
    scheduled_start: float | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """The persisted metadata of a new, not yet started instance."""
    now = time.time()
    return {
        "name": name,
        "status": PENDING,
        "input": payload,
        "output": None,
        "failure": None,
        "customStatus": None,
        "createdAt": now,
        "updatedAt": now,
        "completedAt": None,
        "executionId": execution_id,
        "scheduledStart": scheduled_start,
        "parent": parent,
        "historyLength": 0,
        "inbox": [],
        "inboxNext": 0,
        "activities": {},
        "timers": {},
        "children": [],
        "version": version,
    }


def _b64(message: Any) -> str:
    return base64.b64encode(message.SerializeToString()).decode("ascii")


@dataclass
class Instance:
    """One workflow instance as the engine holds it in memory (mirrors what is persisted)."""

    id: str
    meta: dict[str, Any]
    history: list[pb.HistoryEvent] = field(default_factory=list)
    inbox: list[tuple[int, pb.HistoryEvent]] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    in_flight: list[int] | None = None  # inbox sequence numbers of the outstanding turn
    turn_events: list[pb.HistoryEvent] = field(default_factory=list)
    queued: bool = False
    #: Stalled in this run of the sidecar: no turn until it restarts (daprd holds the actor).
    held: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    timers: dict[int, asyncio.TimerHandle] = field(default_factory=dict)
    start_handle: asyncio.TimerHandle | None = None

    @property
    def status(self) -> int:
        return int(self.meta["status"])

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


@dataclass(eq=False)
class WorkerStream:
    """A connected ``GetWorkItems`` stream and the work it holds."""

    queue: asyncio.Queue[pb.WorkItem | None] = field(default_factory=asyncio.Queue)
    turns: set[str] = field(default_factory=set)
    activities: set[tuple[str, int]] = field(default_factory=set)


class WorkflowEngine:
    """Runs the workflows of one app id on one state store."""

    def __init__(self, *, app_id: str, backend: StateBackend, namespace: str = "") -> None:
        self.app_id = app_id
        self._backend = backend
        self._ns = namespace or "default"
        self._prefix = f"{app_id}||dapr.internal.{self._ns}.{app_id}.workflow"
        self._instances: dict[str, Instance] = {}
        self._active: set[str] = set()
        self._ready: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._workers: list[WorkerStream] = []
        self._dispatcher: asyncio.Task[None] | None = None
        self._worker_joined = asyncio.Event()
        self._round_robin = 0
        # Cross-app work this app executes for others: (instance id, task id) -> mailbox message.
        self._remote_activities: dict[tuple[str, int], dict[str, Any]] = {}
        self._handling: set[str] = set()
        self._poller: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # -- keys and persistence -------------------------------------------------------------------

    def _key(self, instance_id: str, suffix: str) -> str:
        return f"{self._prefix}||{instance_id}||{suffix}"

    @property
    def _index_key(self) -> str:
        return f"{self._prefix}||active"

    def _meta_op(self, instance: Instance) -> SetOp:
        return SetOp(key=self._key(instance.id, "metadata"), value=json.dumps(instance.meta).encode())

    def _index_op(self) -> SetOp:
        return SetOp(key=self._index_key, value=json.dumps(sorted(self._active)).encode())

    async def _load(self, instance_id: str) -> Instance | None:
        key = self._key(instance_id, "metadata")
        item = await self._backend.get(key)
        if item is None:
            return None
        try:
            meta = json.loads(item.value)
            history_keys = [
                self._key(instance_id, f"history-{i:06d}") for i in range(int(meta["historyLength"]))
            ]
            inbox_keys = [self._key(instance_id, f"inbox-{seq:06d}") for seq in meta["inbox"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptStateError(
                f"workflow instance {instance_id!r}: key {key!r} is not valid metadata: {exc}"
            ) from exc
        instance = Instance(id=instance_id, meta=meta)
        stored = await self._backend.bulk_get(history_keys + inbox_keys)
        for position, (event_key, value) in enumerate(zip(history_keys + inbox_keys, stored, strict=True)):
            if value is None:
                raise CorruptStateError(f"workflow instance {instance_id!r}: key {event_key!r} is missing")
            event = pb.HistoryEvent()
            try:
                event.ParseFromString(value.value)
            except Exception as exc:
                raise CorruptStateError(
                    f"workflow instance {instance_id!r}: key {event_key!r} is not a history event: {exc}"
                ) from exc
            if position < len(history_keys):
                instance.history.append(event)
            else:
                instance.inbox.append((meta["inbox"][position - len(history_keys)], event))
        return instance

    async def _instance(self, instance_id: str) -> Instance | None:
        instance = self._instances.get(instance_id)
        if instance is None:
            instance = await self._load(instance_id)
            # Finished instances are read from the store each time rather than cached: a
            # client polling them must not make the sidecar's memory grow.
            if instance is not None and instance.status not in TERMINAL:
                self._instances[instance_id] = instance
        return instance

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume every unfinished instance found in the store."""
        index = await self._backend.get(self._index_key)
        if index is not None:
            try:
                ids = json.loads(index.value)
            except ValueError as exc:
                raise CorruptStateError(
                    f"workflow index key {self._index_key!r} is not a JSON list: {exc}"
                ) from exc
            for instance_id in ids:
                instance = await self._instance(instance_id)
                if instance is None:
                    _log.warning("workflow index names %r but its metadata is gone; skipping it", instance_id)
                    continue
                self._active.add(instance_id)
                self._resume(instance)
        loop = asyncio.get_running_loop()
        self._dispatcher = loop.create_task(self._dispatch_loop())
        self._poller = loop.create_task(self._poll_mailbox())
        for instance in list(self._instances.values()):
            if instance.meta.get("outbox"):
                self._spawn(self._flush_outbox(instance))

    def _spawn(self, coroutine: Any) -> None:
        # The loop only keeps weak references to tasks: hold them until they finish.
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _resume(self, instance: Instance) -> None:
        for task_id, record in instance.meta["activities"].items():
            if not record.get("app"):
                self._ready.put_nowait(("activity", (instance.id, int(task_id))))
        for timer_id, fire_at in instance.meta["timers"].items():
            self._arm_timer(instance, int(timer_id), float(fire_at))
        scheduled = instance.meta.get("scheduledStart")
        if scheduled and scheduled > time.time() and instance.status == PENDING:
            self._arm_start(instance, float(scheduled))
        elif instance.inbox:
            self._enqueue_turn(instance)

    async def stop(self) -> None:
        for task in (self._dispatcher, self._poller):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for instance in self._instances.values():
            for handle in instance.timers.values():
                handle.cancel()
            if instance.start_handle is not None:
                instance.start_handle.cancel()
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        for worker in self._workers:
            worker.queue.put_nowait(None)

    # -- work dispatch ------------------------------------------------------------------------

    @property
    def connected_workers(self) -> int:
        return len(self._workers)

    def connect(self) -> WorkerStream:
        worker = WorkerStream()
        self._workers.append(worker)
        self._worker_joined.set()
        return worker

    def disconnect(self, worker: WorkerStream) -> None:
        """A stream closed: everything it held goes back to the queue (daprd redelivers)."""
        if worker in self._workers:
            self._workers.remove(worker)
        if not self._workers:
            self._worker_joined.clear()
        for instance_id in worker.turns:
            instance = self._instances.get(instance_id)
            if instance is not None and instance.in_flight is not None:
                instance.in_flight = None
                instance.turn_events = []
                self._enqueue_turn(instance)
        for activity in worker.activities:
            self._ready.put_nowait(("activity", activity))
        worker.turns.clear()
        worker.activities.clear()

    def _enqueue_turn(self, instance: Instance) -> None:
        if not instance.queued and instance.in_flight is None and not instance.held:
            instance.queued = True
            self._ready.put_nowait(("turn", instance.id))

    async def _dispatch_loop(self) -> None:
        while True:
            kind, payload = await self._ready.get()
            while not self._workers:
                await self._worker_joined.wait()
            worker = self._workers[self._round_robin % len(self._workers)]
            self._round_robin += 1
            item = self._work_item(kind, payload, worker)
            if item is not None:
                worker.queue.put_nowait(item)

    def _work_item(self, kind: str, payload: Any, worker: WorkerStream) -> pb.WorkItem | None:
        if kind == "turn":
            instance = self._instances.get(payload)
            if instance is None:
                return None
            instance.queued = False
            if instance.in_flight is not None or not instance.inbox or instance.status in TERMINAL:
                return None
            started = pb.HistoryEvent(
                eventId=-1, timestamp=_now_ts(), workflowStarted=pb.WorkflowStartedEvent()
            )
            instance.turn_events = [started] + [event for _, event in instance.inbox]
            instance.in_flight = [seq for seq, _ in instance.inbox]
            worker.turns.add(instance.id)
            request = pb.WorkflowRequest(
                instanceId=instance.id,
                executionId=_string(instance.meta.get("executionId")),
                pastEvents=instance.history,
                newEvents=instance.turn_events,
            )
            return pb.WorkItem(workflowRequest=request)
        instance_id, task_id = payload
        remote = self._remote_activities.get((instance_id, task_id))
        if remote is not None:
            worker.activities.add((instance_id, task_id))
            return pb.WorkItem(
                activityRequest=pb.ActivityRequest(
                    name=remote["name"],
                    input=_string(remote.get("input")),
                    workflowInstance=pb.WorkflowInstance(
                        instanceId=instance_id, executionId=_string(remote.get("executionId"))
                    ),
                    taskId=task_id,
                    taskExecutionId=remote.get("taskExecutionId", ""),
                )
            )
        instance = self._instances.get(instance_id)
        if instance is None or str(task_id) not in instance.meta["activities"] or instance.status in TERMINAL:
            return None
        record = instance.meta["activities"][str(task_id)]
        worker.activities.add((instance_id, task_id))
        request = pb.ActivityRequest(
            name=record["name"],
            input=_string(record.get("input")),
            workflowInstance=pb.WorkflowInstance(
                instanceId=instance_id, executionId=_string(instance.meta.get("executionId"))
            ),
            taskId=task_id,
            taskExecutionId=record.get("taskExecutionId", ""),
        )
        return pb.WorkItem(activityRequest=request)

    # -- inbox ----------------------------------------------------------------------------------

    async def _add_events(
        self, instance: Instance, events: Iterable[pb.HistoryEvent], extra_ops: list[StateOp] | None = None
    ) -> None:
        """Persist events into the inbox (caller holds the instance lock), then schedule a turn."""
        ops: list[StateOp] = list(extra_ops or [])
        for event in events:
            seq = int(instance.meta["inboxNext"])
            instance.meta["inboxNext"] = seq + 1
            instance.meta["inbox"].append(seq)
            instance.inbox.append((seq, event))
            ops.append(SetOp(key=self._key(instance.id, f"inbox-{seq:06d}"), value=event.SerializeToString()))
        instance.meta["updatedAt"] = time.time()
        ops.append(self._meta_op(instance))
        await self._backend.transact(ops)
        if instance.status not in TERMINAL:
            scheduled = instance.meta.get("scheduledStart")
            if not (instance.status == PENDING and scheduled and scheduled > time.time()):
                self._enqueue_turn(instance)

    # -- client operations ----------------------------------------------------------------------

    async def create(self, request: pb.CreateInstanceRequest) -> str:
        instance_id = request.instanceId or uuid.uuid4().hex
        existing = await self._instance(instance_id)
        if existing is not None:
            async with existing.lock:
                if existing.status not in TERMINAL:
                    raise WorkflowError(
                        f"an active workflow with ID '{instance_id}' already exists", "ALREADY_EXISTS"
                    )
                await self._delete_instance(existing)
        execution_id = request.executionId.value if request.HasField("executionId") else uuid.uuid4().hex
        scheduled = (
            request.scheduledStartTimestamp.ToDatetime(tzinfo=timezone.utc).timestamp()
            if request.HasField("scheduledStartTimestamp")
            else None
        )
        instance = Instance(
            id=instance_id,
            meta=_new_meta(
                request.name,
                request.input.value if request.HasField("input") else None,
                execution_id,
                scheduled_start=scheduled,
                version=request.version.value if request.HasField("version") else None,
            ),
        )
        started = pb.ExecutionStartedEvent(
            name=request.name,
            input=request.input if request.HasField("input") else None,
            workflowInstance=pb.WorkflowInstance(instanceId=instance_id, executionId=_string(execution_id)),
            scheduledStartTimestamp=request.scheduledStartTimestamp
            if request.HasField("scheduledStartTimestamp")
            else None,
            version=request.version if request.HasField("version") else None,
        )
        started.tags.update(request.tags)
        self._instances[instance_id] = instance
        self._active.add(instance_id)
        async with instance.lock:
            await self._add_events(
                instance,
                [
                    pb.HistoryEvent(
                        eventId=-1,
                        timestamp=_now_ts(),
                        executionStarted=started,
                        router=pb.TaskRouter(sourceAppID=self.app_id),
                    )
                ],
                [self._index_op()],
            )
        if scheduled and scheduled > time.time():
            self._arm_start(instance, scheduled)
        return instance_id

    def _arm_start(self, instance: Instance, at: float) -> None:
        loop = asyncio.get_running_loop()
        if instance.start_handle is not None:
            instance.start_handle.cancel()
        instance.start_handle = loop.call_later(max(0.0, at - time.time()), self._enqueue_turn, instance)

    async def get(self, instance_id: str) -> Instance | None:
        return await self._instance(instance_id)

    async def wait(self, instance_id: str, done: Any) -> Instance:
        """Wait until ``done(instance)`` holds; ``WorkflowError`` if the instance does not exist."""
        instance = await self._instance(instance_id)
        if instance is None:
            raise WorkflowError(f"no such instance exists: {instance_id}")
        while not done(instance):
            changed = instance.changed
            await changed.wait()
            instance = self._instances.get(instance_id) or instance
        return instance

    async def raise_event(
        self, instance_id: str, name: str, payload: wrappers_pb2.StringValue | None
    ) -> None:
        instance = await self._instance(instance_id)
        if instance is None:
            raise WorkflowError(f"no such instance exists: {instance_id}")
        async with instance.lock:
            if instance.status in TERMINAL:
                _log.info("event %r for finished workflow %r dropped", name, instance_id)
                return
            _refuse_if_held(instance)
            event = pb.HistoryEvent(
                eventId=-1, timestamp=_now_ts(), eventRaised=pb.EventRaisedEvent(name=name, input=payload)
            )
            await self._add_events(instance, [event])

    async def terminate(
        self, instance_id: str, output: wrappers_pb2.StringValue | None, recursive: bool
    ) -> None:
        instance = await self._instance(instance_id)
        if instance is None:
            raise WorkflowError(f"no such instance exists: {instance_id}")
        async with instance.lock:
            if instance.status in TERMINAL:
                return
            _refuse_if_held(instance, "failed to submit termination request: ")
            event = pb.HistoryEvent(
                eventId=-1,
                timestamp=_now_ts(),
                executionTerminated=pb.ExecutionTerminatedEvent(input=output, recurse=recursive),
            )
            await self._add_events(instance, [event])

    async def suspend(self, instance_id: str, reason: wrappers_pb2.StringValue | None, resume: bool) -> None:
        instance = await self._instance(instance_id)
        if instance is None:
            raise WorkflowError(f"no such instance exists: {instance_id}")
        async with instance.lock:
            if instance.status in TERMINAL:
                return
            _refuse_if_held(instance)
            if resume:
                event = pb.HistoryEvent(
                    eventId=-1, timestamp=_now_ts(), executionResumed=pb.ExecutionResumedEvent(input=reason)
                )
            else:
                event = pb.HistoryEvent(
                    eventId=-1,
                    timestamp=_now_ts(),
                    executionSuspended=pb.ExecutionSuspendedEvent(input=reason),
                )
            await self._add_events(instance, [event])

    async def purge(self, instance_id: str, recursive: bool) -> int:
        instance = await self._instance(instance_id)
        if instance is None:
            return 0
        if instance.status not in TERMINAL:
            raise WorkflowError(
                "failed to purge workflow state: orchestration has not yet completed", "UNKNOWN"
            )
        count = 0
        if recursive:
            for child in list(instance.meta["children"]):
                with contextlib.suppress(WorkflowError):
                    count += await self.purge(child, True)
        async with instance.lock:
            await self._delete_instance(instance)
        return count + 1

    async def _delete_instance(self, instance: Instance) -> None:
        ops: list[StateOp] = [DeleteOp(key=self._key(instance.id, "metadata"))]
        ops += [
            DeleteOp(key=self._key(instance.id, f"history-{i:06d}"))
            for i in range(int(instance.meta["historyLength"]))
        ]
        ops += [DeleteOp(key=self._key(instance.id, f"inbox-{seq:06d}")) for seq in instance.meta["inbox"]]
        self._active.discard(instance.id)
        ops.append(self._index_op())
        await self._backend.transact(ops)
        for handle in instance.timers.values():
            handle.cancel()
        self._instances.pop(instance.id, None)
        instance.notify()

    # -- activities and timers ----------------------------------------------------------------

    async def complete_activity(
        self, response: pb.ActivityResponse, worker: WorkerStream | None = None
    ) -> None:
        remote = self._remote_activities.pop((response.instanceId, response.taskId), None)
        if remote is not None:
            for stream in self._workers:
                stream.activities.discard((response.instanceId, response.taskId))
            await self._post(
                remote["from"],
                {"id": f"result:{remote['id']}", "kind": "activity-result", "response": _b64(response)},
            )
            await self._ack([remote["id"]])
            self._handling.discard(remote["id"])
            return
        instance = self._instances.get(response.instanceId)
        if instance is None:
            _log.info("activity result for unknown workflow %r ignored", response.instanceId)
            return
        async with instance.lock:
            record = instance.meta["activities"].pop(str(response.taskId), None)
            for stream in self._workers:
                stream.activities.discard((response.instanceId, response.taskId))
            if record is None or instance.status in TERMINAL:
                _log.info(
                    "duplicate or unknown activity result %s/%s ignored", response.instanceId, response.taskId
                )
                return
            if response.HasField("failureDetails"):
                event = pb.HistoryEvent(
                    eventId=-1,
                    timestamp=_now_ts(),
                    taskFailed=pb.TaskFailedEvent(
                        taskScheduledId=response.taskId,
                        failureDetails=response.failureDetails,
                        taskExecutionId=record.get("taskExecutionId", ""),
                    ),
                )
            else:
                event = pb.HistoryEvent(
                    eventId=-1,
                    timestamp=_now_ts(),
                    taskCompleted=pb.TaskCompletedEvent(
                        taskScheduledId=response.taskId,
                        result=response.result if response.HasField("result") else None,
                        taskExecutionId=record.get("taskExecutionId", ""),
                    ),
                )
            await self._add_events(instance, [event])

    def _arm_timer(self, instance: Instance, timer_id: int, fire_at: float) -> None:
        delay = fire_at - time.time()
        if delay > _FOREVER_SECONDS:
            return  # "wait forever" sentinels are recorded, never armed
        loop = asyncio.get_running_loop()
        instance.timers[timer_id] = loop.call_later(
            max(0.0, delay), lambda: self._spawn(self._fire_timer(instance.id, timer_id))
        )

    async def _fire_timer(self, instance_id: str, timer_id: int) -> None:
        instance = self._instances.get(instance_id)
        if instance is None:
            return
        async with instance.lock:
            fire_at = instance.meta["timers"].pop(str(timer_id), None)
            instance.timers.pop(timer_id, None)
            if fire_at is None or instance.status in TERMINAL:
                return
            stamp = timestamp_pb2.Timestamp()
            stamp.FromDatetime(datetime.fromtimestamp(float(fire_at), tz=timezone.utc))
            event = pb.HistoryEvent(
                eventId=-1, timestamp=_now_ts(), timerFired=pb.TimerFiredEvent(fireAt=stamp, timerId=timer_id)
            )
            await self._add_events(instance, [event])

    # -- applying a turn ------------------------------------------------------------------------

    async def complete_turn(self, response: pb.WorkflowResponse, worker: WorkerStream | None = None) -> None:
        instance = self._instances.get(response.instanceId)
        if instance is None or instance.in_flight is None:
            _log.info("workflow result for %r without an outstanding turn ignored", response.instanceId)
            return
        for stream in self._workers:
            stream.turns.discard(response.instanceId)
        async with instance.lock:
            follow_ups = await self._apply(instance, response)
        # Effects on other instances take their locks, so they run after this one's is released
        # (a parent terminating its children while a child reports to it would otherwise deadlock).
        for follow_up in follow_ups:
            await follow_up

    async def _apply(self, instance: Instance, response: pb.WorkflowResponse) -> list[Any]:
        consumed = set(instance.in_flight or [])
        new_events = list(instance.turn_events)
        instance.in_flight = None
        instance.turn_events = []
        if response.HasField("version") and new_events and new_events[0].HasField("workflowStarted"):
            new_events[0].workflowStarted.version.CopyFrom(response.version)
        stalled = _stall_reason(instance.history, new_events, response)
        if stalled is not None:
            await self._stall(instance, *stalled)
            return []
        _compact_patches(instance.history, new_events)
        meta = instance.meta
        if meta["status"] == STALLED:
            # daprd: any event processed clears the stall.
            meta["status"] = meta.pop("stalledFrom", RUNNING)
        ops: list[StateOp] = []
        after: list[Any] = []  # side effects run once the transaction committed
        old_length = int(meta["historyLength"])
        history = instance.history + new_events
        for event in new_events:
            kind = event.WhichOneof("eventType")
            if kind == "executionStarted" and meta["status"] == PENDING:
                meta["status"] = RUNNING
                if event.executionStarted.HasField("parentInstance"):
                    parent = event.executionStarted.parentInstance
                    meta["parent"] = meta["parent"] or {
                        "instanceId": parent.workflowInstance.instanceId,
                        "taskScheduledId": parent.taskScheduledId,
                        "name": parent.name,
                    }
            elif kind == "executionSuspended" and meta["status"] == RUNNING:
                meta["status"] = SUSPENDED
            elif kind == "executionResumed" and meta["status"] == SUSPENDED:
                meta["status"] = RUNNING
        terminated = next((e for e in new_events if e.HasField("executionTerminated")), None)
        completion: pb.CompleteWorkflowAction | None = None
        continued: pb.CompleteWorkflowAction | None = None
        for action in response.actions:
            kind = action.WhichOneof("workflowActionType")
            if kind == "scheduleTask":
                task = action.scheduleTask
                scheduled = pb.TaskScheduledEvent(
                    name=task.name,
                    input=task.input if task.HasField("input") else None,
                    taskExecutionId=task.taskExecutionId,
                )
                event = pb.HistoryEvent(eventId=action.id, timestamp=_now_ts(), taskScheduled=scheduled)
                if task.HasField("router"):
                    event.router.CopyFrom(task.router)
                history.append(event)
                record = {
                    "name": task.name,
                    "input": task.input.value if task.HasField("input") else None,
                    "taskExecutionId": task.taskExecutionId,
                }
                target = task.router.targetAppID if task.HasField("router") else ""
                if target and target != self.app_id:
                    # Another app's worker runs it: the request travels through that app's
                    # mailbox, sent from this instance's outbox once the turn is committed.
                    record["app"] = target
                    self._outbox(
                        instance,
                        target,
                        {
                            "id": f"activity:{self.app_id}:{instance.id}:{meta.get('executionId')}:{action.id}",
                            "kind": "activity",
                            "from": self.app_id,
                            "instanceId": instance.id,
                            "executionId": meta.get("executionId"),
                            "taskId": action.id,
                            **record,
                        },
                    )
                else:
                    after.append(("activity", action.id))
                meta["activities"][str(action.id)] = record
            elif kind == "createTimer":
                timer = action.createTimer
                created = pb.TimerCreatedEvent(fireAt=timer.fireAt, name=timer.name)
                origin = timer.WhichOneof("origin")
                if origin is not None:
                    getattr(created, origin).CopyFrom(getattr(timer, origin))
                history.append(pb.HistoryEvent(eventId=action.id, timestamp=_now_ts(), timerCreated=created))
                fire_at = (
                    timer.fireAt.ToDatetime(tzinfo=timezone.utc).timestamp()
                    if timer.fireAt.seconds < 253402300799
                    else float("inf")
                )
                if fire_at != float("inf"):
                    meta["timers"][str(action.id)] = fire_at
                    after.append(("timer", action.id, fire_at))
            elif kind == "createChildWorkflow":
                child = action.createChildWorkflow
                created_child = pb.ChildWorkflowInstanceCreatedEvent(
                    instanceId=child.instanceId,
                    name=child.name,
                    input=child.input if child.HasField("input") else None,
                )
                event = pb.HistoryEvent(
                    eventId=action.id, timestamp=_now_ts(), childWorkflowInstanceCreated=created_child
                )
                if child.HasField("router"):
                    event.router.CopyFrom(child.router)
                history.append(event)
                meta["children"].append(child.instanceId)
                target = child.router.targetAppID if child.HasField("router") else ""
                if target and target != self.app_id:
                    # Remembered so that a recursive terminate reaches the child in its own app.
                    meta.setdefault("remoteChildren", {})[child.instanceId] = target
                    self._outbox(
                        instance,
                        target,
                        {
                            "id": f"child:{self.app_id}:{instance.id}:{meta.get('executionId')}:{action.id}",
                            "kind": "child-start",
                            "from": self.app_id,
                            "parentId": instance.id,
                            "parentName": meta["name"],
                            "parentExecutionId": meta.get("executionId"),
                            "taskId": action.id,
                            "action": _b64(child),
                        },
                    )
                else:
                    after.append(("child", action.id, child))
            elif kind == "completeWorkflow":
                done = action.completeWorkflow
                if done.workflowStatus == CONTINUED_AS_NEW:
                    continued = done
                else:
                    completion = done
                    completed = pb.ExecutionCompletedEvent(
                        workflowStatus=done.workflowStatus,
                        result=done.result if done.HasField("result") else None,
                        failureDetails=done.failureDetails if done.HasField("failureDetails") else None,
                    )
                    history.append(
                        pb.HistoryEvent(eventId=action.id, timestamp=_now_ts(), executionCompleted=completed)
                    )
                break
            else:
                _log.warning(
                    "workflow %r: action %r is not supported by the dev sidecar; ignored", instance.id, kind
                )
        if response.HasField("customStatus"):
            meta["customStatus"] = response.customStatus.value
        if terminated is not None and completion is None and continued is None:
            # daprd forces termination when the workflow code does not end itself.
            completion = pb.CompleteWorkflowAction(
                workflowStatus=TERMINATED,
                result=terminated.executionTerminated.input
                if terminated.executionTerminated.HasField("input")
                else None,
            )
            history.append(
                pb.HistoryEvent(
                    eventId=-1,
                    timestamp=_now_ts(),
                    executionCompleted=pb.ExecutionCompletedEvent(
                        workflowStatus=TERMINATED,
                        result=completion.result if completion.HasField("result") else None,
                    ),
                )
            )
        if terminated is not None and terminated.executionTerminated.recurse:
            reason = (
                terminated.executionTerminated.input
                if terminated.executionTerminated.HasField("input")
                else None
            )
            for child_id, target in (meta.get("remoteChildren") or {}).items():
                self._outbox(
                    instance,
                    target,
                    {
                        "id": f"terminate:{self.app_id}:{instance.id}:{meta.get('executionId')}:{child_id}",
                        "kind": "terminate",
                        "instanceId": child_id,
                        "output": reason.value if reason is not None else None,
                    },
                )
            after.append(
                (
                    "terminate-children",
                    terminated.executionTerminated.input
                    if terminated.executionTerminated.HasField("input")
                    else None,
                )
            )
        remaining = [(seq, event) for seq, event in instance.inbox if seq not in consumed]
        ops += [DeleteOp(key=self._key(instance.id, f"inbox-{seq:06d}")) for seq in sorted(consumed)]
        if continued is not None:
            original = next((e.executionStarted for e in history if e.HasField("executionStarted")), None)
            history, remaining, ops = self._continue_as_new(
                instance, continued, original, remaining, ops, old_length
            )
        else:
            ops += [
                SetOp(key=self._key(instance.id, f"history-{i:06d}"), value=event.SerializeToString())
                for i, event in enumerate(history[old_length:], start=old_length)
            ]
        meta["historyLength"] = len(history)
        meta["inbox"] = [seq for seq, _ in remaining]
        if completion is not None:
            meta["status"] = completion.workflowStatus
            meta["output"] = completion.result.value if completion.HasField("result") else None
            meta["failure"] = (
                _b64(completion.failureDetails) if completion.HasField("failureDetails") else None
            )
            meta["completedAt"] = time.time()
            meta["activities"] = {}
            meta["timers"] = {}
            self._active.discard(instance.id)
            ops.append(self._index_op())
            parent_info = meta.get("parent")
            if parent_info and parent_info.get("appId", self.app_id) != self.app_id:
                self._outbox(
                    instance,
                    parent_info["appId"],
                    {
                        "id": f"done:{self.app_id}:{instance.id}:{meta.get('executionId')}",
                        "kind": "child-done",
                        "parent": parent_info,
                        "childId": instance.id,
                        "completion": _b64(completion),
                    },
                )
            elif parent_info:
                after.append(("notify-parent", parent_info, completion))
        meta["updatedAt"] = time.time()
        ops.append(self._meta_op(instance))
        # Children of the same app are created in the same transaction as the turn that asked.
        child_instances: list[Instance] = []
        for effect in after:
            if effect[0] == "child":
                child_instance = await self._prepare_child(instance, effect[1], effect[2], ops)
                if child_instance is not None:
                    child_instances.append(child_instance)
        await self._backend.transact(ops)
        instance.history = history
        instance.inbox = remaining
        if completion is not None:
            for handle in instance.timers.values():
                handle.cancel()
            instance.timers.clear()
        for child in child_instances:
            self._instances[child.id] = child
            self._enqueue_turn(child)
        follow_ups: list[Any] = []
        for effect in after:
            if effect[0] == "activity":
                self._ready.put_nowait(("activity", (instance.id, effect[1])))
            elif effect[0] == "timer":
                self._arm_timer(instance, effect[1], effect[2])
            elif effect[0] == "notify-parent":
                follow_ups.append(self._notify_parent(instance, effect[1], effect[2]))
            elif effect[0] == "terminate-children":
                follow_ups.append(self._terminate_children(list(meta["children"]), effect[1]))
        if meta.get("outbox"):
            follow_ups.append(self._flush_outbox(instance))
        instance.notify()
        if completion is not None and not meta.get("outbox"):
            # Finished instances are served from the store when asked for again; keeping them
            # would make the sidecar's memory grow with every workflow ever run.
            self._instances.pop(instance.id, None)
        if instance.inbox and instance.status not in TERMINAL:
            self._enqueue_turn(instance)
        return follow_ups

    async def _stall(self, instance: Instance, reason: int, description: str) -> None:
        """daprd's stallWorkflow: the turn's events stay in the inbox, an ``executionStalled``
        event is recorded (once per description), and the instance waits for a sidecar restart."""
        meta = instance.meta
        if meta["status"] != STALLED:
            meta["stalledFrom"] = meta["status"]
            meta["status"] = STALLED
        ops: list[StateOp] = []
        history = instance.history
        last = history[-1] if history else None
        if (
            last is None
            or not last.HasField("executionStalled")
            or last.executionStalled.description != description
        ):
            event = pb.HistoryEvent(
                eventId=-1,
                timestamp=_now_ts(),
                executionStalled=pb.ExecutionStalledEvent(reason=reason, description=description),  # type: ignore[arg-type]
            )
            ops.append(
                SetOp(
                    key=self._key(instance.id, f"history-{len(history):06d}"), value=event.SerializeToString()
                )
            )
            history = [*history, event]
            meta["historyLength"] = len(history)
        meta["updatedAt"] = time.time()
        ops.append(self._meta_op(instance))
        await self._backend.transact(ops)
        instance.history = history
        instance.held = True
        instance.notify()
        _log.info(
            "workflow %r is stalled (%s); holding it until the sidecar restarts", instance.id, description
        )

    async def _terminate_children(self, children: list[str], output: wrappers_pb2.StringValue | None) -> None:
        for child_id in children:
            with contextlib.suppress(WorkflowError):
                await self.terminate(child_id, output, True)

    def _continue_as_new(
        self,
        instance: Instance,
        action: pb.CompleteWorkflowAction,
        original: pb.ExecutionStartedEvent | None,
        remaining: list[tuple[int, pb.HistoryEvent]],
        ops: list[StateOp],
        old_length: int,
    ) -> tuple[list[pb.HistoryEvent], list[tuple[int, pb.HistoryEvent]], list[StateOp]]:
        meta = instance.meta
        ops += [DeleteOp(key=self._key(instance.id, f"history-{i:06d}")) for i in range(old_length)]
        execution_id = uuid.uuid4().hex
        meta["executionId"] = execution_id
        meta["input"] = action.result.value if action.HasField("result") else None
        meta["activities"] = {}
        meta["timers"] = {}
        for handle in instance.timers.values():
            handle.cancel()
        instance.timers.clear()
        started = pb.ExecutionStartedEvent(
            name=meta["name"],
            input=action.result if action.HasField("result") else None,
            workflowInstance=pb.WorkflowInstance(instanceId=instance.id, executionId=_string(execution_id)),
        )
        if original is not None and original.HasField("parentInstance"):
            started.parentInstance.CopyFrom(original.parentInstance)
        fresh = [
            pb.HistoryEvent(
                eventId=-1,
                timestamp=_now_ts(),
                executionStarted=started,
                router=pb.TaskRouter(sourceAppID=self.app_id),
            ),
            *action.carryoverEvents,
        ]
        inbox: list[tuple[int, pb.HistoryEvent]] = []
        for event in fresh:
            seq = int(meta["inboxNext"])
            meta["inboxNext"] = seq + 1
            inbox.append((seq, event))
            ops.append(SetOp(key=self._key(instance.id, f"inbox-{seq:06d}"), value=event.SerializeToString()))
        meta["status"] = PENDING
        # The new execution's events come before anything that arrived during the last turn.
        return [], inbox + remaining, ops

    async def _prepare_child(
        self, parent: Instance, task_id: int, action: pb.CreateChildWorkflowAction, ops: list[StateOp]
    ) -> Instance | None:
        parent_info = {
            "instanceId": parent.id,
            "taskScheduledId": task_id,
            "name": parent.meta["name"],
            "appId": self.app_id,
        }
        return await self._new_child(action, parent_info, parent.meta.get("executionId"), ops)

    async def _new_child(
        self,
        action: pb.CreateChildWorkflowAction,
        parent_info: dict[str, Any],
        parent_execution_id: str | None,
        ops: list[StateOp],
    ) -> Instance | None:
        """Add the operations creating a child instance owned by this app to ``ops``."""
        child_id = action.instanceId
        existing = await self._instance(child_id)
        if existing is not None and (
            existing.status not in TERMINAL or existing.meta.get("parent") == parent_info
        ):
            _log.info(
                "child workflow %r of %r exists already; not started again",
                child_id,
                parent_info["instanceId"],
            )
            return None
        if existing is not None:
            ops += [
                DeleteOp(key=self._key(child_id, f"history-{i:06d}"))
                for i in range(int(existing.meta["historyLength"]))
            ]
        execution_id = uuid.uuid4().hex
        meta = _new_meta(
            action.name,
            action.input.value if action.HasField("input") else None,
            execution_id,
            parent=parent_info,
        )
        meta["inbox"], meta["inboxNext"] = [0], 1
        child = Instance(id=child_id, meta=meta)
        started = pb.ExecutionStartedEvent(
            name=action.name,
            input=action.input if action.HasField("input") else None,
            workflowInstance=pb.WorkflowInstance(instanceId=child_id, executionId=_string(execution_id)),
            parentInstance=pb.ParentInstanceInfo(
                taskScheduledId=int(parent_info["taskScheduledId"]),
                name=_string(parent_info["name"]),
                workflowInstance=pb.WorkflowInstance(
                    instanceId=parent_info["instanceId"], executionId=_string(parent_execution_id)
                ),
                appID=parent_info["appId"],
            ),
        )
        router = pb.TaskRouter(sourceAppID=parent_info["appId"])
        if parent_info["appId"] != self.app_id:
            router.targetAppID = self.app_id
        event = pb.HistoryEvent(eventId=-1, timestamp=_now_ts(), executionStarted=started, router=router)
        child.inbox = [(0, event)]
        ops.append(SetOp(key=self._key(child_id, "inbox-000000"), value=event.SerializeToString()))
        ops.append(self._meta_op(child))
        self._active.add(child_id)
        ops.append(self._index_op())
        return child

    async def _notify_parent(
        self, child: Instance, parent_info: dict[str, Any], completion: pb.CompleteWorkflowAction
    ) -> None:
        parent = await self._instance(parent_info["instanceId"])
        if parent is None:
            _log.warning(
                "parent %r of workflow %r is gone; result dropped", parent_info["instanceId"], child.id
            )
            return
        task_id = int(parent_info["taskScheduledId"])
        if completion.workflowStatus == COMPLETED:
            event = pb.HistoryEvent(
                eventId=-1,
                timestamp=_now_ts(),
                childWorkflowInstanceCompleted=pb.ChildWorkflowInstanceCompletedEvent(
                    taskScheduledId=task_id,
                    result=completion.result if completion.HasField("result") else None,
                ),
            )
        else:
            details = (
                completion.failureDetails
                if completion.HasField("failureDetails")
                else pb.TaskFailureDetails(
                    errorType="WorkflowTerminated"
                    if completion.workflowStatus == TERMINATED
                    else "WorkflowFailed",
                    errorMessage=f"child workflow {child.id} ended with status {pb.OrchestrationStatus.Name(completion.workflowStatus)}",
                )
            )
            event = pb.HistoryEvent(
                eventId=-1,
                timestamp=_now_ts(),
                childWorkflowInstanceFailed=pb.ChildWorkflowInstanceFailedEvent(
                    taskScheduledId=task_id, failureDetails=details
                ),
            )
        async with parent.lock:
            if parent.status in TERMINAL:
                return
            seen = [
                e
                for e in parent.history + [e for _, e in parent.inbox]
                if (
                    e.HasField("childWorkflowInstanceCompleted")
                    and e.childWorkflowInstanceCompleted.taskScheduledId == task_id
                )
                or (
                    e.HasField("childWorkflowInstanceFailed")
                    and e.childWorkflowInstanceFailed.taskScheduledId == task_id
                )
            ]
            if seen:
                return  # a re-sent completion (cross-app delivery is at least once)
            await self._add_events(parent, [event])

    # -- cross-app routing ----------------------------------------------------------------------
    #
    # Apps sharing one actor state store reach each other through per-app mailboxes in it: a turn
    # that targets another app (router.targetAppID) records the message in its instance's
    # outbox, committed with the turn; once committed it is appended to the target's mailbox
    # (etag-guarded, deduplicated by message id) and dropped from the outbox. Each sidecar polls
    # its own mailbox and acknowledges a message only after acting on it, so a crash on either
    # side re-sends or re-reads it: delivery is at least once, and every handler is idempotent.

    def _mailbox_key(self, app_id: str) -> str:
        return f"{MAILBOX}||{app_id}"

    def _outbox(self, instance: Instance, app_id: str, message: dict[str, Any]) -> None:
        instance.meta.setdefault("outbox", []).append({"to": app_id, "message": message})

    async def _flush_outbox(self, instance: Instance) -> None:
        pending = list(instance.meta.get("outbox") or [])
        for entry in pending:
            await self._post(entry["to"], entry["message"])
        async with instance.lock:
            sent = {entry["message"]["id"] for entry in pending}
            instance.meta["outbox"] = [
                e for e in instance.meta.get("outbox") or [] if e["message"]["id"] not in sent
            ]
            if instance.id in self._instances:
                await self._backend.set(self._meta_op(instance))

    async def _update_mailbox(self, app_id: str, change: Any) -> None:
        key = self._mailbox_key(app_id)
        for attempt in range(100):
            current = await self._backend.get(key)
            messages = json.loads(current.value) if current is not None else []
            updated = change(messages)
            if updated is None:
                return
            try:
                await self._backend.set(
                    SetOp(
                        key=key,
                        value=json.dumps(updated).encode(),
                        etag=current.etag if current is not None else None,
                        first_write=current is None,
                    )
                )
                return
            except EtagMismatchError:
                await asyncio.sleep(0.005 * (attempt + 1))
        raise WorkflowError(
            f"mailbox of app {app_id!r} stayed contended; message not delivered", "UNAVAILABLE"
        )

    async def _post(self, app_id: str, message: dict[str, Any]) -> None:
        def append(messages: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
            if any(m["id"] == message["id"] for m in messages):
                return None
            return [*messages, message]

        await self._update_mailbox(app_id, append)

    async def _ack(self, ids: list[str]) -> None:
        gone = set(ids)

        def remove(messages: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
            kept = [m for m in messages if m["id"] not in gone]
            return None if len(kept) == len(messages) else kept

        await self._update_mailbox(self.app_id, remove)

    async def _poll_mailbox(self) -> None:
        key = self._mailbox_key(self.app_id)
        while True:
            try:
                item = await self._backend.get(key)
                for message in json.loads(item.value) if item is not None else []:
                    if message["id"] not in self._handling:
                        self._handling.add(message["id"])
                        await self._handle(message)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep polling: the message stays in the mailbox for the next round
                _log.exception("handling the workflow mailbox of app %r failed", self.app_id)
            await asyncio.sleep(_MAILBOX_POLL_SECONDS)

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["kind"]
        if kind == "activity":
            # Acknowledged only when the result has been posted back (complete_activity).
            self._remote_activities[(message["instanceId"], int(message["taskId"]))] = message
            self._ready.put_nowait(("activity", (message["instanceId"], int(message["taskId"]))))
            return
        if kind == "activity-result":
            response = pb.ActivityResponse()
            response.ParseFromString(base64.b64decode(message["response"]))
            await self.complete_activity(response)
        elif kind == "child-start":
            action = pb.CreateChildWorkflowAction()
            action.ParseFromString(base64.b64decode(message["action"]))
            parent_info = {
                "instanceId": message["parentId"],
                "taskScheduledId": int(message["taskId"]),
                "name": message["parentName"],
                "appId": message["from"],
            }
            ops: list[StateOp] = []
            child = await self._new_child(action, parent_info, message.get("parentExecutionId"), ops)
            if child is not None:
                await self._backend.transact(ops)
                self._instances[child.id] = child
                self._enqueue_turn(child)
        elif kind == "terminate":
            output = message.get("output")
            with contextlib.suppress(WorkflowError):  # already finished or purged: nothing to stop
                await self.terminate(
                    message["instanceId"],
                    wrappers_pb2.StringValue(value=output) if output is not None else None,
                    True,
                )
        elif kind == "child-done":
            completion = pb.CompleteWorkflowAction()
            completion.ParseFromString(base64.b64decode(message["completion"]))
            child = Instance(id=message["childId"], meta={})
            await self._notify_parent(child, message["parent"], completion)
        await self._ack([message["id"]])
        self._handling.discard(message["id"])

    # -- state for clients ----------------------------------------------------------------------

    def workflow_state(self, instance: Instance, with_payloads: bool) -> pb.WorkflowState:
        meta = instance.meta

        def stamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
            if seconds is None:
                return None
            value = timestamp_pb2.Timestamp()
            value.FromDatetime(datetime.fromtimestamp(float(seconds), tz=timezone.utc))
            return value

        state = pb.WorkflowState(
            instanceId=instance.id,
            name=meta["name"],
            workflowStatus=meta["status"],
            createdTimestamp=stamp(meta["createdAt"]),
            lastUpdatedTimestamp=stamp(meta["updatedAt"]),
            completedTimestamp=stamp(meta.get("completedAt")),
            scheduledStartTimestamp=stamp(meta.get("scheduledStart")),
            executionId=_string(meta.get("executionId")),
            customStatus=_string(meta.get("customStatus")),
            parentInstanceId=_string((meta.get("parent") or {}).get("instanceId")),
            version=_string(meta.get("version")),
        )
        if meta.get("failure"):
            details = pb.TaskFailureDetails()
            details.ParseFromString(base64.b64decode(meta["failure"]))
            state.failureDetails.CopyFrom(details)
        if with_payloads:
            if meta.get("input") is not None:
                state.input.value = meta["input"]
            if meta.get("output") is not None:
                state.output.value = meta["output"]
        return state
