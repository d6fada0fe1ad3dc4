"""Dapr for the OpenAI Agents SDK.

:class:`DaprSession` keeps an agent's conversation in any Dapr state store. It takes the same
arguments as ``agents.extensions.memory.DaprSession``, so switching is one import line, and it
stores the history as an append-only log of pages behind a small etag-guarded head: appends
cost the same at item 10,000 as at item 1, and concurrent writers never lose an item.
"""

from ._errors import (
    DaprSessionError,
    ItemNotSerializableError,
    SessionClosedError,
    SessionConflictError,
    SessionCorruptedError,
)
from ._session import DAPR_CONSISTENCY_EVENTUAL, DAPR_CONSISTENCY_STRONG, ConsistencyLevel, DaprSession
from .version import __version__

__all__ = [
    "DAPR_CONSISTENCY_EVENTUAL",
    "DAPR_CONSISTENCY_STRONG",
    "ConsistencyLevel",
    "DaprSession",
    "DaprSessionError",
    "ItemNotSerializableError",
    "SessionClosedError",
    "SessionConflictError",
    "SessionCorruptedError",
    "__version__",
]
