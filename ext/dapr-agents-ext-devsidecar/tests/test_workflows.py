"""Workflow semantics through the unmodified dapr-ext-workflow SDK, on every state backend.

Each test registers its workflows on a fresh ``WorkflowRuntime`` connected to the test's sidecar
(or to an external daprd with ``DAPR_TEST_SIDECAR=external``) and drives them with
``DaprWorkflowClient``, exactly as an application would.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import dapr.ext.workflow as wf
import pytest


class Harness:
    """A WorkflowRuntime plus client; register first, then ``start()``."""

    def __init__(self) -> None:
        self.runtime = wf.WorkflowRuntime()
        self.client: wf.DaprWorkflowClient | None = None
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1

    def start(self) -> wf.DaprWorkflowClient:
        self.runtime.start()
        self.client = wf.DaprWorkflowClient()
        return self.client

    def run(
        self,
        workflow: Callable[..., Any],
        payload: Any = None,
        *,
        instance_id: str | None = None,
        timeout: int = 30,
    ) -> Any:
        assert self.client is not None
        instance = self.client.schedule_new_workflow(workflow, input=payload, instance_id=instance_id)
        state = self.client.wait_for_workflow_completion(instance, timeout_in_seconds=timeout)
        assert state is not None
        return state


@pytest.fixture
def harness(dapr_sidecar: Any) -> Iterator[Harness]:
    harness = Harness()
    try:
        yield harness
    finally:
        harness.runtime.shutdown()


def test_sequential_activities_and_fan_out_fan_in(harness: Harness, unique: str) -> None:
    def square(ctx: Any, value: int) -> int:
        harness.count("square")
        return value * value

    def workflow(ctx: wf.DaprWorkflowContext, values: list[int]) -> Any:
        first = yield ctx.call_activity(square, input=values[0])
        rest = yield wf.when_all([ctx.call_activity(square, input=v) for v in values[1:]])
        return [first, *rest]

    harness.runtime.register_activity(square)
    harness.runtime.register_workflow(workflow)
    harness.start()
    state = harness.run(workflow, [2, 3, 4, 5], instance_id=f"{unique}-fan")
    assert state.runtime_status == wf.WorkflowStatus.COMPLETED
    assert state.serialized_output == "[4, 9, 16, 25]"
    assert harness.calls["square"] == 4  # replays never run an activity again


def test_when_any_returns_the_first_finished_task(harness: Harness, unique: str) -> None:
    def slow(ctx: Any, _: Any) -> str:
        time.sleep(1.0)
        return "slow"

    def fast(ctx: Any, _: Any) -> str:
        return "fast"

    def workflow(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
        winner = yield wf.when_any([ctx.call_activity(slow), ctx.call_activity(fast)])
        return winner.get_result()

    for activity in (slow, fast):
        harness.runtime.register_activity(activity)
    harness.runtime.register_workflow(workflow)
    harness.start()
    assert harness.run(workflow, instance_id=f"{unique}-any").serialized_output == '"fast"'


def test_activity_retry_policy(harness: Harness, unique: str) -> None:
    def flaky(ctx: Any, _: Any) -> str:
        harness.count("flaky")
        if harness.calls["flaky"] < 3:
            raise RuntimeError("transient")
        return "ok"

    policy = wf.RetryPolicy(first_retry_interval=timedelta(milliseconds=50), max_number_of_attempts=3)

    def workflow(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
        return (yield ctx.call_activity(flaky, retry_policy=policy))

    harness.runtime.register_activity(flaky)
    harness.runtime.register_workflow(workflow)
    harness.start()
    state = harness.run(workflow, instance_id=f"{unique}-retry")
    assert state.runtime_status == wf.WorkflowStatus.COMPLETED
    assert harness.calls["flaky"] == 3


def test_activity_failure_fails_the_workflow_with_details(harness: Harness, unique: str) -> None:
    def broken(ctx: Any, _: Any) -> None:
        raise ValueError("no such order 42")

    def workflow(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
        return (yield ctx.call_activity(broken))

    harness.runtime.register_activity(broken)
    harness.runtime.register_workflow(workflow)
    harness.start()
    state = harness.run(workflow, instance_id=f"{unique}-broken")
    assert state.runtime_status == wf.WorkflowStatus.FAILED
    assert "no such order 42" in state.failure_details.message


def test_timer_delays_the_workflow(harness: Harness, unique: str) -> None:
    def workflow(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
        start = ctx.current_utc_datetime
        yield ctx.create_timer(fire_at=start + timedelta(seconds=1))
        return (ctx.current_utc_datetime - start).total_seconds()

    harness.runtime.register_workflow(workflow)
    harness.start()
    began = time.monotonic()
    state = harness.run(workflow, instance_id=f"{unique}-timer")
    assert state.runtime_status == wf.WorkflowStatus.COMPLETED
    assert time.monotonic() - began >= 1.0
    assert float(state.serialized_output) >= 1.0


def test_external_events_before_and_after_the_wait(harness: Harness, unique: str) -> None:
    def workflow(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
        early = yield ctx.wait_for_external_event("early")
        late = yield ctx.wait_for_external_event("Late")  # names match case-insensitively
        return [early, late]

    harness.runtime.register_workflow(workflow)
    client = harness.start()
    instance = client.schedule_new_workflow(workflow, instance_id=f"{unique}-events")
    client.raise_workflow_event(instance, "early", data=1)
    time.sleep(0.5)
    client.raise_workflow_event(instance, "late", data={"n": 2})
    state = client.wait_for_workflow_completion(instance, timeout_in_seconds=30)
    assert state.serialized_output == '[1, {"n": 2}]'


def test_external_event_wait_with_timeout(harness: Harness, unique: str) -> None:
    def workflow(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
        approval = ctx.wait_for_external_event("approval")
        timeout = ctx.create_timer(timedelta(seconds=1))
        winner = yield wf.when_any([approval, timeout])
        return "approved" if winner == approval else "timed out"

    harness.runtime.register_workflow(workflow)
    client = harness.start()
    assert harness.run(workflow, instance_id=f"{unique}-timeout").serialized_output == '"timed out"'
    instance = client.schedule_new_workflow(workflow, instance_id=f"{unique}-approved")
    client.raise_workflow_event(instance, "approval", data=True)
    assert (
        client.wait_for_workflow_completion(instance, timeout_in_seconds=30).serialized_output == '"approved"'
    )


def test_child_workflows_and_failure_propagation(harness: Harness, unique: str) -> None:
    def child(ctx: wf.DaprWorkflowContext, value: int) -> Any:
        if value < 0:
            raise ValueError(f"negative {value}")
        return value + 1

    def parent(ctx: wf.DaprWorkflowContext, values: list[int]) -> Any:
        results = yield wf.when_all([ctx.call_child_workflow(child, input=v) for v in values])
        try:
            yield ctx.call_child_workflow(child, input=-1, instance_id=f"{ctx.instance_id}-bad")
        except wf.TaskFailedError as exc:
            return {"results": results, "error": str(exc)}
        return {"results": results}

    harness.runtime.register_workflow(child)
    harness.runtime.register_workflow(parent)
    client = harness.start()
    state = harness.run(parent, [1, 2], instance_id=f"{unique}-parent")
    assert state.runtime_status == wf.WorkflowStatus.COMPLETED
    assert '"results": [2, 3]' in state.serialized_output
    assert "negative -1" in state.serialized_output
    failed_child = client.get_workflow_state(f"{unique}-parent-bad")
    assert failed_child is not None
    assert failed_child.runtime_status == wf.WorkflowStatus.FAILED


def test_continue_as_new_keeps_carried_over_events(harness: Harness, unique: str) -> None:
    def counter(ctx: wf.DaprWorkflowContext, count: int) -> Any:
        if count >= 3:
            return count
        value = yield ctx.wait_for_external_event("add")
        ctx.continue_as_new(count + value, save_events=True)

    harness.runtime.register_workflow(counter)
    client = harness.start()
    instance = client.schedule_new_workflow(counter, input=0, instance_id=f"{unique}-can")
    for _ in range(3):
        client.raise_workflow_event(instance, "add", data=1)
    state = client.wait_for_workflow_completion(instance, timeout_in_seconds=30)
    assert state.runtime_status == wf.WorkflowStatus.COMPLETED
    assert state.serialized_output == "3"


def test_terminate_is_recursive(harness: Harness, unique: str) -> None:
    def waiting_child(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
        yield ctx.wait_for_external_event("never")

    def waiting_parent(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
        yield ctx.call_child_workflow(waiting_child, instance_id=f"{ctx.instance_id}-child")

    harness.runtime.register_workflow(waiting_child)
    harness.runtime.register_workflow(waiting_parent)
    client = harness.start()
    instance = client.schedule_new_workflow(waiting_parent, instance_id=f"{unique}-term")
    client.wait_for_workflow_start(instance, timeout_in_seconds=30)
    deadline = time.monotonic() + 10
    while client.get_workflow_state(f"{instance}-child") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    client.terminate_workflow(instance, output="stopped", recursive=True)
    parent_state = client.wait_for_workflow_completion(instance, timeout_in_seconds=30)
    child_state = client.wait_for_workflow_completion(f"{instance}-child", timeout_in_seconds=30)
    assert parent_state.runtime_status == wf.WorkflowStatus.TERMINATED
    assert child_state.runtime_status == wf.WorkflowStatus.TERMINATED


def test_suspend_buffers_events_until_resume(harness: Harness, unique: str) -> None:
    def workflow(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
        return (yield ctx.wait_for_external_event("go"))

    harness.runtime.register_workflow(workflow)
    client = harness.start()
    instance = client.schedule_new_workflow(workflow, instance_id=f"{unique}-suspend")
    client.wait_for_workflow_start(instance, timeout_in_seconds=30)
    client.pause_workflow(instance)
    assert client.get_workflow_state(instance).runtime_status == wf.WorkflowStatus.SUSPENDED
    client.raise_workflow_event(instance, "go", data="now")
    time.sleep(0.5)
    assert client.get_workflow_state(instance).runtime_status == wf.WorkflowStatus.SUSPENDED
    client.resume_workflow(instance)
    state = client.wait_for_workflow_completion(instance, timeout_in_seconds=30)
    assert state.serialized_output == '"now"'


def test_instance_ids_are_unique_while_running_and_reusable_after(harness: Harness, unique: str) -> None:
    def workflow(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
        return (yield ctx.wait_for_external_event("go"))

    harness.runtime.register_workflow(workflow)
    client = harness.start()
    instance = client.schedule_new_workflow(workflow, instance_id=f"{unique}-id")
    with pytest.raises(Exception) as duplicate:
        client.schedule_new_workflow(workflow, instance_id=instance)
    assert "already exists" in str(duplicate.value)
    client.raise_workflow_event(instance, "go", data=1)
    assert client.wait_for_workflow_completion(instance, timeout_in_seconds=30).serialized_output == "1"
    client.schedule_new_workflow(workflow, instance_id=instance)  # finished: the id can be reused
    client.raise_workflow_event(instance, "go", data=2)
    assert client.wait_for_workflow_completion(instance, timeout_in_seconds=30).serialized_output == "2"


def test_custom_status_and_purge(harness: Harness, unique: str) -> None:
    def workflow(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
        ctx.set_custom_status("halfway")
        yield ctx.wait_for_external_event("go")
        return "done"

    harness.runtime.register_workflow(workflow)
    client = harness.start()
    instance = client.schedule_new_workflow(workflow, instance_id=f"{unique}-purge")
    deadline = time.monotonic() + 10
    while (
        client.get_workflow_state(instance).serialized_custom_status or ""
    ) != "halfway" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get_workflow_state(instance).serialized_custom_status == "halfway"
    client.raise_workflow_event(instance, "go")
    client.wait_for_workflow_completion(instance, timeout_in_seconds=30)
    client.purge_workflow(instance)
    assert client.get_workflow_state(instance) is None


def test_unknown_instances(harness: Harness, unique: str) -> None:
    client = harness.start()
    assert client.get_workflow_state(f"{unique}-nobody") is None
    with pytest.raises(Exception) as failure:
        client.raise_workflow_event(f"{unique}-nobody", "x")
    assert "no such instance exists" in str(failure.value)


def test_child_workflow_retry_policy(harness: Harness, unique: str) -> None:
    def shaky_child(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
        if not ctx.is_replaying:
            harness.count("child-run")
        if harness.calls["child-run"] < 2:
            raise RuntimeError("first attempt fails")
        return "child ok"

    policy = wf.RetryPolicy(first_retry_interval=timedelta(milliseconds=50), max_number_of_attempts=3)

    def parent(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
        return (yield ctx.call_child_workflow(shaky_child, retry_policy=policy))

    harness.runtime.register_workflow(shaky_child)
    harness.runtime.register_workflow(parent)
    harness.start()
    state = harness.run(parent, instance_id=f"{unique}-child-retry")
    assert state.runtime_status == wf.WorkflowStatus.COMPLETED
    assert state.serialized_output == '"child ok"'


def test_many_instances_run_in_parallel(harness: Harness, unique: str) -> None:
    running = {"now": 0, "most": 0}
    guard = threading.Lock()

    def pause(ctx: Any, seconds: float) -> float:
        with guard:
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
        time.sleep(seconds)
        with guard:
            running["now"] -= 1
        return seconds

    def workflow(ctx: wf.DaprWorkflowContext, index: int) -> Any:
        yield ctx.call_activity(pause, input=0.2)
        return index

    harness.runtime.register_activity(pause)
    harness.runtime.register_workflow(workflow)
    client = harness.start()
    ids = [
        client.schedule_new_workflow(workflow, input=i, instance_id=f"{unique}-many-{i}") for i in range(40)
    ]
    outputs = [client.wait_for_workflow_completion(i, timeout_in_seconds=60).serialized_output for i in ids]
    assert outputs == [str(i) for i in range(40)]
    assert running["most"] > 1  # activities of different instances were dispatched together


@pytest.mark.devsidecar_only
def test_stray_completions_and_late_events_are_ignored(
    harness: Harness, dapr_sidecar: Any, unique: str
) -> None:
    import grpc
    from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2 as pb
    from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

    def workflow(ctx: wf.DaprWorkflowContext, value: int) -> Any:
        return value

    harness.runtime.register_workflow(workflow)
    client = harness.start()
    state = harness.run(workflow, 5, instance_id=f"{unique}-done")
    channel = grpc.insecure_channel(dapr_sidecar.grpc_address)
    stub = pb_grpc.TaskHubSidecarServiceStub(channel)
    # A result for work nobody handed out, and one for a finished instance: acknowledged, ignored.
    stub.CompleteActivityTask(pb.ActivityResponse(instanceId=f"{unique}-nobody", taskId=1))
    stub.CompleteActivityTask(pb.ActivityResponse(instanceId=state.instance_id, taskId=1))
    stub.CompleteOrchestratorTask(pb.WorkflowResponse(instanceId=state.instance_id))
    channel.close()
    client.raise_workflow_event(state.instance_id, "late", data=1)  # finished: dropped, no error
    after = client.get_workflow_state(state.instance_id)
    assert after is not None
    assert after.runtime_status == wf.WorkflowStatus.COMPLETED
    assert after.serialized_output == "5"
