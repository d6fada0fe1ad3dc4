"""``host_crew``: a CrewAI crew hosted as a Dapr agent workflow that any caller (a dapr-agents
``DurableAgent``, interop's ``AgentClient``, another framework's agent tool) can call.

The agent workflow ``dapr.crewai.{name}.workflow`` takes the envelope ``{"task": ...}`` and
answers ``{"role": "assistant", "content": ...}``. It runs three durable steps: an activity
that maps the request to kickoff inputs (the inputs mapper and the crew's before-kickoff
callbacks run there, once, and their result is recorded), the durable crew workflow of
:class:`DaprCrew` as a child workflow (each task its own activity, as in ``kickoff_durable``),
and an activity that maps the ``CrewOutput`` to text. A failing crew fails the agent workflow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Mapping
from typing import Any

import dapr.ext.workflow as wf

from crewai import Crew
from crewai.crews.crew_output import CrewOutput
from dapr_agents.ext.interop import AgentHost, AgentRequest, agent_workflow_name, host_agent_workflow

from ._crew import DaprCrew
from ._errors import CrewInputsError, CrewRunFailedError
from ._plan import crew_placeholders

__all__ = ["CREWAI_FRAMEWORK", "host_crew"]

logger = logging.getLogger(__name__)

CREWAI_FRAMEWORK = "crewai"

InputsMapper = Callable[[AgentRequest], Mapping[str, Any]]
OutputMapper = Callable[[CrewOutput], str]


def default_inputs(request: AgentRequest) -> dict[str, Any]:
    """The kickoff inputs of a request when no mapper is given: ``{"task": <the task>}``."""
    return {"task": request.task}


def host_crew(
    runtime: wf.WorkflowRuntime,
    crew: Crew | DaprCrew,
    *,
    name: str,
    inputs_mapper: InputsMapper | None = None,
    output_mapper: OutputMapper | None = None,
    role: str | None = None,
    goal: str | None = None,
    workflow_name: str | None = None,
    **options: Any,
) -> AgentHost:
    """Host ``crew`` as the agent ``name``: registers ``dapr.crewai.{name}.workflow`` (and the
    crew's own durable workflow) on ``runtime``, before ``runtime.start()``.

    Args:
        crew: a ``Crew`` (wrapped as ``DaprCrew(crew, **options)``, its workflow named
            ``{agent workflow}.crew``) or a ``DaprCrew`` that is not registered yet.
        inputs_mapper: ``request -> kickoff inputs``; default ``{"task": request.task}``, which
            needs the crew's templates to use ``{task}`` and no other placeholder. Runs in an
            activity, once per call.
        output_mapper: ``CrewOutput -> str``; default ``CrewOutput.raw``. Runs in an activity.
        role, goal: what the registry record says (dapr-agents shows "{role}. Goal: {goal}" to
            its LLM as the tool's description).
        workflow_name: an explicit agent workflow name.
        options: ``DaprCrew`` options (``retry_policy``, ``timeout``, ``task_options``,
            ``journal_store``, ``unjournaled_tools``) when ``crew`` is a ``Crew``.

    Raises:
        CrewInputsError: no ``inputs_mapper`` and the crew's templates do not use ``{task}`` (the
            caller's task would be ignored) or use other placeholders (named in the message).
    """
    if isinstance(crew, DaprCrew):
        if options:
            raise TypeError(
                f"host_crew got DaprCrew options {sorted(options)} with a DaprCrew; pass them to "
                "DaprCrew(...) or pass the Crew itself"
            )
        durable = crew
        workflow = agent_workflow_name(name, framework=CREWAI_FRAMEWORK, workflow_name=workflow_name)
    else:
        workflow = agent_workflow_name(name, framework=CREWAI_FRAMEWORK, workflow_name=workflow_name)
        # Named after the agent, so that one crew definition can be hosted under several names.
        durable = DaprCrew(crew, name=f"{workflow}.crew", **options)
    placeholders = crew_placeholders(durable.crew)
    if inputs_mapper is None:
        _check_default_inputs(name, placeholders)
    mapper = inputs_mapper or default_inputs
    inputs_activity = f"{workflow}.inputs"
    output_activity = f"{workflow}.output"

    def map_inputs(ctx: wf.WorkflowActivityContext, payload: Any) -> dict[str, Any]:
        request = AgentRequest.from_input(payload)
        inputs = mapper(request)
        if not isinstance(inputs, Mapping):
            raise CrewInputsError(
                f"inputs_mapper of agent {name!r} returned {type(inputs).__name__}; return a dict of "
                "kickoff inputs"
            )
        workflow_input = durable.workflow_input(inputs)
        missing = sorted(placeholders - set(workflow_input["inputs"] or {}))
        if missing:
            raise CrewInputsError(
                f"the kickoff inputs of agent {name!r} ({sorted(workflow_input['inputs'] or {})}) do not "
                f"fill the placeholders {missing} of crew {durable.name!r}; return them from inputs_mapper"
            )
        return workflow_input

    def map_output(ctx: wf.WorkflowActivityContext, result: Mapping[str, Any]) -> str:
        with durable._running():  # counted by wait_idle, like the crew's task activities
            crew_output = durable.crew_output(result)
        if output_mapper is None:
            return str(crew_output.raw)
        text = output_mapper(crew_output)
        if not isinstance(text, str):
            raise TypeError(
                f"output_mapper of agent {name!r} returned {type(text).__name__}; return the answer as str"
            )
        return text

    def orchestrator(ctx: wf.DaprWorkflowContext, request: AgentRequest) -> Generator[Any, Any, str]:
        try:
            workflow_input = yield ctx.call_activity(inputs_activity, input=request.to_input())
        except Exception as error:
            error_type, message = _failure(error)
            if error_type.endswith("CrewInputsError"):
                raise CrewInputsError(message) from None  # the caller sees the cause, not "task failed"
            raise
        child = f"{ctx.instance_id}:crew"
        try:
            result = yield ctx.call_child_workflow(durable.name, input=workflow_input, instance_id=child)
        except Exception as error:
            error_type, message = _failure(error)
            reason = f"{error_type}: {message}" if error_type else message
            raise CrewRunFailedError(
                f"crew {durable.name!r} of agent {name!r} failed (instance {child!r}): {reason}",
                instance_id=child,
                status="FAILED",
            ) from None
        content: str = yield ctx.call_activity(output_activity, input=result)
        return content

    durable.register(runtime)
    runtime.register_activity(map_inputs, name=inputs_activity)
    runtime.register_activity(map_output, name=output_activity)
    host = host_agent_workflow(
        runtime,
        name=name,
        framework=CREWAI_FRAMEWORK,
        orchestrator=orchestrator,
        role=role,
        goal=goal,
        workflow_name=workflow,
    )
    logger.debug("hosting crew %r as agent %r (%s)", durable.name, name, workflow)
    return host


def _failure(error: BaseException) -> tuple[str, str]:
    """The failure details of a failed activity or child workflow, as Dapr reported them."""
    details = getattr(error, "details", None)
    error_type = str(getattr(details, "error_type", "") or "")
    message = str(getattr(details, "message", "") or "") or str(error)
    return error_type, message


def _check_default_inputs(name: str, placeholders: set[str]) -> None:
    hint = (
        "pass inputs_mapper=lambda request: {...} returning every placeholder "
        "(request.task is the caller's instruction)"
    )
    other = sorted(placeholders - {"task"})
    if other:
        raise CrewInputsError(
            f"crew hosted as agent {name!r} uses the placeholders {other}, which the default inputs "
            f"{{'task': request.task}} do not fill; {hint}"
        )
    if "task" not in placeholders:
        raise CrewInputsError(
            f"crew hosted as agent {name!r} has no {{task}} placeholder in its tasks or agents, so the "
            f"caller's task would be ignored; add {{task}} to a task description, or {hint}"
        )
