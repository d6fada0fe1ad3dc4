"""A crew run as a Dapr workflow against the dev sidecar, on every state backend, compared with a
plain ``crew.kickoff()`` of an identical, freshly built crew."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import dapr.ext.workflow as wf
import pytest
from crewai import Crew

from dapr_agents.ext.crewai import (
    CrewRunFailedError,
    DaprCrew,
    TaskOptions,
    UnsupportedCrewError,
    kickoff_durable,
)

from .helpers import (
    Overlap,
    Report,
    conditional_crew,
    guardrail_crew,
    hierarchical_crew,
    human_crew,
    json_crew,
    parallel_crew,
    research_crew,
    slow_crew,
)


def comparable(output: Any) -> dict[str, Any]:
    return {
        "raw": output.raw,
        "pydantic": output.pydantic,
        "json_dict": output.json_dict,
        "tasks_output": [t.model_dump() for t in output.tasks_output],
        "token_usage": output.token_usage.model_dump(),
    }


def test_a_durable_run_equals_a_plain_kickoff(dapr_sidecar: Any, unique: str) -> None:
    plain_calls: list[str] = []
    plain = research_crew(plain_calls).kickoff(inputs={"city": "Paris"})
    calls: list[str] = []
    durable = kickoff_durable(research_crew(calls), inputs={"city": "Paris"}, instance_id=unique)
    assert comparable(durable) == comparable(plain)
    assert isinstance(durable.pydantic, Report) and durable.pydantic.city == "Paris"
    assert durable.token_usage.successful_requests == 4
    assert calls == plain_calls == ["Paris"]
    # Context flowed: the writer saw the research, the editor saw both (explicit context).
    write_prompt = str(durable.tasks_output[1].messages)
    assert "Paris has 2.1 million people" in write_prompt
    edit_prompt = str(durable.tasks_output[2].messages)
    assert "A short paragraph" in edit_prompt and "Paris has 2.1 million people" in edit_prompt
    # Asking again for a finished instance returns its result without running anything.
    again = kickoff_durable(research_crew(calls), inputs={"city": "Paris"}, instance_id=unique)
    assert again.raw == durable.raw and calls == ["Paris"]


@pytest.mark.parametrize("shared_llm", [False, True], ids=["own-llms", "shared-llm"])
def test_async_tasks_run_in_parallel(dapr_sidecar: Any, unique: str, shared_llm: bool) -> None:
    plain = parallel_crew(Overlap(), shared_llm).kickoff()
    overlap = Overlap()
    durable = kickoff_durable(parallel_crew(overlap, shared_llm), instance_id=unique)
    # Token usage equal to kickoff's even when the overlapping tasks share one LLM instance.
    assert comparable(durable) == comparable(plain)
    (n0, n1), (s0, s1) = overlap.spans["north"], overlap.spans["south"]
    assert n0 < s1 and s0 < n1, overlap.spans  # the two activities overlapped in time


def test_guardrail_retries_inside_the_task(dapr_sidecar: Any, unique: str) -> None:
    plain = guardrail_crew().kickoff()
    durable = kickoff_durable(guardrail_crew(), instance_id=unique)
    assert durable.raw == "Paris, a city in France."
    assert comparable(durable) == comparable(plain)


def test_conditional_task_is_skipped_as_crewai_skips_it(dapr_sidecar: Any, unique: str) -> None:
    plain = conditional_crew().kickoff()
    durable = kickoff_durable(conditional_crew(), instance_id=unique)
    assert comparable(durable) == comparable(plain)
    assert [t.raw for t in durable.tasks_output] == ["all good: no issues found", "", "report written"]


def test_output_json_round_trips(dapr_sidecar: Any, unique: str) -> None:
    plain = json_crew().kickoff()
    durable = kickoff_durable(json_crew(), instance_id=unique)
    assert durable.json_dict == {"city": "Lyon", "population_millions": 0.5, "summary": "Food."}
    assert comparable(durable) == comparable(plain)


def test_a_hierarchical_crew_runs_durably_as_kickoff_does(dapr_sidecar: Any, unique: str) -> None:
    plain = hierarchical_crew().kickoff(inputs={"city": "Paris"})
    crew = hierarchical_crew()
    durable = kickoff_durable(crew, inputs={"city": "Paris"}, instance_id=unique)
    assert comparable(durable) == comparable(plain)
    assert durable.raw == "Paris is the capital of France, with 2.1 million people."
    # The manager delegated: the worker's LLM answered once, the manager's twice.
    assert crew.agents[0].llm.calls == 1  # type: ignore[union-attr]
    assert crew.manager_agent.llm.calls == 2  # type: ignore[union-attr]


def test_a_retried_hierarchical_task_does_not_redo_finished_delegations(
    dapr_sidecar: Any, unique: str
) -> None:
    crew = hierarchical_crew(fail_once=True)
    retry = wf.RetryPolicy(first_retry_interval=timedelta(seconds=1), max_number_of_attempts=2)
    durable = kickoff_durable(crew, inputs={"city": "Paris"}, instance_id=unique, retry_policy=retry)
    assert durable.raw == "Paris is the capital of France, with 2.1 million people."
    assert crew.manager_agent.llm.calls == 4  # type: ignore[union-attr]  # delegate, crash; delegate, answer
    # The second attempt's delegation was answered from the tool journal: the worker ran once.
    assert crew.agents[0].llm.calls == 1  # type: ignore[union-attr]


@pytest.fixture
def runtime(dapr_sidecar: Any) -> Iterator[wf.WorkflowRuntime]:
    runtime = wf.WorkflowRuntime()
    yield runtime
    runtime.shutdown()


@pytest.mark.parametrize("hierarchical", [False, True], ids=["sequential", "hierarchical"])
def test_human_input_is_a_durable_wait_for_an_event(
    runtime: wf.WorkflowRuntime, unique: str, hierarchical: bool
) -> None:
    crew = human_crew(hierarchical)
    durable = DaprCrew(crew).register(runtime)
    runtime.start()
    client = wf.DaprWorkflowClient()
    instance = durable.schedule(client, instance_id=unique)
    llm = crew.manager_agent.llm if hierarchical else crew.agents[0].llm  # type: ignore[union-attr]
    deadline = __import__("time").monotonic() + 30
    while llm.calls < 1 and __import__("time").monotonic() < deadline:  # type: ignore[union-attr]
        __import__("time").sleep(0.05)
    state = client.get_workflow_state(instance)
    assert state is not None and state.runtime_status == wf.WorkflowStatus.RUNNING
    durable.raise_human_input(client, instance, 0, "Add the population.")
    while llm.calls < 2 and __import__("time").monotonic() < deadline:  # type: ignore[union-attr]
        __import__("time").sleep(0.05)
    durable.raise_human_input(client, instance, 0, "")  # accept
    output = durable.wait(client, instance, timeout=30)
    assert output.raw == "Final: Paris has 2.1 million people."
    assert "Add the population." in str(output.tasks_output[0].messages)
    assert output.token_usage.successful_requests == 2


def test_a_task_timeout_fails_the_run(dapr_sidecar: Any, unique: str) -> None:
    with pytest.raises(CrewRunFailedError, match="did not finish within"):
        kickoff_durable(
            slow_crew(2.0),
            instance_id=unique,
            task_options={"nap": TaskOptions(timeout=timedelta(seconds=1))},
        )


def test_crews_that_cannot_be_durable_are_refused_before_anything_runs() -> None:
    crew = research_crew()
    planned = Crew(agents=crew.agents, tasks=crew.tasks, planning=True)
    with pytest.raises(UnsupportedCrewError, match="planning=True"):
        DaprCrew(planned)
    streaming = Crew(agents=crew.agents, tasks=crew.tasks, stream=True)
    with pytest.raises(UnsupportedCrewError, match="stream=True"):
        DaprCrew(streaming)
    with pytest.raises(ValueError, match="task_options names tasks"):
        DaprCrew(crew, task_options={"nope": TaskOptions()})
