"""serve_a2a in front of an agent that is itself a Dapr workflow: one hosted through
``dapr_agents.ext.interop`` (as the LangGraph / OpenAI Agents / CrewAI packages host theirs),
called as a child workflow per turn, with the A2A ids in the envelope's metadata."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf
import pytest
from a2a.types import a2a_pb2
from a2a_official import official_client, send, text_of, user_message
from conftest import endpoint_of, unique_id

from dapr_agents.ext.a2a import serve_a2a
from dapr_agents.ext.devsidecar.testing import free_port
from dapr_agents.ext.interop import AgentCall, host_agent

pytestmark = pytest.mark.starts_sidecars


@pytest.fixture
def hosted(
    components: Path, dapr_sidecar_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, list[AgentCall]]]:
    monkeypatch.setenv("DAPR_DEVSIDECAR_HOME", str(tmp_path / "home"))
    server_id, port = unique_id("a2a-hosted"), free_port()
    sidecar = endpoint_of(dapr_sidecar_factory.start(components, app_id=server_id, app_port=port))
    caller = endpoint_of(dapr_sidecar_factory.start(components, app_id=unique_id("a2a-caller")))
    seen: list[AgentCall] = []

    def run(call: AgentCall) -> str:
        seen.append(call)
        return f"hosted agent did: {call.task}"

    with sidecar.sdk_configured():
        runtime = wf.WorkflowRuntime(host=sidecar.host, port=str(sidecar.grpc_port))
        host_agent(
            runtime, name="Echo Agent", framework="openai", run=run, role="echoes", goal="Echoes tasks back."
        )
        server = serve_a2a(
            runtime, agent="Echo Agent", framework="openai", description="Echoes tasks back.", port=port
        )
        runtime.start()
        server.start()
        try:
            yield f"{caller.http_endpoint}/v1.0/invoke/{server_id}/method", seen
        finally:
            server.stop()
            time.sleep(0.2)
            runtime.shutdown()


async def test_an_interop_hosted_agent_behind_serve_a2a(hosted: tuple[str, list[AgentCall]]) -> None:
    base_url, seen = hosted
    async with official_client(base_url) as (client, card):
        assert card.name == "Echo Agent" and card.description == "Echoes tasks back."
        [event] = await send(client, user_message("count the parcels", context_id="ctx-7"))
        assert event.task.status.state == a2a_pb2.TASK_STATE_COMPLETED
        assert text_of(event.task.artifacts[0].parts) == "hosted agent did: count the parcels"
    [call] = seen
    assert call.source == "a2a"
    assert call.request.message_metadata["a2a_context_id"] == "ctx-7"
    assert call.request.message_metadata["a2a_task_id"] == event.task.id
