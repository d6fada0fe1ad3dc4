"""The Session protocol, over the wire, on every state store: order, limits, pop, clear, and the
items the SDK stores round-tripping unchanged."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from agents.memory import Session, SessionABC, SessionSettings
from helpers import texts, user

from dapr_agents.ext.openai_agents import DaprSession, ItemNotSerializableError, SessionClosedError

# One of every kind of item the SDK writes to a session (Runner stores the input items and
# ``RunItem.to_input_item()`` of every generated item), in the Responses API's shapes.
RESPONSES_ITEMS: list[dict[str, Any]] = [
    {"role": "system", "content": "You are terse."},
    {"role": "developer", "content": "Answer in English."},
    {"role": "user", "content": "Plain text input"},
    {
        "type": "message",
        "role": "user",
        "content": [
            {"type": "input_text", "text": "Look at this"},
            {"type": "input_image", "image_url": "https://example.test/cat.png", "detail": "auto"},
            {"type": "input_file", "file_id": "file-123", "filename": "notes.pdf"},
        ],
    },
    {
        "id": "rs_1",
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "Thinking about the weather."}],
        "encrypted_content": "gAAAAABo-opaque==",
    },
    {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [
            {
                "type": "output_text",
                "text": "Let me check.",
                "annotations": [
                    {
                        "type": "url_citation",
                        "start_index": 0,
                        "end_index": 3,
                        "url": "https://x.test",
                        "title": "X",
                    }
                ],
                "logprobs": [],
            },
            {"type": "refusal", "refusal": "I cannot share that part."},
        ],
    },
    {
        "id": "fc_1",
        "type": "function_call",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
        "status": "completed",
    },
    {"type": "function_call_output", "call_id": "call_1", "output": '{"temp": 21, "unit": "C"}'},
    {
        "id": "fs_1",
        "type": "file_search_call",
        "queries": ["dapr"],
        "status": "completed",
        "results": [
            {"file_id": "file-1", "filename": "a.md", "score": 0.5, "text": "Dapr", "attributes": {}}
        ],
    },
    {
        "id": "ws_1",
        "type": "web_search_call",
        "status": "completed",
        "action": {"type": "search", "query": "dapr"},
    },
    {
        "id": "cu_1",
        "type": "computer_call",
        "call_id": "call_2",
        "action": {"type": "click", "button": "left", "x": 10, "y": 20},
        "pending_safety_checks": [],
        "status": "completed",
    },
    {
        "type": "computer_call_output",
        "call_id": "call_2",
        "output": {"type": "computer_screenshot", "image_url": "data:image/png;base64,iVBORw0KGgo="},
    },
    {
        "id": "ci_1",
        "type": "code_interpreter_call",
        "code": "print(1 + 1)",
        "container_id": "cntr_1",
        "outputs": [{"type": "logs", "logs": "2\n"}],
        "status": "completed",
    },
    {"id": "ig_1", "type": "image_generation_call", "result": "iVBORw0KGgo=", "status": "completed"},
    {
        "id": "ls_1",
        "type": "local_shell_call",
        "call_id": "call_3",
        "action": {"type": "exec", "command": ["ls", "-l"], "env": {}},
        "status": "completed",
    },
    {"type": "local_shell_call_output", "id": "call_3", "output": "total 0\n"},
    {
        "id": "sh_1",
        "type": "shell_call",
        "call_id": "call_4",
        "action": {"commands": ["echo hi"], "timeout_ms": 1000},
        "status": "completed",
    },
    {
        "type": "shell_call_output",
        "call_id": "call_4",
        "output": [{"stdout": "hi\n", "stderr": "", "outcome": {"type": "exit", "exit_code": 0}}],
    },
    {
        "id": "ap_1",
        "type": "apply_patch_call",
        "call_id": "call_5",
        "operation": {"type": "update_file", "path": "a.py", "diff": "@@\n-a\n+b\n"},
        "status": "completed",
    },
    {"type": "apply_patch_call_output", "call_id": "call_5", "status": "completed", "output": "ok"},
    {
        "id": "ml_1",
        "type": "mcp_list_tools",
        "server_label": "deepwiki",
        "tools": [{"name": "ask", "input_schema": {}}],
    },
    {
        "id": "mr_1",
        "type": "mcp_approval_request",
        "server_label": "deepwiki",
        "name": "ask",
        "arguments": "{}",
    },
    {"type": "mcp_approval_response", "approval_request_id": "mr_1", "approve": True},
    {
        "id": "mc_1",
        "type": "mcp_call",
        "server_label": "deepwiki",
        "name": "ask",
        "arguments": '{"q": "dapr"}',
        "output": "Dapr is a runtime.",
    },
    {"id": "ct_1", "type": "custom_tool_call", "call_id": "call_6", "name": "grammar", "input": "x = 1"},
    {"type": "custom_tool_call_output", "call_id": "call_6", "output": "parsed"},
    {"type": "item_reference", "id": "msg_0"},
    {"type": "compaction", "id": "cmp_1", "encrypted_content": "opaque-summary"},
]


async def test_it_is_an_sdk_session(session: DaprSession) -> None:
    assert isinstance(session, SessionABC)
    assert isinstance(session, Session)
    assert session.session_settings == SessionSettings()


async def test_empty_session(session: DaprSession) -> None:
    assert await session.get_items() == []
    assert await session.get_items(limit=3) == []
    assert await session.pop_item() is None
    await session.clear_session()
    assert await session.get_items() == []


async def test_order_and_limits(session: DaprSession) -> None:
    await session.add_items([user("1")])
    await session.add_items([user("2"), user("3"), user("4")])
    await session.add_items([])
    await session.add_items([user("5"), user("6")])
    everything = [str(n) for n in range(1, 7)]
    assert texts(await session.get_items()) == everything
    for limit in range(1, 9):
        assert texts(await session.get_items(limit=limit)) == everything[-limit:]
    assert await session.get_items(limit=0) == []
    assert await session.get_items(limit=-1) == []


async def test_session_settings_limit_is_the_default(make_session: Callable[..., DaprSession]) -> None:
    session = make_session(session_settings=SessionSettings(limit=2))
    await session.add_items([user(str(n)) for n in range(5)])
    assert texts(await session.get_items()) == ["3", "4"]
    assert texts(await session.get_items(limit=4)) == ["1", "2", "3", "4"]
    as_dict = make_session(session.session_id, session_settings={"limit": 3})
    assert isinstance(as_dict.session_settings, SessionSettings)
    assert texts(await as_dict.get_items()) == ["2", "3", "4"]


async def test_pop(session: DaprSession) -> None:
    await session.add_items([user("a"), user("b")])
    await session.add_items([user("c")])
    assert (await session.pop_item()) == user("c")
    assert (await session.pop_item()) == user("b")
    await session.add_items([user("d")])
    assert texts(await session.get_items()) == ["a", "d"]
    assert texts(await session.get_items(limit=1)) == ["d"]
    assert (await session.pop_item()) == user("d")
    assert (await session.pop_item()) == user("a")
    assert await session.pop_item() is None
    assert await session.get_items() == []
    await session.add_items([user("e")])
    assert texts(await session.get_items()) == ["e"]


async def test_many_pops_and_adds_keep_reads_exact(session: DaprSession) -> None:
    expected: list[str] = []
    for round_ in range(6):
        batch = [f"{round_}-{n}" for n in range(3)]
        await session.add_items([user(text) for text in batch])
        expected += batch
        for _ in range(round_ % 3):
            assert (await session.pop_item()) == user(expected.pop())
    assert texts(await session.get_items()) == expected
    for limit in range(1, len(expected) + 2):
        assert texts(await session.get_items(limit=limit)) == expected[-limit:]


async def test_clear(session: DaprSession, make_session: Callable[..., DaprSession]) -> None:
    await session.add_items([user("a"), user("b")])
    other = make_session()
    await other.add_items([user("kept")])
    await session.clear_session()
    assert await session.get_items() == []
    assert await session.pop_item() is None
    assert texts(await other.get_items()) == ["kept"]
    await session.add_items([user("c")])
    assert texts(await session.get_items()) == ["c"]
    await session.clear_session()
    await session.clear_session()
    assert await session.get_items() == []


async def test_every_responses_item_type_round_trips(session: DaprSession) -> None:
    await session.add_items(RESPONSES_ITEMS[:5])
    for item in RESPONSES_ITEMS[5:]:
        await session.add_items([item])
    assert await session.get_items() == RESPONSES_ITEMS
    assert await session.get_items(limit=3) == RESPONSES_ITEMS[-3:]
    assert await session.pop_item() == RESPONSES_ITEMS[-1]


async def test_unicode(session: DaprSession) -> None:
    items = [
        user("héllo wörld"),
        user("日本語のテキスト"),
        user("مرحبا بالعالم"),
        user("emoji 🧪🚀 and a zero-width joiner 👩‍💻"),
        user('quotes " and \\ backslashes \n newlines \u0000 nul'),
    ]
    await session.add_items(items)
    assert await session.get_items() == items
    assert await session.pop_item() == items[-1]


async def test_large_items(session: DaprSession) -> None:
    one_mb = user("x" * 1_000_000)
    bigger = user("é" * 900_000)  # 1.8 MB of UTF-8, cut into parts mid-character
    await session.add_items([user("before")])
    await session.add_items([one_mb])
    await session.add_items([bigger, user("after")])
    assert await session.get_items(limit=1) == [user("after")]
    assert await session.get_items(limit=3) == [one_mb, bigger, user("after")]
    assert await session.get_items() == [user("before"), one_mb, bigger, user("after")]
    assert await session.pop_item() == user("after")
    assert await session.pop_item() == bigger
    assert await session.get_items() == [user("before"), one_mb]
    await session.clear_session()
    assert await session.get_items() == []


async def test_many_small_pages(session: DaprSession) -> None:
    for n in range(120):
        await session.add_items([user(str(n))])
    assert texts(await session.get_items(limit=10)) == [str(n) for n in range(110, 120)]
    assert texts(await session.get_items()) == [str(n) for n in range(120)]


@pytest.mark.parametrize(
    "bad",
    [
        [user("ok"), {"content": object()}],
        [{"value": math.nan}],
        [{"value": "lone surrogate \ud800"}],
        [{1, 2}],
    ],
)
async def test_unserializable_items_raise_before_writing(session: DaprSession, bad: list[Any]) -> None:
    await session.add_items([user("first")])
    with pytest.raises(ItemNotSerializableError) as raised:
        await session.add_items(bad)
    assert isinstance(raised.value, TypeError)
    assert "nothing was written" in str(raised.value)
    assert texts(await session.get_items()) == ["first"]


async def test_unserializable_first_items_write_nothing(session: DaprSession, raw_store: Any) -> None:
    with pytest.raises(ItemNotSerializableError):
        await session.add_items([{"content": b"bytes"}])
    assert raw_store.get(f"{session.session_id}:head")[0] == b""


async def test_two_sessions_with_one_id_share_the_history(make_session: Callable[..., DaprSession]) -> None:
    first = make_session()
    second = make_session(first.session_id)
    await first.add_items([user("a")])
    await second.add_items([user("b")])
    await first.add_items([user("c")])
    assert texts(await second.get_items()) == ["a", "b", "c"]
    assert (await second.pop_item()) == user("c")
    assert texts(await first.get_items()) == ["a", "b"]


async def test_owned_client_is_closed_and_injected_one_is_not(
    make_session: Callable[..., DaprSession], dapr_sidecar: Any
) -> None:
    injected = make_session()
    await injected.add_items([user("a")])
    await injected.close()
    assert texts(await injected.get_items()) == ["a"]  # not ours to close: still usable

    async with DaprSession.from_address(
        injected.session_id, state_store_name="statestore", dapr_address=dapr_sidecar.grpc_address, ttl=60
    ) as owned:
        assert await owned.ping()
        assert texts(await owned.get_items()) == ["a"]
    with pytest.raises(SessionClosedError):
        await owned.get_items()
    with pytest.raises(RuntimeError):
        await owned.add_items([user("b")])
    await owned.close()  # twice is fine


async def test_ping_reports_an_unknown_store(dapr_client: Any) -> None:
    session = DaprSession("p", state_store_name="no-such-store", dapr_client=dapr_client)
    assert await session.ping() is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"session_id": ""}, "session_id"),
        ({"session_id": "a||b"}, "session_id"),
        ({"state_store_name": ""}, "state_store_name"),
        ({"ttl": 0}, "ttl"),
        ({"ttl": -5}, "ttl"),
        ({"consistency": "linearizable"}, "consistency"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"session_id": "s", "state_store_name": "statestore", **kwargs}
    with pytest.raises(ValueError, match=message):
        DaprSession(arguments.pop("session_id"), **arguments)


def test_a_sync_client_is_refused() -> None:
    from dapr.clients import DaprClient as SyncClient

    client = SyncClient.__new__(SyncClient)  # no connection needed to check the type
    with pytest.raises(TypeError, match=r"dapr\.aio\.clients\.DaprClient"):
        DaprSession("s", state_store_name="statestore", dapr_client=client)
