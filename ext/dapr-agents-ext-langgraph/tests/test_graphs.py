"""End to end: real LangGraph graphs on the checkpointer, sync (``invoke``) and async
(``ainvoke``), on every backend: a ReAct agent with ToolNode, ``interrupt()`` + ``Command``
resume, time travel, and subgraphs (checkpoint namespaces)."""

from __future__ import annotations

import operator
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Command, interrupt

from dapr_agents.ext.langgraph import DaprCheckpointer


class ScriptedChatModel(BaseChatModel):
    """Answers from a script: a tool call when the last message is the user's, else a reply."""

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        last = messages[-1]
        if isinstance(last, HumanMessage):
            city = str(last.content).rsplit(" ", 1)[-1]
            reply = AIMessage(
                content="",
                tool_calls=[
                    {"name": "get_weather", "args": {"city": city}, "id": f"call-{uuid.uuid4().hex[:6]}"}
                ],
            )
        else:
            assert isinstance(last, ToolMessage)
            reply = AIMessage(content=f"Forecast: {last.content}")
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:  # type: ignore[override]
        return self

    @property
    def _llm_type(self) -> str:
        return "scripted"


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def react_agent(checkpointer: DaprCheckpointer) -> Any:
    model = ScriptedChatModel()

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode([get_weather]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=checkpointer)


@pytest.fixture(params=["invoke", "ainvoke"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def run(graph: Any, mode: str, value: Any, config: dict[str, Any]) -> Any:
    if mode == "ainvoke":
        return await graph.ainvoke(value, config)
    return graph.invoke(value, config)


async def test_react_agent_with_tool_node_keeps_the_conversation(saver: DaprCheckpointer, mode: str) -> None:
    graph = react_agent(saver)
    config = {"configurable": {"thread_id": f"react-{mode}"}}
    first = await run(graph, mode, {"messages": [HumanMessage("weather in Paris")]}, config)
    assert [type(m).__name__ for m in first["messages"]] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
    ]
    assert first["messages"][-1].content == "Forecast: sunny in Paris"
    second = await run(graph, mode, {"messages": [HumanMessage("weather in Rome")]}, config)
    assert len(second["messages"]) == 8
    assert second["messages"][-1].content == "Forecast: sunny in Rome"
    history = (
        [s async for s in graph.aget_state_history(config)]
        if mode == "ainvoke"
        else list(graph.get_state_history(config))
    )
    assert len(history) == 2 * 5  # input + agent + tools + agent, plus the "input" checkpoint, per turn
    assert history[0].values["messages"][-1].content == "Forecast: sunny in Rome"


class ApprovalState(TypedDict):
    request: str
    decision: str
    log: Annotated[list[str], operator.add]


def approval_graph(checkpointer: DaprCheckpointer) -> Any:
    def ask(state: ApprovalState) -> dict[str, Any]:
        decision = interrupt({"question": f"approve {state['request']}?"})
        return {"decision": decision, "log": ["asked"]}

    def act(state: ApprovalState) -> dict[str, Any]:
        return {"log": [f"acted:{state['decision']}"]}

    builder = StateGraph(ApprovalState)
    builder.add_node("ask", ask)
    builder.add_node("act", act)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", "act")
    builder.add_edge("act", END)
    return builder.compile(checkpointer=checkpointer)


async def test_interrupt_and_resume_with_command(saver: DaprCheckpointer, mode: str) -> None:
    graph = approval_graph(saver)
    config = {"configurable": {"thread_id": f"approval-{mode}"}}
    paused = await run(graph, mode, {"request": "refund", "log": []}, config)
    assert paused["__interrupt__"][0].value == {"question": "approve refund?"}
    state = await graph.aget_state(config) if mode == "ainvoke" else graph.get_state(config)
    assert state.next == ("ask",)
    assert state.tasks[0].interrupts[0].value == {"question": "approve refund?"}
    done = await run(graph, mode, Command(resume="yes"), config)
    assert done["decision"] == "yes"
    assert done["log"] == ["asked", "acted:yes"]


class CountState(TypedDict):
    steps: Annotated[list[str], operator.add]


def three_steps(checkpointer: DaprCheckpointer) -> Any:
    builder = StateGraph(CountState)
    for name in ("one", "two", "three"):
        builder.add_node(name, lambda state, name=name: {"steps": [name]})
    builder.add_edge(START, "one")
    builder.add_edge("one", "two")
    builder.add_edge("two", "three")
    builder.add_edge("three", END)
    return builder.compile(checkpointer=checkpointer)


async def test_time_travel_replays_and_forks_from_a_past_checkpoint(
    saver: DaprCheckpointer, mode: str
) -> None:
    graph = three_steps(saver)
    config = {"configurable": {"thread_id": f"travel-{mode}"}}
    assert (await run(graph, mode, {"steps": []}, config))["steps"] == ["one", "two", "three"]
    history = list(graph.get_state_history(config))
    assert [s.next for s in history] == [(), ("three",), ("two",), ("one",), ("__start__",)]
    after_one = next(s for s in history if s.next == ("two",))
    # Resume from the checkpoint after "one": "two" and "three" run again on a new branch.
    replayed = await run(graph, mode, None, after_one.config)
    assert replayed["steps"] == ["one", "two", "three"]
    # Fork: change the state at that checkpoint, then continue from the fork.
    fork_config = graph.update_state(after_one.config, {"steps": ["edited"]})
    forked = await run(graph, mode, None, fork_config)
    assert forked["steps"] == ["one", "edited", "two", "three"]
    latest = graph.get_state(config)
    assert latest.values["steps"] == ["one", "edited", "two", "three"]
    # The fork's parent chain leads back to the checkpoint it was forked from.
    parents = []
    cursor: Any = latest
    while cursor.parent_config:
        parents.append(cursor.parent_config["configurable"]["checkpoint_id"])
        cursor = graph.get_state(cursor.parent_config)
    assert after_one.config["configurable"]["checkpoint_id"] in parents


class Outer(TypedDict):
    topic: str
    notes: Annotated[list[str], operator.add]


def graph_with_subgraph(checkpointer: DaprCheckpointer) -> Any:
    def research(state: Outer) -> dict[str, Any]:
        answer = interrupt(f"source for {state['topic']}?")
        return {"notes": [f"researched {state['topic']} in {answer}"]}

    inner = StateGraph(Outer)
    inner.add_node("research", research)
    inner.add_edge(START, "research")
    inner.add_edge("research", END)

    def summarize(state: Outer) -> dict[str, Any]:
        return {"notes": ["summarized"]}

    outer = StateGraph(Outer)
    outer.add_node("team", inner.compile())
    outer.add_node("summarize", summarize)
    outer.add_edge(START, "team")
    outer.add_edge("team", "summarize")
    outer.add_edge("summarize", END)
    return outer.compile(checkpointer=checkpointer)


async def test_subgraph_checkpoints_live_in_their_own_namespace(saver: DaprCheckpointer, mode: str) -> None:
    graph = graph_with_subgraph(saver)
    thread_id = f"subgraph-{mode}"
    config = {"configurable": {"thread_id": thread_id}}
    paused = await run(graph, mode, {"topic": "dapr", "notes": []}, config)
    assert paused["__interrupt__"][0].value == "source for dapr?"
    state = graph.get_state(config, subgraphs=True)
    sub_state = state.tasks[0].state
    assert sub_state.config["configurable"]["checkpoint_ns"].startswith("team:")
    assert sub_state.next == ("research",)
    namespaces = {
        t.config["configurable"]["checkpoint_ns"]
        for t in saver.list({"configurable": {"thread_id": thread_id}})
    }
    assert "" in namespaces and any(ns.startswith("team:") for ns in namespaces)
    done = await run(graph, mode, Command(resume="the docs"), config)
    assert done["notes"] == ["researched dapr in the docs", "summarized"]
    saver.delete_thread(thread_id)
    assert saver.get_tuple(config) is None
    assert list(saver.list({"configurable": {"thread_id": thread_id}})) == []
