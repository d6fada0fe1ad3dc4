"""The exceptions of this package: each names the agent, workflow or instance involved."""

from __future__ import annotations


class InteropError(Exception):
    """Base class of every error raised by ``dapr_agents.ext.interop``."""


class InvalidAgentInput(InteropError, ValueError):
    """A workflow input that is not the agent envelope ``{"task": str, ...}``."""


class InvalidAgentOutput(InteropError, ValueError):
    """A hosted agent or a child workflow produced something that is not a text answer."""


class AgentRunFailed(InteropError):
    """Raised inside a host's workflow when the agent's activity failed for good.

    Its message starts with the original exception type (``GraphMappingError: ...``), so the
    failure details a caller sees name what went wrong in the hosted agent, not only
    ``TaskFailedError``.
    """


class AgentCallError(InteropError):
    """A called agent's workflow failed or was terminated.

    ``error_type``, ``error_message`` and ``stack_trace`` carry the child's failure details as
    Dapr reported them (empty when the child was terminated rather than failed).
    """

    def __init__(
        self,
        message: str,
        *,
        agent: str,
        workflow_name: str,
        instance_id: str,
        status: str,
        error_type: str = "",
        error_message: str = "",
        stack_trace: str = "",
    ) -> None:
        super().__init__(message)
        self.agent = agent
        self.workflow_name = workflow_name
        self.instance_id = instance_id
        self.status = status
        self.error_type = error_type
        self.error_message = error_message
        self.stack_trace = stack_trace


class AgentCallTimeout(AgentCallError, TimeoutError):
    """The called agent did not answer in time; its workflow was terminated."""


class AgentCallConflict(InteropError):
    """The instance id of a call is held by a different call that is still running."""


class RegistryConflictError(InteropError):
    """The registry index kept changing under us; every etag-guarded attempt lost."""
