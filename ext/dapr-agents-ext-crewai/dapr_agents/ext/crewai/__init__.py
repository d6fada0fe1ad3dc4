"""CrewAI on Dapr: run an existing ``Crew`` as a Dapr workflow, each task a durable activity.

``kickoff_durable(crew, inputs=...)`` is ``crew.kickoff(inputs=...)`` that survives crashes;
``DaprCrew(crew).register(runtime)`` hosts the crew on an existing ``WorkflowRuntime``.
Agents as tools: ``host_crew(runtime, crew, name=...)`` makes a crew callable as the Dapr agent
``dapr.crewai.<name>.workflow``; ``DaprAgentTool(agent_name=...)`` lets a CrewAI agent call any
Dapr-hosted agent.
"""

from ._crew import HUMAN_INPUT_EVENT, DaprCrew, akickoff_durable, kickoff_durable, workflow_name_for
from ._errors import (
    CrewInputsError,
    CrewPlanMismatchError,
    CrewRunFailedError,
    DaprCrewError,
    ToolOutcomeUnknownError,
    UnsupportedCrewError,
)
from ._host import CREWAI_FRAMEWORK, host_crew
from ._plan import TaskOptions
from ._tool import DaprAgentTool, DaprAgentToolInput
from .version import __version__

__all__ = [
    "CREWAI_FRAMEWORK",
    "HUMAN_INPUT_EVENT",
    "CrewInputsError",
    "CrewPlanMismatchError",
    "CrewRunFailedError",
    "DaprAgentTool",
    "DaprAgentToolInput",
    "DaprCrew",
    "DaprCrewError",
    "TaskOptions",
    "ToolOutcomeUnknownError",
    "UnsupportedCrewError",
    "__version__",
    "akickoff_durable",
    "host_crew",
    "kickoff_durable",
    "workflow_name_for",
]
