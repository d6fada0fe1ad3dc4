"""The exceptions of ``dapr_agents.ext.crewai``; all derive from :class:`DaprCrewError`."""

from __future__ import annotations


class DaprCrewError(Exception):
    """Base class of every error raised by this package."""


class UnsupportedCrewError(DaprCrewError, ValueError):
    """The crew uses a feature that cannot be made durable; raised before anything runs.

    The message names the feature and what to do instead.
    """


class CrewPlanMismatchError(DaprCrewError):
    """A workflow instance was started for a different shape of crew than the one registered now
    (tasks added, removed or reordered between a crash and the restart)."""


class CrewRunFailedError(DaprCrewError):
    """The durable run failed or was terminated; the message carries the workflow's failure."""

    def __init__(self, message: str, *, instance_id: str, status: str) -> None:
        super().__init__(message)
        self.instance_id = instance_id
        self.status = status


class ToolOutcomeUnknownError(DaprCrewError):
    """A journaled tool call started before a crash and its outcome was never recorded; it is not
    called again (at most once). The agent sees this error as the tool's result."""


class CrewInputsError(DaprCrewError, ValueError):
    """A hosted crew's kickoff inputs, as mapped from an agent request, leave template
    placeholders of its tasks or agents unfilled; the message names them."""
