"""schedule_trigger end to end on the dev sidecar: fires, deterministic ids, overlap policies."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from dapr_agents.ext.devsidecar import ScriptedReply, ScriptedToolCall
from dapr_agents.ext.triggers import Fire, ScheduleTrigger, TriggerConfigError, schedule_trigger
from tests.conftest import Harness, task_requests, wait_until


def marker() -> str:
    return f"s{uuid.uuid4().hex[:10]}"


def fire_times(requests: list[str]) -> list[str]:
    return [text.rsplit(" ", 1)[1] for text in requests]


def stop_schedule(harness: Harness, trigger: ScheduleTrigger) -> dict[str, Any]:
    """Terminate the schedule and wait for its fires' runs, so nothing runs at shutdown."""
    from dapr.ext.workflow import DaprWorkflowClient

    client = DaprWorkflowClient()
    try:
        state = client.get_workflow_state(trigger.instance_id)
        status = json.loads(state.serialized_custom_status or "{}") if state else {}
        client.terminate_workflow(trigger.instance_id)
        client.wait_for_workflow_completion(trigger.instance_id, timeout_in_seconds=30)
    finally:
        client.close()
    return status


def hold_agent(harness: Harness, tag: str) -> tuple[Any, threading.Event]:
    from dapr_agents import tool

    gate = threading.Event()

    @tool
    def hold() -> str:
        """Wait for the test."""
        gate.wait(30)
        return "released"

    harness.llm.add(ScriptedReply(tool_calls=[ScriptedToolCall("Hold", {})], when=f"{tag} ", repeat=True))
    return harness.agent(tools=[hold]), gate


def test_fires_on_the_interval_with_an_instance_id_per_fire_time(harness: Harness) -> None:
    agent = harness.agent()
    tag = marker()
    seen: list[Fire] = []

    def task(fire: Fire) -> str:
        seen.append(fire)
        return f"{tag} tick {fire.fire_time:%H:%M:%S}"

    trigger = schedule_trigger(agent, every=timedelta(seconds=1), task=task, overlap="allow")
    harness.runner().workflow(agent)
    wait_until(lambda: len(task_requests(harness.llm, tag)) >= 3, what="three fires")
    stop_schedule(harness, trigger)
    harness.instances += [fire.instance_id for fire in seen]
    harness.wait_finished(harness.instances)
    times = [fire.fire_time for fire in seen]
    assert all(t.microsecond == 0 for t in times)
    assert [b - a for a, b in itertools.pairwise(times)] == [timedelta(seconds=1)] * (len(times) - 1)
    assert [fire.instance_id for fire in seen] == [trigger.fire_instance_id(t) for t in times]
    assert fire_times(task_requests(harness.llm, tag)) == [f"{t:%H:%M:%S}" for t in times]


def test_overlap_skip_does_not_start_while_the_previous_run_runs(harness: Harness) -> None:
    tag = marker()
    agent, gate = hold_agent(harness, tag)
    trigger = schedule_trigger(
        agent, every=1, task=lambda f: f"{tag} tick {f.fire_time:%H:%M:%S}", overlap="skip"
    )
    harness.runner().workflow(agent)
    wait_until(lambda: len(task_requests(harness.llm, tag)) == 1, what="the first fire")
    time.sleep(3.5)  # three more fire times pass while the first run holds
    assert len(task_requests(harness.llm, tag)) == 1
    gate.set()
    wait_until(lambda: len(task_requests(harness.llm, tag)) >= 2, what="a fire after the run ended")
    status = stop_schedule(harness, trigger)
    assert status["skipped"] >= 3
    harness.instances.append(status["last_run"])


def test_overlap_buffer_one_runs_one_queued_fire_after_the_previous(harness: Harness) -> None:
    tag = marker()
    agent, gate = hold_agent(harness, tag)
    trigger = schedule_trigger(
        agent, every=2, task=lambda f: f"{tag} tick {f.fire_time:%H:%M:%S}", overlap="buffer_one"
    )
    harness.runner().workflow(agent)
    wait_until(lambda: len(task_requests(harness.llm, tag)) == 1, what="the first fire")
    first = fire_times(task_requests(harness.llm, tag))[0]
    time.sleep(4.5)  # two more fire times: one is buffered, the other skipped
    assert len(task_requests(harness.llm, tag)) == 1
    gate.set()
    wait_until(lambda: len(task_requests(harness.llm, tag)) >= 2, what="the buffered fire", timeout=10)
    buffered = fire_times(task_requests(harness.llm, tag))[1]
    # The buffered run is the first fire after the held one, not the latest.
    expected = (datetime.strptime(first, "%H:%M:%S") + timedelta(seconds=2)).strftime("%H:%M:%S")
    assert buffered == expected
    status = stop_schedule(harness, trigger)
    assert status["skipped"] >= 1
    harness.instances.append(status["last_run"])


def test_overlap_allow_starts_regardless(harness: Harness) -> None:
    tag = marker()
    agent, gate = hold_agent(harness, tag)
    seen: list[Fire] = []

    def task(fire: Fire) -> str:
        seen.append(fire)
        return f"{tag} tick {fire.fire_time:%H:%M:%S}"

    trigger = schedule_trigger(agent, every=1, task=task, overlap="allow")
    harness.runner().workflow(agent)
    try:
        wait_until(lambda: len(task_requests(harness.llm, tag)) >= 3, what="three overlapping runs")
    finally:
        gate.set()
    status = stop_schedule(harness, trigger)
    assert status["skipped"] == 0
    harness.instances += [fire.instance_id for fire in seen]


def test_registration_happens_on_the_agents_runtime_before_hosting(harness: Harness) -> None:
    agent = harness.agent()
    trigger = schedule_trigger(agent, cron="0 0 1 1 *", task="new year")
    # In memory only: the workflow is known to the agent's runtime, nothing is started yet.
    assert trigger.workflow_name in agent.runtime._WorkflowRuntime__worker._registry.orchestrators
    from dapr.ext.workflow import DaprWorkflowClient

    client = DaprWorkflowClient()
    try:
        assert client.get_workflow_state(trigger.instance_id) is None
        runner = harness.runner()
        runner.workflow(agent)
        state = wait_until(
            lambda: client.get_workflow_state(trigger.instance_id), what="the schedule instance"
        )
        assert state.runtime_status.name == "RUNNING"
        custom = wait_until(
            lambda: json.loads(
                client.get_workflow_state(trigger.instance_id).serialized_custom_status or "null"
            ),
            what="the schedule's status",
        )
        assert custom["next"].endswith("-01-01T00:00:00")
    finally:
        client.close()
    stop_schedule(harness, trigger)
    (close,) = runner._activation_closers[id(agent)]
    runner.shutdown(agent)
    close()  # idempotent after the runner's own call
    close()


def test_a_second_schedule_needs_its_own_name(harness: Harness) -> None:
    agent = harness.agent()
    schedule_trigger(agent, every=60, task="a")
    with pytest.raises(TriggerConfigError, match="already has a schedule named 'default'"):
        schedule_trigger(agent, every=30, task="b")
    schedule_trigger(agent, every=30, task="b", name="fast")


def test_registration_after_hosting_fails(harness: Harness) -> None:
    agent = harness.agent()
    harness.runner().workflow(agent)
    with pytest.raises(RuntimeError):
        schedule_trigger(agent, every=60, task="late")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "x"}, "exactly one of cron= or every="),
        ({"cron": "* * * * *", "every": 5, "task": "x"}, "exactly one of cron= or every="),
        ({"cron": "61 * * * *", "task": "x"}, "minute 61 is out of range 0-59"),
        ({"every": 0.5, "task": "x"}, "every=0.5 is too small"),
        ({"every": 1.5, "task": "x"}, "every=1.5: use a whole number of seconds"),
        ({"every": 5, "task": "x", "overlap": "queue"}, "overlap='queue'"),
        ({"every": 5, "task": "x", "catch_up": 1}, "catch_up=1 is too small"),
        ({"every": 5, "task": ""}, "task=''"),
    ],
)
def test_bad_arguments_name_the_value(harness: Harness, kwargs: dict[str, Any], message: str) -> None:
    agent = harness.agent()
    with pytest.raises(TriggerConfigError, match=message.replace("(", r"\(")):
        schedule_trigger(agent, **kwargs)
