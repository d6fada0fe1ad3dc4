"""Calling an agent hosted by another app (two sidecars sharing one durable store, as daprd apps
share the actor state store): through the local proxy workflow, with timeouts reaching the child."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import dapr.ext.workflow as wf
import pytest
from conftest import App, wait_until
from dapr.clients import DaprClient

from dapr_agents.ext.interop import (
    AgentCall,
    AgentCallError,
    AgentCallTimeout,
    AgentClient,
    enable_remote_calls,
    host_agent,
)

# Two apps, each with its own sidecar: an external daprd is one app.
pytestmark = pytest.mark.starts_sidecars


def client_for(app: App) -> AgentClient:
    """A client of the calling app (the in-process SDK points at its sidecar, see ``apps``)."""
    return AgentClient(workflow_client=app.workflow_client(), dapr_client=DaprClient())


@pytest.fixture
def apps(make_app: Callable[..., App]) -> Iterator[tuple[App, App]]:
    caller, callee = make_app("caller", "sqlite"), make_app("callee", "sqlite")
    with caller.endpoint.sdk_configured():
        yield caller, callee


def test_call_an_agent_in_another_app(apps: tuple[App, App]) -> None:
    caller, callee = apps
    seen: list[AgentCall] = []

    def run(call: AgentCall) -> str:
        seen.append(call)
        return f"callee did {call.task}"

    host_agent(callee.runtime, name="specialist", framework="openai", run=run)
    enable_remote_calls(caller.runtime)
    callee.start()
    caller.start()
    client = client_for(caller)
    answer = client.call(
        "specialist", "a job", framework="openai", app_id="callee", source="boss", timeout=60
    )
    assert answer.content == "callee did a job"
    [call] = seen
    assert call.source == "boss"
    # The same key again: answered from the finished call, no second run in the other app.
    key = {"framework": "openai", "app_id": "callee", "idempotency_key": "k1", "timeout": 60}
    assert client.call("specialist", "again", **key).content == "callee did again"  # type: ignore[arg-type]
    assert client.call("specialist", "again", **key).content == "callee did again"  # type: ignore[arg-type]
    assert [c.task for c in seen] == ["a job", "again"]
    # Naming the caller's own app goes straight to the local workflow (no proxy needed).
    with pytest.raises(AgentCallError, match=r"dapr\.openai\.specialist\.workflow"):
        client.call("specialist", "x", framework="openai", app_id="caller", timeout=30)


def test_remote_failure_and_timeout(apps: tuple[App, App]) -> None:
    caller, callee = apps
    release = threading.Event()

    def failing(call: AgentCall) -> str:
        raise ValueError("remote model error")

    host_agent(callee.runtime, name="failing", framework="openai", run=failing, retry_policy=None)
    host_agent(callee.runtime, name="stuck", framework="openai", run=lambda call: release.wait(30) and "late")
    enable_remote_calls(caller.runtime)
    callee.start()
    caller.start()
    client = client_for(caller)
    with pytest.raises(AgentCallError, match="remote model error"):
        client.call("failing", "x", framework="openai", app_id="callee", timeout=60)
    with pytest.raises(AgentCallTimeout) as caught:
        client.call("stuck", "x", framework="openai", app_id="callee", timeout=2)
    # Terminating the proxy reaches the agent's own instance in the other app.
    child_id = f"{caught.value.instance_id}:agent"
    callee_client = callee.workflow_client()

    def child_terminated() -> bool:
        state = callee_client.get_workflow_state(child_id)
        return state is not None and state.runtime_status == wf.WorkflowStatus.TERMINATED

    wait_until(child_terminated)
    release.set()


def test_remote_call_without_the_proxy_says_what_to_register(apps: tuple[App, App]) -> None:
    caller, callee = apps
    host_agent(callee.runtime, name="specialist", framework="openai", run=lambda call: "ok")
    callee.start()
    caller.start()
    with pytest.raises(AgentCallError, match="enable_remote_calls"):
        client_for(caller).call("specialist", "x", framework="openai", app_id="callee", timeout=30)
