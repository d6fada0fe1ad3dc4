"""A compiled graph hosted as a Dapr agent workflow, called over the wire through interop's client."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any, TypedDict

import dapr.ext.workflow as wf
import pytest
from conftest import AgentApp
from langchain_core.messages import AIMessage, BaseMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import interrupt

from dapr_agents.ext.interop import AgentCallError, AgentClient, AgentRequest
from dapr_agents.ext.langgraph import (
    DaprCheckpointer,
    GraphMappingError,
    host_graph,
)

ONE_ATTEMPT = wf.RetryPolicy(first_retry_interval=timedelta(seconds=0), max_number_of_attempts=1)


def chat_graph(runs: list[str], prefix: str = "echo") -> Any:
    def respond(state: MessagesState) -> dict[str, Any]:
        last: BaseMessage = state["messages"][-1]
        runs.append(last.text)
        return {"messages": [AIMessage(f"{prefix} {last.text}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("respond", respond)
    builder.add_edge(START, "respond")
    return builder.compile(name="echo-graph")


class Question(TypedDict, total=False):
    question: str
    asker: str
    answer: dict[str, Any]


def question_graph() -> Any:
    def answer(state: Question) -> dict[str, Any]:
        return {"answer": {"text": f"{state['question']}? 42 (asked by {state.get('asker')})"}}

    builder = StateGraph(Question)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    return builder.compile(name="oracle")


def test_hosted_graph_answers_in_the_contract_shape_and_keeps_its_thread(agent_app: AgentApp) -> None:
    runs: list[str] = []
    saver = DaprCheckpointer("statestore", f"t{uuid.uuid4().hex[:8]}")
    host = host_graph(agent_app.runtime, chat_graph(runs), name="Echo Graph", checkpointer=saver)
    assert host.workflow_name == "dapr.langgraph.EchoGraph.workflow"
    assert host.framework == "langgraph"
    agent_app.start()

    instance = f"echo-{uuid.uuid4().hex[:8]}"
    answer = AgentClient().call(
        "Echo Graph", "hello", framework="langgraph", source="boss", instance_id=instance, timeout=30
    )
    assert answer.content == "echo hello"
    client = agent_app.workflow_client()
    state = client.get_workflow_state(instance)
    assert state.serialized_output == '{"role": "assistant", "content": "echo hello"}'

    # The thread is the workflow instance.
    thread = {"configurable": {"thread_id": instance}}
    stored = chat_graph([]).copy(update={"checkpointer": saver}).get_state(thread)
    assert [m.text for m in stored.values["messages"]] == ["hello", "echo hello"]

    # The same instance id scheduled again with the same request: the finished thread answers.
    envelope = {"task": "hello", "_message_metadata": {"source": "boss"}}
    client.schedule_new_workflow(host.workflow_name, input=envelope, instance_id=instance)
    again = client.wait_for_workflow_completion(instance, timeout_in_seconds=30)
    assert again.serialized_output == state.serialized_output
    assert runs == ["hello"]
    # Reused for another task: the old thread is not this call's, it starts over.
    client.schedule_new_workflow(host.workflow_name, input={"task": "bye"}, instance_id=instance)
    other = client.wait_for_workflow_completion(instance, timeout_in_seconds=30)
    assert other.serialized_output == '{"role": "assistant", "content": "echo bye"}'
    assert runs == ["hello", "bye"]
    assert [m.text for m in saver_state(saver, instance)] == ["bye", "echo bye"]
    saver.close()


def saver_state(saver: DaprCheckpointer, thread: str) -> list[BaseMessage]:
    graph = chat_graph([]).copy(update={"checkpointer": saver})
    return list(graph.get_state({"configurable": {"thread_id": thread}}).values["messages"])


def test_async_nodes_and_sync_mode(agent_app: AgentApp) -> None:
    async def respond(state: MessagesState) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"messages": [AIMessage(state["messages"][-1].text.upper())]}

    builder = StateGraph(MessagesState)
    builder.add_node("respond", respond)
    builder.add_edge(START, "respond")
    prefix = f"t{uuid.uuid4().hex[:8]}"
    host_graph(
        agent_app.runtime,
        builder.compile(),
        name="shout",
        checkpointer=DaprCheckpointer("statestore", prefix),
    )
    host_graph(
        agent_app.runtime,
        chat_graph([], prefix="sync"),
        name="plain",
        checkpointer=DaprCheckpointer("statestore", prefix),
        asynchronous=False,
    )
    agent_app.start()
    client = AgentClient()
    assert client.call("shout", "quiet", framework="langgraph", timeout=30).content == "QUIET"
    assert client.call("plain", "hi", framework="langgraph", timeout=30).content == "sync hi"


def test_custom_mappers_for_a_graph_that_is_not_chat_shaped(agent_app: AgentApp) -> None:
    seen: list[AgentRequest] = []

    def to_input(request: AgentRequest) -> dict[str, Any]:
        seen.append(request)
        return {"question": request.task, "asker": request.source}

    host_graph(
        agent_app.runtime,
        question_graph(),
        name="oracle",
        checkpointer=DaprCheckpointer("statestore", f"t{uuid.uuid4().hex[:8]}"),
        input_mapper=to_input,
        output_mapper=lambda state: state["answer"]["text"],
    )
    agent_app.start()
    answer = AgentClient().call("oracle", "meaning of life", framework="langgraph", source="deep", timeout=30)
    assert answer.content == "meaning of life? 42 (asked by deep)"
    assert seen[0].source == "deep"


def test_the_default_input_mapper_refuses_a_graph_without_messages() -> None:
    runtime = wf.WorkflowRuntime()
    with pytest.raises(GraphMappingError) as raised:
        host_graph(runtime, question_graph(), name="oracle", checkpointer=DaprCheckpointer())
    message = str(raised.value)
    assert "'oracle'" in message and "['answer', 'asker', 'question']" in message
    assert "input_mapper=" in message
    with pytest.raises(TypeError, match="compile"):
        host_graph(runtime, StateGraph(MessagesState), name="raw")


def test_bad_output_fails_the_workflow_with_details(agent_app: AgentApp) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    common: dict[str, Any] = {
        "checkpointer": DaprCheckpointer("statestore", prefix),
        "input_mapper": lambda request: {"question": request.task},
        "retry_policy": ONE_ATTEMPT,
    }
    host_graph(agent_app.runtime, question_graph(), name="no-mapper", **common)
    host_graph(
        agent_app.runtime, question_graph(), name="dict-mapper", output_mapper=lambda s: s["answer"], **common
    )
    agent_app.start()
    client = AgentClient()
    with pytest.raises(AgentCallError) as raised:
        client.call("no-mapper", "why", framework="langgraph", timeout=30)
    error = raised.value
    assert error.status == "FAILED"
    # The workflow fails with the activity's failure (error_type TaskFailedError) and its message.
    assert "no 'messages'" in error.error_message and "output_mapper=" in error.error_message
    assert error.workflow_name == "dapr.langgraph.no-mapper.workflow"

    with pytest.raises(AgentCallError) as raised:
        client.call("dict-mapper", "why", framework="langgraph", timeout=30)
    assert "output_mapper" in raised.value.error_message and "dict" in raised.value.error_message


def test_an_interrupting_graph_fails_with_a_clear_error(agent_app: AgentApp) -> None:
    def ask(state: MessagesState) -> dict[str, Any]:
        approved = interrupt("approve the refund?")
        return {"messages": [AIMessage(f"approved: {approved}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    host_graph(
        agent_app.runtime,
        builder.compile(),
        name="asker",
        checkpointer=DaprCheckpointer("statestore", f"t{uuid.uuid4().hex[:8]}"),
        retry_policy=ONE_ATTEMPT,
    )
    agent_app.start()
    with pytest.raises(AgentCallError) as raised:
        AgentClient().call("asker", "refund order 7", framework="langgraph", timeout=30)
    assert "approve the refund?" in raised.value.error_message
    assert "interrupt()" in raised.value.error_message


def test_a_retried_activity_resumes_after_the_last_superstep(agent_app: AgentApp) -> None:
    journal: list[str] = []

    def first(state: MessagesState) -> dict[str, Any]:
        journal.append("first")
        return {"messages": [AIMessage("drafted")]}

    def second(state: MessagesState) -> dict[str, Any]:
        journal.append("second")
        if journal.count("second") == 1:
            raise RuntimeError("transient outage")
        return {"messages": [AIMessage("published")]}

    builder = StateGraph(MessagesState)
    builder.add_node("first", first)
    builder.add_node("second", second)
    builder.add_edge(START, "first")
    builder.add_edge("first", "second")
    builder.add_edge("second", END)
    host_graph(
        agent_app.runtime,
        builder.compile(),
        name="writer",
        checkpointer=DaprCheckpointer("statestore", f"t{uuid.uuid4().hex[:8]}"),
        retry_policy=wf.RetryPolicy(
            first_retry_interval=timedelta(milliseconds=100), max_number_of_attempts=2
        ),
    )
    agent_app.start()
    assert AgentClient().call("writer", "post", framework="langgraph", timeout=30).content == "published"
    assert journal == ["first", "second", "second"]
