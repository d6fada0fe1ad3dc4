"""``DaprCrew``: an existing CrewAI ``Crew`` run as a Dapr workflow, each task one activity.

The workflow replays CrewAI's sequential loop (``Crew._execute_tasks``) from a static plan: sync
tasks in order, ``async_execution`` tasks scheduled together and joined with ``when_all`` before
the next sync task, conditional tasks judged on the previous output, the context string built
from the outputs carried in workflow history exactly as CrewAI joins them. An activity runs one
task with CrewAI's own ``Task.execute_sync`` on the crew prepared for the kickoff inputs, so
guardrails, ``output_pydantic``/``output_json``, callbacks and delegation behave as in
``crew.kickoff()``. A hierarchical crew runs the same way with CrewAI's manager agent executing
each task, its delegations journaled tool calls. ``human_input=True`` becomes a
durable wait for the event ``human_input.<task index>``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import dapr.ext.workflow as wf

from crewai import Crew, Process
from crewai.crews.crew_output import CrewOutput
from crewai.crews.utils import prepare_task_execution, setup_agents
from crewai.llms.base_llm import BaseLLM
from crewai.tools import BaseTool
from crewai.types.usage_metrics import UsageMetrics
from crewai.utilities.formatter import DIVIDERS

from ._errors import CrewPlanMismatchError, CrewRunFailedError, DaprCrewError
from ._journal import ToolJournal, journaled, keyed
from ._plan import CrewPlan, TaskOptions, TaskStep, build_plan
from ._serde import add_usage, dump_task_output, load_task_output, usage_delta
from ._tool import DaprAgentTool
from ._usage import collecting, install

logger = logging.getLogger(__name__)

HUMAN_INPUT_EVENT = "human_input.{index}"
MANAGER_GROUP = "manager"


def workflow_name_for(crew: Crew) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(crew.name or "crew")).strip("-").lower() or "crew"
    return f"crewai.{base}"


class _PreparedCrew:
    """Keeps the crew interpolated for one set of kickoff inputs at a time.

    Tasks of the same inputs run concurrently (parallel async tasks); a task for other inputs (a
    second instance) waits until those finish, then re-interpolates the crew.
    """

    def __init__(self, crew: Crew) -> None:
        self.crew = crew
        self._condition = threading.Condition()
        self._key: str | None = None
        self._active = 0

    @contextmanager
    def use(self, inputs: dict[str, Any] | None) -> Iterator[Crew]:
        key = json.dumps(inputs, sort_keys=True, default=str)
        with self._condition:
            while self._active and self._key != key:
                self._condition.wait()
            if self._key != key:
                self._prepare(inputs)
                self._key = key
            self._active += 1
        try:
            yield self.crew
        finally:
            with self._condition:
                self._active -= 1
                self._condition.notify_all()

    def _prepare(self, inputs: dict[str, Any] | None) -> None:
        # The parts of crewai.crews.utils.prepare_kickoff that shape task execution; its events,
        # before-kickoff callbacks and planning belong to the kickoff, which the caller ran once.
        crew = self.crew
        if inputs is not None:
            crew._inputs = inputs
            crew._interpolate_inputs(inputs)
        crew._set_tasks_callbacks()
        agents = list(crew.agents)
        for task in crew.tasks:
            if task.agent is not None and all(task.agent is not a for a in agents):
                agents.append(task.agent)
        setup_agents(crew, agents, crew.embedder, crew.function_calling_llm, crew.step_callback)
        if crew.process == Process.hierarchical:
            crew._create_manager_agent()  # as Crew._run_hierarchical_process does before its loop


class DaprCrew:
    """Run ``crew`` as the Dapr workflow ``name`` (default ``crewai.<crew name>``).

    Register on a ``WorkflowRuntime`` before starting it, then :meth:`schedule` and
    :meth:`wait`, or use :func:`kickoff_durable`. Options: ``retry_policy`` and ``timeout`` for
    every task, ``task_options`` per task name or index, ``journal_store`` (the state store of
    the tool journal; ``None`` turns the journal off) and ``unjournaled_tools`` (tool names that
    run on every attempt).
    """

    def __init__(
        self,
        crew: Crew,
        *,
        name: str | None = None,
        retry_policy: wf.RetryPolicy | None = None,
        timeout: timedelta | None = None,
        task_options: Mapping[str | int, TaskOptions] | None = None,
        journal_store: str | None = "statestore",
        unjournaled_tools: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        self.crew = crew
        self.name = name or workflow_name_for(crew)
        self.plan: CrewPlan = build_plan(
            crew, TaskOptions(retry_policy=retry_policy, timeout=timeout), task_options or {}
        )
        self.journal_store = journal_store
        self.unjournaled_tools = frozenset(unjournaled_tools)
        self._prepared = _PreparedCrew(crew)
        self._usage_lock = threading.Lock()
        install()  # per-task token usage, exact even when parallel tasks share an LLM
        self._idle = threading.Condition()
        self._in_flight = 0
        # CrewAI sums the usage of each agent's LLM (an LLM shared by two agents counts twice);
        # usage is recorded per LLM instance and summed the same way.
        self._llm_group: list[int] = []
        seen: dict[int, int] = {}
        for i, agent in enumerate(crew.agents):
            llm = agent.llm if isinstance(agent.llm, BaseLLM) else None
            self._llm_group.append(seen.setdefault(id(llm), i) if llm is not None else -1)

    # -- registration -------------------------------------------------------------------------

    @property
    def task_activity_name(self) -> str:
        return f"{self.name}.task"

    def register(self, runtime: wf.WorkflowRuntime) -> DaprCrew:
        """Register the workflow and its activities on ``runtime`` (before ``runtime.start()``)."""

        # Plain functions per registration: the runtime marks registered callables with
        # attributes, which on bound methods would land on the shared class function.
        def workflow(ctx, payload):  # type: ignore[no-untyped-def]
            return (yield from self._workflow(ctx, payload))

        def task_activity(ctx, payload):  # type: ignore[no-untyped-def]
            with self._running():
                return self._task_activity(ctx, payload)

        runtime.register_workflow(workflow, name=self.name)
        runtime.register_activity(task_activity, name=self.task_activity_name)
        return self

    @contextmanager
    def _running(self) -> Iterator[None]:
        with self._idle:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no task activity of this crew is running in this process (True) or the
        timeout passes (False). Call before ``runtime.shutdown()``: an activity that finishes
        into a shut-down runtime crashes the process inside gRPC (dapr-ext-workflow 1.18.3), and
        an activity outlives its workflow when a task timeout fails the run."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    # -- client side --------------------------------------------------------------------------

    def workflow_input(self, inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The workflow input for ``inputs``, after the crew's before-kickoff callbacks (run once
        here, so their result is recorded in history rather than recomputed on replay)."""
        normalized = dict(inputs) if inputs is not None else None
        for callback in self.crew.before_kickoff_callbacks:
            normalized = callback(normalized if normalized is not None else {})
        try:
            json.dumps(normalized)
        except TypeError as exc:
            raise DaprCrewError(
                f"kickoff inputs must be JSON-serialisable to travel in the workflow input: {exc}"
            ) from exc
        return {"inputs": normalized, "plan": self.plan.fingerprint}

    def schedule(
        self,
        client: wf.DaprWorkflowClient,
        inputs: Mapping[str, Any] | None = None,
        *,
        instance_id: str | None = None,
    ) -> str:
        """Start a durable run; returns its instance id."""
        return client.schedule_new_workflow(
            self.name, input=self.workflow_input(inputs), instance_id=instance_id
        )

    def wait(self, client: wf.DaprWorkflowClient, instance_id: str, timeout: float = 600) -> CrewOutput:
        """Wait for the run and return its ``CrewOutput`` (as ``crew.kickoff()`` would)."""
        state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=int(timeout))
        if state is None:
            raise CrewRunFailedError(
                f"workflow instance {instance_id!r} of {self.name!r} does not exist",
                instance_id=instance_id,
                status="UNKNOWN",
            )
        if state.runtime_status != wf.WorkflowStatus.COMPLETED:
            details = state.failure_details
            message = details.message if details is not None else state.serialized_output
            raise CrewRunFailedError(
                f"workflow instance {instance_id!r} of {self.name!r} ended {state.runtime_status.name}: "
                f"{message}",
                instance_id=instance_id,
                status=state.runtime_status.name,
            )
        return self.crew_output(json.loads(state.serialized_output or "{}"))

    def raise_human_input(
        self, client: wf.DaprWorkflowClient, instance_id: str, task: int | str, feedback: str = ""
    ) -> None:
        """Answer a ``human_input=True`` task: empty feedback accepts the answer, anything else
        makes the agent revise it and ask again."""
        step = self._step(task)
        client.raise_workflow_event(instance_id, HUMAN_INPUT_EVENT.format(index=step.index), data=feedback)

    def crew_output(self, result: Mapping[str, Any]) -> CrewOutput:
        """Rebuild the ``CrewOutput`` from the workflow's output."""
        outputs = [
            load_task_output(data, self.crew.tasks[data["_index"]].output_pydantic)
            for data in result["tasks_output"]
        ]
        for data, output in zip(result["tasks_output"], outputs, strict=True):
            if not data.get("_skipped"):
                self.crew.tasks[data["_index"]].output = output
        valid = [o for o in outputs if o.raw]
        if not valid:
            raise DaprCrewError("No valid task outputs available to create crew output.")
        final = valid[-1]
        crew_output = CrewOutput(
            raw=final.raw,
            pydantic=final.pydantic,
            json_dict=final.json_dict,
            tasks_output=outputs,
            token_usage=UsageMetrics(**result["token_usage"]),
        )
        self.crew.token_usage = crew_output.token_usage
        self.crew.usage_metrics = crew_output.token_usage
        for callback in self.crew.after_kickoff_callbacks:
            crew_output = callback(crew_output)
        return crew_output

    def _step(self, task: int | str) -> TaskStep:
        for step in self.plan.steps:
            if step.index == task or step.name == task:
                return step
        raise KeyError(f"crew {self.name!r} has no task {task!r}")

    # -- workflow -----------------------------------------------------------------------------

    def _workflow(self, ctx: wf.DaprWorkflowContext, payload: dict[str, Any]) -> Generator[Any, Any, Any]:
        if payload.get("plan") != self.plan.fingerprint:
            raise CrewPlanMismatchError(
                f"instance {ctx.instance_id} was started for another shape of crew (plan "
                f"{payload.get('plan')}, registered {self.plan.fingerprint}): the crew's tasks changed "
                "since it started. Finish it with the old code, or terminate it and start again."
            )
        inputs = payload.get("inputs")
        outputs: list[dict[str, Any]] = []
        by_index: dict[int, dict[str, Any]] = {}
        usage: dict[str, dict[str, int]] = {}
        pending: list[tuple[TaskStep, Any, Any]] = []

        def record(result: dict[str, Any]) -> None:
            output = result["output"]
            outputs.append(output)
            if not output.get("_skipped"):
                by_index[output["_index"]] = output
            for group, delta in result.get("usage", {}).items():
                add_usage(usage.setdefault(group, {}), delta)

        def drain() -> Generator[Any, Any, None]:
            if not pending:
                return
            results: list[dict[str, Any]]
            if all(timer is None for _, _, timer in pending):
                results = yield wf.when_all([activity for _, activity, _ in pending])
            else:
                results = []
                for step, activity, timer in pending:
                    results.append((yield from self._await(step, activity, timer)))
            pending.clear()
            for result in results:
                record(result)

        for step in self.plan.steps:
            previous = None
            if step.conditional:
                yield from drain()
                previous = outputs[-1] if outputs else None
            if step.async_execution:
                # CrewAI gives an async task the outputs of earlier sync tasks only on replay
                # (last_sync_output); in a kickoff its implicit context is empty. Mirrored here.
                context = self._context(step, [], by_index)
                activity, timer = self._call(ctx, step, inputs, context, previous)
                pending.append((step, activity, timer))
                continue
            yield from drain()
            context = self._context(step, outputs, by_index)
            activity, timer = self._call(ctx, step, inputs, context, previous)
            result = yield from self._await(step, activity, timer)
            if step.human_input and not result["output"].get("_skipped"):
                result = yield from self._human_loop(ctx, step, inputs, context, result)
            record(result)
        yield from drain()

        total: dict[str, int] = {}
        for group in self._llm_group:
            if group >= 0 and str(group) in usage:
                add_usage(total, usage[str(group)])
        if MANAGER_GROUP in usage:  # Crew.calculate_usage_metrics adds the manager's LLM
            add_usage(total, usage[MANAGER_GROUP])
        for name in UsageMetrics.model_fields:
            total.setdefault(name, 0)
        return {"tasks_output": outputs, "token_usage": total}

    def _call(
        self,
        ctx: wf.DaprWorkflowContext,
        step: TaskStep,
        inputs: Any,
        context: str,
        previous: dict[str, Any] | None,
        feedback: list[dict[str, str]] | None = None,
    ) -> tuple[Any, Any]:
        activity: Any = ctx.call_activity(
            self.task_activity_name,
            input={
                "index": step.index,
                "inputs": inputs,
                "context": context,
                "previous": previous,
                "feedback": feedback or [],
            },
            retry_policy=step.options.retry_policy,
        )
        timer = (
            ctx.create_timer(ctx.current_utc_datetime + step.options.timeout)
            if step.options.timeout
            else None
        )
        return activity, timer

    def _await(self, step: TaskStep, activity: Any, timer: Any) -> Generator[Any, Any, dict[str, Any]]:
        if timer is None:
            finished: dict[str, Any] = yield activity
            return finished
        winner = yield wf.when_any([activity, timer])
        if winner is timer:
            raise TimeoutError(
                f"task {step.name!r} (index {step.index}) did not finish within {step.options.timeout}"
            )
        result: dict[str, Any] = activity.get_result()
        return result

    def _human_loop(
        self,
        ctx: wf.DaprWorkflowContext,
        step: TaskStep,
        inputs: Any,
        context: str,
        result: dict[str, Any],
    ) -> Generator[Any, Any, dict[str, Any]]:
        rounds: list[dict[str, str]] = []
        usage: dict[str, dict[str, int]] = {}

        def keep_usage(r: dict[str, Any]) -> None:
            for group, delta in r.get("usage", {}).items():
                add_usage(usage.setdefault(group, {}), delta)

        keep_usage(result)
        while True:
            event = ctx.wait_for_external_event(HUMAN_INPUT_EVENT.format(index=step.index))
            if step.options.human_input_timeout is None:
                feedback = yield event
            else:
                timer = ctx.create_timer(ctx.current_utc_datetime + step.options.human_input_timeout)
                winner = yield wf.when_any([event, timer])
                if winner is timer:
                    if step.options.on_human_input_timeout == "fail":
                        raise TimeoutError(
                            f"no human input for task {step.name!r} within {step.options.human_input_timeout}"
                        )
                    break
                feedback = event.get_result()
            if feedback is None or not str(feedback).strip():  # CrewAI accepts blank feedback too
                break
            rounds.append({"answer": result["output"]["raw"], "feedback": str(feedback)})
            activity, timer = self._call(ctx, step, inputs, context, None, rounds)
            result = yield from self._await(step, activity, timer)
            keep_usage(result)
        return {"output": result["output"], "usage": usage}

    @staticmethod
    def _context(step: TaskStep, outputs: list[dict[str, Any]], by_index: dict[int, dict[str, Any]]) -> str:
        # Crew._get_context: the outputs so far by default, else the listed tasks' outputs.
        if step.context is None:
            return ""
        if step.context == "previous":
            return DIVIDERS.join(o["raw"] for o in outputs)
        return DIVIDERS.join(by_index[i]["raw"] for i in step.context if i in by_index)

    # -- activities ---------------------------------------------------------------------------

    def _task_activity(self, ctx: wf.WorkflowActivityContext, payload: dict[str, Any]) -> dict[str, Any]:
        index = int(payload["index"])
        with self._prepared.use(payload.get("inputs")) as crew:
            task = crew.tasks[index]
            previous = payload.get("previous")
            if previous is not None:
                prior = load_task_output(previous, crew.tasks[previous["_index"]].output_pydantic)
                if not task.should_execute(prior):  # type: ignore[attr-defined]
                    skipped = task.get_skipped_task_output()  # type: ignore[attr-defined]
                    return {"output": dump_task_output(skipped, index, skipped=True), "usage": {}}
            execution, _, _ = prepare_task_execution(crew, task, index, 0, [], None)
            agent = execution.agent
            tools = list(execution.tools)
            journal = ToolJournal(self.journal_store, ctx.workflow_id, index)
            source = str(agent.role) if agent is not None else None
            tools = [self._durable_tool(t, journal, source) for t in tools]
            context = str(payload.get("context") or "")
            for round_ in payload.get("feedback") or []:
                # A revision round after human feedback: the agent sees its answer and the feedback.
                context += (
                    f"{DIVIDERS}Your previous answer:\n{round_['answer']}\n\n"
                    f"Human feedback on it, to address now:\n{round_['feedback']}"
                )
            llms = self._usage_sources(crew, agent)
            human_input, task.human_input = task.human_input, False  # the workflow asks, not stdin
            with self._usage_lock:
                before = {group: llm.get_token_usage_summary() for group, llm in llms.items()}
            try:
                with collecting() as collected:
                    output = task.execute_sync(agent=agent, context=context, tools=tools)
            finally:
                task.human_input = human_input
            usage: dict[str, dict[str, int]] = {}
            for group, llm in llms.items():
                if collected:  # the calls ran in this context: exactly this task's usage
                    usage[group] = dict(collected.get(id(llm), {}))
                else:  # no call reported here (none made, or made in a thread the context did
                    # not follow): the counters' difference, which parallel tasks can inflate
                    usage[group] = usage_delta(before[group], llm.get_token_usage_summary())
            return {"output": dump_task_output(output, index), "usage": usage}

    def _durable_tool(self, tool: BaseTool, journal: ToolJournal, source: str | None) -> BaseTool:
        if tool.name in self.unjournaled_tools:
            return tool
        if isinstance(tool, DaprAgentTool):
            # Idempotent by itself: the journal key becomes its idempotency key, no records.
            return keyed(tool, journal, source)
        return journaled(tool, journal) if self.journal_store else tool

    def _usage_sources(self, crew: Crew, agent: Any) -> dict[str, BaseLLM]:
        """The LLMs whose usage this task accounts for, by usage group: the executing agent's;
        with delegation (a hierarchical manager, ``allow_delegation``) every agent's, since
        coworkers run inside the task; the manager's under its own group."""
        sources: dict[str, BaseLLM] = {}
        delegating = self.plan.hierarchical or bool(getattr(agent, "allow_delegation", False))
        for i, member in enumerate(crew.agents):
            if isinstance(member.llm, BaseLLM) and (delegating or member is agent):
                sources.setdefault(str(self._llm_group[i]), member.llm)
        manager = crew.manager_agent
        if manager is not None and agent is manager and isinstance(manager.llm, BaseLLM):
            sources[MANAGER_GROUP] = manager.llm
        return sources


# -- one-call helpers ---------------------------------------------------------------------------


def kickoff_durable(
    crew: Crew,
    inputs: Mapping[str, Any] | None = None,
    *,
    instance_id: str | None = None,
    timeout: float = 600,
    on_started: Callable[[str], None] | None = None,
    **options: Any,
) -> CrewOutput:
    """``crew.kickoff(inputs=...)``, durably: start a workflow runtime, run the crew as a Dapr
    workflow and return its ``CrewOutput``.

    With ``instance_id``, a run that already exists is resumed (still running: this waits for it;
    completed: its result is returned without running anything). ``options`` go to
    :class:`DaprCrew`.
    """
    durable = DaprCrew(crew, **options)
    runtime = wf.WorkflowRuntime()
    durable.register(runtime)
    runtime.start()
    try:
        client = wf.DaprWorkflowClient()
        state = client.get_workflow_state(instance_id) if instance_id else None
        resumable = {
            wf.WorkflowStatus.RUNNING,
            wf.WorkflowStatus.PENDING,
            wf.WorkflowStatus.SUSPENDED,
            wf.WorkflowStatus.COMPLETED,
        }
        if state is not None and state.runtime_status in resumable:
            assert instance_id is not None
            logger.info("resuming durable crew run %s (%s)", instance_id, state.runtime_status.name)
        else:
            instance_id = durable.schedule(client, inputs, instance_id=instance_id)
        if on_started is not None:
            on_started(instance_id)
        return durable.wait(client, instance_id, timeout)
    finally:
        durable.wait_idle(timeout)
        runtime.shutdown()


async def akickoff_durable(
    crew: Crew,
    inputs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> CrewOutput:
    """The async twin of :func:`kickoff_durable` (same implementation, run in a worker thread)."""
    return await asyncio.to_thread(kickoff_durable, crew, inputs, **kwargs)
