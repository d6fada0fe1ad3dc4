"""LangGraph on Dapr: ``DaprCheckpointer`` keeps LangGraph checkpoints in any Dapr state store.

Swap ``from dapr.ext.langgraph import DaprCheckpointer`` for
``from dapr_agents.ext.langgraph import DaprCheckpointer``; the constructor
``DaprCheckpointer(store_name, key_prefix)`` is the same, and the async methods (``ainvoke``)
work too.
"""

from ._errors import (
    CheckpointConflictError,
    CheckpointDataError,
    DaprCheckpointerError,
    MissingThreadIdError,
    StateStoreError,
)
from ._saver import DaprCheckpointer
from .version import __version__

__all__ = [
    "CheckpointConflictError",
    "CheckpointDataError",
    "DaprCheckpointer",
    "DaprCheckpointerError",
    "MissingThreadIdError",
    "StateStoreError",
    "__version__",
]
