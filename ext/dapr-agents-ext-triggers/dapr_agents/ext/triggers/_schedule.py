"""``schedule_trigger``: a durable schedule that runs an agent on a cron expression or interval.

The schedule is itself a long-running Dapr workflow (one instance per agent and schedule name)
that sleeps on a durable timer until the next fire time, starts the agent's run through an
activity, and continues as new after every wake-up so its history stays small. Because the
timer and the schedule's state live in the workflow store, a restart of the app or of the
sidecar neither loses a fire (the timer fires when the worker is back; missed fires inside the
``catch_up`` window run late) nor doubles one: each fire's run has an instance id derived from
its fire time, and the activity that starts it first checks whether that instance exists.

The workflow and its activities are registered on the agent's own ``WorkflowRuntime`` (one
runtime per app: the sidecar hands work items to any connected worker) when the factory is
called, before the agent is hosted. That registration is in memory only (no I/O), and it must
come before the runtime connects: after a restart the sidecar hands over the pending schedule
work at once, and a worker that does not know the workflow fails the instance.
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal

import dapr.ext.workflow as wf

from ._cron import Cron
from ._errors import TriggerConfigError
from ._events import Fire, MapperResult, normalize_payload
from ._ids import part
from ._ledger import Seconds, seconds
from ._runs import already_exists, status_name

if TYPE_CHECKING:
    from dapr_agents.agents.durable import DurableAgent
    from dapr_agents.types.activation import ActivationContext

logger = logging.getLogger(__name__)

Overlap = Literal["skip", "buffer_one", "allow"]
_OVERLAPS = ("skip", "buffer_one", "allow")
_TERMINAL = {"COMPLETED", "FAILED", "TERMINATED"}
# At most this many fire times are handled per workflow generation (after a long outage with
# a short interval); the rest follow in the next generation, so each history stays small.
_MAX_FIRES_PER_GENERATION = 50
_MIN_CATCH_UP_SECONDS = 10.0
# Which schedule workflows each runtime already knows (its registry refuses a name twice).
_REGISTERED: weakref.WeakKeyDictionary[wf.WorkflowRuntime, set[str]] = weakref.WeakKeyDictionary()
_ACTIVITY_RETRY = wf.RetryPolicy(
    first_retry_interval=timedelta(seconds=1),
    max_number_of_attempts=8,
    backoff_coefficient=2.0,
    max_retry_interval=timedelta(seconds=30),
)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S")


def _naive_utc(moment: datetime) -> datetime:
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


@dataclass(frozen=True)
class _Spec:
    """When a schedule fires: a cron expression or a fixed interval aligned to the Unix epoch."""

    cron: str | None
    every: int | None

    def next_after(self, moment: datetime) -> datetime:
        moment = _naive_utc(moment)
        if self.cron is not None:
            return _naive_utc(Cron.parse(self.cron).next_after(moment))
        assert self.every is not None
        epoch = datetime(1970, 1, 1)
        elapsed = int((moment - epoch).total_seconds())
        return epoch + timedelta(seconds=(elapsed // self.every + 1) * self.every)


class ScheduleTrigger:
    """The activation callback ``schedule_trigger`` registers; call it only through the runner."""

    def __init__(
        self,
        agent: DurableAgent,
        *,
        spec: _Spec,
        task: str | Callable[[Fire], MapperResult],
        overlap: Overlap,
        catch_up: float | None,
        name: str,
        poll: float,
    ) -> None:
        self.agent_name = str(agent.name)
        self.name = name
        self.spec = spec
        self.task = task
        self.overlap = overlap
        self.catch_up = catch_up
        self.poll = poll
        base = f"{part(self.agent_name)}-schedule-{part(name)}"
        #: The instance id of the schedule workflow (terminate it to remove the schedule).
        self.instance_id = base
        self.workflow_name = f"dapr.triggers.{part(self.agent_name)}.schedule.{part(name)}"
        self._fire_activity = f"{self.workflow_name}.fire"
        self._status_activity = f"{self.workflow_name}.status"
        self.__qualname__ = f"schedule_trigger(name={name!r})"
        self._ctx: ActivationContext | None = None
        self._lock = threading.Lock()
        self._registered_on: wf.WorkflowRuntime | None = None

    def __repr__(self) -> str:
        return f"<{self.__qualname__} agent={self.agent_name!r}>"

    def fire_instance_id(self, fire_time: datetime) -> str:
        """The instance id of the run started for ``fire_time`` (UTC)."""
        return f"{self.instance_id}-{_naive_utc(fire_time).strftime('%Y%m%dT%H%M%SZ')}"

    def config(self) -> dict[str, Any]:
        return {
            "cron": self.spec.cron,
            "every": self.spec.every,
            "overlap": self.overlap,
            "catch_up": self.catch_up,
        }

    # -- registration (in memory, at factory time) -------------------------------------------

    def register(self, runtime: wf.WorkflowRuntime) -> None:
        def schedule_workflow(ctx: wf.DaprWorkflowContext, state: Any) -> Any:
            return self._workflow(ctx, state)

        def fire(ctx: wf.WorkflowActivityContext, data: Any) -> str:
            return self._fire(data)

        def status(ctx: wf.WorkflowActivityContext, instance: Any) -> bool:
            return self._running(str(instance))

        names = _REGISTERED.setdefault(runtime, set())
        if self.workflow_name in names:
            raise TriggerConfigError(
                f"schedule {self.name!r} of agent {self.agent_name!r} is already registered on its runtime; "
                "give each schedule_trigger on one agent its own name="
            )
        runtime.register_workflow(schedule_workflow, name=self.workflow_name)
        runtime.register_activity(fire, name=self._fire_activity)
        runtime.register_activity(status, name=self._status_activity)
        names.add(self.workflow_name)
        self._registered_on = runtime

    # -- the workflow (deterministic: everything comes from its input and the context) -------

    def _workflow(self, ctx: wf.DaprWorkflowContext, state: Any) -> Any:
        state = dict(state or {})
        config = state.get("config") or self.config()
        spec = _Spec(config.get("cron"), config.get("every"))
        overlap = config.get("overlap", "skip")
        catch_up = config.get("catch_up")
        now = _naive_utc(ctx.current_utc_datetime)
        due = _parse(state["next"]) if state.get("next") else spec.next_after(now)
        last: str | None = state.get("last_run")
        buffered: str | None = state.get("buffered")
        fired = int(state.get("fired", 0))
        skipped = int(state.get("skipped", 0))
        failed = int(state.get("failed", 0))

        def status(instance: str | None) -> Any:
            return ctx.call_activity(self._status_activity, input=instance, retry_policy=_ACTIVITY_RETRY)

        def start(fire_time: datetime) -> Any:
            return ctx.call_activity(
                self._fire_activity, input={"fire_time": _iso(fire_time)}, retry_policy=_ACTIVITY_RETRY
            )

        # Visible while the schedule sleeps (GetInstance's custom status): what comes next.
        ctx.set_custom_status(
            json.dumps(
                {
                    "next": _iso(due),
                    "last_run": last,
                    "buffered": buffered,
                    "fired": fired,
                    "skipped": skipped,
                    "failed": failed,
                }
            )
        )
        wake = due
        if buffered is not None:
            wake = min(due, now + timedelta(seconds=self.poll))
        if wake > now:
            yield ctx.create_timer(wake)
            now = _naive_utc(ctx.current_utc_datetime)

        try:
            if buffered is not None:
                running = bool(last) and (yield status(last))
                if not running:
                    last = yield start(_parse(buffered))
                    buffered = None
                    fired += 1
            if now >= due:
                fires = [due]
                while len(fires) < _MAX_FIRES_PER_GENERATION:
                    following = spec.next_after(fires[-1])
                    if following > now:
                        break
                    fires.append(following)
                for fire_time in fires:
                    if catch_up is not None and (now - fire_time).total_seconds() > catch_up:
                        skipped += 1
                        if not ctx.is_replaying:
                            logger.warning(
                                "%r: fire %s missed by more than catch_up; skipped", self, _iso(fire_time)
                            )
                        continue
                    if overlap != "allow" and last and (yield status(last)):
                        if overlap == "buffer_one" and buffered is None:
                            buffered = _iso(fire_time)
                        else:
                            skipped += 1
                        continue
                    last = yield start(fire_time)
                    fired += 1
                due = spec.next_after(fires[-1])
        except Exception as exc:  # an activity ran out of retries: keep the schedule alive
            failed += 1
            if not ctx.is_replaying:
                logger.error("%r: a fire failed and was given up: %s", self, exc)
            if now >= due:
                due = spec.next_after(now)

        current = self.config()
        if current != config:
            # The code now says something else: from here on follow it.
            due = _Spec(current["cron"], current["every"]).next_after(now)
        new_state = {
            "config": current,
            "next": _iso(due),
            "last_run": last,
            "buffered": buffered,
            "fired": fired,
            "skipped": skipped,
            "failed": failed,
        }
        ctx.set_custom_status(json.dumps({k: v for k, v in new_state.items() if k != "config"}))
        ctx.continue_as_new(new_state)

    # -- activities --------------------------------------------------------------------------

    def _active(self) -> ActivationContext:
        with self._lock:
            ctx = self._ctx
        if ctx is None:
            # Retried by the workflow's retry policy: hosting may not have finished yet.
            raise RuntimeError(f"{self!r} is not active (the agent is not hosted by a runner right now)")
        return ctx

    def _running(self, instance: str) -> bool:
        ctx = self._active()
        state = ctx.wf_client.get_workflow_state(instance, fetch_payloads=False)
        return state is not None and status_name(state) not in _TERMINAL

    def _fire(self, data: Any) -> str:
        ctx = self._active()
        fire_time = _parse(data["fire_time"])
        iid = self.fire_instance_id(fire_time)
        # An activity runs at least once: if this fire's run exists (any status), it was started
        # by an earlier attempt of this activity; starting it again would double the fire.
        if ctx.wf_client.get_workflow_state(iid, fetch_payloads=False) is not None:
            return iid
        if callable(self.task):
            payload = normalize_payload(self.task(Fire(self.name, fire_time, iid)), "the task callable")
            if payload is None:
                return iid
        else:
            payload = {"task": self.task}
        try:
            ctx.runner.run_workflow(ctx.runner.discover_entry(ctx.agent), payload, instance_id=iid)
        except Exception as exc:
            if not already_exists(exc):
                raise
        logger.info("%r: fired %s as %s", self, _iso(fire_time), iid)
        return iid

    # -- activation --------------------------------------------------------------------------

    def __call__(self, ctx: ActivationContext) -> Callable[[], None]:
        runtime = ctx.agent.runtime
        if self._registered_on is not runtime:
            # The agent got another runtime after the factory ran (start(runtime=...)).
            self.register(runtime)
        with self._lock:
            self._ctx = ctx
        try:
            self._ensure_started(ctx)
        except BaseException:
            with self._lock:
                self._ctx = None
            raise
        done = [False]

        def close() -> None:
            try:
                with self._lock:
                    if done[0]:
                        return
                    done[0] = True
                    if self._ctx is ctx:
                        self._ctx = None
            except Exception:  # a closer must never raise
                logger.exception("%r: error while closing", self)

        return close

    def _ensure_started(self, ctx: ActivationContext) -> None:
        state = ctx.wf_client.get_workflow_state(self.instance_id, fetch_payloads=False)
        status = status_name(state) if state is not None else None
        if status is not None and status not in _TERMINAL:
            logger.info("%r: schedule %s is %s; it continues", self, self.instance_id, status)
            return
        try:
            ctx.wf_client.schedule_new_workflow(
                workflow=self.workflow_name, input={"config": self.config()}, instance_id=self.instance_id
            )
            logger.info("%r: schedule %s started", self, self.instance_id)
        except Exception as exc:
            if not already_exists(exc):  # another replica started it a moment ago
                raise


def schedule_trigger(
    agent: DurableAgent,
    *,
    cron: str | None = None,
    every: Seconds | None = None,
    task: str | Callable[[Fire], MapperResult],
    overlap: Overlap = "skip",
    catch_up: Seconds | None = timedelta(minutes=5),
    name: str = "default",
) -> ScheduleTrigger:
    """Run ``agent`` on a durable schedule.

    Args:
        agent: the ``DurableAgent``; its runtime gets the schedule workflow now (in memory), the
            schedule instance is started when the agent is hosted.
        cron: a five-field cron expression in UTC (``"*/5 * * * *"``) or a macro (``@hourly``).
        every: a fixed interval (``timedelta`` or whole seconds, at least 1), fires aligned to
            multiples of it since the Unix epoch. Give exactly one of ``cron``/``every``.
        task: the task text of every run, or ``Fire -> {"task": ...} | str | None`` (called in an
            activity, so it may do I/O; ``None`` skips that fire).
        overlap: when the previous fire's run is still running: ``"skip"`` this fire,
            ``"buffer_one"`` (run it once the previous ends; at most one waits, later ones are
            skipped), or ``"allow"`` (start it regardless).
        catch_up: how late a fire may run after downtime (default 5 minutes; at least 10 s,
            since timers may be late under load); older missed fires are skipped. ``None``: run
            every missed fire.
        name: distinguishes several schedules of one agent (ids and workflow names derive from it).
    """
    if (cron is None) == (every is None):
        raise TriggerConfigError(
            f"schedule_trigger needs exactly one of cron= or every= (got cron={cron!r}, every={every!r})"
        )
    every_seconds: int | None = None
    if cron is not None:
        Cron.parse(cron)  # fail now, not in the workflow
    else:
        assert every is not None
        value = seconds(every, "every", minimum=1)
        if value != int(value):
            raise TriggerConfigError(f"every={every!r}: use a whole number of seconds")
        every_seconds = int(value)
    if overlap not in _OVERLAPS:
        raise TriggerConfigError(f"overlap={overlap!r}: use one of {', '.join(map(repr, _OVERLAPS))}")
    window = None if catch_up is None else seconds(catch_up, "catch_up", minimum=_MIN_CATCH_UP_SECONDS)
    if not (isinstance(task, str) and task) and not callable(task):
        raise TriggerConfigError(f"task={task!r}: give the task text, or a function of the Fire returning it")
    if not isinstance(name, str) or not name:
        raise TriggerConfigError(f"name={name!r}: use a non-empty string")
    trigger = ScheduleTrigger(
        agent,
        spec=_Spec(cron, every_seconds),
        task=task,
        overlap=overlap,
        catch_up=window,
        name=name,
        poll=1.0,
    )
    if trigger.workflow_name in _REGISTERED.get(agent.runtime, ()):
        raise TriggerConfigError(
            f"agent {trigger.agent_name!r} already has a schedule named {name!r}; "
            "give each schedule_trigger on one agent its own name="
        )
    agent.add_activation(trigger)  # raises RuntimeError once the agent is hosted
    trigger.register(agent.runtime)
    return trigger
