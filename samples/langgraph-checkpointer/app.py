"""LangGraph memory in a Dapr state store, with dapr-agents-ext-langgraph's DaprCheckpointer.

A small tool-calling chat agent (an LLM node, a ToolNode) keeps every thread in the Dapr state
store ``statestore``. The sample shows what a LangGraph user gets from the checkpointer:

1. two turns on one ``thread_id``: the second question only makes sense with the first;
2. the thread's checkpoint history (``get_state_history``);
3. human in the loop: a tool that calls ``interrupt()``, resumed with ``Command(resume=...)``
   from a fresh checkpointer, as another process would;
4. the async API (``ainvoke``, ``aget_state``) on the same store;
5. durability across processes: run it again and the stored thread continues (turn 3, 4, ...).

The model is a real one when OPENAI_API_KEY is set, an offline scripted one otherwise.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Command, interrupt

# The one-line change from dapr-ext-langgraph: `from dapr.ext.langgraph import DaprCheckpointer`.
from dapr_agents.ext.langgraph import DaprCheckpointer

STORE, KEY_PREFIX = "statestore", "langgraph-sample"
CHAT: RunnableConfig = {"configurable": {"thread_id": "trip-chat"}}
BOOKING: RunnableConfig = {"configurable": {"thread_id": "table-booking"}}
ASYNC_CHAT: RunnableConfig = {"configurable": {"thread_id": "async-chat"}}


@tool
def get_weather(city: str) -> str:
    """Today's weather in a city."""
    return f"{city}: sunny, 22 C"


@tool
def book_table(restaurant: str, time: str) -> str:
    """Book a table at a restaurant; a human approves every booking."""
    # The graph stops here until someone resumes the thread with Command(resume=...).
    answer = interrupt(f"Book {restaurant} at {time}?")
    return f"booked {restaurant} at {time}" if answer == "yes" else "the user declined the booking"


def scripted_server() -> Any:
    from dapr_agents.ext.devsidecar import ScriptedChatServer, ScriptedReply, ScriptedToolCall

    # Each reply matches the last message only, so the same script serves every run of the app.
    return ScriptedChatServer(
        [
            ScriptedReply(
                tool_calls=[ScriptedToolCall("get_weather", {"city": "Lisbon"})],
                when="weather in Lisbon",
                repeat=True,
            ),
            ScriptedReply("It is sunny and 22 C in Lisbon today.", when="Lisbon: sunny", repeat=True),
            ScriptedReply("No umbrella needed: Lisbon is sunny today.", when="umbrella", repeat=True),
            ScriptedReply(
                tool_calls=[ScriptedToolCall("book_table", {"restaurant": "Casa Dapr", "time": "20:00"})],
                when="Book a table",
                repeat=True,
            ),
            ScriptedReply("Done: Casa Dapr expects you at 20:00.", when="booked Casa Dapr", repeat=True),
        ]
    ).start()


def chat_model() -> tuple[ChatOpenAI, Any]:
    """A real model with OPENAI_API_KEY (OPENAI_BASE_URL, OPENAI_MODEL honoured), else the scripted one."""
    if os.environ.get("OPENAI_API_KEY"):
        model = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
        print(f"model: {model} (OPENAI_API_KEY is set)")
        return ChatOpenAI(model=model, base_url=os.environ.get("OPENAI_BASE_URL"), temperature=0), None
    server = scripted_server()
    print("model: scripted (offline; set OPENAI_API_KEY for a real one)")
    return ChatOpenAI(model="scripted", base_url=server.base_url, api_key="scripted"), server


def build_graph(llm: ChatOpenAI, checkpointer: DaprCheckpointer) -> CompiledStateGraph:
    tools = [get_weather, book_table]
    model = llm.bind_tools(tools)

    def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=checkpointer)


def answer(result: dict[str, Any]) -> str:
    last = result["messages"][-1]
    return str(last.content) if isinstance(last, AIMessage) else f"({type(last).__name__})"


def chat(graph: CompiledStateGraph) -> None:
    stored = graph.get_state(CHAT).values.get("messages", [])
    earlier = sum(isinstance(message, HumanMessage) for message in stored)
    print(f"thread trip-chat: {earlier} earlier turns in the state store")

    # A continued thread already knows the city: "there" refers to a turn of an earlier run.
    questions = ["What is the weather in Lisbon?"] if earlier == 0 else []
    questions.append("Do I need an umbrella there?")
    for turn, question in enumerate(questions, start=earlier + 1):
        result = graph.invoke({"messages": [HumanMessage(question)]}, CHAT)
        # The agent node sends the whole thread to the model: everything but its own answer.
        print(f"turn {turn}: {answer(result)} (the model saw {len(result['messages']) - 1} messages)")

    history = list(graph.get_state_history(CHAT))
    print(f"checkpoint history of trip-chat: {len(history)} checkpoints")


def human_in_the_loop(llm: ChatOpenAI) -> None:
    with DaprCheckpointer(STORE, KEY_PREFIX) as checkpointer:
        graph = build_graph(llm, checkpointer)
        result = graph.invoke({"messages": [HumanMessage("Book a table for two tonight.")]}, BOOKING)
        if not result.get("__interrupt__"):
            print(f"no booking was asked for: {answer(result)}")
            return
        print(f"paused for approval: {result['__interrupt__'][0].value}")
        print(f"waiting at node: {', '.join(graph.get_state(BOOKING).next)}")

    # A new checkpointer (and Dapr client) resumes the thread: the pause lives in the store.
    with DaprCheckpointer(STORE, KEY_PREFIX) as checkpointer:
        resumed = build_graph(llm, checkpointer).invoke(Command(resume="yes"), BOOKING)
        print(f"resumed with 'yes': {answer(resumed)}")


async def async_api(llm: ChatOpenAI) -> None:
    async with DaprCheckpointer(STORE, KEY_PREFIX) as checkpointer:
        graph = build_graph(llm, checkpointer)
        # aget_state reads what the sync invoke calls stored.
        state = await graph.aget_state(CHAT)
        print(f"aget_state(trip-chat): {len(state.values['messages'])} messages")
        result = await graph.ainvoke(
            {"messages": [HumanMessage("What is the weather in Lisbon?")]}, ASYNC_CHAT
        )
        print(f"ainvoke on async-chat: {answer(result)}")


def main() -> int:
    llm, server = chat_model()
    try:
        with DaprCheckpointer(STORE, KEY_PREFIX) as checkpointer:
            chat(build_graph(llm, checkpointer))
        human_in_the_loop(llm)
        asyncio.run(async_api(llm))
    finally:
        if server is not None:
            server.stop()
    print("run it again: the thread trip-chat continues where this run stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
