"""The session under the SDK's Runner, with a scripted chat-completions model (no network):
two turns where the second sees the first, streamed and not, a tool call, and the same through
OpenAIResponsesCompactionSession, including a manual compaction against a fake endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel
from openai import AsyncOpenAI

from dapr_agents.ext.devsidecar import ScriptedChatServer, ScriptedReply, ScriptedToolCall
from dapr_agents.ext.openai_agents import DaprSession

set_tracing_disabled(True)


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def make_agent(server: ScriptedChatServer) -> Agent[Any]:
    model = OpenAIChatCompletionsModel(
        model="scripted", openai_client=AsyncOpenAI(base_url=server.base_url, api_key="x")
    )
    return Agent(name="assistant", instructions="Be brief.", model=model, tools=[get_weather])


def message_texts(request: dict[str, Any]) -> list[str]:
    texts = []
    for message in request["messages"]:
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(part.get("text", "") for part in content)
        texts.append(f"{message['role']}:{content}")
    return texts


async def run_two_turns_and_a_tool(session: Any, server: ScriptedChatServer) -> None:
    agent = make_agent(server)
    first = await Runner.run(agent, "My name is Ada.", session=session)
    assert first.final_output == "Nice to meet you, Ada."

    streamed = Runner.run_streamed(agent, "What is my name?", session=session)
    async for _ in streamed.stream_events():
        pass
    assert streamed.final_output == "Your name is Ada."
    # The second turn's request carried the first turn's history, read back from the session.
    assert message_texts(server.requests[1])[1:] == [
        "user:My name is Ada.",
        "assistant:Nice to meet you, Ada.",
        "user:What is my name?",
    ]

    third = await Runner.run(agent, "And the weather in Paris?", session=session)
    assert third.final_output == "It is sunny in Paris."


SCRIPT = [
    ScriptedReply("Nice to meet you, Ada.", when="My name is Ada"),
    ScriptedReply("Your name is Ada.", when="What is my name"),
    ScriptedReply(
        tool_calls=[ScriptedToolCall("get_weather", {"city": "Paris"}, id="call_w")], when="weather"
    ),
    ScriptedReply("It is sunny in Paris.", when="sunny in Paris"),
]


@pytest.fixture
def server() -> Iterator[ScriptedChatServer]:
    with ScriptedChatServer(SCRIPT) as running:
        yield running


def assert_stored_conversation(items: list[dict[str, Any]]) -> None:
    kinds = [(item.get("type", "message"), item.get("role")) for item in items]
    assert kinds == [
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
        ("function_call", None),
        ("function_call_output", None),
        ("message", "assistant"),
    ]
    assert items[5]["name"] == "get_weather" and json.loads(items[5]["arguments"]) == {"city": "Paris"}
    assert items[6]["call_id"] == items[5]["call_id"] and items[6]["output"] == "sunny in Paris"


async def test_runner_run_and_run_streamed(session: DaprSession, server: ScriptedChatServer) -> None:
    await run_two_turns_and_a_tool(session, server)
    assert_stored_conversation(await session.get_items())  # type: ignore[arg-type]


async def test_runner_honours_the_session_limit(
    make_session: Callable[..., DaprSession], server: ScriptedChatServer
) -> None:
    session = make_session(session_settings={"limit": 2})
    await session.add_items([{"role": "user", "content": f"old {n}"} for n in range(5)])
    agent = make_agent(server)
    await Runner.run(agent, "My name is Ada.", session=session)
    assert message_texts(server.requests[0])[1:] == ["user:old 3", "user:old 4", "user:My name is Ada."]


class FakeCompactEndpoint:
    """Answers ``POST /responses/compact`` like the Responses API, with one compaction item."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append({"path": self.path, "body": json.loads(body)})
                answer = json.dumps(
                    {
                        "id": "cmp_1",
                        "object": "response.compaction",
                        "created_at": 0,
                        "output": [{"type": "compaction", "id": "cmpi_1", "encrypted_content": "summary"}],
                        "usage": {
                            "input_tokens": 10,
                            "input_tokens_details": {"cached_tokens": 0},
                            "output_tokens": 2,
                            "output_tokens_details": {"reasoning_tokens": 0},
                            "total_tokens": 12,
                        },
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


async def test_wrapped_by_responses_compaction_session(
    session: DaprSession, server: ScriptedChatServer
) -> None:
    from agents.memory import OpenAIResponsesCompactionSession

    endpoint = FakeCompactEndpoint()
    try:
        wrapped = OpenAIResponsesCompactionSession(
            session.session_id,
            underlying_session=session,
            client=AsyncOpenAI(base_url=endpoint.base_url, api_key="x"),
            model="gpt-4.1",
            compaction_mode="input",
        )
        await run_two_turns_and_a_tool(wrapped, server)
        assert_stored_conversation(await session.get_items())  # type: ignore[arg-type]

        await wrapped.run_compaction({"force": True, "compaction_mode": "input"})
        assert endpoint.requests and endpoint.requests[0]["path"].endswith("/responses/compact")
        assert len(endpoint.requests[0]["body"]["input"]) == 8
        stored = await session.get_items()
        assert [item.get("type") for item in stored][-1] == "compaction"
        assert stored[-1]["encrypted_content"] == "summary"  # type: ignore[typeddict-item]
    finally:
        endpoint.close()
