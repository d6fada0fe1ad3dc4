"""Agents as tools over the wire: an SDK agent hosted as ``dapr.openai.{name}.workflow`` and
called through interop's client (envelope in, ``{"role": "assistant", ...}`` out), its session
per caller and its retry semantics; and the SDK tool that calls a Dapr-hosted agent (answers,
errors as the SDK reports them, timeouts, re-attachment). One WorkflowRuntime per app, a
scripted LLM, the dev sidecar's stores."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import dapr.ext.workflow as wf
import pytest
from agents import Agent, Model, ModelProvider, RunConfig, Runner, function_tool, set_tracing_disabled
from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel
from agents.tool_context import ToolContext
from openai import AsyncOpenAI
from pydantic import BaseModel

from dapr_agents.ext.devsidecar import ScriptedChatServer, ScriptedReply, ScriptedToolCall
from dapr_agents.ext.devsidecar.testing import SidecarEndpoint
from dapr_agents.ext.interop import AgentCall, AgentCallError, AgentCallTimeout, AgentClient, host_agent
from dapr_agents.ext.openai_agents import (
    DaprSession,
    dapr_agent_tool,
    dapr_tool_scope,
    host_openai_agent,
)
from dapr_agents.ext.openai_agents import _host as host_module

set_tracing_disabled(True)

FAST_RETRY = wf.RetryPolicy(first_retry_interval=timedelta(milliseconds=100), max_number_of_attempts=3)
TOOL_CONTEXT_HAS_AGENT = "agent" in {f.name for f in dataclasses.fields(ToolContext)}


class Scripted(ModelProvider):
    """A fresh client per model: runs happen on the test's loop and on the runtime's."""

    def __init__(self, server: ScriptedChatServer) -> None:
        self.server = server

    def get_model(self, model_name: str | None) -> Model:
        client = AsyncOpenAI(base_url=self.server.base_url, api_key="x", max_retries=0)
        return OpenAIChatCompletionsModel(model="scripted", openai_client=client)


class App:
    """The test's Dapr app: the plugin's sidecar and its one WorkflowRuntime."""

    def __init__(self, endpoint: SidecarEndpoint) -> None:
        self.endpoint = endpoint
        self.runtime = wf.WorkflowRuntime(host=endpoint.host, port=str(endpoint.grpc_port))
        self.started = False

    def start(self) -> App:
        self.runtime.start()
        self.started = True
        return self

    def client(self, timeout: float = 30) -> AgentClient:
        workflow_client = wf.DaprWorkflowClient(host=self.endpoint.host, port=str(self.endpoint.grpc_port))
        return AgentClient(workflow_client=workflow_client, default_timeout=timeout)


@pytest.fixture
def app(dapr_sidecar: SidecarEndpoint) -> Iterator[App]:
    created = App(dapr_sidecar)
    yield created
    if created.started:
        time.sleep(0.3)  # let in-flight activities finish: one ending after shutdown crashes the SDK
        created.runtime.shutdown()


@pytest.fixture
def llm() -> Iterator[ScriptedChatServer]:
    with ScriptedChatServer([], fallback=None) as server:
        yield server


def run_config(server: ScriptedChatServer) -> RunConfig:
    return RunConfig(model_provider=Scripted(server), tracing_disabled=True)


def texts(request: dict[str, Any]) -> list[str]:
    out = []
    for message in request["messages"]:
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(part.get("text", "") for part in content)
        out.append(f"{message['role']}:{content}")
    return out


async def history(session_id: str) -> list[Any]:
    async with DaprSession(session_id, state_store_name="statestore") as session:
        return await session.get_items()


def user_texts(items: list[Any]) -> list[str]:
    return [item["content"] for item in items if item.get("role") == "user"]


@pytest.fixture
def caller() -> Callable[[str], str]:
    """Caller names unique to the test: an external daprd keeps every session across tests and runs."""
    tag = uuid.uuid4().hex[:6]
    return lambda name: f"{name}-{tag}"


# -- the host --------------------------------------------------------------------------------


async def test_host_answers_remembers_per_caller_and_isolates_callers(
    app: App, llm: ScriptedChatServer, caller: Callable[[str], str]
) -> None:
    alice, bob = caller("alice"), caller("bob")
    llm.add(
        ScriptedReply("Nice to meet you, Ada.", when="My name is Ada"),
        ScriptedReply("Your name is Ada.", when="my name"),
        ScriptedReply("I do not know your name.", when="my name"),
    )
    assistant = Agent(name="Assistant", instructions="Be brief.", model="scripted")
    host = host_openai_agent(app.runtime, assistant, run_config=run_config(llm))
    assert (host.name, host.framework, host.workflow_name) == (
        "Assistant",
        "openai",
        "dapr.openai.Assistant.workflow",
    )
    app.start()
    client = app.client()

    first = await asyncio.to_thread(
        client.call, "Assistant", "My name is Ada.", framework="openai", source=alice
    )
    again = await asyncio.to_thread(
        client.call, "Assistant", "What is my name?", framework="openai", source=alice
    )
    other = await asyncio.to_thread(
        client.call, "Assistant", "What is my name?", framework="openai", source=bob
    )

    assert first.to_output() == {"role": "assistant", "content": "Nice to meet you, Ada."}
    assert again.content == "Your name is Ada."
    assert other.content == "I do not know your name."
    # The follow-up request carried alice's first exchange; bob's carried nothing of it.
    assert texts(llm.requests[1])[1:] == [
        "user:My name is Ada.",
        "assistant:Nice to meet you, Ada.",
        "user:What is my name?",
    ]
    assert texts(llm.requests[2])[1:] == ["user:What is my name?"]
    assert user_texts(await history(f"Assistant:{alice}")) == ["My name is Ada.", "What is my name?"]
    assert user_texts(await history(f"Assistant:{bob}")) == ["What is my name?"]


async def test_host_envelope_structured_output_and_session_key(
    app: App, llm: ScriptedChatServer, caller: Callable[[str], str]
) -> None:
    desk = caller("desk")

    class Weather(BaseModel):
        city: str
        celsius: int

    llm.add(ScriptedReply('{"city": "Paris", "celsius": 21}'))
    forecaster = Agent(name="forecaster", model="scripted", output_type=Weather)
    host_openai_agent(
        app.runtime,
        forecaster,
        name="Weather Desk",
        run_config=run_config(llm),
        session_key=lambda call: desk,
    )
    app.start()
    workflow_client = wf.DaprWorkflowClient(host=app.endpoint.host, port=str(app.endpoint.grpc_port))
    instance = workflow_client.schedule_new_workflow(
        "dapr.openai.WeatherDesk.workflow",
        input={"task": "Weather in Paris?", "_message_metadata": {"source": "planner"}},
    )
    state = await asyncio.to_thread(
        workflow_client.wait_for_workflow_completion, instance, timeout_in_seconds=30
    )
    assert state is not None and state.runtime_status.name == "COMPLETED"
    output = json.loads(state.serialized_output)
    assert output["role"] == "assistant"
    assert json.loads(output["content"]) == {"city": "Paris", "celsius": 21}
    assert user_texts(await history(desk)) == ["Weather in Paris?"]


async def test_failing_agent_fails_the_workflow_and_leaves_no_history(
    app: App, llm: ScriptedChatServer, caller: Callable[[str], str]
) -> None:
    alice = caller("alice")
    # An empty script: every LLM request gets HTTP 500 (scripted_script_exhausted).
    host_openai_agent(
        app.runtime,
        Agent(name="broken", model="scripted"),
        run_config=run_config(llm),
        retry_policy=FAST_RETRY,
    )
    app.start()
    with pytest.raises(AgentCallError) as raised:
        await asyncio.to_thread(app.client().call, "broken", "Hello?", framework="openai", source=alice)
    error = raised.value
    assert error.status == "FAILED"
    assert error.workflow_name == "dapr.openai.broken.workflow"
    assert "InternalServerError" in error.error_type or "500" in error.error_message
    assert "scripted" in error.error_message or "500" in error.error_message
    assert len(llm.requests) == 3  # one per activity attempt
    assert await history(f"broken:{alice}") == []  # failed attempts appended nothing


@pytest.fixture
def flaky_step() -> Callable[[str], None]:
    """``fail_once(label)``: raises the first time it is called with ``label``."""
    seen: set[str] = set()

    def fail_once(label: str) -> None:
        if label not in seen:
            seen.add(label)
            raise RuntimeError(f"simulated crash at {label}")

    return fail_once


async def test_retry_of_a_crashed_run_does_not_duplicate_the_task(
    app: App,
    llm: ScriptedChatServer,
    flaky_step: Callable[[str], None],
    dapr_state_backend: str,
    caller: Callable[[str], str],
) -> None:
    bob = caller("bob")

    @function_tool(failure_error_function=None)
    def lookup(order: str) -> str:
        """Look an order up."""
        flaky_step("tool")  # the first attempt dies in the middle of its run
        return f"order {order} shipped"

    llm.add(
        ScriptedReply(tool_calls=[ScriptedToolCall("lookup", {"order": "42"}, id="call_a")]),
        ScriptedReply(tool_calls=[ScriptedToolCall("lookup", {"order": "42"}, id="call_b")]),
        ScriptedReply("Order 42 has shipped.", when="shipped"),
    )
    agent = Agent(name="support", model="scripted", tools=[lookup])
    host_openai_agent(app.runtime, agent, run_config=run_config(llm), retry_policy=FAST_RETRY)
    app.start()
    answer = await asyncio.to_thread(
        app.client().call, "support", "Where is order 42?", framework="openai", source=bob
    )
    assert answer.content == "Order 42 has shipped."
    items = await history(f"support:{bob}")
    assert user_texts(items) == ["Where is order 42?"]
    assert [item.get("call_id") for item in items if item.get("type") == "function_call"] == ["call_b"]


@pytest.mark.parametrize("crash_at", ["append", "done"])
async def test_retry_after_the_commit_began_neither_reruns_nor_duplicates(
    app: App,
    llm: ScriptedChatServer,
    flaky_step: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
    crash_at: str,
    dapr_state_backend: str,
    caller: Callable[[str], str],
) -> None:
    """The first attempt dies before its append ("append") or after it, before the call
    record says done ("done"); the retry finishes the commit from the record, without a run."""
    bob = caller("bob")
    write = host_module._CallRecords.write
    add_items = DaprSession.add_items

    async def crashing_add(self: DaprSession, items: list[Any]) -> None:
        if crash_at == "append":
            flaky_step("append")
        await add_items(self, items)

    async def crashing_write(self: Any, instance_id: str, record: dict[str, Any]) -> None:
        if crash_at == "done" and record["state"] == "done":
            flaky_step("done")
        await write(self, instance_id, record)

    monkeypatch.setattr(DaprSession, "add_items", crashing_add)
    monkeypatch.setattr(host_module._CallRecords, "write", crashing_write)
    llm.add(ScriptedReply("Hello Bob.", when="I am Bob"))
    host_openai_agent(
        app.runtime,
        Agent(name="greeter", model="scripted"),
        run_config=run_config(llm),
        retry_policy=FAST_RETRY,
    )
    app.start()
    answer = await asyncio.to_thread(app.client().call, "greeter", "I am Bob", framework="openai", source=bob)
    assert answer.content == "Hello Bob."
    assert len(llm.requests) == 1  # the retry did not run the agent again
    items = await history(f"greeter:{bob}")
    assert [
        (item["role"], item["content"] if isinstance(item["content"], str) else item["content"][0]["text"])
        for item in items
    ] == [
        ("user", "I am Bob"),
        ("assistant", "Hello Bob."),
    ]


# -- the tool ---------------------------------------------------------------------------------


class Researcher:
    """A Dapr-hosted agent (interop's host_agent, wire-identical to a DurableAgent) that counts runs."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.release = threading.Event()
        self.mode = "answer"

    def __call__(self, call: AgentCall) -> str:
        self.calls.append((call.task, call.source))
        if self.mode == "fail":
            raise ValueError(f"no sources for {call.task!r}")
        if self.mode == "hang":
            self.release.wait(20)
        return f"researched {call.task!r} #{len(self.calls)}"


@pytest.fixture
def researcher(app: App) -> Iterator[Researcher]:
    hosted = Researcher()
    host_agent(app.runtime, name="researcher", framework="langgraph", run=hosted, retry_policy=None)
    yield hosted
    hosted.release.set()


def writer(llm: ScriptedChatServer, **tool_options: Any) -> Agent[Any]:
    options = {
        "framework": "langgraph",
        "description": "Researches a topic.",
        "timeout": 30.0,
        **tool_options,
    }
    return Agent(name="writer", model="scripted", tools=[dapr_agent_tool("researcher", **options)])


def cause_of(error: BaseException, kind: type[Any]) -> Any:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    raise AssertionError(f"no {kind.__name__} behind {error!r}")


def tool_outputs(request: dict[str, Any]) -> list[str]:
    return [str(m.get("content")) for m in request["messages"] if m.get("role") == "tool"]


async def test_tool_calls_the_hosted_agent_and_the_model_uses_the_answer(
    app: App, llm: ScriptedChatServer, researcher: Researcher
) -> None:
    app.start()
    llm.add(
        ScriptedReply(tool_calls=[ScriptedToolCall("researcher", {"task": "dapr history"})]),
        ScriptedReply("Summary: researched 'dapr history' #1.", when="researched"),
    )
    tool = writer(llm).tools[0]
    assert tool.params_json_schema["required"] == ["task"] and tool.strict_json_schema  # type: ignore[union-attr]
    result = await Runner.run(writer(llm), "Write about Dapr.", run_config=run_config(llm))
    assert result.final_output == "Summary: researched 'dapr history' #1."
    assert tool_outputs(llm.requests[1]) == ["researched 'dapr history' #1"]
    assert researcher.calls == [("dapr history", "writer" if TOOL_CONTEXT_HAS_AGENT else None)]


async def test_tool_failure_goes_to_the_model_by_default_or_raises(
    app: App, llm: ScriptedChatServer, researcher: Researcher
) -> None:
    app.start()
    researcher.mode = "fail"
    llm.add(
        ScriptedReply(tool_calls=[ScriptedToolCall("researcher", {"task": "nothing"})]),
        ScriptedReply("The research failed.", when="error occurred"),
        ScriptedReply(tool_calls=[ScriptedToolCall("researcher", {"task": "nothing"})]),
    )
    result = await Runner.run(writer(llm), "Go.", run_config=run_config(llm))
    assert result.final_output == "The research failed."
    assert tool_outputs(llm.requests[1])[0].startswith("An error occurred while running the tool.")

    with pytest.raises(Exception) as raised:
        await Runner.run(writer(llm, failure_error_function=None), "Go.", run_config=run_config(llm))
    error = cause_of(raised.value, AgentCallError)  # the SDK wraps tool errors in a UserError
    assert error.workflow_name == "dapr.langgraph.researcher.workflow"
    assert "no sources for 'nothing'" in error.error_message

    custom = writer(llm, failure_error_function=lambda ctx, error: f"tool failed: {error.error_message}")  # type: ignore[attr-defined]
    llm.add(
        ScriptedReply(tool_calls=[ScriptedToolCall("researcher", {"task": "nothing"})]),
        ScriptedReply("Noted.", when="tool failed"),
    )
    assert (await Runner.run(custom, "Go.", run_config=run_config(llm))).final_output == "Noted."
    assert tool_outputs(llm.requests[-1]) == [
        "tool failed: ValueError: no sources for 'nothing'"
    ] or tool_outputs(llm.requests[-1])[0].startswith("tool failed: ")


async def test_tool_timeout_terminates_and_reports(
    app: App, llm: ScriptedChatServer, researcher: Researcher
) -> None:
    app.start()
    researcher.mode = "hang"
    llm.add(
        ScriptedReply(tool_calls=[ScriptedToolCall("researcher", {"task": "slow"})]),
        ScriptedReply("It took too long.", when="error occurred"),
        ScriptedReply(tool_calls=[ScriptedToolCall("researcher", {"task": "slow"})]),
    )
    started = time.monotonic()
    result = await Runner.run(writer(llm, timeout=1.0), "Go.", run_config=run_config(llm))
    assert result.final_output == "It took too long."
    with pytest.raises(Exception) as raised:
        await Runner.run(
            writer(llm, timeout=1.0, failure_error_function=None), "Go.", run_config=run_config(llm)
        )
    timeout = cause_of(raised.value, AgentCallTimeout)  # also a TimeoutError
    assert isinstance(timeout, TimeoutError) and timeout.instance_id
    assert time.monotonic() - started < 15
    researcher.release.set()


async def test_tool_retry_in_the_same_scope_reattaches_and_other_runs_do_not(
    app: App, llm: ScriptedChatServer, researcher: Researcher, dapr_state_backend: str
) -> None:
    app.start()
    # The scripted model reuses the id "call_1" in every run, as a replayed conversation would.
    for _ in range(4):
        llm.add(
            ScriptedReply(tool_calls=[ScriptedToolCall("researcher", {"task": "same task"}, id="call_1")]),
            ScriptedReply("done", when="researched"),
        )
    with dapr_tool_scope(f"conversation-{uuid.uuid4().hex[:6]}"):
        await Runner.run(writer(llm), "Go.", run_config=run_config(llm))
        await Runner.run(writer(llm), "Go.", run_config=run_config(llm))  # the same call, retried
    assert len(researcher.calls) == 1
    assert tool_outputs(llm.requests[3]) == ["researched 'same task' #1"]

    # Two distinct runs asking the same task through the same call id never share an answer.
    await Runner.run(writer(llm), "Go.", run_config=run_config(llm))
    await Runner.run(writer(llm), "Go.", run_config=run_config(llm))
    assert len(researcher.calls) == 3
    assert [tool_outputs(llm.requests[i]) for i in (5, 7)] == [
        ["researched 'same task' #2"],
        ["researched 'same task' #3"],
    ]


async def test_hosted_agent_retry_reattaches_to_its_tool_calls(
    app: App,
    llm: ScriptedChatServer,
    researcher: Researcher,
    flaky_step: Callable[[str], None],
    caller: Callable[[str], str],
) -> None:
    """The host scopes its tools to the call's instance id: a redelivered attempt whose model
    repeats the tool call id gets the first attempt's answer instead of a second run."""

    editor = caller("editor")

    def crash_once_then_answer(result: Any) -> str:
        flaky_step("output")  # the first attempt dies after its tool call, before committing
        return str(result.final_output)

    llm.add(
        ScriptedReply(
            tool_calls=[ScriptedToolCall("researcher", {"task": "dapr"}, id="call_1")], when="Write"
        ),
        ScriptedReply(
            tool_calls=[ScriptedToolCall("researcher", {"task": "dapr"}, id="call_1")], when="Write"
        ),
        ScriptedReply("Dapr is durable.", when="researched", repeat=True),
    )
    host_openai_agent(
        app.runtime,
        writer(llm),
        run_config=run_config(llm),
        retry_policy=FAST_RETRY,
        output_mapper=crash_once_then_answer,
    )
    app.start()
    answer = await asyncio.to_thread(
        app.client().call, "writer", "Write about Dapr.", framework="openai", source=editor
    )
    assert answer.content == "Dapr is durable."
    assert len(llm.requests) == 4  # two attempts, each asked the model twice
    assert researcher.calls == [("dapr", "writer" if TOOL_CONTEXT_HAS_AGENT else None)]
    assert user_texts(await history(f"writer:{editor}")) == ["Write about Dapr."]
