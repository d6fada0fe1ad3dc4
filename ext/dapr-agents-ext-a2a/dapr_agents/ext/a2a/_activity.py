"""A remote A2A agent called from a Dapr workflow, as a durable activity.

The call runs in an activity: Dapr records its result, so a replay of the workflow never calls the
agent again, and a crash or a failure runs the activity again. Each run sends the message id
derived from the workflow instance id and the activity's task execution id, which Dapr keeps
across the retries of one activity call: the server (``serve_a2a`` derives the task id from the
message id) answers a retry with the task the first attempt created, so the agent runs once.

A dapr-agents ``DurableAgent`` runs its tools inside activities of its own; this module is for
workflows that call the agent themselves (and is what :func:`call_a2a_agent` schedules).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

import dapr.ext.workflow as wf

from dapr_agents.ext.interop import sanitize_agent_name

from ._client import A2AAgentTool, message_id_for
from ._errors import A2AInputRequired

__all__ = ["activity_message_id", "call_a2a_agent", "register_a2a_activity"]


def activity_message_id(ctx: wf.WorkflowActivityContext) -> str:
    """The A2A message id of one activity call: the same on every retry and redelivery of it."""
    inner = ctx.get_inner_context()
    execution = str(getattr(inner, "task_execution_id", "") or "")
    # Without a task execution id (older sidecars), the task id: stable across redelivery only.
    return message_id_for("dapr-activity", ctx.workflow_id, execution or f"task-{ctx.task_id}")


def register_a2a_activity(runtime: wf.WorkflowRuntime, tool: A2AAgentTool, *, name: str | None = None) -> str:
    """Register the activity calling ``tool``'s agent; returns its name (``dapr.a2a.call.<name>``).

    Its input is ``{"task": str}`` (with ``"context_id"`` / ``"task_id"`` to continue a
    conversation or answer a question); its output ``{"state": "completed", "text", "task_id",
    "context_id"}``, or ``{"state": "input-required", "question", ...}``: a question is an answer
    the workflow acts on, not a failure to retry. A failed or timed-out task fails the activity.
    Register before ``runtime.start()``.
    """
    activity_name = f"dapr.a2a.call.{sanitize_agent_name(name or tool.app_id or tool.target)}"
    runtime.register_activity(_activity(tool), name=activity_name)
    return activity_name


def _activity(tool: A2AAgentTool) -> Any:
    def call_agent(ctx: wf.WorkflowActivityContext, data: Mapping[str, Any] | str) -> dict[str, Any]:
        request = {"task": data} if isinstance(data, str) else dict(data)
        try:
            result = tool.call(
                str(request["task"]),
                message_id=activity_message_id(ctx),
                context_id=request.get("context_id"),
                task_id=request.get("task_id"),
            )
        except A2AInputRequired as question:
            return {
                "state": "input-required",
                "question": question.question,
                "task_id": question.task_id,
                "context_id": question.context_id,
            }
        return {
            "state": result.state,
            "text": result.text,
            "task_id": result.task_id,
            "context_id": result.context_id,
        }

    return call_agent


def call_a2a_agent(
    ctx: wf.DaprWorkflowContext,
    activity_name: str,
    task: str,
    *,
    context_id: str | None = None,
    task_id: str | None = None,
    retry_policy: wf.RetryPolicy | None = None,
) -> Generator[Any, Any, dict[str, Any]]:
    """In a workflow: ``result = yield from call_a2a_agent(ctx, name, "task")``."""
    payload: dict[str, Any] = {"task": task}
    if context_id:
        payload["context_id"] = context_id
    if task_id:
        payload["task_id"] = task_id
    if retry_policy is not None:
        result = yield ctx.call_activity(activity_name, input=payload, retry_policy=retry_policy)
    else:
        result = yield ctx.call_activity(activity_name, input=payload)
    return dict(result)
