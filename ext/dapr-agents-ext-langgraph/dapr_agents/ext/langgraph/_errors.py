"""Exceptions of the LangGraph checkpointer.

Every message names the state store and the key (or thread and checkpoint) involved and says
what to do. A missing ``thread_id`` raises a :class:`KeyError`, as LangGraph's own savers do.
"""

from __future__ import annotations


class DaprCheckpointerError(Exception):
    """Base class of every error raised by :class:`~dapr_agents.ext.langgraph.DaprCheckpointer`."""


class CheckpointDataError(DaprCheckpointerError):
    """A key holds data this checkpointer did not write (foreign or corrupt), or data it needs
    is missing. Never reported as "no checkpoint": the message names the store and the key."""


class CheckpointConflictError(DaprCheckpointerError):
    """Concurrent writers kept changing a thread's index; the write was retried and gave up."""


class StateStoreError(DaprCheckpointerError):
    """The Dapr state API refused or failed an operation (unknown store, no transactions, ...)."""


class MissingThreadIdError(KeyError, DaprCheckpointerError):
    """The config has no ``configurable.thread_id`` (a :class:`KeyError`, like LangGraph's savers)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "thread_id"


class HostedGraphError(Exception):
    """Base class of the errors of a graph hosted as a Dapr agent (:func:`host_graph`)."""


class GraphMappingError(HostedGraphError, ValueError):
    """The default input or output mapper does not fit the graph; the message names the graph,
    its state keys and the mapper to pass instead."""


class GraphInterruptedError(HostedGraphError):
    """A hosted graph stopped at ``interrupt()`` (or an ``interrupt_before``/``_after`` node):
    an agent called as a tool must answer in one call, with no human in the loop."""
