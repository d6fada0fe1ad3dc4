"""a2a_agent_tool against serve_a2a, through Dapr service invocation (dev sidecar and real daprd):
by app id and by URL, questions, failures, timeouts, idempotent retries by message id, and a
workflow activity whose caller app is SIGKILLed mid-call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import dapr.ext.workflow as wf
import pytest
from a2a.types import a2a_pb2
from a2a_official import official_client
from conftest import Apps, wait_until

from dapr_agents.ext.a2a import (
    A2ACallTimeout,
    A2AInputRequired,
    A2ATaskFailed,
    AgentCardError,
    a2a_agent_tool,
)

pytestmark = pytest.mark.starts_sidecars

HERE = Path(__file__).parent


def test_call_by_app_id_through_the_sidecar(make_apps: Callable[..., Apps]) -> None:
    apps = make_apps()
    with apps.caller.sdk_configured():
        tool = a2a_agent_tool(apps.server.app_id, timeout=60)
        assert tool.name == "LogisticsAgent"
        assert "Finds shipments" in tool.description and "Where is my order?" in tool.description
        result = tool.call("echo box 7")
    assert result.text == "echo: box 7"
    assert result.state == "completed" and result.task_id and result.context_id


def test_call_by_url(make_apps: Callable[..., Apps]) -> None:
    apps = make_apps()
    tool = a2a_agent_tool(url=f"http://127.0.0.1:{apps.server.port}")
    assert tool.call("echo direct").text == "echo: direct"


def test_input_required_is_a_typed_error_and_the_answer_continues_the_task(
    make_apps: Callable[..., Apps],
) -> None:
    apps = make_apps()
    with apps.caller.sdk_configured():
        tool = a2a_agent_tool(apps.server.app_id, timeout=60)
        with pytest.raises(A2AInputRequired) as asked:
            tool.call("ask")
        assert asked.value.question == "Which city should it ship to?"
        result = tool.call("Porto", task_id=asked.value.task_id, context_id=asked.value.context_id)
    assert result.text == "shipping to Porto"
    assert result.task_id == asked.value.task_id


def test_failure_timeout_and_unknown_app(make_apps: Callable[..., Apps]) -> None:
    apps = make_apps()
    with apps.caller.sdk_configured():
        tool = a2a_agent_tool(apps.server.app_id, timeout=60)
        with pytest.raises(A2ATaskFailed, match="the warehouse is on fire") as failed:
            tool.call("fail")
        assert failed.value.state == "failed"
        with pytest.raises(A2ACallTimeout) as late:
            tool.call("wait too long", timeout=3)
        with pytest.raises(AgentCardError, match="no-such-app"):
            a2a_agent_tool("no-such-app").card()
    # The timed-out task was canceled on the server.
    import asyncio

    async def state() -> int:
        async with official_client(apps.base_url) as (client, _):
            task = await client.get_task(a2a_pb2.GetTaskRequest(id=late.value.task_id))
            return task.status.state

    assert asyncio.run(state()) == a2a_pb2.TASK_STATE_CANCELED


def test_the_same_message_id_runs_the_agent_once(make_apps: Callable[..., Apps]) -> None:
    apps = make_apps()
    with apps.caller.sdk_configured():
        tool = a2a_agent_tool(apps.server.app_id, timeout=60)
        first = tool.call("echo idempotent", message_id="msg-1")
        second = tool.call("echo idempotent", message_id="msg-1")
    assert first == second
    assert [run["text"] for run in apps.server.runs()] == ["echo idempotent"]


def test_a_workflow_activity_killed_mid_call_sends_no_second_message(
    make_apps: Callable[..., Apps], tmp_path: Path
) -> None:
    """The caller app dies while the remote task works; restarted, Dapr redelivers the activity,
    which sends the same message id: the server answers with the task it has, the agent ran once."""
    apps = make_apps()
    env = {**os.environ, **apps.caller.env(), "A2A_SERVER_APP_ID": apps.server.app_id}

    def start_caller() -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, str(HERE / "caller_app.py")], env=env, stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None and process.stdout.readline().strip() == "caller ready"
        return process

    caller = start_caller()
    try:
        with apps.caller.sdk_configured():
            client = wf.DaprWorkflowClient()
            instance = client.schedule_new_workflow("ask-logistics", input="wait order 9")
            wait_until(lambda: list(apps.server.workdir.glob("started-*")), what="the remote agent started")
            caller.kill()
            caller.wait()
            caller = start_caller()
            (apps.server.workdir / "release").touch()
            state = client.wait_for_workflow_completion(instance, timeout_in_seconds=180)
        assert state is not None and state.runtime_status == wf.WorkflowStatus.COMPLETED
        answer = json.loads(state.serialized_output)
        assert answer["text"] == "done: order 9"
        assert [run["text"] for run in apps.server.runs()] == ["wait order 9"]
    finally:
        caller.terminate()
        caller.wait(15)
