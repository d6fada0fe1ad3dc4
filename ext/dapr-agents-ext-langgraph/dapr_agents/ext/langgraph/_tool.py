"""A LangChain tool that calls any Dapr-hosted agent (a DurableAgent or a hosted foreign agent).

The tool calls the agent through interop's client and waits. A call made for a model's tool call
derives its workflow instance id from the tool-call id and the graph run's scope (the thread and
checkpoint namespace): when LangGraph resumes a thread after a crash and runs the same tool call
again, the call re-attaches to the agent run it started (or returns its answer) instead of
starting another. Failures and timeouts raise ``ToolException`` with the child's details, so
``handle_tool_error`` and ``ToolNode``'s error handling apply.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, ToolException
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from dapr_agents.ext.interop import (
    AgentCallError,
    AgentCallTimeout,
    AgentClient,
    AsyncAgentClient,
    InteropError,
    agent_workflow_name,
    sanitize_agent_name,
)

__all__ = ["DaprAgentTool", "dapr_agent_tool"]


class AgentTask(BaseModel):
    """The one argument of an agent tool."""

    task: str = Field(description="What the agent should do: a complete, self-contained instruction.")


class DaprAgentTool(BaseTool):
    """Calls the Dapr-hosted agent ``agent_name`` with ``task`` and returns its answer's text.

    Build it with :func:`dapr_agent_tool`.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    args_schema: type[BaseModel] = AgentTask
    agent_name: str
    framework: str | None = None
    app_id: str | None = None
    workflow_name: str | None = None
    timeout: float | None = None
    source: str | None = None
    client: AgentClient | None = None
    async_client: AsyncAgentClient | None = None
    _async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncAgentClient] = PrivateAttr(
        default_factory=weakref.WeakKeyDictionary
    )

    def _to_args_and_kwargs(
        self, tool_input: str | dict[str, Any], tool_call_id: str | None
    ) -> tuple[Any, Any]:
        # BaseTool knows the tool-call id here and nowhere _run can see it (InjectedToolCallId
        # would refuse direct invocation): hand it on as a keyword.
        args, kwargs = super()._to_args_and_kwargs(tool_input, tool_call_id)
        return args, {**kwargs, "tool_call_id": tool_call_id}

    def idempotency_key(self, tool_call_id: str | None, config: RunnableConfig | None) -> str | None:
        """The key of one tool call in one graph run, or ``None`` (a fresh run) without a call id."""
        if not tool_call_id:
            return None
        configurable = (config or {}).get("configurable") or {}
        scope = [configurable.get("thread_id"), configurable.get("checkpoint_ns"), tool_call_id]
        return "langgraph-tool:" + json.dumps([str(part) if part is not None else None for part in scope])

    def _call_kwargs(self, tool_call_id: str | None, config: RunnableConfig | None) -> dict[str, Any]:
        return {
            "framework": self.framework,
            "app_id": self.app_id,
            "workflow_name": self.workflow_name,
            "idempotency_key": self.idempotency_key(tool_call_id, config),
            "source": self.source,
            "timeout": self.timeout,
        }

    def _failure(self, error: Exception) -> ToolException:
        workflow = agent_workflow_name(
            self.agent_name, framework=self.framework, workflow_name=self.workflow_name
        )
        if isinstance(error, AgentCallTimeout):
            return ToolException(f"agent {self.agent_name!r} timed out: {error}")
        if isinstance(error, AgentCallError):
            details = (
                f"{error.error_type}: {error.error_message}" if error.error_type else error.status.lower()
            )
            return ToolException(
                f"agent {self.agent_name!r} failed ({details}); workflow {workflow!r}, "
                f"instance {error.instance_id!r}, status {error.status}"
            )
        return ToolException(f"calling agent {self.agent_name!r} ({workflow}) failed: {error}")

    def _run(
        self,
        task: str,
        *,
        config: RunnableConfig,
        tool_call_id: str | None = None,
        run_manager: CallbackManagerForToolRun | None = None,
    ) -> str:
        if self.client is None:
            self.client = AgentClient()
        try:
            answer = self.client.call(self.agent_name, task, **self._call_kwargs(tool_call_id, config))
        except InteropError as error:
            raise self._failure(error) from error
        return answer.content

    async def _arun(
        self,
        task: str,
        *,
        config: RunnableConfig,
        tool_call_id: str | None = None,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
    ) -> str:
        client = self.async_client
        if client is None:
            # The aio gRPC channels belong to the event loop that created them: one client per loop.
            loop = asyncio.get_running_loop()
            client = self._async_clients.get(loop)
            if client is None:
                client = self._async_clients[loop] = AsyncAgentClient()
        try:
            answer = await client.call(self.agent_name, task, **self._call_kwargs(tool_call_id, config))
        except InteropError as error:
            raise self._failure(error) from error
        return answer.content


def dapr_agent_tool(
    agent_name: str,
    *,
    description: str,
    framework: str | None = None,
    app_id: str | None = None,
    workflow_name: str | None = None,
    timeout: float | None = None,
    client: AgentClient | None = None,
    async_client: AsyncAgentClient | None = None,
    name: str | None = None,
    source: str | None = None,
    handle_tool_error: bool | str | None = False,
) -> DaprAgentTool:
    """A LangChain tool (one argument, ``task: str``) that calls a Dapr-hosted agent and waits.

    Args:
        agent_name: the agent's name as hosted or registered (or a full ``dapr.*.workflow`` name).
        description: what the agent does; the model reads it to decide when to call the tool.
        framework: ``None`` for a dapr-agents DurableAgent; ``langgraph``, ``openai``, ``crewai``
            for a hosted foreign agent.
        app_id: the app hosting the agent when it is not this one (this app's runtime then needs
            interop's ``enable_remote_calls``).
        workflow_name: an explicit workflow name instead of the derived one.
        timeout: seconds to wait for the answer (default: the client's, 300 s); the agent's run
            is terminated after it.
        client, async_client: interop ``AgentClient`` / ``AsyncAgentClient`` to use (created on
            first use otherwise; the async one per event loop).
        name: the tool name the model sees (default: the sanitised agent name).
        source: the caller's name, sent as ``_message_metadata.source`` as dapr-agents does.
        handle_tool_error: LangChain's ``handle_tool_error``: ``False`` raises
            ``ToolException``; ``True`` (or a message) returns the failure to the model instead.
    """
    if not isinstance(agent_name, str) or not agent_name.strip():
        raise ValueError(f"dapr_agent_tool needs the agent's name, got {agent_name!r}")
    if not description or not description.strip():
        raise ValueError(f"dapr_agent_tool for {agent_name!r} needs a description the model can read")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
    return DaprAgentTool(
        name=name or sanitize_agent_name(agent_name.removeprefix("dapr.").removesuffix(".workflow")),
        description=description,
        agent_name=agent_name,
        framework=framework,
        app_id=app_id,
        workflow_name=workflow_name,
        timeout=timeout,
        client=client,
        async_client=async_client,
        source=source,
        handle_tool_error=handle_tool_error,
    )
