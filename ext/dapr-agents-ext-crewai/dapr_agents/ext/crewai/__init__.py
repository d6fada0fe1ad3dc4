"""CrewAI on Dapr: run an existing ``Crew`` as a Dapr workflow, each task a durable activity.

``kickoff_durable(crew, inputs=...)`` is ``crew.kickoff(inputs=...)`` that survives crashes;
``DaprCrew(crew).register(runtime)`` hosts the crew on an existing ``WorkflowRuntime``.
"""

from ._crew import HUMAN_INPUT_EVENT, DaprCrew, akickoff_durable, kickoff_durable, workflow_name_for
from ._errors import (
    CrewPlanMismatchError,
    CrewRunFailedError,
    DaprCrewError,
    ToolOutcomeUnknownError,
    UnsupportedCrewError,
)
from ._plan import TaskOptions
from .version import __version__

__all__ = [
    "HUMAN_INPUT_EVENT",
    "CrewPlanMismatchError",
    "CrewRunFailedError",
    "DaprCrew",
    "DaprCrewError",
    "TaskOptions",
    "ToolOutcomeUnknownError",
    "UnsupportedCrewError",
    "__version__",
    "akickoff_durable",
    "kickoff_durable",
    "workflow_name_for",
]
