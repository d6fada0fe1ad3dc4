"""The crew's static shape, read once when a crew is wrapped: which task runs when, with which
context, under which retry policy and timeout.

The workflow function replays from this plan only, never from the live ``Crew`` object, so its
decisions are deterministic. A fingerprint of the plan travels in the workflow input: an instance
started for another shape of crew fails with :class:`CrewPlanMismatchError` instead of replaying
the wrong tasks.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from dapr.ext.workflow import RetryPolicy

from crewai import Crew, Process
from crewai.tasks.conditional_task import ConditionalTask
from crewai.utilities.constants import NOT_SPECIFIED

from ._errors import UnsupportedCrewError


@dataclass(frozen=True)
class TaskOptions:
    """Durability options of one task (or, given to ``DaprCrew``, of every task).

    - ``retry_policy``: Dapr's activity retry policy; each attempt re-runs the task's agent loop,
      with journaled tool calls answered from the journal.
    - ``timeout``: the longest the workflow waits for the task (all attempts included); then the
      run fails with a ``TimeoutError``. The activity itself is not cancelled (Dapr cannot cancel
      a running activity); bound the agent with ``Agent(max_execution_time=...)`` as well.
    - ``human_input_timeout``: for ``human_input=True`` tasks, the longest wait for feedback;
      ``None`` waits forever.
    - ``on_human_input_timeout``: ``"accept"`` (keep the agent's answer) or ``"fail"``.
    """

    retry_policy: RetryPolicy | None = None
    timeout: timedelta | None = None
    human_input_timeout: timedelta | None = None
    on_human_input_timeout: str = "accept"

    def __post_init__(self) -> None:
        if self.on_human_input_timeout not in ("accept", "fail"):
            raise ValueError(
                f"on_human_input_timeout={self.on_human_input_timeout!r}: use 'accept' or 'fail'"
            )


@dataclass(frozen=True)
class TaskStep:
    index: int
    name: str
    async_execution: bool
    conditional: bool
    human_input: bool
    #: None: no context; "previous": CrewAI's default (outputs so far); else the indices listed.
    context: str | tuple[int, ...] | None
    options: TaskOptions = field(default_factory=TaskOptions)


@dataclass(frozen=True)
class CrewPlan:
    hierarchical: bool
    steps: tuple[TaskStep, ...]
    fingerprint: str


def _task_name(task: Any, index: int) -> str:
    return str(task.name or f"task-{index}")


def build_plan(
    crew: Crew,
    defaults: TaskOptions,
    per_task: Mapping[str | int, TaskOptions],
) -> CrewPlan:
    """Validate ``crew`` and read its plan; raises :class:`UnsupportedCrewError` first."""
    validate_crew(crew)
    tasks = list(crew.tasks)
    position = {id(task): i for i, task in enumerate(tasks)}
    known = {*(range(len(tasks))), *(t.name for t in tasks if t.name)}
    unknown = [key for key in per_task if key not in known]
    if unknown:
        raise ValueError(
            f"task_options names tasks that the crew does not have: {unknown}; "
            f"use task names {sorted(t.name for t in tasks if t.name)} or indices 0..{len(tasks) - 1}"
        )
    steps = []
    for index, task in enumerate(tasks):
        if task.context is NOT_SPECIFIED:
            context: str | tuple[int, ...] | None = "previous"
        elif not task.context:
            context = None
        else:
            listed: list[Any] = list(task.context)  # type: ignore[arg-type]  # NOT_SPECIFIED handled above
            context = tuple(position[id(t)] for t in listed if id(t) in position)
        options = per_task.get(index) or (per_task.get(task.name) if task.name else None) or defaults
        steps.append(
            TaskStep(
                index=index,
                name=_task_name(task, index),
                async_execution=bool(task.async_execution),
                conditional=isinstance(task, ConditionalTask),
                human_input=bool(task.human_input),
                context=context,
                options=options,
            )
        )
    hierarchical = crew.process == Process.hierarchical
    shape: list[Any] = [
        hierarchical,
        [
            [
                s.index,
                getattr(tasks[s.index], "_original_description", None) or tasks[s.index].description,
                s.async_execution,
                s.conditional,
                s.human_input,
                list(s.context) if isinstance(s.context, tuple) else s.context,
            ]
            for s in steps
        ],
    ]
    if hierarchical:
        shape.append("per-task")  # 0.1 ran a hierarchical crew as one activity: not replayable now
    fingerprint = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]
    return CrewPlan(hierarchical=hierarchical, steps=tuple(steps), fingerprint=fingerprint)


def validate_crew(crew: Crew) -> None:
    """Refuse, before anything runs, what cannot be made durable."""
    if getattr(crew, "planning", False):
        raise UnsupportedCrewError(
            "Crew(planning=True) is not supported: the planner rewrites the task descriptions with "
            "a fresh LLM answer on every kickoff, which a workflow cannot replay. Set planning=False; "
            "to keep a plan, run the planner once and put its plan into the task descriptions."
        )
    if getattr(crew, "stream", False):
        raise UnsupportedCrewError(
            "Crew(stream=True) is not supported: streamed chunks cannot be replayed from workflow "
            "history. Set stream=False; task outputs are durable and arrive per task."
        )


# A CrewAI template variable: {name}, name starting with a letter or underscore (JSON is left alone).
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_\-]*)\}")


def crew_placeholders(crew: Crew) -> set[str]:
    """The kickoff input names the crew's templates use (task descriptions, expected outputs,
    output files; agent roles, goals, backstories), read from the uninterpolated originals."""
    texts: list[str | None] = []
    for task in crew.tasks:
        texts.append(getattr(task, "_original_description", None) or task.description)
        texts.append(getattr(task, "_original_expected_output", None) or task.expected_output)
        texts.append(getattr(task, "_original_output_file", None) or task.output_file)
    agents = list(crew.agents) + [t.agent for t in crew.tasks if t.agent is not None]
    for agent in agents:
        for field_name in ("role", "goal", "backstory"):
            texts.append(getattr(agent, f"_original_{field_name}", None) or getattr(agent, field_name, None))
    return {name for text in texts if text for name in _PLACEHOLDER.findall(str(text))}
