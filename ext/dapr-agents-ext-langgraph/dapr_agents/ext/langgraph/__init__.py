"""LangGraph on Dapr: ``DaprCheckpointer`` keeps LangGraph checkpoints in any Dapr state store,
:func:`host_graph` makes a compiled graph callable as a Dapr agent (by dapr-agents'
``DurableAgent`` or any interop client), and :func:`dapr_agent_tool` lets a LangGraph agent call
any Dapr-hosted agent as a LangChain tool.

Swap ``from dapr.ext.langgraph import DaprCheckpointer`` for
``from dapr_agents.ext.langgraph import DaprCheckpointer``; the constructor
``DaprCheckpointer(store_name, key_prefix)`` is the same, and the async methods (``ainvoke``)
work too.
"""

from ._errors import (
    CheckpointConflictError,
    CheckpointDataError,
    DaprCheckpointerError,
    GraphInterruptedError,
    GraphMappingError,
    HostedGraphError,
    MissingThreadIdError,
    StateStoreError,
)
from ._host import FRAMEWORK, host_graph
from ._saver import DaprCheckpointer
from ._tool import DaprAgentTool, dapr_agent_tool
from .version import __version__

__all__ = [
    "FRAMEWORK",
    "CheckpointConflictError",
    "CheckpointDataError",
    "DaprAgentTool",
    "DaprCheckpointer",
    "DaprCheckpointerError",
    "GraphInterruptedError",
    "GraphMappingError",
    "HostedGraphError",
    "MissingThreadIdError",
    "StateStoreError",
    "__version__",
    "dapr_agent_tool",
    "host_graph",
]
