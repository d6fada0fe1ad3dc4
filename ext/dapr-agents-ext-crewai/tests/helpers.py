"""Crews scripted with ``ScriptedLLM``; every factory call builds fresh agents and LLMs, so a
plain kickoff and a durable run of "the same crew" start from identical state."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crewai import Agent, Crew, Process, Task
from crewai.tasks.conditional_task import ConditionalTask
from crewai.tasks.task_output import TaskOutput
from crewai.tools import tool
from pydantic import BaseModel

from dapr_agents.ext.crewai.testing import ScriptedLLM


class Report(BaseModel):
    city: str
    population_millions: float
    summary: str


def agent(role: str, replies: list[Any], tools: list[Any] | None = None, **kwargs: Any) -> Agent:
    return Agent(
        role=role,
        goal=f"do the work of a {role}",
        backstory=f"An experienced {role}.",
        llm=ScriptedLLM(replies, model=role.replace(" ", "-"), journal=kwargs.pop("journal", None)),
        tools=tools or [],
        max_retry_limit=0,
        allow_delegation=False,
        **kwargs,
    )


def make_lookup(calls: list[str], journal: Path | None = None) -> Any:
    @tool("lookup")
    def lookup(city: str) -> str:
        """Look up facts about a city."""
        calls.append(city)
        if journal is not None:
            with open(journal, "a", encoding="utf-8") as f:
                f.write(f"tool lookup {city}\n")
                f.flush()
                os.fsync(f.fileno())
        return f"{city}: population 2.1 million, capital of France"

    return lookup


def research_crew(calls: list[str] | None = None, journal: Path | None = None) -> Crew:
    """Three tasks: a tool call, context by default, explicit context and output_pydantic."""
    calls = [] if calls is None else calls
    researcher = agent(
        "researcher",
        [[("lookup", {"city": "Paris"})], "Paris has 2.1 million people and is the capital."],
        tools=[make_lookup(calls, journal)],
        journal=journal,
    )
    writer = agent("writer", ["A short paragraph: Paris, capital of France, 2.1M people."], journal=journal)
    editor = agent(
        "editor",
        ['{"city": "Paris", "population_millions": 2.1, "summary": "Capital of France."}'],
        journal=journal,
    )
    research = Task(
        name="research",
        description="Research {city} with the lookup tool.",
        expected_output="Key facts about {city}.",
        agent=researcher,
    )
    write = Task(
        name="write",
        description="Write a paragraph about {city}.",
        expected_output="One paragraph.",
        agent=writer,
    )
    edit = Task(
        name="edit",
        description="Turn the research and the paragraph into a report on {city}.",
        expected_output="A JSON report.",
        agent=editor,
        context=[research, write],
        output_pydantic=Report,
    )
    return Crew(name="research", agents=[researcher, writer, editor], tasks=[research, write, edit])


class Overlap:
    """Records when scripted replies start and end, to prove two tasks ran at the same time."""

    def __init__(self) -> None:
        self.spans: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def reply(self, name: str, text: str, seconds: float = 0.6) -> Callable[[Any], str]:
        def answer(messages: Any) -> str:
            start = time.monotonic()
            time.sleep(seconds)
            with self._lock:
                self.spans[name] = (start, time.monotonic())
            return text

        return answer


def parallel_crew(overlap: Overlap, shared_llm: bool = False) -> Crew:
    a = agent("north analyst", [overlap.reply("north", "North: sales up 10%.")])
    b = agent("south analyst", [overlap.reply("south", "South: sales down 2%.")])
    if shared_llm:  # both parallel tasks on one LLM instance, answering from the prompt
        north_reply = overlap.reply("north", "North: sales up 10%.")
        south_reply = overlap.reply("south", "South: sales down 2%.")
        shared = ScriptedLLM(
            [lambda m: north_reply(m) if "the north" in str(m) else south_reply(m)],
            model="shared",
            usage=(7, 3),
        )
        a.llm = shared
        b.llm = shared
    c = agent("director", ["Overall: sales up 4%."])
    north = Task(description="Analyse the north.", expected_output="A line.", agent=a, async_execution=True)
    south = Task(description="Analyse the south.", expected_output="A line.", agent=b, async_execution=True)
    summary = Task(
        description="Summarise the regions.", expected_output="A line.", agent=c, context=[north, south]
    )
    return Crew(name="parallel", agents=[a, b, c], tasks=[north, south, summary])


def guardrail_crew() -> Crew:
    def must_mention_paris(output: TaskOutput):  # type: ignore[no-untyped-def]  # CrewAI checks the annotation
        if "Paris" in output.raw:
            return True, output.raw
        return False, "The answer must mention Paris."

    writer = agent("writer", ["A city in France.", "Paris, a city in France."])
    task = Task(
        description="Name a French city.",
        expected_output="A sentence.",
        agent=writer,
        guardrail=must_mention_paris,
        guardrail_max_retries=2,
    )
    return Crew(name="guarded", agents=[writer], tasks=[task])


def conditional_crew() -> Crew:
    first = agent("checker", ["all good: no issues found"])
    fixer = agent("fixer", ["fixed"])
    last = agent("reporter", ["report written"])
    check = Task(description="Check the data.", expected_output="A verdict.", agent=first)
    fix = ConditionalTask(
        description="Fix the issues.",
        expected_output="Fixes.",
        agent=fixer,
        condition=lambda output: "issues found" in output.raw and "no issues" not in output.raw,
    )
    report = Task(description="Report.", expected_output="A report.", agent=last)
    return Crew(name="conditional", agents=[first, fixer, last], tasks=[check, fix, report])


def json_crew() -> Crew:
    writer = agent("writer", ['{"city": "Lyon", "population_millions": 0.5, "summary": "Food."}'])
    task = Task(description="Report on Lyon.", expected_output="JSON.", agent=writer, output_json=Report)
    return Crew(name="jsoncrew", agents=[writer], tasks=[task])


def human_crew(hierarchical: bool = False) -> Crew:
    """One ``human_input=True`` task; hierarchical: the manager answers it (no delegation)."""
    replies = ["Draft: Paris is big.", "Final: Paris has 2.1 million people."]
    writer = agent("writer", replies)
    if hierarchical:
        manager = Agent(
            role="manager", goal="Answer.", backstory="Answers.", llm=ScriptedLLM(replies), max_retry_limit=0
        )
        task = Task(description="Describe Paris.", expected_output="A sentence.", human_input=True)
        return Crew(
            name="human", agents=[writer], tasks=[task], process=Process.hierarchical, manager_agent=manager
        )
    task = Task(description="Describe Paris.", expected_output="A sentence.", agent=writer, human_input=True)
    return Crew(name="human", agents=[writer], tasks=[task])


def slow_crew(seconds: float) -> Crew:
    def slow(messages: Any) -> str:
        time.sleep(seconds)
        return "late"

    writer = agent("sleeper", [slow])
    task = Task(name="nap", description="Take your time.", expected_output="Anything.", agent=writer)
    return Crew(name="slow", agents=[writer], tasks=[task])


def hierarchical_crew(fail_once: bool = False) -> Crew:
    """A manager (scripted) delegating to a worker, then answering with the worker's result.

    ``fail_once``: the manager's LLM fails once after the delegation (the task is retried)."""
    writer = agent("writer", ["Paris is the capital of France, with 2.1 million people."])
    delegate = [
        (
            "delegate_work_to_coworker",
            {"task": "Write a line about {city}.", "context": "Facts about it.", "coworker": "writer"},
        )
    ]
    failed: list[bool] = []

    def crash(messages: Any) -> str:
        failed.append(True)
        raise RuntimeError("the manager crashed after delegating")

    manager = Agent(
        role="manager",
        goal="Get the work done by the team.",
        backstory="Delegates.",
        llm=ScriptedLLM(
            [
                delegate,
                *([crash, delegate] if fail_once else []),
                "Paris is the capital of France, with 2.1 million people.",
            ],
            model="manager",
        ),
        allow_delegation=True,
        max_retry_limit=0,  # a failure fails the task (the activity), not an in-process retry
    )
    task = Task(description="Produce a line about {city}.", expected_output="One line.")
    return Crew(
        name="managed",
        agents=[writer],
        tasks=[task],
        process=Process.hierarchical,
        manager_agent=manager,
    )
