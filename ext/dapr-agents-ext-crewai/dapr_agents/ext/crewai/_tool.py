"""``DaprAgentTool``: a CrewAI tool that asks any Dapr-hosted agent (a dapr-agents
``DurableAgent``, or a foreign agent hosted through interop) to do a task, and waits.

CrewAI gives a tool call no id, so the call's identity comes from where it runs. Inside a task
of a durable crew (:class:`DaprCrew`) the tool journal knows the call's position (workflow
instance, task, tool, arguments, occurrence): that becomes the interop idempotency key, so a task
retried after a crash re-attaches to the agent run it started (or gets its answer again) instead
of starting a second one. Outside a durable crew every call is a fresh run. Failures and timeouts
raise, which CrewAI turns into the observation ``Error executing tool: ...`` for the agent (and a
``ToolFailure`` on the task output).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from crewai.tools import BaseTool
from dapr_agents.ext.interop import AgentClient, AsyncAgentClient, agent_workflow_name, sanitize_agent_name

__all__ = ["DaprAgentTool", "DaprAgentToolInput"]


@dataclass(frozen=True)
class CallScope:
    """Where an agent tool call runs inside a durable crew: its idempotency key and caller."""

    key: str
    source: str | None = None


_scope: contextvars.ContextVar[CallScope | None] = contextvars.ContextVar(
    "dapr_crewai_call_scope", default=None
)


@contextmanager
def call_scope(scope: CallScope) -> Iterator[None]:
    """Make ``scope`` apply to the agent tool call made inside this block (same thread)."""
    token = _scope.set(scope)
    try:
        yield
    finally:
        _scope.reset(token)


class DaprAgentToolInput(BaseModel):
    """The arguments the LLM gives the tool."""

    task: str = Field(description="The complete, self-contained task for the agent to carry out.")


class DaprAgentTool(BaseTool):
    """Call the Dapr-hosted agent ``agent_name`` as a CrewAI tool; the answer's text is the result.

    - ``framework``: ``openai``, ``langgraph``, ``crewai``; ``None`` for a dapr-agents agent.
    - ``app_id``: the app hosting the agent when it is not this one (this app's runtime then
      needs ``dapr_agents.ext.interop.enable_remote_calls``).
    - ``workflow_name``: an explicit workflow name instead of ``dapr.{framework}.{name}.workflow``.
    - ``timeout``: seconds to wait; the agent's run is then terminated and the tool fails.
    - ``client``: an interop ``AgentClient`` (default: one built on first use);
      ``async_client`` likewise for async crews.
    - ``source``: the caller's name sent to the agent (``_message_metadata.source``); default:
      inside a durable crew, the role of the CrewAI agent using the tool, else none.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str = ""
    description: str = ""
    args_schema: type[BaseModel] = DaprAgentToolInput
    agent_name: str
    framework: str | None = None
    app_id: str | None = None
    workflow_name: str | None = None
    timeout: float = 300.0
    source: str | None = None

    _client: AgentClient | None = PrivateAttr(default=None)
    _async_client: AsyncAgentClient | None = PrivateAttr(default=None)

    def __init__(
        self,
        *,
        agent_name: str,
        description: str | None = None,
        name: str | None = None,
        framework: str | None = None,
        app_id: str | None = None,
        workflow_name: str | None = None,
        timeout: float = 300.0,
        client: AgentClient | None = None,
        async_client: AsyncAgentClient | None = None,
        source: str | None = None,
        **kwargs: Any,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
        # Fails early for names dapr-agents could not host (too long); the workflow name is derived
        # exactly as the caller's DurableAgent would derive it.
        target = agent_workflow_name(agent_name, framework=framework, workflow_name=workflow_name)
        fields: dict[str, Any] = {
            "name": name or sanitize_agent_name(agent_name),
            "description": description
            or f"Ask the agent {agent_name!r} ({target}) to carry out a task and return its answer.",
            "agent_name": agent_name,
            "framework": framework,
            "app_id": app_id,
            "workflow_name": workflow_name,
            "timeout": timeout,
            "source": source,
        }
        super().__init__(**fields, **kwargs)
        self._client = client
        self._async_client = async_client

    @property
    def target_workflow(self) -> str:
        """The workflow this tool schedules."""
        return agent_workflow_name(
            self.agent_name, framework=self.framework, workflow_name=self.workflow_name
        )

    def _call_options(self) -> dict[str, Any]:
        scope = _scope.get()
        return {
            "framework": self.framework,
            "app_id": self.app_id,
            "workflow_name": self.workflow_name,
            # None outside a durable crew: the client picks a fresh instance id per call.
            "idempotency_key": scope.key if scope is not None else None,
            "source": self.source or (scope.source if scope is not None else None),
            "timeout": self.timeout,
        }

    def _run(self, task: str, **_: Any) -> str:
        if self._client is None:
            self._client = AgentClient(default_timeout=self.timeout)
        return self._client.call(self.agent_name, task, **self._call_options()).content

    async def _arun(self, task: str, **_: Any) -> str:
        if self._async_client is None:
            self._async_client = AsyncAgentClient(default_timeout=self.timeout)
        response = await self._async_client.call(self.agent_name, task, **self._call_options())
        return response.content
