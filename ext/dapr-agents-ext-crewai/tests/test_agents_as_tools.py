"""Agents as tools over the wire (dev sidecar): a crew hosted with ``host_crew`` answers interop's
``AgentClient`` like ``crew.kickoff()``; ``DaprAgentTool`` lets a CrewAI agent call a hosted agent
of the same app, inside a durable crew and in a plain kickoff. One ``WorkflowRuntime`` per app."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import dapr.ext.workflow as wf
import pytest
from crewai import Crew, Task

from dapr_agents.ext.crewai import (
    CrewInputsError,
    DaprAgentTool,
    DaprCrew,
    host_crew,
)
from dapr_agents.ext.devsidecar.testing import external_mode
from dapr_agents.ext.interop import AgentCall, AgentCallError, AgentClient, host_agent

from .helpers import agent, json_crew


@pytest.fixture
def dapr_state_backend() -> str:
    # The calls do not depend on the store (test_durable_crew covers every backend).
    return "external" if external_mode() else "sqlite"


class App:
    """The test app: one runtime, everything registered before it starts."""

    def __init__(self) -> None:
        self.runtime = wf.WorkflowRuntime()
        self.crews: list[DaprCrew] = []

    def start(self) -> None:
        self.runtime.start()

    def stop(self) -> None:
        for crew in self.crews:
            crew.wait_idle(30)
        time.sleep(0.3)  # let the last activity results reach the sidecar
        self.runtime.shutdown()


@pytest.fixture
def app(dapr_sidecar: Any) -> Iterator[App]:
    app = App()
    yield app
    app.stop()


def writer_crew(answer: str = "Paris is the capital of France.") -> Crew:
    researcher = agent("researcher", ["Paris: capital, 2.1M people."])
    writer = agent("writer", [answer])
    research = Task(description="Research this: {task}", expected_output="Facts.", agent=researcher)
    write = Task(description="Answer: {task}", expected_output="One sentence.", agent=writer)
    return Crew(name="writers", agents=[researcher, writer], tasks=[research, write])


def topic_crew() -> Crew:
    # Answers from the prompt, so the test sees that the topic reached the task description.
    writer = agent(
        "writer", [lambda messages: "A line about Lyon." if "about Lyon" in str(messages) else "?"]
    )
    task = Task(description="Write one line about {topic}.", expected_output="A line.", agent=writer)
    return Crew(name="topics", agents=[writer], tasks=[task])


def failing_crew() -> Crew:
    def boom(messages: Any) -> str:
        raise RuntimeError("the model is down")

    writer = agent("writer", [boom])
    task = Task(description="Answer: {task}", expected_output="A line.", agent=writer)
    return Crew(name="failing", agents=[writer], tasks=[task])


def test_placeholders_the_default_inputs_cannot_fill_are_refused_at_registration() -> None:
    runtime = wf.WorkflowRuntime()
    with pytest.raises(CrewInputsError, match=r"\['topic'\].*inputs_mapper"):
        host_crew(runtime, topic_crew(), name="topics")
    crew = topic_crew()
    crew.tasks[0].description = "Write one line."
    with pytest.raises(CrewInputsError, match=r"no \{task\} placeholder"):
        host_crew(runtime, crew, name="fixed")
    with pytest.raises(TypeError, match="DaprCrew options"):
        host_crew(runtime, DaprCrew(writer_crew()), name="w", journal_store=None)


def test_a_hosted_crew_answers_like_kickoff(app: App, unique: str) -> None:
    task = "What is the capital of France?"
    plain = writer_crew().kickoff(inputs={"task": task})

    host = host_crew(app.runtime, writer_crew(), name="writers", role="Writer", goal="Answer questions")
    host_crew(app.runtime, topic_crew(), name="topics", inputs_mapper=lambda r: {"topic": r.task})
    host_crew(app.runtime, topic_crew(), name="broken-mapper", inputs_mapper=lambda r: {"subject": r.task})
    host_crew(
        app.runtime,
        json_crew(),
        name="reports",
        inputs_mapper=lambda r: {},
        output_mapper=lambda out: f"{out.json_dict['city']} ({out.json_dict['population_millions']}M)",
    )
    host_crew(app.runtime, failing_crew(), name="failing")
    app.start()
    assert host.workflow_name == "dapr.crewai.writers.workflow"
    assert host.record("test-app").workflow_name == host.workflow_name

    # Wire level: the envelope in, {"role": "assistant", "content": ...} out, as dapr-agents sees it.
    client = wf.DaprWorkflowClient()
    client.schedule_new_workflow(
        host.workflow_name,
        input={"task": task, "_message_metadata": {"source": "Triage"}},
        instance_id=unique,
    )
    state = client.wait_for_workflow_completion(unique, timeout_in_seconds=60)
    assert state is not None and state.runtime_status == wf.WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == {"role": "assistant", "content": plain.raw}
    # The crew ran as the durable crew workflow (a child), one activity per task.
    child = client.get_workflow_state(f"{unique}:crew")
    assert child is not None and child.runtime_status == wf.WorkflowStatus.COMPLETED
    assert len(json.loads(child.serialized_output)["tasks_output"]) == 2

    agents = AgentClient(default_timeout=60)
    assert agents.call("topics", "Lyon", framework="crewai").content == "A line about Lyon."
    assert agents.call("reports", "ignored", framework="crewai").content == "Lyon (0.5M)"

    with pytest.raises(AgentCallError) as missing:
        agents.call("broken-mapper", "Lyon", framework="crewai")
    assert "['topic']" in missing.value.error_message and "CrewInputsError" in missing.value.error_type

    with pytest.raises(AgentCallError) as failed:
        agents.call("failing", "anything", framework="crewai")
    assert failed.value.status == "FAILED"
    assert "CrewRunFailedError" in failed.value.error_type
    assert "the model is down" in failed.value.error_message


def test_a_crewai_agent_calls_hosted_agents_as_tools(app: App, unique: str) -> None:
    seen: list[AgentCall] = []
    release = threading.Event()

    def geo(call: AgentCall) -> str:
        seen.append(call)
        return f"Paris has 2.1 million people (asked: {call.task})"

    def broken(call: AgentCall) -> str:
        raise ValueError("no data for Mars")

    def slow(call: AgentCall) -> str:
        release.wait(10)
        return "too late"

    host_agent(app.runtime, name="geo", framework="openai", run=geo)
    host_agent(app.runtime, name="broken", framework="openai", run=broken, retry_policy=None)
    host_agent(app.runtime, name="slow", framework="openai", run=slow, retry_policy=None)
    host_crew(app.runtime, writer_crew("The capital is Paris."), name="writers")

    observations: list[str] = []

    def final(messages: Any) -> str:
        observations.append(str(messages))
        return "Report: Paris has 2.1 million people; the capital is Paris."

    def build() -> Crew:
        researcher = agent(
            "researcher",
            [
                [("geo", {"task": "population of Paris"})],
                [("broken", {"task": "population of Mars"})],
                [("slow", {"task": "anything"})],
                [("writers", {"task": "What is the capital of France?"})],
                final,
            ],
            tools=[
                DaprAgentTool(agent_name="geo", framework="openai", description="Population facts."),
                DaprAgentTool(agent_name="broken", framework="openai", description="Facts about Mars."),
                DaprAgentTool(agent_name="slow", framework="openai", description="Slow.", timeout=1),
                DaprAgentTool(agent_name="writers", framework="crewai", description="A crew of writers."),
            ],
        )
        task = Task(description="Report on Paris.", expected_output="A report.", agent=researcher)
        return Crew(name="reporting", agents=[researcher], tasks=[task])

    durable = DaprCrew(build()).register(app.runtime)
    app.crews.append(durable)
    failed_once: list[bool] = []

    def fail_once(messages: Any) -> str:
        if not failed_once:
            failed_once.append(True)
            raise RuntimeError("crash after the agent call")
        return "unreachable"

    retrying = DaprCrew(
        Crew(
            name="retrying",
            agents=[
                researcher := agent(
                    "analyst",
                    [
                        [("geo", {"task": "population of Paris"})],
                        fail_once,
                        [("geo", {"task": "population of Paris"})],
                        "Done: 2.1 million.",
                    ],
                    tools=[DaprAgentTool(agent_name="geo", framework="openai")],
                )
            ],
            tasks=[Task(description="Count Parisians.", expected_output="A number.", agent=researcher)],
        ),
        retry_policy=wf.RetryPolicy(first_retry_interval=timedelta(seconds=1), max_number_of_attempts=2),
    ).register(app.runtime)
    app.crews.append(retrying)
    app.start()
    client = wf.DaprWorkflowClient()
    output = durable.wait(client, durable.schedule(client, instance_id=unique), timeout=90)
    release.set()

    assert output.raw == "Report: Paris has 2.1 million people; the capital is Paris."
    text = observations[-1]
    assert "Paris has 2.1 million people (asked: population of Paris)" in text
    assert "no data for Mars" in text and "Error executing tool" in text  # the child's failure, readable
    assert "did not answer within 1 s" in text  # the timeout, as a tool error
    assert "The capital is Paris." in text  # a hosted crew called from a durable crew
    # Inside a durable crew the call's instance id is derived from the journal position (a retried
    # task re-attaches to it) and the caller is the CrewAI agent.
    (call,) = seen
    assert call.source == "researcher"
    assert call.instance_id.startswith("openai.geo-") and not call.instance_id.startswith("call-")

    # Outside a durable crew: a plain kickoff, a fresh agent run per call.
    plain = build().kickoff()
    assert plain.raw == output.raw
    assert len(seen) == 2 and seen[1].instance_id.startswith("call-")

    # A task retried after it called an agent gets the answer of the same agent run again.
    again = retrying.wait(client, retrying.schedule(client, instance_id=f"{unique}-retry"), timeout=60)
    assert again.raw == "Done: 2.1 million." and failed_once
    assert len(seen) == 3, [c.instance_id for c in seen]
