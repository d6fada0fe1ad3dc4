"""Hosting a foreign agent as a Dapr agent workflow that dapr-agents can call.

Two shapes: :func:`host_agent` runs the agent inside one durable activity (the common case: an
OpenAI Agents ``Agent``, a LangGraph graph); :func:`host_agent_workflow` lets a package write
the orchestration itself (a CrewAI crew whose tasks are activities of their own). Both register
``dapr.{framework}.{name}.workflow`` on the app's one ``WorkflowRuntime``, read the envelope,
and return ``{"role": "assistant", "content": str}``; any failure fails the workflow, which is
how dapr-agents' parent sees it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar, Union

import dapr.ext.workflow as wf

from ._envelope import AgentRequest, AgentResponse
from ._errors import AgentRunFailed
from ._naming import agent_workflow_name, sanitize_agent_name

__all__ = ["DEFAULT_RETRY_POLICY", "AgentCall", "AgentHost", "host_agent", "host_agent_workflow"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Aliases evaluated at import time: Union keeps them valid on Python 3.10 with string forward refs.
AgentResult = Union[str, AgentResponse, Mapping[str, Any]]  # noqa: UP007
AgentRunner = Callable[["AgentCall"], Union[AgentResult, Awaitable[AgentResult]]]  # noqa: UP007
AgentOrchestrator = Callable[[wf.DaprWorkflowContext, AgentRequest], Generator[Any, Any, AgentResult]]

DEFAULT_RETRY_POLICY = wf.RetryPolicy(
    first_retry_interval=timedelta(seconds=1),
    max_number_of_attempts=3,
    backoff_coefficient=2.0,
    max_retry_interval=timedelta(seconds=30),
)
"""Retries of the agent activity: 3 attempts, 1 s then 2 s apart (crashes are redelivered anyway)."""


@dataclass(frozen=True)
class AgentCall:
    """One call of a hosted agent, as the activity running it sees it."""

    request: AgentRequest
    """The caller's envelope."""
    instance_id: str
    """The agent workflow's instance id: the same on every retry of this call, so it is the
    natural key for anything the run must find again (a LangGraph thread, a journal)."""
    agent_name: str
    workflow_name: str

    @property
    def task(self) -> str:
        return self.request.task

    @property
    def source(self) -> str | None:
        """The calling agent's name, when it said (dapr-agents always does)."""
        return self.request.source


@dataclass(frozen=True)
class AgentHost:
    """What :func:`host_agent` registered: publish it with ``AgentRegistry.register(host.record(...))``."""

    name: str
    framework: str
    workflow_name: str
    role: str | None = None
    goal: str | None = None

    def record(self, app_id: str, *, metadata: Mapping[str, Any] | None = None) -> Any:
        """The registry record of this host in app ``app_id`` (an :class:`AgentRecord`)."""
        from ._registry import AgentRecord

        return AgentRecord(
            name=self.name,
            app_id=app_id,
            framework=self.framework,
            workflow_name=self.workflow_name,
            role=self.role,
            goal=self.goal,
            metadata=dict(metadata or {}),
        )


def _run_coroutine(awaitable: Awaitable[T]) -> T:
    """Run ``awaitable`` to completion from a worker thread, with or without a running loop."""

    async def wrapper() -> T:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wrapper())
    # Called on a thread that already runs a loop: use a private thread for a private loop.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, wrapper()).result()


def _check_names(name: str, framework: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a hosted agent needs a non-empty name, got {name!r}")
    if not isinstance(framework, str) or not framework.strip():
        raise ValueError(f"a hosted agent needs a framework such as 'openai', got {framework!r}")
    sanitize_agent_name(name)  # raises for names longer than the providers allow


def host_agent(
    runtime: wf.WorkflowRuntime,
    *,
    name: str,
    framework: str,
    run: AgentRunner,
    role: str | None = None,
    goal: str | None = None,
    workflow_name: str | None = None,
    retry_policy: wf.RetryPolicy | None = DEFAULT_RETRY_POLICY,
) -> AgentHost:
    """Register ``dapr.{framework}.{name}.workflow`` on ``runtime``, running ``run`` in one activity.

    ``run(call)`` gets an :class:`AgentCall` and returns the answer (a string, an
    :class:`AgentResponse` or a ``{"content": str}`` mapping); it may be ``async def``. It runs
    in a durable activity: after a crash or a failure it runs again with the same
    ``call.instance_id`` (at most ``retry_policy`` attempts for failures), so anything it
    persists should be keyed by that id. Register before ``runtime.start()``, on the app's only
    runtime: daprd hands work items to any worker of the app.
    """
    _check_names(name, framework)
    if not callable(run):
        raise TypeError(f"run must be a callable taking an AgentCall, got {type(run).__name__}")
    workflow = agent_workflow_name(name, framework=framework, workflow_name=workflow_name)
    activity = f"{workflow}.run"

    def _call(data: Mapping[str, Any]) -> AgentCall:
        return AgentCall(
            request=AgentRequest.from_input(data["request"]),
            instance_id=str(data["instance_id"]),
            agent_name=name,
            workflow_name=workflow,
        )

    def run_agent(ctx: wf.WorkflowActivityContext, data: Mapping[str, Any]) -> dict[str, Any]:
        result = run(_call(data))
        if inspect.isawaitable(result):
            # A plain activity that drives the coroutine itself: dapr-ext-workflow only awaits
            # async activities from 1.18.1 on, and this keeps the whole 1.18 range working.
            result = _run_coroutine(result)
        return AgentResponse.from_result(result).to_output()

    runtime.register_activity(run_agent, name=activity)

    def agent_workflow(ctx: wf.DaprWorkflowContext, payload: Any) -> Generator[Any, Any, dict[str, Any]]:
        request = AgentRequest.from_input(payload)
        data = {"request": request.to_input(), "instance_id": ctx.instance_id}
        try:
            if retry_policy is not None:
                result = yield ctx.call_activity(activity, input=data, retry_policy=retry_policy)
            else:
                result = yield ctx.call_activity(activity, input=data)
        except wf.TaskFailedError as failure:
            details = failure.details
            raise AgentRunFailed(f"{details.error_type}: {details.message}") from None
        return AgentResponse.from_result(result).to_output()

    runtime.register_workflow(agent_workflow, name=workflow)
    logger.debug("hosting agent %r as workflow %r", name, workflow)
    return AgentHost(name=name, framework=framework, workflow_name=workflow, role=role, goal=goal)


def host_agent_workflow(
    runtime: wf.WorkflowRuntime,
    *,
    name: str,
    framework: str,
    orchestrator: AgentOrchestrator,
    role: str | None = None,
    goal: str | None = None,
    workflow_name: str | None = None,
) -> AgentHost:
    """Register ``dapr.{framework}.{name}.workflow`` whose body is ``orchestrator(ctx, request)``.

    ``orchestrator`` is a workflow generator (it yields activities, child workflows, timers) that
    returns the answer; the envelope is parsed before it runs and its result is normalised to
    ``{"role": "assistant", "content": str}``. It must be deterministic, as any workflow.
    """
    _check_names(name, framework)
    if not callable(orchestrator):
        raise TypeError(
            f"orchestrator must be a workflow generator function, got {type(orchestrator).__name__}"
        )
    workflow = agent_workflow_name(name, framework=framework, workflow_name=workflow_name)

    @functools.wraps(orchestrator)
    def agent_workflow(ctx: wf.DaprWorkflowContext, payload: Any) -> Generator[Any, Any, dict[str, Any]]:
        request = AgentRequest.from_input(payload)
        body = orchestrator(ctx, request)
        if inspect.isgenerator(body):
            result = yield from body
        else:
            result = body
        return AgentResponse.from_result(result).to_output()

    # functools.wraps copied the orchestrator's __dict__, where the SDK marks registered functions.
    agent_workflow.__dict__.pop("_workflow_registered", None)
    agent_workflow.__dict__.pop("_dapr_alternate_name", None)
    runtime.register_workflow(agent_workflow, name=workflow)
    logger.debug("hosting agent %r as workflow %r", name, workflow)
    return AgentHost(name=name, framework=framework, workflow_name=workflow, role=role, goal=goal)
