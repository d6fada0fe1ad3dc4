"""A2A on Dapr.

Any Dapr-hosted agent as an A2A server whose tasks are Dapr workflow instances
(:func:`serve_a2a`), and any A2A agent as a tool called through Dapr service invocation
(:func:`a2a_agent_tool`), with adapters for LangChain / LangGraph, OpenAI Agents, CrewAI and
Dapr workflows (a dapr-agents ``DurableAgent``). Built on the official ``a2a-sdk``; it does not
import dapr-agents.
"""

from ._activity import activity_message_id, call_a2a_agent, register_a2a_activity
from ._adapters import crewai_tool, langchain_tool, openai_tool, question_text
from ._client import A2AAgentTool, A2AResult, a2a_agent_tool, message_id_for
from ._durable import durable_agent_tool
from ._errors import (
    A2ACallError,
    A2ACallTimeout,
    A2AExtError,
    A2AInputRequired,
    A2ATaskFailed,
    AgentCardError,
    MissingExtraError,
)
from ._server import AGENT_CARD_PATH, DEFAULT_RPC_PATH, A2AServer, DaprTaskRequestHandler, serve_a2a
from ._task import DEFAULT_RETRY_POLICY, REPLY_EVENT, A2ACall, InputRequired, message_text, task_workflow_name
from .version import __version__

__all__ = [
    "AGENT_CARD_PATH",
    "DEFAULT_RETRY_POLICY",
    "DEFAULT_RPC_PATH",
    "REPLY_EVENT",
    "A2AAgentTool",
    "A2ACall",
    "A2ACallError",
    "A2ACallTimeout",
    "A2AExtError",
    "A2AInputRequired",
    "A2AResult",
    "A2AServer",
    "A2ATaskFailed",
    "AgentCardError",
    "DaprTaskRequestHandler",
    "InputRequired",
    "MissingExtraError",
    "__version__",
    "a2a_agent_tool",
    "activity_message_id",
    "call_a2a_agent",
    "crewai_tool",
    "durable_agent_tool",
    "langchain_tool",
    "message_id_for",
    "message_text",
    "openai_tool",
    "question_text",
    "register_a2a_activity",
    "serve_a2a",
    "task_workflow_name",
]
