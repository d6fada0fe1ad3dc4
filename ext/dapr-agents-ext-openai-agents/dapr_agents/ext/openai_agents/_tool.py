"""An OpenAI Agents SDK tool that calls any Dapr-hosted agent (a DurableAgent, a hosted foreign agent).

The tool asks the agent through interop's :class:`~dapr_agents.ext.interop.AsyncAgentClient`,
which runs the call as a workflow instance whose id is derived from an idempotency key. The key
folds in the model's tool-call id and a scope naming the run, because tool-call ids are only
unique within one conversation (a scripted or replayed model reuses ``call_1``): the same tool
call in the same scope re-attaches to its instance (and returns its answer again), while two
different runs never share one. Failures are reported as ``agents.function_tool`` reports them:
a message for the model by default, or raised.
"""

from __future__ import annotations

import inspect
import json
import logging
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from agents import FunctionTool, ModelBehaviorError, RunContextWrapper
from agents.tool import ToolErrorFunction, default_tool_error_function
from agents.tool_context import ToolContext

from dapr_agents.ext.interop import AsyncAgentClient, agent_workflow_name, sanitize_agent_name

from ._scope import current_tool_scope

__all__ = ["DEFAULT_TOOL_TIMEOUT", "dapr_agent_tool"]

logger = logging.getLogger(__name__)

DEFAULT_TOOL_TIMEOUT = 300.0
"""Seconds a tool call waits for the agent before terminating its run."""

_PARAMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"task": {"type": "string", "description": "The task for the agent, in full."}},
    "required": ["task"],
    "additionalProperties": False,
}

ToolScope = str | Callable[[ToolContext[Any]], str | None]

_UNSET: Any = object()

# One random scope per run when nothing durable names it. A run's ToolContexts share the run
# context's ``usage`` object (the SDK copies the wrapper's fields into each), so it identifies
# the run; the entry goes when the run's objects are collected.
_run_scopes: dict[int, str] = {}


def _run_scope(ctx: RunContextWrapper[Any]) -> str:
    anchor = ctx.usage
    key = id(anchor)
    scope = _run_scopes.get(key)
    if scope is None:
        scope = f"run-{uuid.uuid4().hex}"
        _run_scopes[key] = scope
        try:
            weakref.finalize(anchor, _run_scopes.pop, key, None)
        except TypeError:  # not weak-referenceable: a fresh scope per call, never a shared one
            _run_scopes.pop(key, None)
    return scope


def _resolve_scope(scope: ToolScope | None, ctx: ToolContext[Any]) -> str:
    if callable(scope):
        value = scope(ctx)
        if value:
            return str(value)
    elif scope:
        return scope
    return current_tool_scope() or _run_scope(ctx)


def _source_of(ctx: ToolContext[Any], source: str | None) -> str | None:
    if source:
        return source
    agent = getattr(ctx, "agent", None)  # the calling agent, on SDK versions that say
    name = getattr(agent, "name", None)
    return name if isinstance(name, str) and name else None


def dapr_agent_tool(
    agent_name: str,
    *,
    description: str,
    framework: str | None = None,
    app_id: str | None = None,
    workflow_name: str | None = None,
    timeout: float = DEFAULT_TOOL_TIMEOUT,
    client: AsyncAgentClient | None = None,
    tool_name: str | None = None,
    source: str | None = None,
    scope: ToolScope | None = None,
    failure_error_function: ToolErrorFunction | None = _UNSET,
) -> FunctionTool:
    """A ``FunctionTool`` that asks the Dapr-hosted agent ``agent_name`` to do a task and waits.

    The model calls it with ``{"task": str}``; the tool returns the agent's answer text.

    Args:
        agent_name: the agent's name as hosted or registered (or a full ``dapr.*.workflow`` name).
        description: what the model reads to decide when to call the agent.
        framework: ``openai``, ``langgraph``, ``crewai``...; omitted for a dapr-agents DurableAgent.
        app_id: the app hosting the agent when it is not this one (that needs interop's
            ``enable_remote_calls`` on this app's runtime).
        workflow_name: an explicit workflow name instead of the derived one.
        timeout: seconds to wait; the agent's run is then terminated and the call fails.
        client: the ``AsyncAgentClient`` to use; by default one per call, closed after it.
        tool_name: the name the model sees (default: the sanitised agent name).
        source: the caller's name sent to the agent (default: the calling SDK agent's name,
            where the SDK version passes it to tools).
        scope: names the run for the idempotency key (a string, or ``scope(ctx) -> str``).
            Default: the scope set by :func:`dapr_tool_scope` or by :func:`host_openai_agent`
            (the hosted call's workflow instance id), else a random id per SDK run.
        failure_error_function: turns a failure (the agent failed, timed out, bad arguments)
            into the message the model sees; default the SDK's ``default_tool_error_function``.
            ``None`` raises instead, failing the run, as with ``function_tool``.
    """
    if not isinstance(agent_name, str) or not agent_name.strip():
        raise ValueError(f"agent_name must name a Dapr-hosted agent, got {agent_name!r}")
    if not isinstance(description, str) or not description.strip():
        raise ValueError(f"the tool calling agent {agent_name!r} needs a description for the model")
    if timeout <= 0:
        raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
    workflow = agent_workflow_name(agent_name, framework=framework, workflow_name=workflow_name)
    name = tool_name or sanitize_agent_name(
        agent_name.removeprefix("dapr.").removesuffix(".workflow").split(".")[-1]
        if agent_name.startswith("dapr.") and agent_name.endswith(".workflow")
        else agent_name
    )
    on_failure: ToolErrorFunction | None = (
        default_tool_error_function if failure_error_function is _UNSET else failure_error_function
    )

    async def call_agent(ctx: ToolContext[Any], args_json: str) -> str:
        try:
            args = json.loads(args_json or "{}")
        except json.JSONDecodeError as error:
            raise ModelBehaviorError(f"Invalid JSON input for tool {name}: {args_json}") from error
        task = args.get("task") if isinstance(args, dict) else None
        if not isinstance(task, str):
            raise ModelBehaviorError(f'tool {name} needs {{"task": "<text>"}}, got {args_json}')
        key = f"openai-agents:{_resolve_scope(scope, ctx)}:{ctx.tool_call_id}"
        caller = client or AsyncAgentClient()
        try:
            answer = await caller.call(
                agent_name,
                task,
                framework=framework,
                app_id=app_id,
                workflow_name=workflow_name,
                idempotency_key=key,
                source=_source_of(ctx, source),
                timeout=timeout,
            )
        finally:
            if client is None:
                await caller.close()
        return answer.content

    async def on_invoke_tool(ctx: ToolContext[Any], args_json: str) -> Any:
        try:
            return await call_agent(ctx, args_json)
        except Exception as error:
            if on_failure is None:
                raise
            logger.warning("tool %s (agent workflow %s) failed: %s", name, workflow, error)
            message = on_failure(ctx, error)
            if inspect.isawaitable(message):
                message = await message
            return message

    return FunctionTool(
        name=name,
        description=description,
        params_json_schema=dict(_PARAMS_SCHEMA),
        on_invoke_tool=on_invoke_tool,
        strict_json_schema=True,
    )
