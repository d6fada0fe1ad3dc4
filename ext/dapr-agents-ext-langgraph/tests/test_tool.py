"""A LangGraph agent calling Dapr-hosted agents through ``dapr_agent_tool``, over the wire.

The called agents are hosted in the same app: one with ``host_graph``, others with interop's
``host_agent`` (wire-identical to a dapr-agents DurableAgent: ``dapr.agents.<name>.workflow``).
The calling agent is a small ReAct graph (a scripted model node, ``ToolNode``,
``tools_condition``) on a ``DaprCheckpointer``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import dapr.ext.workflow as wf
import pytest
from conftest import AgentApp
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool, ToolException, tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from dapr_agents.ext.interop import AgentCall, host_agent
from dapr_agents.ext.langgraph import DaprAgentTool, DaprCheckpointer, dapr_agent_tool, host_graph

ONE_ATTEMPT = wf.RetryPolicy(first_retry_interval=timedelta(seconds=0), max_number_of_attempts=1)


def call(name: str, task: str, call_id: str) -> dict[str, Any]:
    return {"name": name, "args": {"task": task}, "id": call_id, "type": "tool_call"}


def react_graph(tools: list[BaseTool], replies: list[AIMessage], checkpointer: DaprCheckpointer) -> Any:
    """A ReAct loop whose model answers from ``replies``; the last reply quotes the tool results."""

    def model(state: MessagesState) -> dict[str, Any]:
        reply = replies.pop(0)
        if not reply.tool_calls:
            results = [m.text for m in state["messages"] if isinstance(m, ToolMessage)]
            reply = AIMessage(f"{reply.text} {results}")
        return {"messages": [reply]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", model)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    return builder.compile(checkpointer=checkpointer)


def counting_agent(runs: list[str], answer: Callable[[str], str]) -> Callable[[AgentCall], str]:
    def run(agent_call: AgentCall) -> str:
        runs.append(agent_call.task)
        return answer(agent_call.task)

    return run


def saver() -> DaprCheckpointer:
    return DaprCheckpointer("statestore", f"t{uuid.uuid4().hex[:8]}")


def test_a_react_agent_calls_hosted_agents_as_tools(agent_app: AgentApp) -> None:
    # A LangGraph graph hosted with host_graph, and a "DurableAgent" (interop host_agent).
    graph_runs: list[str] = []

    def respond(state: MessagesState) -> dict[str, Any]:
        graph_runs.append(state["messages"][-1].text)
        return {"messages": [AIMessage("Paris has 2.1 million people")]}

    builder = StateGraph(MessagesState)
    builder.add_node("respond", respond)
    builder.add_edge(START, "respond")
    host_graph(agent_app.runtime, builder.compile(), name="researcher", checkpointer=saver())
    durable_runs: list[str] = []
    host_agent(
        agent_app.runtime,
        name="Fact Checker",
        framework="dapr-agents",
        run=counting_agent(durable_runs, lambda task: f"checked: {task}"),
    )
    agent_app.start()

    research = dapr_agent_tool("researcher", description="Finds facts.", framework="langgraph", source="lead")
    check = dapr_agent_tool("Fact Checker", description="Checks a claim.")
    assert check.name == "FactChecker" and isinstance(check, DaprAgentTool)
    assert check.args == {"task": check.args["task"]} and check.args["task"]["type"] == "string"
    replies = [
        AIMessage("", tool_calls=[call("researcher", "population of Paris", "call_1")]),
        AIMessage("", tool_calls=[call("FactChecker", "2.1M", "call_2")]),
        AIMessage("Answer:"),
    ]
    agent = react_graph([research, check], replies, saver())
    result = agent.invoke(
        {"messages": [HumanMessage("How many people live in Paris?")]},
        {"configurable": {"thread_id": "lead-1"}},
    )
    assert result["messages"][-1].text == "Answer: ['Paris has 2.1 million people', 'checked: 2.1M']"
    assert graph_runs == ["population of Paris"]
    assert durable_runs == ["2.1M"]


async def test_the_async_path(agent_app: AgentApp) -> None:
    runs: list[str] = []
    host_agent(agent_app.runtime, name="echo", framework="openai", run=counting_agent(runs, str.upper))
    agent_app.start()
    echo = dapr_agent_tool("echo", description="Echoes.", framework="openai")
    agent = react_graph(
        [echo], [AIMessage("", tool_calls=[call("echo", "hi", "c1")]), AIMessage("Done:")], saver()
    )
    result = await agent.ainvoke({"messages": [HumanMessage("go")]}, {"configurable": {"thread_id": "a-1"}})
    assert result["messages"][-1].text == "Done: ['HI']"
    assert runs == ["hi"]
    message = await echo.ainvoke(call("echo", "again", "c2"))
    assert isinstance(message, ToolMessage) and message.text == "AGAIN"


def test_a_re_executed_tool_call_re_attaches_to_its_agent_run(agent_app: AgentApp) -> None:
    runs: list[str] = []
    host_agent(
        agent_app.runtime,
        name="booker",
        framework="crewai",
        run=counting_agent(runs, lambda t: f"booked {t}"),
    )
    agent_app.start()
    book = dapr_agent_tool("booker", description="Books things.", framework="crewai")

    # LangGraph resumes a thread whose tools step failed: the whole step runs again, including
    # the agent call that had already completed; it must not book twice.
    failures: list[str] = []

    @tool
    def notify(task: str) -> str:
        """Notify the customer."""
        failures.append(task)
        if len(failures) == 1:
            raise RuntimeError("mail server down")
        return "notified"

    replies = [
        AIMessage("", tool_calls=[call("booker", "flight", "call_a"), call("notify", "booked", "call_b")]),
        AIMessage("Trip:"),
    ]
    agent = react_graph([book, notify], replies, saver())
    config = {"configurable": {"thread_id": f"trip-{uuid.uuid4().hex[:6]}"}}
    with pytest.raises(RuntimeError, match="mail server down"):
        agent.invoke({"messages": [HumanMessage("book my trip")]}, config)
    assert agent.get_state(config).next == ("tools",)
    result = agent.invoke(None, config)
    assert result["messages"][-1].text == "Trip: ['booked flight', 'notified']"
    assert runs == ["flight"]
    assert len(failures) == 2

    # The same tool call in the same scope re-attaches; another call id, or no id, runs anew.
    scope = {"configurable": {"thread_id": "t-9", "checkpoint_ns": "tools:abc"}}
    assert book.invoke(call("booker", "hotel", "call_x"), scope).text == "booked hotel"
    assert book.invoke(call("booker", "hotel", "call_x"), scope).text == "booked hotel"
    assert runs == ["flight", "hotel"]
    book.invoke(call("booker", "hotel", "call_y"), scope)
    book.invoke(call("booker", "hotel", "call_x"), {"configurable": {"thread_id": "t-10"}})
    assert runs == ["flight", "hotel", "hotel", "hotel"]
    assert book.invoke({"task": "car"}) == "booked car"
    assert book.invoke({"task": "car"}) == "booked car"
    assert runs[-2:] == ["car", "car"]


def test_agent_failures_and_timeouts_are_tool_exceptions(agent_app: AgentApp) -> None:
    def broken(agent_call: AgentCall) -> str:
        raise ValueError(f"no data for {agent_call.task!r}")

    release = threading.Event()
    finished = threading.Event()

    def slow(agent_call: AgentCall) -> str:
        release.wait(20)
        finished.set()
        return "late"

    host_agent(agent_app.runtime, name="broken", framework="openai", run=broken, retry_policy=ONE_ATTEMPT)
    host_agent(agent_app.runtime, name="slow", framework="openai", run=slow, retry_policy=ONE_ATTEMPT)
    agent_app.start()

    failing = dapr_agent_tool("broken", description="Fails.", framework="openai")
    with pytest.raises(ToolException) as raised:
        failing.invoke(call("broken", "sales", "c1"))
    message = str(raised.value)
    assert "no data for 'sales'" in message and "dapr.openai.broken.workflow" in message
    assert "FAILED" in message

    # handle_tool_error reports the failure to the model instead, as an error ToolMessage.
    reported = dapr_agent_tool("broken", description="Fails.", framework="openai", handle_tool_error=True)
    result = reported.invoke(call("broken", "sales", "c2"))
    assert isinstance(result, ToolMessage) and result.status == "error"
    assert "no data for 'sales'" in result.text

    # In a graph, ToolNode(handle_tool_errors=True) turns it into an error ToolMessage too.
    builder = StateGraph(MessagesState)
    builder.add_node("tools", ToolNode([failing], handle_tool_errors=True))
    builder.add_edge(START, "tools")
    out = builder.compile().invoke({"messages": [AIMessage("", tool_calls=[call("broken", "q3", "c3")])]})
    tool_message = out["messages"][-1]
    assert tool_message.status == "error" and "no data for 'q3'" in tool_message.text

    impatient = dapr_agent_tool("slow", description="Slow.", framework="openai", timeout=1)
    started = time.monotonic()
    with pytest.raises(ToolException, match="timed out"):
        impatient.invoke(call("slow", "wait", "c4"))
    assert time.monotonic() - started < 10
    release.set()
    assert finished.wait(10)


def test_tool_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="description"):
        dapr_agent_tool("x", description=" ")
    with pytest.raises(ValueError, match="timeout"):
        dapr_agent_tool("x", description="d", timeout=0)
    assert dapr_agent_tool("dapr.openai.Triage.workflow", description="d").name == "openaiTriage"
    tool_ = dapr_agent_tool("x", description="d")
    assert tool_.idempotency_key(None, {"configurable": {"thread_id": "t"}}) is None
    assert tool_.idempotency_key("c", {"configurable": {"thread_id": "t"}}) != tool_.idempotency_key(
        "c", None
    )
