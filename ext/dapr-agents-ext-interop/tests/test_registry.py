"""The dapr-agents registry: records and the etag-guarded index, on every store backend."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable

import pytest
from conftest import App
from dapr.clients import DaprClient

from dapr_agents.ext.devsidecar.testing import external_mode
from dapr_agents.ext.interop import AgentRecord, AgentRegistry, AsyncAgentRegistry, host_agent

# An external daprd has the one store it was started with.
BACKENDS = ["external"] if external_mode() else ["in-memory", "sqlite", "redis"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def raw_index(team: str = "default") -> list[str]:
    with DaprClient() as client:
        data = client.get_state("agent-registry", f"agents:{team}:_index").data
    return list(json.loads(data)["agents"]) if data else []


def test_register_writes_what_dapr_agents_reads(app: App) -> None:
    from dapr_agents.agents.configs import AgentMetadataSchema

    host = host_agent(
        app.runtime, name="Triage Agent", framework="openai", run=lambda call: "", role="triage", goal="route"
    )
    registry = AgentRegistry()
    registry.register(host.record(app.app_id))
    registry.register(host.record(app.app_id))  # idempotent
    assert raw_index() == ["Triage Agent"]
    with DaprClient() as client:
        stored = json.loads(client.get_state("agent-registry", "agents:default:Triage Agent").data)
    schema = AgentMetadataSchema.model_validate(stored)
    assert schema.agent.metadata == {"workflow_name": "dapr.openai.TriageAgent.workflow"}
    assert schema.agent.appid == app.app_id
    assert [r.name for r in registry.list_agents()] == ["Triage Agent"]
    registry.unregister("Triage Agent")
    registry.unregister("Triage Agent")
    assert raw_index() == []
    assert registry.get("Triage Agent") is None


def test_concurrent_registrations_keep_every_name(app: App) -> None:
    names = [f"agent-{i}" for i in range(12)]
    barrier = threading.Barrier(len(names))
    errors: list[BaseException] = []

    def register(name: str) -> None:
        try:
            barrier.wait()
            AgentRegistry(dapr_client=DaprClient(), max_attempts=50).register(
                AgentRecord(name=name, app_id="a", framework="openai")
            )
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=register, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(raw_index()) == sorted(names)


def test_teams_are_separate_and_async_registry_agrees(app: App) -> None:
    async def go() -> list[str]:
        registry = AsyncAgentRegistry(team="blue")
        await registry.register(AgentRecord(name="b1", app_id="a", framework="langgraph"))
        await registry.register(AgentRecord(name="b2", app_id="a", framework="crewai"))
        await registry.unregister("b1")
        return [r.name for r in await registry.list_agents()]

    assert asyncio.run(go()) == ["b2"]
    assert raw_index("blue") == ["b2"]
    assert raw_index("default") == []


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: AgentRegistry(""), "state store name"),
        (lambda: AgentRegistry(team="a:b"), "no ':'"),
        (lambda: AgentRegistry(max_attempts=0), "at least 1"),
    ],
)
def test_bad_registry_arguments(make: Callable[[], object], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        make()
