"""The app of the crash tests: a three-task crew run with ``kickoff_durable``.

argv: journal file, instance id, result file, pause point (``none``, ``before-write``,
``after-publish``). While the file ``<journal>.pause`` exists, the writer's LLM blocks at the
pause point, so the test can SIGKILL the process there. Every LLM and tool call is appended to
the journal.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")

from crewai import Crew, Task
from crewai.tools import tool

from dapr_agents.ext.crewai import kickoff_durable
from tests.helpers import agent, make_lookup

journal, instance_id, result_file, pause = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
flag = Path(f"{journal}.pause")


def note(line: str) -> None:
    with open(journal, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def maybe_pause(point: str, reply: object) -> object:
    def answer(messages: object) -> object:
        if pause == point and flag.exists():
            note(f"paused {point}")
            time.sleep(600)
        return reply

    return answer


@tool("publish")
def publish(text: str) -> str:
    """Publish a paragraph (a side effect)."""
    note(f"tool publish {text}")
    return "published as post 42"


calls: list[str] = []
researcher = agent(
    "researcher",
    [[("lookup", {"city": "Paris"})], "Paris has 2.1 million people."],
    tools=[make_lookup(calls, journal)],
    journal=journal,
)
writer = agent(
    "writer",
    [
        maybe_pause("before-write", [("publish", {"text": "Paris, 2.1M"})]),
        maybe_pause("after-publish", "Published post 42 about Paris."),
    ],
    tools=[publish],
    journal=journal,
)
editor = agent("editor", ["Edited: post 42 about Paris."], journal=journal)
research = Task(description="Research {city}.", expected_output="Facts.", agent=researcher)
write = Task(description="Write and publish a paragraph on {city}.", expected_output="A post.", agent=writer)
edit = Task(description="Edit the post.", expected_output="An edited post.", agent=editor)
crew = Crew(name="crash", agents=[researcher, writer, editor], tasks=[research, write, edit])

note("app started")
output = kickoff_durable(crew, inputs={"city": "Paris"}, instance_id=instance_id, timeout=120)
Path(result_file).write_text(
    json.dumps(
        {
            "raw": output.raw,
            "tasks_output": [t.model_dump(mode="json") for t in output.tasks_output],
            "token_usage": output.token_usage.model_dump(),
        }
    )
)
note("app done")
