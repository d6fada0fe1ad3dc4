"""A remote A2A agent as a tool of a dapr-agents ``DurableAgent``, called as a workflow activity.

dapr-agents 1.0 runs a ``WorkflowContextInjectedTool`` inline in the agent's workflow: calling it
with the workflow context returns a Dapr task the workflow yields. Ours returns the activity that
calls the A2A agent (see :mod:`._activity`): retried by the policy, recorded once done so a replay
never calls again, and sending a message id derived from the agent's workflow instance and the
activity's task execution id, so a retry after a crash is the same remote task. dapr-agents is
imported only when this adapter is used (``pip install "dapr-agents-ext-a2a[dapr-agents]"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dapr.ext.workflow as wf

from dapr_agents.ext.interop import sanitize_agent_name

from ._activity import activity_message_id
from ._adapters import question_text
from ._client import A2AAgentTool
from ._errors import A2AInputRequired, MissingExtraError
from ._task import DEFAULT_RETRY_POLICY

__all__ = ["durable_agent_tool"]


def durable_agent_tool(
    tool: A2AAgentTool,
    runtime: wf.WorkflowRuntime,
    *,
    name: str | None = None,
    description: str | None = None,
    retry_policy: wf.RetryPolicy | None = DEFAULT_RETRY_POLICY,
) -> Any:
    """A dapr-agents tool calling ``tool``'s agent from a ``DurableAgent``'s workflow.

    Registers its activity on ``runtime``: the DurableAgent's own (``DurableAgent(runtime=...)``),
    before it starts. The model calls it with ``task`` (and ``task_id`` / ``context_id`` to answer
    a question); the result is the answer's text, or the question and the ids to answer with.
    """
    try:
        from pydantic import Field, create_model

        from dapr_agents.tool.workflow.tool_context import WorkflowContextInjectedTool
    except ImportError as error:
        raise MissingExtraError(
            f'this adapter needs dapr-agents: pip install "dapr-agents-ext-a2a[dapr-agents]" ({error})'
        ) from error
    tool_name = name or tool.name
    activity_name = f"dapr.a2a.tool.{sanitize_agent_name(tool_name)}"

    def call_agent(ctx: wf.WorkflowActivityContext, data: Mapping[str, Any]) -> str:
        try:
            result = tool.call(
                str(data["task"]),
                message_id=activity_message_id(ctx),
                task_id=data.get("task_id") or None,
                context_id=data.get("context_id") or None,
            )
        except A2AInputRequired as question:
            return question_text(question)
        return result.text

    runtime.register_activity(call_agent, name=activity_name)

    def schedule(
        ctx: Any, task: str, task_id: str | None = None, context_id: str | None = None, **_: Any
    ) -> Any:
        payload = {"task": task, "task_id": task_id, "context_id": context_id}
        if retry_policy is not None:
            return ctx.call_activity(activity_name, input=payload, retry_policy=retry_policy)
        return ctx.call_activity(activity_name, input=payload)

    arguments: Any = create_model(
        f"{sanitize_agent_name(tool_name)}Args",
        task=(str, Field(description="The complete, self-contained task for the agent.")),
        task_id=(
            str | None,
            Field(default=None, description="Only to answer the agent's question: its task_id."),
        ),
        context_id=(
            str | None,
            Field(default=None, description="Only to continue a conversation: its context_id."),
        ),
    )
    return WorkflowContextInjectedTool(
        name=tool_name, description=description or tool.description, args_model=arguments, func=schedule
    )
