"""Hosting an agent and calling it over the wire: envelope, failures, idempotency, timeouts."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import dapr.ext.workflow as wf
import pytest
from conftest import App, wait_until

from dapr_agents.ext.interop import (
    AgentCall,
    AgentCallConflict,
    AgentCallError,
    AgentCallTimeout,
    AgentClient,
    AgentRequest,
    AsyncAgentClient,
    host_agent,
    host_agent_workflow,
)


def test_hosted_agent_answers_in_the_contract_shape(app: App) -> None:
    calls: list[AgentCall] = []

    def run(call: AgentCall) -> str:
        calls.append(call)
        return f"echo {call.task}"

    host = host_agent(app.runtime, name="Echo Agent", framework="openai", run=run)
    assert host.workflow_name == "dapr.openai.EchoAgent.workflow"
    app.start()
    client = AgentClient()
    answer = client.call("Echo Agent", "hello", framework="openai", source="boss", timeout=30)
    assert answer.content == "echo hello"
    assert answer.role == "assistant"
    [call] = calls
    assert call.source == "boss"
    assert call.agent_name == "Echo Agent"
    # The raw workflow output is exactly what dapr-agents' parent reads.
    state = app.workflow_client().get_workflow_state(call.instance_id)
    assert state is not None
    assert state.serialized_output == '{"role": "assistant", "content": "echo hello"}'
    assert state.serialized_input == '{"task": "hello", "_message_metadata": {"source": "boss"}}'


def test_async_run_and_async_client(app: App) -> None:
    async def run(call: AgentCall) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"content": call.task.upper()}

    host_agent(app.runtime, name="shout", framework="langgraph", run=run)
    app.start()

    async def go() -> str:
        client = AsyncAgentClient()
        try:
            return (await client.call("shout", "quiet", framework="langgraph", timeout=30)).content
        finally:
            await client.close()

    assert asyncio.run(go()) == "QUIET"


def test_failure_fails_the_workflow_with_details_after_retries(app: App) -> None:
    attempts: list[str] = []

    def run(call: AgentCall) -> str:
        attempts.append(call.instance_id)
        raise RuntimeError("the model refused")

    host_agent(
        app.runtime,
        name="broken",
        framework="openai",
        run=run,
        retry_policy=wf.RetryPolicy(
            first_retry_interval=__import__("datetime").timedelta(milliseconds=50), max_number_of_attempts=2
        ),
    )
    app.start()
    with pytest.raises(AgentCallError) as caught:
        AgentClient().call("broken", "x", framework="openai", timeout=30)
    error = caught.value
    assert error.status == "FAILED"
    assert "the model refused" in str(error)
    assert error.error_type == "AgentRunFailed"
    assert error.error_message.startswith("RuntimeError: the model refused")
    assert error.workflow_name == "dapr.openai.broken.workflow"
    assert len(attempts) == 2 and len(set(attempts)) == 1  # retried with the same instance id


def test_bad_output_fails_with_a_mapper_hint(app: App) -> None:
    host_agent(app.runtime, name="structured", framework="openai", run=lambda call: {"answer": 42})
    app.start()
    with pytest.raises(AgentCallError, match="output mapper"):
        AgentClient().call("structured", "x", framework="openai", timeout=30)


def test_bad_input_fails_the_workflow_naming_the_envelope(app: App) -> None:
    host = host_agent(app.runtime, name="strict", framework="openai", run=lambda call: "never")
    app.start()
    client = app.workflow_client()
    instance = client.schedule_new_workflow(host.workflow_name, input={"prompt": "no task"})
    state = client.wait_for_workflow_completion(instance, timeout_in_seconds=30)
    assert state is not None and state.runtime_status == wf.WorkflowStatus.FAILED
    assert "no 'task'" in state.failure_details.message


def test_unknown_agent_error_names_the_workflow(app: App) -> None:
    app.start()
    with pytest.raises(AgentCallError, match=r"dapr\.openai\.nobody\.workflow"):
        AgentClient().call("nobody", "x", framework="openai", timeout=30)


def test_idempotency_key_reattaches_instead_of_running_twice(app: App) -> None:
    runs: list[str] = []
    release = threading.Event()

    def run(call: AgentCall) -> str:
        runs.append(call.task)
        release.wait(20)
        return f"did {call.task}"

    host_agent(app.runtime, name="slow", framework="openai", run=run)
    app.start()
    client = AgentClient()
    first = client.start("slow", "job", framework="openai", idempotency_key="conversation-7:call_1")
    # A retry while running joins the same instance.
    assert client.start("slow", "job", framework="openai", idempotency_key="conversation-7:call_1") == first
    # The same key carrying a different call is a conflict, never a silent join.
    with pytest.raises(AgentCallConflict, match="different call"):
        client.start("slow", "other job", framework="openai", idempotency_key="conversation-7:call_1")
    release.set()
    answer = client.call(
        "slow", "job", framework="openai", idempotency_key="conversation-7:call_1", timeout=30
    )
    assert answer.content == "did job"
    # Completed: a retry gets the same answer again without a second run.
    again = client.call(
        "slow", "job", framework="openai", idempotency_key="conversation-7:call_1", timeout=30
    )
    assert again.content == "did job"
    assert runs == ["job"]
    # Another key is another run.
    client.call("slow", "job", framework="openai", idempotency_key="conversation-8:call_1", timeout=30)
    assert runs == ["job", "job"]


def test_failed_call_is_retried_afresh_with_the_same_key(app: App) -> None:
    outcomes = iter([RuntimeError("flaky"), "recovered"])

    def run(call: AgentCall) -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    host_agent(app.runtime, name="flaky", framework="openai", run=run, retry_policy=None)
    app.start()
    client = AgentClient()
    with pytest.raises(AgentCallError):
        client.call("flaky", "x", framework="openai", idempotency_key="k", timeout=30)
    assert (
        client.call("flaky", "x", framework="openai", idempotency_key="k", timeout=30).content == "recovered"
    )


def test_timeout_terminates_the_run(app: App) -> None:
    release = threading.Event()
    host_agent(app.runtime, name="stuck", framework="openai", run=lambda call: release.wait(30) and "late")
    app.start()
    client = AgentClient()
    with pytest.raises(AgentCallTimeout) as caught:
        client.call("stuck", "x", framework="openai", timeout=1)
    assert isinstance(caught.value, TimeoutError)
    state = app.workflow_client().get_workflow_state(caught.value.instance_id)
    assert state is not None and state.runtime_status == wf.WorkflowStatus.TERMINATED
    release.set()


def test_cancelling_an_async_call_terminates_the_run(app: App) -> None:
    release = threading.Event()
    started = threading.Event()

    def run(call: AgentCall) -> str:
        started.set()
        release.wait(30)
        return "late"

    host_agent(app.runtime, name="stuck", framework="openai", run=run)
    app.start()

    async def go() -> None:
        client = AsyncAgentClient()
        task = asyncio.ensure_future(
            client.call("stuck", "x", framework="openai", instance_id="cancel-me", timeout=60)
        )
        while not started.is_set():
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client.close()

    asyncio.run(go())
    state = app.workflow_client().get_workflow_state("cancel-me")
    assert state is not None and state.runtime_status == wf.WorkflowStatus.TERMINATED
    release.set()


def test_host_agent_workflow_runs_an_orchestration(app: App) -> None:
    def double(ctx: Any, text: str) -> str:
        return text + text

    def orchestrator(ctx: wf.DaprWorkflowContext, request: AgentRequest) -> Any:
        first = yield ctx.call_activity("double", input=request.task)
        second = yield ctx.call_activity("double", input=first)
        return {"content": second}

    app.runtime.register_activity(double, name="double")
    host_agent_workflow(app.runtime, name="crew", framework="crewai", orchestrator=orchestrator)
    app.start()
    assert AgentClient().call("crew", "ab", framework="crewai", timeout=30).content == "abababab"


def test_bad_arguments_are_clear(app: App) -> None:
    with pytest.raises(ValueError, match="non-empty name"):
        host_agent(app.runtime, name=" ", framework="openai", run=lambda call: "")
    with pytest.raises(ValueError, match="framework"):
        host_agent(app.runtime, name="a", framework="", run=lambda call: "")
    with pytest.raises(TypeError, match="callable"):
        host_agent(app.runtime, name="a", framework="openai", run="not callable")  # type: ignore[arg-type]
    client = AgentClient()
    with pytest.raises(ValueError, match="not both"):
        client.start("a", "t", instance_id="i", idempotency_key="k")
    with pytest.raises(ValueError, match="positive"):
        AgentClient(default_timeout=0)
    wait_until(lambda: True)
