"""End to end on the dev sidecar with the scripted LLM: a real dapr-agents DurableAgent calls an
OpenAI Agents agent and a LangGraph graph as tools (explicitly and through the registry, in one
app and across two apps, and across a SIGKILL of the app hosting the graph), and a LangGraph
agent calls a DurableAgent as a tool."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import App, wait_until

from dapr_agents.ext.devsidecar._scripted_llm import ScriptedChatServer, ScriptedReply, ScriptedToolCall
from dapr_agents.ext.interop import AgentRegistry

# The framework packages are not test requirements of interop (they depend on it); the `e2e` nox
# session installs them all and sets INTEROP_E2E=1, which turns a missing one into an error.
if not os.environ.get("INTEROP_E2E"):
    for module in ("dapr_agents.ext.langgraph", "dapr_agents.ext.openai_agents", "dapr_agents.ext.crewai"):
        pytest.importorskip(module, reason="the e2e nox session runs these with every framework package")

HERE = Path(__file__).parent


def durable_agent(runtime: Any, server: ScriptedChatServer, name: str = "boss", tools: Any = ()) -> Any:
    from dapr_agents import DurableAgent
    from dapr_agents.llm.openai import OpenAIChatClient

    return DurableAgent(
        name=name,
        role="coordinator",
        goal="delegate to specialists",
        llm=OpenAIChatClient(base_url=server.base_url, api_key="scripted", model="scripted"),
        tools=list(tools),
        runtime=runtime,
    )


def run_agent(agent: Any, task: str, timeout: int = 90) -> str:
    from dapr_agents import AgentRunner

    runner = AgentRunner()
    try:
        output = asyncio.run(runner.run(agent, payload={"task": task}, wait=True, timeout_in_seconds=timeout))
    finally:
        runner.shutdown()
    assert output is not None, "the DurableAgent run failed or timed out (see the log)"
    return str(json.loads(output)["content"])


def tool_results(server: ScriptedChatServer) -> list[str]:
    return [
        str(message.get("content"))
        for request in server.requests
        for message in request.get("messages", [])
        if message.get("role") == "tool"
    ]


def openai_agent(server: ScriptedChatServer, name: str = "Assistant") -> Any:
    from agents import Agent, OpenAIChatCompletionsModel, set_tracing_disabled
    from openai import AsyncOpenAI

    set_tracing_disabled(True)
    model = OpenAIChatCompletionsModel(
        model="scripted", openai_client=AsyncOpenAI(base_url=server.base_url, api_key="scripted")
    )
    return Agent(name=name, instructions="Answer briefly.", model=model)


def reporter_graph() -> Any:
    from langchain_core.messages import AIMessage
    from langgraph.graph import END, START, MessagesState, StateGraph

    def outline(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage("outline ready")]}

    def write(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage(f"report on {state['messages'][0].text}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("outline", outline)
    builder.add_node("write", write)
    builder.add_edge(START, "outline")
    builder.add_edge("outline", "write")
    builder.add_edge("write", END)
    return builder.compile()


def test_durable_agent_calls_an_openai_agent_and_a_langgraph_graph(app: App, llm: Any) -> None:
    """One app: the OpenAI agent through agent_to_tool(framework="openai"), the graph discovered
    in the registry. Follow-up calls to the OpenAI agent from the same caller share its session."""
    from dapr_agents.ext.langgraph import host_graph
    from dapr_agents.ext.openai_agents import host_openai_agent
    from dapr_agents.tool.workflow.agent_tool import agent_to_tool

    assistant_llm = llm([ScriptedReply("Paris"), ScriptedReply("Still Paris")])
    host_openai_agent(app.runtime, openai_agent(assistant_llm), session_store="statestore")
    graph_host = host_graph(
        app.runtime, reporter_graph(), name="reporter", role="Reporter", goal="write reports"
    )
    AgentRegistry().register(graph_host.record(app.app_id))
    boss_llm = llm(
        [
            ScriptedReply(tool_calls=[ScriptedToolCall("Assistant", {"task": "capital of France?"})]),
            ScriptedReply(
                tool_calls=[ScriptedToolCall("Assistant", {"task": "are you sure?"})], when="Paris"
            ),
            ScriptedReply(tool_calls=[ScriptedToolCall("reporter", {"task": "France"})], when="Still Paris"),
            ScriptedReply("final: Paris, see report", when="report on France"),
        ]
    )
    agent = durable_agent(
        app.runtime, boss_llm, tools=[agent_to_tool("Assistant", "answers questions", framework="openai")]
    )
    assert run_agent(agent, "research France") == "final: Paris, see report"
    results = tool_results(boss_llm)
    assert any('"Paris"' in r or r == "Paris" for r in results)
    assert any("report on France" in r for r in results)
    # The second question reached the OpenAI agent with the first exchange in its session.
    second = assistant_llm.requests[-1]["messages"]
    texts = [str(m.get("content")) for m in second]
    assert any("capital of France?" in t for t in texts) and any(t == "Paris" for t in texts)


@pytest.mark.starts_sidecars  # two apps: an external daprd is one
def test_durable_agent_calls_an_openai_agent_in_another_app(make_app: Callable[..., App], llm: Any) -> None:
    """Two apps, two sidecars, one shared store: the DurableAgent finds the agent of the other app
    in the registry and calls it there."""
    from dapr_agents.ext.openai_agents import host_openai_agent

    boss_app, specialist_app = make_app("boss-app", "sqlite"), make_app("specialist-app", "sqlite")
    assistant_llm = llm([ScriptedReply("42")])
    host = host_openai_agent(specialist_app.runtime, openai_agent(assistant_llm, "Oracle"), role="Oracle")
    specialist_app.start()
    boss_llm = llm(
        [
            ScriptedReply(tool_calls=[ScriptedToolCall("Oracle", {"task": "meaning of life?"})]),
            ScriptedReply("final: 42", when="42"),
        ]
    )
    with boss_app.endpoint.sdk_configured():
        AgentRegistry().register(host.record(specialist_app.app_id))
        agent = durable_agent(boss_app.runtime, boss_llm)
        assert run_agent(agent, "ask the oracle") == "final: 42"
    assert len(assistant_llm.requests) == 1


def test_langgraph_agent_calls_a_durable_agent(app: App, llm: Any) -> None:
    from langchain_core.messages import AIMessage, ToolMessage
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    from dapr_agents import AgentRunner
    from dapr_agents.ext.langgraph import DaprCheckpointer, dapr_agent_tool

    researcher = durable_agent(
        app.runtime, llm([ScriptedReply("the sky is blue", repeat=True)]), name="Researcher"
    )
    runner = AgentRunner()
    runner.workflow(researcher)  # hosts dapr.agents.Researcher.workflow and starts the runtime
    try:
        tool = dapr_agent_tool("Researcher", description="Researches a question.", timeout=60)

        def model(state: MessagesState) -> dict[str, Any]:
            last = state["messages"][-1]
            if isinstance(last, ToolMessage):
                return {"messages": [AIMessage(f"final: {last.content}")]}
            call = {"name": tool.name, "args": {"task": "what colour is the sky?"}, "id": "call_1"}
            return {"messages": [AIMessage("", tool_calls=[call])]}

        builder = StateGraph(MessagesState)
        builder.add_node("model", model)
        builder.add_node("tools", ToolNode([tool]))
        builder.add_edge(START, "model")
        builder.add_conditional_edges("model", tools_condition)
        builder.add_edge("tools", "model")
        graph = builder.compile(checkpointer=DaprCheckpointer("statestore"))
        result = graph.invoke({"messages": [("user", "sky?")]}, {"configurable": {"thread_id": "t-1"}})
    finally:
        runner.shutdown()
    assert result["messages"][-1].content == "final: the sky is blue"


@pytest.mark.starts_sidecars  # two apps, and it SIGKILLs one of them
def test_call_survives_a_sigkill_of_the_app_hosting_the_graph(
    make_app: Callable[..., App], llm: Any, tmp_path: Path
) -> None:
    from dapr_agents.tool.workflow.agent_tool import agent_to_tool

    boss_app, foreign_app = make_app("boss-app", "sqlite"), make_app("foreign-app", "sqlite")
    journal = tmp_path / "journal.txt"
    block = Path(f"{journal}.block")
    block.touch()
    env = {**os.environ, **foreign_app.endpoint.env(), "PYTHONPATH": str(HERE)}

    def start_foreign() -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, str(HERE / "foreign_app.py"), str(journal)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdout is not None and process.stdout.readline().strip() == "READY"
        return process

    foreign = start_foreign()
    boss_llm = llm(
        [
            ScriptedReply(tool_calls=[ScriptedToolCall("reporter", {"task": "Mars"})]),
            ScriptedReply("final: report received", when="report on Mars"),
        ]
    )
    outcome: dict[str, str] = {}
    try:
        with boss_app.endpoint.sdk_configured():
            tool = agent_to_tool(
                "reporter", "writes reports", framework="langgraph", target_app_id="foreign-app"
            )
            agent = durable_agent(boss_app.runtime, boss_llm, tools=[tool])

            import threading

            def run() -> None:
                outcome["content"] = run_agent(agent, "report on Mars", timeout=120)

            caller = threading.Thread(target=run)
            caller.start()
            wait_until(lambda: journal.exists() and "blocked" in journal.read_text(), timeout=60)
            foreign.kill()  # SIGKILL in the middle of the graph's second node
            foreign.wait(10)
            block.unlink()
            time.sleep(0.5)
            foreign = start_foreign()
            caller.join(120)
    finally:
        foreign.kill()
        foreign.wait(10)
    assert outcome.get("content") == "final: report received"
    lines = journal.read_text().split()
    assert lines.count("first") == 1, lines  # resumed after the last superstep, not rerun
    assert lines[-1] == "second"


def writer_crew() -> Any:
    from crewai import Agent, Crew, Task

    from dapr_agents.ext.crewai.testing import ScriptedLLM

    writer = Agent(
        role="writer",
        goal="write one line",
        backstory="An experienced writer.",
        llm=ScriptedLLM(["A line about Lyon."], model="writer"),
        max_retry_limit=0,
        allow_delegation=False,
    )
    task = Task(description="Write one line about {task}.", expected_output="A line.", agent=writer)
    return Crew(name="writers", agents=[writer], tasks=[task])


def test_durable_agent_calls_a_crewai_crew(app: App, llm: Any) -> None:
    """The crew is hosted as dapr.crewai.writers.workflow (each task a durable activity) and
    found by the DurableAgent in the registry."""
    from dapr_agents.ext.crewai import host_crew

    host = host_crew(app.runtime, writer_crew(), name="writers", role="Writers", goal="write lines")
    AgentRegistry().register(host.record(app.app_id))
    boss_llm = llm(
        [
            ScriptedReply(tool_calls=[ScriptedToolCall("writers", {"task": "Lyon"})]),
            ScriptedReply("final: the crew wrote", when="A line about Lyon."),
        ]
    )
    agent = durable_agent(app.runtime, boss_llm)
    assert run_agent(agent, "get a line about Lyon") == "final: the crew wrote"
    assert any("A line about Lyon." in r for r in tool_results(boss_llm))


def test_langgraph_agent_calls_a_durable_agent_and_a_crew(app: App, llm: Any) -> None:
    from langchain_core.messages import AIMessage, ToolMessage
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    from dapr_agents import AgentRunner
    from dapr_agents.ext.crewai import host_crew
    from dapr_agents.ext.langgraph import DaprCheckpointer, dapr_agent_tool

    host_crew(app.runtime, writer_crew(), name="writers")
    researcher = durable_agent(
        app.runtime, llm([ScriptedReply("Lyon is in France", repeat=True)]), name="Researcher"
    )
    runner = AgentRunner()
    runner.workflow(researcher)  # hosts dapr.agents.Researcher.workflow and starts the runtime
    try:
        research = dapr_agent_tool("Researcher", description="Researches.", timeout=60)
        write = dapr_agent_tool("writers", description="Writes.", framework="crewai", timeout=60)

        def model(state: MessagesState) -> dict[str, Any]:
            results = [m.content for m in state["messages"] if isinstance(m, ToolMessage)]
            if len(results) == 2:
                return {"messages": [AIMessage(f"final: {results[0]} / {results[1]}")]}
            calls = [
                {"name": research.name, "args": {"task": "where is Lyon?"}, "id": "call_1"},
                {"name": write.name, "args": {"task": "Lyon"}, "id": "call_2"},
            ]
            return {"messages": [AIMessage("", tool_calls=calls)]}

        builder = StateGraph(MessagesState)
        builder.add_node("model", model)
        builder.add_node("tools", ToolNode([research, write]))
        builder.add_edge(START, "model")
        builder.add_conditional_edges("model", tools_condition)
        builder.add_edge("tools", "model")
        graph = builder.compile(checkpointer=DaprCheckpointer("statestore"))
        result = graph.invoke({"messages": [("user", "Lyon?")]}, {"configurable": {"thread_id": "t-2"}})
    finally:
        runner.shutdown()
    assert result["messages"][-1].content == "final: Lyon is in France / A line about Lyon."
