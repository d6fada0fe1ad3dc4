"""An A2A task as a Dapr workflow instance: the workflow, and the task view read back from it.

The task id *is* the workflow instance id, so everything the server acknowledged lives in the
workflow's durable state (the sidecar's actor state store), nowhere else:

- the first message is the workflow input (written before ``message/send`` answers);
- while it runs, the custom status holds the task view (state, history, the status message and
  the ids of the messages already taken, which is how a retried message is recognised);
- the output holds the final view (with the answer as an artifact); a failed instance keeps
  its last custom status and Dapr's failure details; a terminated one is a canceled task.

``input-required`` is the workflow waiting for the external event :data:`REPLY_EVENT`; a reply
whose message id was already taken is ignored, so a client retrying a reply cannot answer twice.
The agent runs in a durable activity (retried by policy, redelivered after a crash) or, for an
agent hosted through ``dapr_agents.ext.interop`` or a DurableAgent, as a child workflow.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Union

import dapr.ext.workflow as wf
from google.protobuf import json_format

from a2a.types import a2a_pb2
from dapr_agents.ext.interop import AgentResponse, sanitize_agent_name

__all__ = [
    "DEFAULT_RETRY_POLICY",
    "REPLY_EVENT",
    "A2ACall",
    "InputRequired",
    "TaskView",
    "message_text",
    "task_workflow_name",
]

logger = logging.getLogger(__name__)

REPLY_EVENT = "a2a.reply"
"""The external event a task waiting in ``input-required`` takes the caller's next message from."""

DEFAULT_RETRY_POLICY = wf.RetryPolicy(
    first_retry_interval=timedelta(seconds=1),
    max_number_of_attempts=3,
    backoff_coefficient=2.0,
    max_retry_interval=timedelta(seconds=30),
)
"""Retries of the agent activity: 3 attempts, 1 s then 2 s apart (a crash is redelivered anyway)."""

TERMINAL = frozenset({"completed", "failed", "canceled", "rejected"})
SETTLED = TERMINAL | {"input-required", "auth-required"}

_PROTO_STATES = {
    "submitted": a2a_pb2.TASK_STATE_SUBMITTED,
    "working": a2a_pb2.TASK_STATE_WORKING,
    "completed": a2a_pb2.TASK_STATE_COMPLETED,
    "failed": a2a_pb2.TASK_STATE_FAILED,
    "canceled": a2a_pb2.TASK_STATE_CANCELED,
    "input-required": a2a_pb2.TASK_STATE_INPUT_REQUIRED,
    "rejected": a2a_pb2.TASK_STATE_REJECTED,
    "auth-required": a2a_pb2.TASK_STATE_AUTH_REQUIRED,
}
STATE_NAMES = {value: name for name, value in _PROTO_STATES.items()}


def task_workflow_name(agent_name: str) -> str:
    """The workflow an A2A server's tasks run as: ``dapr.a2a.{name}.task.workflow``."""
    return f"dapr.a2a.{sanitize_agent_name(agent_name)}.task.workflow"


def message_text(message: Any) -> str:
    """The text parts of a message or an artifact (a proto or its JSON), joined by newlines (data
    parts as JSON)."""
    if isinstance(message, Mapping):
        parts = message.get("parts") or []
        texts = []
        for part in parts:
            if "text" in part:
                texts.append(str(part["text"]))
            elif "data" in part:
                texts.append(json.dumps(part["data"]))
        return "\n".join(texts)
    texts = []
    for proto_part in message.parts:
        if proto_part.HasField("text"):
            texts.append(proto_part.text)
        elif proto_part.HasField("data"):
            texts.append(json_format.MessageToJson(proto_part.data, indent=None))
    return "\n".join(texts)


def to_json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message)


def to_message(document: Mapping[str, Any]) -> a2a_pb2.Message:
    return json_format.ParseDict(dict(document), a2a_pb2.Message(), ignore_unknown_fields=True)


@dataclass(frozen=True)
class InputRequired:
    """Returned by an agent that needs more from the caller: the task waits in ``input-required``
    with ``question`` as its status message until the caller replies on the same task."""

    question: str


@dataclass(frozen=True)
class A2ACall:
    """One turn of an A2A task, as the agent sees it."""

    task_id: str
    """The A2A task id, which is the workflow instance id: the same on every retry of the turn."""
    context_id: str
    """The A2A context id: the conversation. Use it as the framework's memory key (a LangGraph
    ``thread_id``, an OpenAI Agents session id)."""
    history: tuple[a2a_pb2.Message, ...]
    """Every message of the task so far, the caller's latest last."""
    turn: int = 0
    """0 for the first message, then one more per reply to ``input-required``."""

    @property
    def message(self) -> a2a_pb2.Message:
        """The caller's latest message."""
        return self.history[-1]

    @property
    def text(self) -> str:
        """The text of the caller's latest message."""
        return message_text(self.message)


AgentResult = Union[str, InputRequired, AgentResponse, Mapping[str, Any]]  # noqa: UP007
A2AAgentRunner = Callable[[A2ACall], Union[AgentResult, Awaitable[AgentResult]]]  # noqa: UP007


def _run_coroutine(awaitable: Awaitable[Any]) -> Any:
    async def wrapper() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wrapper())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:  # a thread that runs a loop
        return pool.submit(asyncio.run, wrapper()).result()


def _outcome(result: Any) -> dict[str, str]:
    if isinstance(result, InputRequired):
        return {"kind": "input-required", "text": result.question}
    return {"kind": "answer", "text": AgentResponse.from_result(result).content}


@dataclass
class TaskView:
    """The task as kept in the workflow (custom status while running, output when done)."""

    task_id: str
    context_id: str
    state: str = "submitted"
    history: list[dict[str, Any]] = field(default_factory=list)
    status_message: dict[str, Any] | None = None
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    """Ids of the caller's messages the task has taken (a retried one is recognised by its id)."""
    timestamp: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "taskId": self.task_id,
            "contextId": self.context_id,
            "state": self.state,
            "history": self.history,
            "statusMessage": self.status_message,
            "artifacts": self.artifacts,
            "seen": self.seen,
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> TaskView:
        return cls(
            task_id=str(document["taskId"]),
            context_id=str(document.get("contextId") or ""),
            state=str(document.get("state") or "working"),
            history=list(document.get("history") or []),
            status_message=document.get("statusMessage"),
            artifacts=list(document.get("artifacts") or []),
            seen=list(document.get("seen") or []),
        )

    @classmethod
    def from_input(cls, document: Mapping[str, Any]) -> TaskView:
        message = dict(document["message"])
        return cls(
            task_id=str(document["taskId"]),
            context_id=str(document["contextId"]),
            history=[message],
            seen=[str(message.get("messageId", ""))],
        )

    @classmethod
    def from_workflow_state(cls, state: Any) -> TaskView | None:
        """Read the task back from its workflow instance (``None``: there is no such task)."""
        if state is None or not state.serialized_input:
            return None
        view = cls.from_input(json.loads(state.serialized_input))
        status = str(getattr(state.runtime_status, "name", state.runtime_status))
        custom = getattr(state, "serialized_custom_status", None)
        if custom:
            try:
                view = cls.from_json(json.loads(custom))
            except (ValueError, KeyError):
                logger.warning("task %s: unreadable custom status ignored", view.task_id)
        if status == "COMPLETED" and state.serialized_output:
            view = cls.from_json(json.loads(state.serialized_output))
        elif status == "FAILED":
            details = state.failure_details
            reason = str(getattr(details, "message", "") or "the agent failed")
            view.state = "failed"
            view.status_message = _agent_message(view, f"failed: {reason}", "failure")
        elif status == "TERMINATED":
            view.state = "canceled"
            view.status_message = None
        elif status == "PENDING":
            view.state = "submitted"
        elif view.state == "submitted":
            view.state = "working"
        updated = getattr(state, "last_updated_at", None)
        view.timestamp = updated.isoformat() if updated is not None else None
        return view

    def to_task(self, history_length: int | None = None) -> a2a_pb2.Task:
        status = a2a_pb2.TaskStatus(state=_PROTO_STATES[self.state])
        if self.status_message:
            status.message.CopyFrom(to_message(self.status_message))
        if self.timestamp:
            status.timestamp.FromJsonString(_rfc3339(self.timestamp))
        history = self.history
        if history_length is not None:
            history = history[-history_length:] if history_length > 0 else []
        task = a2a_pb2.Task(id=self.task_id, context_id=self.context_id, status=status)
        task.history.extend(to_message(m) for m in history)
        for artifact in self.artifacts:
            task.artifacts.append(
                json_format.ParseDict(artifact, a2a_pb2.Artifact(), ignore_unknown_fields=True)
            )
        return task

    def status_event(self) -> a2a_pb2.TaskStatusUpdateEvent:
        task = self.to_task(0)
        return a2a_pb2.TaskStatusUpdateEvent(
            task_id=self.task_id, context_id=self.context_id, status=task.status
        )


def _rfc3339(stamp: str) -> str:
    # datetime.isoformat() without a zone is UTC here (the SDK's timestamps are naive UTC).
    return stamp if stamp.endswith("Z") or "+" in stamp[10:] else stamp + "Z"


def _agent_message(view: TaskView, text: str, suffix: str) -> dict[str, Any]:
    return {
        "messageId": f"{view.task_id}:{suffix}",
        "role": "ROLE_AGENT",
        "taskId": view.task_id,
        "contextId": view.context_id,
        "parts": [{"text": text}],
    }


@dataclass(frozen=True)
class ChildAgent:
    """An agent that is itself a Dapr workflow (an interop host, a DurableAgent)."""

    workflow_name: str
    app_id: str | None = None


def register_task_workflow(
    runtime: wf.WorkflowRuntime,
    *,
    agent_name: str,
    run: A2AAgentRunner | None,
    child: ChildAgent | None,
    retry_policy: wf.RetryPolicy | None,
) -> str:
    """Register the task workflow (and its activity) on ``runtime``; returns the workflow name."""
    workflow_name = task_workflow_name(agent_name)
    activity_name = workflow_name.removesuffix(".workflow") + ".run"

    if run is not None:
        runner = run

        def run_agent(ctx: wf.WorkflowActivityContext, data: Mapping[str, Any]) -> dict[str, str]:
            call = A2ACall(
                task_id=str(data["taskId"]),
                context_id=str(data["contextId"]),
                history=tuple(to_message(m) for m in data["history"]),
                turn=int(data.get("turn", 0)),
            )
            result = runner(call)
            if inspect.isawaitable(result):
                result = _run_coroutine(result)
            return _outcome(result)

        runtime.register_activity(run_agent, name=activity_name)

    def task_workflow(
        ctx: wf.DaprWorkflowContext, data: Mapping[str, Any]
    ) -> Generator[Any, Any, dict[str, Any]]:
        view = TaskView.from_input(data)
        view.state = "working"
        turn = 0
        while True:
            ctx.set_custom_status(json.dumps(view.to_json()))
            if child is not None:
                envelope = {
                    "task": message_text(view.history[-1]),
                    "_message_metadata": {
                        "source": "a2a",
                        "a2a_task_id": view.task_id,
                        "a2a_context_id": view.context_id,
                    },
                }
                result = yield ctx.call_child_workflow(
                    child.workflow_name,
                    input=envelope,
                    instance_id=f"{ctx.instance_id}:turn-{turn}",
                    app_id=child.app_id,
                )
                outcome = _outcome(result)
            else:
                payload = {
                    "taskId": view.task_id,
                    "contextId": view.context_id,
                    "history": view.history,
                    "turn": turn,
                }
                if retry_policy is not None:
                    outcome = yield ctx.call_activity(activity_name, input=payload, retry_policy=retry_policy)
                else:
                    outcome = yield ctx.call_activity(activity_name, input=payload)
            reply = _agent_message(view, outcome["text"], f"agent-{turn}")
            view.history.append(reply)
            view.status_message = reply
            if outcome["kind"] != "input-required":
                view.state = "completed"
                view.artifacts = [
                    {
                        "artifactId": f"{view.task_id}:answer",
                        "name": "answer",
                        "parts": [{"text": outcome["text"]}],
                    }
                ]
                return view.to_json()
            view.state = "input-required"
            ctx.set_custom_status(json.dumps(view.to_json()))
            while True:
                message = yield ctx.wait_for_external_event(REPLY_EVENT)
                if isinstance(message, Mapping) and str(message.get("messageId", "")) not in view.seen:
                    break
            view.seen.append(str(message.get("messageId", "")))
            view.history.append(dict(message))
            view.state = "working"
            view.status_message = None
            turn += 1

    runtime.register_workflow(task_workflow, name=workflow_name)
    return workflow_name


def skills_from(skills: Sequence[Any] | None, name: str, description: str) -> list[a2a_pb2.AgentSkill]:
    """Agent card skills from ``AgentSkill`` protos, mappings, or strings (a skill per string)."""
    if not skills:
        return [
            a2a_pb2.AgentSkill(
                id=sanitize_agent_name(name), name=name, description=description, tags=["agent"]
            )
        ]
    result = []
    for skill in skills:
        if isinstance(skill, a2a_pb2.AgentSkill):
            result.append(skill)
        elif isinstance(skill, Mapping):
            document = dict(skill)
            document.setdefault("id", sanitize_agent_name(str(document.get("name", name))))
            document.setdefault("name", document["id"])
            document.setdefault("description", description)
            if not document.get("tags"):  # required by the A2A spec
                document["tags"] = [document["id"]]
            result.append(json_format.ParseDict(document, a2a_pb2.AgentSkill()))
        elif isinstance(skill, str):
            result.append(
                a2a_pb2.AgentSkill(
                    id=sanitize_agent_name(skill), name=skill, description=skill, tags=["agent"]
                )
            )
        else:
            raise TypeError(
                f"a skill is an a2a AgentSkill, a mapping or a string, not {type(skill).__name__}"
            )
    return result
