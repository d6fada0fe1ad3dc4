"""Tests for the scripted OpenAI-compatible chat server (real HTTP over loopback)."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dapr_agents.ext.devsidecar._scripted_llm import (
    ScriptedChatServer,
    ScriptedReply,
    ScriptedToolCall,
    ScriptEntry,
    load_script,
    main,
)

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
USER_HI = [{"role": "user", "content": "hi"}]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


@pytest.fixture
def openai_mod() -> Any:
    return pytest.importorskip("openai")


@pytest.fixture
def server() -> Iterator[ScriptedChatServer]:
    with ScriptedChatServer() as srv:
        yield srv


def make_client(openai_mod: Any, srv: ScriptedChatServer) -> Any:
    return openai_mod.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0, timeout=5)


def raw_request(
    srv: ScriptedChatServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def post_chat(srv: ScriptedChatServer, payload: Any, path: str = "/v1/chat/completions") -> tuple[int, Any]:
    status, _, body = raw_request(
        srv, "POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    return status, json.loads(body)


def ask(client: Any, text: str, **kwargs: Any) -> Any:
    return client.chat.completions.create(model="m", messages=[{"role": "user", "content": text}], **kwargs)


# --------------------------------------------------------------------------
# data model
# --------------------------------------------------------------------------


def test_reply_validation_and_defaults() -> None:
    with pytest.raises(ValueError):
        ScriptedReply()
    reply = ScriptedReply(tool_calls=[ScriptedToolCall("f", {"a": 1})])
    assert isinstance(reply.tool_calls, tuple)
    assert reply.resolved_finish_reason == "tool_calls"
    assert ScriptedReply("x").resolved_finish_reason == "stop"
    assert ScriptedReply("x", finish_reason="length").resolved_finish_reason == "length"
    assert ScriptedToolCall("f", {"a": 1}).arguments_json == '{"a": 1}'
    assert ScriptedToolCall("f", '{"raw": true}').arguments_json == '{"raw": true}'
    with pytest.raises(ValueError):
        ScriptedReply.from_dict({"content": "x", "typo": 1})
    with pytest.raises(TypeError):
        ScriptedReply.from_dict({"content": "x", "repeat": "yes"})
    with pytest.raises(ValueError):
        ScriptedChatServer(fallback="nope")
    parsed = ScriptedReply.from_dict(
        {"tool_calls": [{"name": "g", "arguments": {"b": 2}, "id": "c9"}], "when": "w", "repeat": True}
    )
    assert parsed == ScriptedReply(tool_calls=(ScriptedToolCall("g", {"b": 2}, "c9"),), when="w", repeat=True)


# --------------------------------------------------------------------------
# openai client: plain, async, tools
# --------------------------------------------------------------------------


def test_plain_reply_sync(openai_mod: Any) -> None:
    with ScriptedChatServer(["Hello from the script."], model="scripted-x") as srv:
        assert srv.base_url == f"http://127.0.0.1:{srv.port}/v1"
        client = make_client(openai_mod, srv)
        completion = ask(client, "say hi")
        choice = completion.choices[0]
        assert choice.message.role == "assistant"
        assert choice.message.content == "Hello from the script."
        assert choice.message.tool_calls is None
        assert choice.finish_reason == "stop"
        assert completion.model == "m"
        assert completion.id == "chatcmpl-1"
        assert completion.usage.prompt_tokens == 2
        assert completion.usage.completion_tokens == 4
        assert completion.usage.total_tokens == 6
        assert [m.id for m in client.models.list()] == ["scripted-x"]
        assert srv.remaining == 0


def test_plain_reply_async(openai_mod: Any) -> None:
    async def run(srv: ScriptedChatServer) -> list[str | None]:
        async with openai_mod.AsyncOpenAI(
            base_url=srv.base_url, api_key="x", max_retries=0, timeout=5
        ) as client:
            first = await client.chat.completions.create(model="m", messages=USER_HI)
            second = await client.chat.completions.create(model="m", messages=USER_HI)
            return [first.choices[0].message.content, second.choices[0].message.content]

    with ScriptedChatServer(["one", "two"]) as srv:
        assert asyncio.run(run(srv)) == ["one", "two"]


def test_tool_call_reply(openai_mod: Any) -> None:
    script = [
        ScriptedReply(
            tool_calls=[
                ScriptedToolCall("get_weather", {"city": "Paris", "unit": "C"}),
                ScriptedToolCall("get_time", '{"tz": "CET"}', id="explicit"),
            ]
        ),
        ScriptedReply(tool_calls=[ScriptedToolCall("get_weather", {"city": "Rome"})], content="checking"),
    ]
    with ScriptedChatServer(script) as srv:
        client = make_client(openai_mod, srv)
        message = ask(client, "weather?").choices[0].message
        assert message.content is None
        calls = message.tool_calls
        assert [c.id for c in calls] == ["call_1", "explicit"]
        assert all(c.type == "function" for c in calls)
        assert calls[0].function.name == "get_weather"
        assert json.loads(calls[0].function.arguments) == {"city": "Paris", "unit": "C"}
        assert json.loads(calls[1].function.arguments) == {"tz": "CET"}
        second = ask(client, "again")
        assert second.choices[0].finish_reason == "tool_calls"
        assert second.choices[0].message.content == "checking"
        assert second.choices[0].message.tool_calls[0].id == "call_2"

        # The conversation can continue with the tool result as the last message.
        srv.add(ScriptedReply("It is 21 degrees.", when="21C"))
        follow_up = client.chat.completions.create(
            model="m",
            messages=[
                {"role": "user", "content": "weather?"},
                message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": "call_1", "content": "21C"},
                {"role": "tool", "tool_call_id": "explicit", "content": "noon"},
            ],
        )
        # Last message is "noon", so the `when="21C"` reply does not match: echo fallback.
        assert follow_up.choices[0].message.content == "echo: weather?"
        assert srv.remaining == 1


# --------------------------------------------------------------------------
# matching
# --------------------------------------------------------------------------


def test_when_matching_and_order(openai_mod: Any) -> None:
    script = [
        ScriptedReply("about cats", when="cat"),
        ScriptedReply("first generic"),
        ScriptedReply("about dogs", when="dog"),
        ScriptedReply("second generic"),
    ]
    with ScriptedChatServer(script, fallback=None) as srv:
        client = make_client(openai_mod, srv)
        assert ask(client, "tell me about a dog").choices[0].message.content == "first generic"
        assert ask(client, "a dog again").choices[0].message.content == "about dogs"
        assert ask(client, "my cat").choices[0].message.content == "about cats"
        assert ask(client, "a dog once more").choices[0].message.content == "second generic"
        assert srv.remaining == 0


def test_when_uses_last_message_and_list_content(openai_mod: Any) -> None:
    with ScriptedChatServer([ScriptedReply("matched", when="needle")], fallback="echo") as srv:
        client = make_client(openai_mod, srv)
        # "needle" only in an earlier message: no match -> echo of last user text.
        reply = client.chat.completions.create(
            model="m",
            messages=[
                {"role": "system", "content": "needle"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "hay"}, {"type": "text", "text": "stack"}],
                },
            ],
        )
        assert reply.choices[0].message.content == "echo: hay\nstack"
        reply = client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": [{"type": "text", "text": "find the needle"}]}],
        )
        assert reply.choices[0].message.content == "matched"


def test_repeat(openai_mod: Any) -> None:
    script: list[ScriptEntry] = [
        ScriptedReply("special", when="special"),
        ScriptedReply("always", repeat=True),
        "never reached",
    ]
    with ScriptedChatServer(script) as srv:
        assert srv.remaining == 2
        client = make_client(openai_mod, srv)
        assert [ask(client, "x").choices[0].message.content for _ in range(3)] == ["always"] * 3
        assert ask(client, "special").choices[0].message.content == "special"
        assert ask(client, "special").choices[0].message.content == "always"
        assert srv.remaining == 1


def test_add_at_runtime(openai_mod: Any) -> None:
    with ScriptedChatServer(fallback=None) as srv:
        client = make_client(openai_mod, srv)
        srv.add("a", {"content": "b"}, ScriptedReply("c"))
        assert srv.remaining == 3
        assert [ask(client, "q").choices[0].message.content for _ in range(3)] == ["a", "b", "c"]


# --------------------------------------------------------------------------
# fallback
# --------------------------------------------------------------------------


def test_fallback_echo(openai_mod: Any) -> None:
    with ScriptedChatServer() as srv:
        client = make_client(openai_mod, srv)
        reply = client.chat.completions.create(
            model="m",
            messages=[
                {"role": "system", "content": "be nice"},
                {"role": "user", "content": "ping pong"},
                {"role": "assistant", "content": "earlier"},
            ],
        )
        assert reply.choices[0].message.content == "echo: ping pong"


def test_fallback_none_error(openai_mod: Any) -> None:
    with ScriptedChatServer(["only one"], fallback=None) as srv:
        client = make_client(openai_mod, srv)
        assert ask(client, "q").choices[0].message.content == "only one"
        with pytest.raises(openai_mod.InternalServerError) as info:
            ask(client, "q2")
        assert isinstance(info.value, openai_mod.APIError)
        assert info.value.status_code == 500
        assert info.value.body["type"] == "scripted_script_exhausted"
        assert "exhausted" in info.value.body["message"]
        assert "1 request(s) served" in info.value.body["message"]
        assert "exhausted" in str(info.value)
        # Raw shape of the error document.
        status, body = post_chat(srv, {"model": "m", "messages": USER_HI})
        assert status == 500
        assert body["error"]["type"] == "scripted_script_exhausted"
        assert len(srv.requests) == 3


def test_fallback_none_stream_error(openai_mod: Any) -> None:
    with ScriptedChatServer(fallback=None) as srv:
        client = make_client(openai_mod, srv)
        with pytest.raises(openai_mod.InternalServerError):
            ask(client, "q", stream=True)


# --------------------------------------------------------------------------
# streaming
# --------------------------------------------------------------------------


def test_streaming_text(openai_mod: Any) -> None:
    text = "The quick  brown fox\njumps. "
    with ScriptedChatServer([text, text]) as srv:
        client = make_client(openai_mod, srv)
        chunks = list(ask(client, "go", stream=True))
        assert chunks[0].choices[0].delta.role == "assistant"
        assert len(chunks) >= 5
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == text
        assert chunks[-1].choices[0].finish_reason == "stop"
        assert all(c.usage is None for c in chunks)
        assert {c.id for c in chunks} == {"chatcmpl-1"}

        # The SDK's accumulating helper sees the same final message.
        with client.chat.completions.stream(model="m", messages=USER_HI) as stream:
            final = stream.get_final_completion()
        assert final.choices[0].message.content == text
        assert final.choices[0].finish_reason == "stop"


def test_streaming_tool_calls(openai_mod: Any) -> None:
    reply = ScriptedReply(
        content="Let me check.",
        tool_calls=[
            ScriptedToolCall("get_weather", {"city": "Paris"}),
            ScriptedToolCall("lookup", {"q": "a b c", "n": [1, 2]}, id="my-id"),
        ],
    )
    with ScriptedChatServer([reply, reply]) as srv:
        client = make_client(openai_mod, srv)
        content = ""
        calls: dict[int, dict[str, str]] = {}
        finish = None
        for chunk in ask(client, "go", stream=True):
            for choice in chunk.choices:
                content += choice.delta.content or ""
                for delta in choice.delta.tool_calls or []:
                    slot = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                    if delta.id:
                        slot["id"] = delta.id
                    if delta.function and delta.function.name:
                        slot["name"] += delta.function.name
                    if delta.function and delta.function.arguments:
                        slot["arguments"] += delta.function.arguments
                finish = choice.finish_reason or finish
        assert content == "Let me check."
        assert finish == "tool_calls"
        assert sorted(calls) == [0, 1]
        assert calls[0]["id"] == "call_1" and calls[0]["name"] == "get_weather"
        assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
        assert calls[1]["id"] == "my-id" and calls[1]["name"] == "lookup"
        assert json.loads(calls[1]["arguments"]) == {"q": "a b c", "n": [1, 2]}

        with client.chat.completions.stream(model="m", messages=USER_HI) as stream:
            final = stream.get_final_completion()
        message = final.choices[0].message
        assert [c.id for c in message.tool_calls] == ["call_2", "my-id"]
        assert json.loads(message.tool_calls[1].function.arguments) == {"q": "a b c", "n": [1, 2]}


def test_streaming_include_usage(openai_mod: Any) -> None:
    with ScriptedChatServer(["four words right here"]) as srv:
        client = make_client(openai_mod, srv)
        chunks = list(
            client.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "count these three"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        last = chunks[-1]
        assert last.choices == []
        assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (3, 4, 7)
        assert all(c.usage is None for c in chunks[:-1])
        assert chunks[-2].choices[0].finish_reason == "stop"


def test_streaming_raw_sse(server: ScriptedChatServer) -> None:
    server.add("a b")
    status, headers, body = raw_request(
        server,
        "POST",
        "/v1/chat/completions",
        json.dumps({"messages": USER_HI, "stream": True}).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    events = body.decode().split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    chunks = [json.loads(e[len("data: ") :]) for e in events[:-2]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "scripted" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "a b"


# --------------------------------------------------------------------------
# request log, routes, errors
# --------------------------------------------------------------------------


def test_requests_log(openai_mod: Any) -> None:
    with ScriptedChatServer(["r1", "r2"]) as srv:
        client = make_client(openai_mod, srv)
        tools = [
            {
                "type": "function",
                "function": {"name": "f", "parameters": {"type": "object", "properties": {}}},
            }
        ]
        ask(client, "first", temperature=0.5, tools=tools)
        ask(client, "second")
        log = srv.requests
        assert [r["messages"][-1]["content"] for r in log] == ["first", "second"]
        assert log[0]["model"] == "m" and log[0]["temperature"] == 0.5
        assert log[0]["tools"][0]["function"]["name"] == "f"
        log.clear()
        log_again = srv.requests
        assert len(log_again) == 2
        log_again[0]["messages"].clear()
        assert srv.requests[0]["messages"]


def test_routes_and_errors(server: ScriptedChatServer) -> None:
    status, _, body = raw_request(server, "GET", "/health")
    assert status == 200 and json.loads(body) == {"status": "ok"}

    status, _, body = raw_request(server, "GET", "/v1/models")
    assert status == 200 and json.loads(body)["data"][0]["id"] == "scripted"

    status, _, body = raw_request(server, "GET", "/v1/nope")
    assert status == 404 and "message" in json.loads(body)["error"]

    status, _, body = raw_request(server, "POST", "/v1/embeddings", b"{}")
    assert status == 404 and json.loads(body)["error"]["type"] == "not_found_error"

    headers = {"Content-Type": "application/json"}
    status, _, body = raw_request(server, "POST", "/v1/chat/completions", b"{not json", headers)
    assert status == 400
    error = json.loads(body)["error"]
    assert error["type"] == "invalid_request_error" and "not valid JSON" in error["message"]

    status, body_json = post_chat(server, {"model": "m"})
    assert status == 400 and "messages" in body_json["error"]["message"]

    status, body_json = post_chat(server, [1, 2])
    assert status == 400 and "JSON object" in body_json["error"]["message"]

    # Without the /v1 prefix; no model in the request -> server model.
    status, body_json = post_chat(server, {"messages": USER_HI}, path="/chat/completions")
    assert status == 200
    assert body_json["object"] == "chat.completion"
    assert body_json["model"] == "scripted"
    message = body_json["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "echo: hi", "refusal": None}
    assert body_json["choices"][0]["logprobs"] is None
    assert len(server.requests) == 1  # rejected requests are not logged


def test_malformed_body_via_openai_client(openai_mod: Any, server: ScriptedChatServer) -> None:
    client = make_client(openai_mod, server)
    with pytest.raises(openai_mod.BadRequestError) as info:
        client.post("/chat/completions", body={"model": "m"}, cast_to=object)
    assert "messages" in info.value.body["message"]


def test_keep_alive_and_chunked_request(server: ScriptedChatServer) -> None:
    server.add("one", "two")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        payload = json.dumps({"messages": USER_HI}).encode()
        conn.request(
            "POST", "/v1/chat/completions", body=payload, headers={"Content-Type": "application/json"}
        )
        first = conn.getresponse()
        assert first.getheader("Content-Length") is not None
        assert json.loads(first.read())["choices"][0]["message"]["content"] == "one"
        # Same connection, chunked request body.
        conn.request(
            "POST",
            "/v1/chat/completions",
            body=iter([payload[:10], payload[10:]]),
            headers={"Content-Type": "application/json"},
            encode_chunked=True,
        )
        second = conn.getresponse()
        assert json.loads(second.read())["choices"][0]["message"]["content"] == "two"
    finally:
        conn.close()


# --------------------------------------------------------------------------
# load_script
# --------------------------------------------------------------------------


def test_load_script_json(tmp_path: Path, openai_mod: Any) -> None:
    path = tmp_path / "script.json"
    path.write_text(
        json.dumps(
            [
                "plain",
                {"content": "when-reply", "when": "magic"},
                {
                    "tool_calls": [
                        {"name": "f", "arguments": {"x": 1}, "id": "c1"},
                        {"name": "g", "arguments": "{}"},
                    ]
                },
            ]
        )
    )
    replies = load_script(path)
    assert replies[0] == ScriptedReply("plain")
    assert replies[1] == ScriptedReply("when-reply", when="magic")
    assert replies[2].tool_calls == (ScriptedToolCall("f", {"x": 1}, "c1"), ScriptedToolCall("g", "{}"))

    with ScriptedChatServer.from_file(path, fallback=None) as srv:
        client = make_client(openai_mod, srv)
        assert ask(client, "x").choices[0].message.content == "plain"
        assert ask(client, "magic words").choices[0].message.content == "when-reply"
        calls = ask(client, "y").choices[0].message.tool_calls
        assert [(c.id, c.function.name) for c in calls] == [("c1", "f"), ("call_1", "g")]


def test_load_script_yaml(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    path = tmp_path / "script.yaml"
    path.write_text(
        "replies:\n"
        "  - Hello there\n"
        "  - content: repeated\n"
        "    repeat: true\n"
        "    when: again\n"
        "  - tool_calls:\n"
        "      - name: search\n"
        "        arguments: {query: dapr, limit: 3}\n"
        "    finish_reason: tool_calls\n"
    )
    replies = load_script(path)
    assert replies == [
        ScriptedReply("Hello there"),
        ScriptedReply("repeated", repeat=True, when="again"),
        ScriptedReply(
            tool_calls=(ScriptedToolCall("search", {"query": "dapr", "limit": 3}),),
            finish_reason="tool_calls",
        ),
    ]
    bad = tmp_path / "bad.yml"
    bad.write_text("- {content: x, colour: red}\n")
    with pytest.raises(ValueError, match="colour"):
        load_script(bad)


# --------------------------------------------------------------------------
# concurrency and lifecycle
# --------------------------------------------------------------------------


def test_concurrent_requests_get_distinct_replies(openai_mod: Any) -> None:
    n = 8
    with ScriptedChatServer([f"reply-{i}" for i in range(n)], fallback=None) as srv:
        client = make_client(openai_mod, srv)
        barrier = threading.Barrier(n)
        results: list[str] = []
        errors: list[BaseException] = []
        results_lock = threading.Lock()

        def worker(i: int) -> None:
            try:
                barrier.wait(timeout=5)
                content = ask(client, f"thread {i}").choices[0].message.content
                with results_lock:
                    results.append(content)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert not errors
        assert sorted(results) == [f"reply-{i}" for i in range(n)]
        assert srv.remaining == 0
        assert len(srv.requests) == n
        assert sorted(r["messages"][0]["content"] for r in srv.requests) == sorted(
            f"thread {i}" for i in range(n)
        )


def test_lifecycle() -> None:
    srv = ScriptedChatServer(["x"])
    with pytest.raises(RuntimeError):
        _ = srv.port
    assert srv.start() is srv
    assert srv.start() is srv  # no-op while running
    port = srv.port
    # An idle keep-alive connection does not keep stop() from returning.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/health")
    assert conn.getresponse().read()
    srv.stop()
    srv.stop()  # idempotent
    conn.close()
    with pytest.raises(RuntimeError):
        srv.start()
    with pytest.raises(OSError):
        http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/health")


def test_cli_main(tmp_path: Path) -> None:
    script = tmp_path / "s.json"
    script.write_text(json.dumps(["from the cli"]))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dapr_agents.ext.devsidecar._scripted_llm",
            "--script",
            str(script),
            "--model",
            "cli-model",
            "--no-fallback",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline().strip()
        prefix = "scripted LLM listening on "
        assert line.startswith(prefix), (line, proc.stderr.read() if proc.poll() is not None else "")
        base_url = line[len(prefix) :]
        port = int(base_url.rsplit(":", 1)[1].split("/", 1)[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        body = json.dumps({"messages": USER_HI}).encode()
        conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
        answer = json.loads(conn.getresponse().read())
        assert answer["choices"][0]["message"]["content"] == "from the cli"
        assert answer["model"] == "cli-model"
        conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
        assert conn.getresponse().status == 500
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0


def test_llm_help_names_the_command_users_type(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-m", "dapr_devsidecar", "llm", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: dapr-devsidecar llm "), done.stdout


def test_main_rejects_bad_script(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--script", str(tmp_path / "missing.json")])
