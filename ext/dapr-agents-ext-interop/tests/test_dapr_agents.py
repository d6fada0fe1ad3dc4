"""The contract against dapr-agents itself: a real DurableAgent calls hosted agents as tools
(explicitly via ``agent_to_tool`` and through registry discovery) and is called by the client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from conftest import App

from dapr_agents.ext.devsidecar._scripted_llm import ScriptedChatServer, ScriptedReply, ScriptedToolCall
from dapr_agents.ext.interop import AgentCall, AgentClient, AgentRegistry, host_agent


def durable_agent(
    app: App, server: ScriptedChatServer, name: str = "boss", tools: list[Any] | None = None
) -> Any:
    from dapr_agents import DurableAgent
    from dapr_agents.llm.openai import OpenAIChatClient

    return DurableAgent(
        name=name,
        role="coordinator",
        goal="delegate",
        llm=OpenAIChatClient(base_url=server.base_url, api_key="scripted", model="scripted"),
        tools=tools or [],
        runtime=app.runtime,
    )


def run_agent(agent: Any, task: str) -> dict[str, Any]:
    from dapr_agents import AgentRunner

    runner = AgentRunner()
    try:
        output = asyncio.run(runner.run(agent, payload={"task": task}, wait=True, timeout_in_seconds=60))
    finally:
        runner.shutdown()
    assert output is not None, "the DurableAgent run failed or timed out (see the log)"
    return dict(json.loads(output))


def tool_messages(server: ScriptedChatServer) -> list[str]:
    """What the agent's LLM saw come back from tool calls."""
    found = []
    for request in server.requests:
        for message in request.get("messages", []):
            if message.get("role") == "tool":
                found.append(message.get("content"))
    return found


def test_durable_agent_calls_a_hosted_agent_via_agent_to_tool(app: App, llm: Any) -> None:
    from dapr_agents.tool.workflow.agent_tool import agent_to_tool

    seen: list[AgentCall] = []

    def run(call: AgentCall) -> str:
        seen.append(call)
        return f"helper says: {call.task} done"

    host_agent(app.runtime, name="Helper Agent", framework="openai", run=run)
    server = llm(
        [
            ScriptedReply(tool_calls=[ScriptedToolCall("HelperAgent", {"task": "count to 3"})]),
            ScriptedReply("final: the helper counted", when="helper says"),
        ]
    )
    agent = durable_agent(app, server, tools=[agent_to_tool("Helper Agent", "counts", framework="openai")])
    output = run_agent(agent, "please delegate")
    assert output["content"] == "final: the helper counted"
    [call] = seen
    assert call.task == "count to 3"
    assert call.source == "boss"
    assert any("helper says: count to 3 done" in (m or "") for m in tool_messages(server))


def test_durable_agent_discovers_hosted_agents_in_the_registry(app: App, llm: Any) -> None:
    host = host_agent(
        app.runtime,
        name="translator",
        framework="langgraph",
        run=lambda call: f"translated {call.task!r}",
        role="Translator",
        goal="translate text",
    )
    AgentRegistry().register(host.record(app.app_id))
    server = llm(
        [
            ScriptedReply(tool_calls=[ScriptedToolCall("translator", {"task": "hola"})]),
            ScriptedReply("final: translated", when="translated"),
        ]
    )
    agent = durable_agent(app, server)
    output = run_agent(agent, "translate hola")
    assert output["content"] == "final: translated"
    # The tool the LLM was offered came from our registry record (description = role + goal).
    offered = [t["function"] for r in server.requests for t in r.get("tools", [])]
    assert any(f["name"] == "translator" and "Translator" in f.get("description", "") for f in offered)
    assert any("translated 'hola'" in (m or "") for m in tool_messages(server))


def test_client_calls_a_durable_agent(app: App, llm: Any) -> None:
    server = llm([ScriptedReply("durable agent answer", repeat=True)])
    agent = durable_agent(app, server, name="Researcher")
    from dapr_agents import AgentRunner

    runner = AgentRunner()
    # Hosting registers dapr.agents.Researcher.workflow and starts the runtime.
    asyncio.run(runner.run(agent, payload={"task": "warm up"}, wait=True, timeout_in_seconds=60))
    try:
        answer = AgentClient().call("Researcher", "find facts", source="caller", timeout=60)
    finally:
        runner.shutdown()
    assert answer.content == "durable agent answer"
    assert answer.role == "assistant"
    assert answer.model_extra and answer.model_extra.get("name") == "Researcher"
