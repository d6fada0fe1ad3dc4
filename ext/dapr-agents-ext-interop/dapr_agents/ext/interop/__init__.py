"""Agents as tools across frameworks, on Dapr.

The framework-neutral contract that makes a LangGraph graph, an OpenAI Agents ``Agent`` or a
CrewAI crew callable by a dapr-agents ``DurableAgent``, and any Dapr-hosted agent callable from
those frameworks: workflow naming (:func:`agent_workflow_name`), the input/output envelope
(:class:`AgentRequest`, :class:`AgentResponse`), hosting (:func:`host_agent`,
:func:`host_agent_workflow`), the dapr-agents registry (:class:`AgentRegistry`), and a client
that calls an agent by name and waits (:class:`AgentClient`, :class:`AsyncAgentClient`).
It does not depend on dapr-agents.
"""

from ._client import REMOTE_CALL_WORKFLOW, AgentClient, AsyncAgentClient, enable_remote_calls
from ._envelope import AgentRequest, AgentResponse
from ._errors import (
    AgentCallConflict,
    AgentCallError,
    AgentCallTimeout,
    AgentRunFailed,
    InteropError,
    InvalidAgentInput,
    InvalidAgentOutput,
    RegistryConflictError,
)
from ._host import DEFAULT_RETRY_POLICY, AgentCall, AgentHost, host_agent, host_agent_workflow
from ._naming import agent_workflow_name, call_instance_id, is_dapr_agents_framework, sanitize_agent_name
from ._registry import DEFAULT_REGISTRY_STORE, DEFAULT_TEAM, AgentRecord, AgentRegistry, AsyncAgentRegistry
from .version import __version__

__all__ = [
    "DEFAULT_REGISTRY_STORE",
    "DEFAULT_RETRY_POLICY",
    "DEFAULT_TEAM",
    "REMOTE_CALL_WORKFLOW",
    "AgentCall",
    "AgentCallConflict",
    "AgentCallError",
    "AgentCallTimeout",
    "AgentClient",
    "AgentHost",
    "AgentRecord",
    "AgentRegistry",
    "AgentRequest",
    "AgentResponse",
    "AgentRunFailed",
    "AsyncAgentClient",
    "AsyncAgentRegistry",
    "InteropError",
    "InvalidAgentInput",
    "InvalidAgentOutput",
    "RegistryConflictError",
    "__version__",
    "agent_workflow_name",
    "call_instance_id",
    "enable_remote_calls",
    "host_agent",
    "host_agent_workflow",
    "is_dapr_agents_framework",
    "sanitize_agent_name",
]
