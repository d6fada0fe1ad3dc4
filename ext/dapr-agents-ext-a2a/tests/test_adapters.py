"""The A2A agent as a tool of LangChain (LangGraph), OpenAI Agents and CrewAI, each calling
serve_a2a through the caller's sidecar; and the missing-extra error."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import Apps

from dapr_agents.ext.a2a import (
    A2AAgentTool,
    MissingExtraError,
    a2a_agent_tool,
    crewai_tool,
    langchain_tool,
    openai_tool,
)
from dapr_agents.ext.devsidecar import ScriptedChatServer, ScriptedReply, ScriptedToolCall

pytestmark = pytest.mark.starts_sidecars


@pytest.fixture
def remote(make_apps: Callable[..., Apps]) -> Iterator[tuple[Apps, A2AAgentTool]]:
    apps = make_apps()
    with apps.caller.sdk_configured():
        yield apps, a2a_agent_tool(apps.server.app_id, timeout=60)


def test_langchain_tool(remote: tuple[Apps, A2AAgentTool]) -> None:
    pytest.importorskip("langchain_core")
    apps, agent = remote
    tool = langchain_tool(agent)
    assert tool.name == "LogisticsAgent"
    call = {"type": "tool_call", "id": "call-1", "name": tool.name, "args": {"task": "echo from langgraph"}}
    config = {"configurable": {"thread_id": "thread-1"}}
    first = tool.invoke(call, config)
    assert first.content == "echo: from langgraph"
    # LangGraph replaying the same tool call of the same thread reaches the same task.
    assert tool.invoke(call, config).content == "echo: from langgraph"
    assert [run["text"] for run in apps.server.runs()] == ["echo from langgraph"]
    asked = tool.invoke({**call, "id": "call-2", "args": {"task": "ask"}}, config).content
    assert "Which city should it ship to?" in asked and "task_id=" in asked


async def test_openai_agents_agent_calls_the_a2a_agent(remote: tuple[Apps, A2AAgentTool]) -> None:
    pytest.importorskip("agents")
    from agents import Agent, Model, ModelProvider, RunConfig, Runner, set_tracing_disabled
    from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel
    from openai import AsyncOpenAI

    set_tracing_disabled(True)
    apps, agent = remote
    tool = openai_tool(agent)
    arguments = {"task": "echo from openai", "task_id": None, "context_id": None}
    script = [
        ScriptedReply(
            tool_calls=[ScriptedToolCall(name=tool.name, arguments=json.dumps(arguments), id="c1")]
        ),
        ScriptedReply("The logistics agent says hi."),
    ]
    with ScriptedChatServer(script, fallback=None) as llm:

        class Scripted(ModelProvider):
            def get_model(self, model_name: str | None) -> Model:
                client = AsyncOpenAI(base_url=llm.base_url, api_key="x", max_retries=0)
                return OpenAIChatCompletionsModel(model="scripted", openai_client=client)

        boss = Agent(name="Boss", instructions="Use the logistics agent.", model="scripted", tools=[tool])
        result = await Runner.run(boss, "Where is it?", run_config=RunConfig(model_provider=Scripted()))
        assert result.final_output == "The logistics agent says hi."
        tool_messages = [m for m in llm.requests[-1]["messages"] if m["role"] == "tool"]
        assert tool_messages[0]["content"] == "echo: from openai"
    assert [run["text"] for run in apps.server.runs()] == ["echo from openai"]


def test_crewai_tool(remote: tuple[Apps, A2AAgentTool]) -> None:
    pytest.importorskip("crewai")
    apps, agent = remote
    tool = crewai_tool(agent)
    assert tool.name == "LogisticsAgent"
    assert tool.run(task="echo from crewai") == "echo: from crewai"
    assert [run["text"] for run in apps.server.runs()] == ["echo from crewai"]


@pytest.mark.parametrize(
    ("adapter", "module", "extra"),
    [
        (langchain_tool, "langchain_core", "langchain"),
        (openai_tool, "agents", "openai-agents"),
        (crewai_tool, "crewai", "crewai"),
    ],
)
def test_a_missing_extra_names_the_pip_command(
    adapter: Callable[..., Any], module: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError
    tool = a2a_agent_tool(url="http://127.0.0.1:1", name="x", description="y")
    with pytest.raises(MissingExtraError, match=rf'pip install "dapr-agents-ext-a2a\[{extra}\]"'):
        adapter(tool)
