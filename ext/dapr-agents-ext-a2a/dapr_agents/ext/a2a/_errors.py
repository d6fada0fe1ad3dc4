"""The exceptions of this package: each names the agent, task or setting involved."""

from __future__ import annotations


class A2AExtError(Exception):
    """Base class of every error raised by ``dapr_agents.ext.a2a``."""


class AgentCardError(A2AExtError):
    """The remote agent's card could not be read (unknown app id, not an A2A server, denied)."""


class A2ACallError(A2AExtError):
    """A call of a remote A2A agent did not end with an answer.

    ``task_id`` and ``context_id`` name the remote task (empty when none was created), ``state``
    is its last A2A state (``failed``, ``canceled``, ``rejected``, ...).
    """

    def __init__(
        self, message: str, *, agent: str, task_id: str = "", context_id: str = "", state: str = ""
    ) -> None:
        super().__init__(message)
        self.agent = agent
        self.task_id = task_id
        self.context_id = context_id
        self.state = state


class A2ATaskFailed(A2ACallError):
    """The remote task ended failed, canceled or rejected."""


class A2ACallTimeout(A2ACallError, TimeoutError):
    """The remote task did not finish in time; it was asked to cancel."""


class A2AInputRequired(A2ACallError):
    """The remote agent needs more input: ``question`` is what it asked.

    Answer by calling again with ``task_id=error.task_id`` (and the same ``context_id``); the
    remote task waits, durably, for that answer.
    """

    def __init__(self, message: str, *, agent: str, question: str, task_id: str, context_id: str) -> None:
        super().__init__(message, agent=agent, task_id=task_id, context_id=context_id, state="input-required")
        self.question = question


class MissingExtraError(A2AExtError, ImportError):
    """A framework adapter was used without its framework installed; the message names the pip command."""
