"""Dapr for the OpenAI Agents SDK.

:class:`DaprSession` keeps an agent's conversation in any Dapr state store. It takes the same
arguments as ``agents.extensions.memory.DaprSession``, so switching is one import line, and it
stores the history as an append-only log of pages behind a small etag-guarded head: appends
cost the same at item 10,000 as at item 1, and concurrent writers never lose an item.

Agents as tools: :func:`host_openai_agent` makes an SDK ``Agent`` callable as the Dapr workflow
``dapr.openai.{name}.workflow`` (so a dapr-agents ``DurableAgent`` can use it as a tool), and
:func:`dapr_agent_tool` gives an SDK agent a tool that calls any Dapr-hosted agent.
"""

from ._errors import (
    DaprSessionError,
    ItemNotSerializableError,
    SessionClosedError,
    SessionConflictError,
    SessionCorruptedError,
)
from ._host import (
    DEFAULT_CALL_RECORD_TTL,
    DEFAULT_MAX_TURNS,
    default_output_mapper,
    default_session_key,
    host_openai_agent,
)
from ._scope import dapr_tool_scope
from ._session import DAPR_CONSISTENCY_EVENTUAL, DAPR_CONSISTENCY_STRONG, ConsistencyLevel, DaprSession
from ._tool import DEFAULT_TOOL_TIMEOUT, dapr_agent_tool
from .version import __version__

__all__ = [
    "DAPR_CONSISTENCY_EVENTUAL",
    "DAPR_CONSISTENCY_STRONG",
    "DEFAULT_CALL_RECORD_TTL",
    "DEFAULT_MAX_TURNS",
    "DEFAULT_TOOL_TIMEOUT",
    "ConsistencyLevel",
    "DaprSession",
    "DaprSessionError",
    "ItemNotSerializableError",
    "SessionClosedError",
    "SessionConflictError",
    "SessionCorruptedError",
    "__version__",
    "dapr_agent_tool",
    "dapr_tool_scope",
    "default_output_mapper",
    "default_session_key",
    "host_openai_agent",
]
