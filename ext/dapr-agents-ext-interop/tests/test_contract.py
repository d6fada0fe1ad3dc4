"""The contract, checked against dapr-agents itself: workflow names, envelope, registry records."""

from __future__ import annotations

import pytest

from dapr_agents.ext.interop import (
    AgentRecord,
    AgentRequest,
    AgentResponse,
    InvalidAgentInput,
    InvalidAgentOutput,
    agent_workflow_name,
    call_instance_id,
    sanitize_agent_name,
)

NAMING_CASES = [
    ("helper", "openai", None),
    ("Triage Agent", "openai", None),
    ("triage_agent", "OpenAI", None),
    ("graph-1", "LangGraph", None),
    ("x", "lang graph", None),
    ("x", "crew_ai", None),
    ("x", "Dapr Agents", None),
    ("x", "dapr_agents", None),
    ("x", "Dapr.Agents", None),
    ("x", None, None),
    ("dapr.custom.thing.workflow", "openai", None),
    ("x", "openai", "my.explicit.workflow"),
    ("café<finder>|/\\", "crewai", None),
    ("", "openai", None),
    ("a" * 64, "openai", None),
]


@pytest.mark.parametrize(("name", "framework", "workflow_name"), NAMING_CASES)
def test_workflow_names_equal_dapr_agents(
    name: str, framework: str | None, workflow_name: str | None
) -> None:
    from dapr_agents.tool.workflow.agent_tool import agent_workflow_id

    expected = agent_workflow_id(name, framework=framework, workflow_name=workflow_name)
    assert agent_workflow_name(name, framework=framework, workflow_name=workflow_name) == expected


def test_overlong_names_fail_like_dapr_agents() -> None:
    from dapr_agents.tool.workflow.agent_tool import agent_workflow_id

    with pytest.raises(ValueError):
        agent_workflow_id("a" * 65, framework="openai")
    with pytest.raises(ValueError, match="65 characters"):
        agent_workflow_name("a" * 65, framework="openai")
    assert sanitize_agent_name("My Agent!") == "MyAgent"


def test_request_round_trips_the_envelope_dapr_agents_sends() -> None:
    sent = {"task": "summarise", "_message_metadata": {"source": "boss", "_stream_context": {"a": 1}}}
    request = AgentRequest.from_input(sent)
    assert request.task == "summarise"
    assert request.source == "boss"
    assert request.to_input() == sent
    assert AgentRequest(task="t").to_input() == {"task": "t"}  # no empty metadata, as dapr-agents
    assert AgentRequest.from_input("plain text").task == "plain text"
    assert AgentRequest.from_input('{"task": "from json"}').task == "from json"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"prompt": "x"}, "no 'task'"),
        ({"task": 3}, "not a valid envelope"),
        (42, "not int"),
        (None, "not NoneType"),
    ],
)
def test_bad_input_names_what_arrived(value: object, fragment: str) -> None:
    with pytest.raises(InvalidAgentInput, match=fragment):
        AgentRequest.from_input(value)


def test_response_shapes() -> None:
    assert AgentResponse.from_result("hi").to_output() == {"role": "assistant", "content": "hi"}
    durable_agent_output = {"content": "done", "role": "assistant", "id": "x", "name": "boss"}
    assert AgentResponse.from_result(durable_agent_output).to_output() == durable_agent_output
    assert AgentResponse.from_workflow_output('{"role": "assistant", "content": "ok"}').content == "ok"
    with pytest.raises(InvalidAgentOutput, match="output mapper"):
        AgentResponse.from_result({"answer": 1})
    with pytest.raises(InvalidAgentOutput, match="output mapper"):
        AgentResponse.from_result(["a"])


def test_call_instance_ids_are_deterministic_and_distinct() -> None:
    first = call_instance_id("dapr.openai.helper.workflow", "thread-1:call_1")
    assert first == call_instance_id("dapr.openai.helper.workflow", "thread-1:call_1")
    assert first != call_instance_id("dapr.openai.helper.workflow", "thread-2:call_1")
    assert first != call_instance_id("dapr.openai.other.workflow", "thread-1:call_1")
    assert "||" not in call_instance_id("dapr.x||y.workflow", "k||v")
    with pytest.raises(ValueError):
        call_instance_id("w", "")


def test_registry_record_validates_as_dapr_agents_schema() -> None:
    from dapr_agents.agents.configs import AgentMetadataSchema

    record = AgentRecord(
        name="Triage Agent", app_id="support", framework="openai", role="triage", goal="route"
    )
    data = record.to_registry()
    schema = AgentMetadataSchema.model_validate(data)
    assert schema.agent.appid == "support"
    assert schema.agent.framework == "openai"
    assert schema.agent.orchestrator is False
    assert schema.agent.metadata == {"workflow_name": "dapr.openai.TriageAgent.workflow"}
    assert AgentRecord.from_registry(schema.model_dump(mode="json")) == record.model_copy(
        update={"workflow_name": "dapr.openai.TriageAgent.workflow"}
    )
