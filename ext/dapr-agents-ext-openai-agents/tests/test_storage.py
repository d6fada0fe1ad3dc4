"""What lands in the store: the key layout, write sizes that do not grow with the history, TTL on
every key, errors (never a shorter history) for corrupt or missing records, and crash safety."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from helpers import RawStore, texts, user

from dapr_agents.ext.openai_agents import DaprSession, SessionCorruptedError
from dapr_agents.ext.openai_agents._log import Head, decode_page


def head_of(raw: RawStore, session: DaprSession) -> Head:
    return Head.decode(raw.get(f"{session.session_id}:head")[0])


def page_key(session: DaprSession, head: Head, slot: int) -> str:
    return f"{session.session_id}:page:{head.gen}:{slot}"


class CountingStore:
    """Counts the bytes of every value the session writes and reads (wraps its StateIO)."""

    def __init__(self, session: DaprSession) -> None:
        self.written = 0
        self.read = 0
        io = session._io
        for name in ("insert", "replace", "put"):
            setattr(io, name, self._writer(getattr(io, name)))
        get, get_many = io.get, io.get_many

        async def counted_get(key: str) -> Any:
            data, etag = await get(key)
            self.read += len(data or b"")
            return data, etag

        async def counted_get_many(keys: Any) -> Any:
            found = await get_many(keys)
            self.read += sum(len(value or b"") for value in found.values())
            return found

        io.get, io.get_many = counted_get, counted_get_many  # type: ignore[method-assign]

    def _writer(self, method: Any) -> Any:
        async def counted(key: str, value: bytes, *args: Any) -> Any:
            self.written += len(value)
            return await method(key, value, *args)

        return counted


async def test_layout_head_and_pages(session: DaprSession, raw_store: RawStore) -> None:
    await session.add_items([user("a"), user("b")])
    await session.add_items([user("c")])
    head = head_of(raw_store, session)
    assert (head.next, head.count, head.last) == (2, 3, 1)
    first = decode_page(raw_store.get(page_key(session, head, 0))[0], 0)
    second = decode_page(raw_store.get(page_key(session, head, 1))[0], 1)
    assert (first.base, first.count, first.prev, first.items) == (0, 2, -1, [user("a"), user("b")])
    assert (second.base, second.count, second.prev, second.items) == (2, 1, 0, [user("c")])
    assert raw_store.get(page_key(session, head, 2))[0] == b""
    if raw_store.backend == "redis":
        sid = session.session_id
        assert raw_store.keys(sid) == [f"{sid}:head", page_key(session, head, 0), page_key(session, head, 1)]


async def test_add_writes_the_same_bytes_at_any_history_length(session: DaprSession) -> None:
    counter = CountingStore(session)
    item = user("a message of ordinary length, about as long as a short chat turn")
    sizes = []
    for _ in range(150):
        counter.written = counter.read = 0
        await session.add_items([item])
        sizes.append((counter.written, counter.read))
    first_written, first_read = sizes[1]
    last_written, last_read = sizes[-1]
    assert last_written <= first_written + 16  # only the digits of counters grow
    assert last_read <= first_read + 16
    assert last_written < 3 * len(json.dumps(item)) + 300
    counter.read = 0
    assert len(await session.get_items(limit=10)) == 10
    assert counter.read < 12 * 400  # the head and about ten pages, not 150


async def test_ttl_is_set_on_every_key(make_session: Callable[..., DaprSession], raw_store: RawStore) -> None:
    session = make_session(ttl=300)
    await session.add_items([user("a")])
    await session.add_items([user("x" * 700_000)])  # stored in parts
    await session.add_items([user("b")])
    await session.pop_item()
    head = head_of(raw_store, session)
    keys = [f"{session.session_id}:head"] + [page_key(session, head, slot) for slot in range(head.next)]
    token, parts = head.big[0]
    keys += [f"{session.session_id}:part:{token}:{index}" for index in range(parts)]
    for key in keys:
        assert raw_store.get(key)[0], key
        assert raw_store.has_expiry(key), key
    if raw_store.backend == "redis":
        assert sorted(raw_store.keys(session.session_id)) == sorted(keys)


async def test_expired_history_is_dropped_oldest_first(make_session: Callable[..., DaprSession]) -> None:
    """Each key lives ``ttl`` after it was written: the oldest items go first, and what
    remains reads as the complete history (not as a corrupt one)."""
    session = make_session(ttl=1)
    await session.add_items([user("old")])
    # One second is enough everywhere: SQLite even rounds the write time down to the second.
    await asyncio.sleep(1.2)
    await session.add_items([user("new")])
    assert await session.get_items() == [user("new")]
    assert await session.pop_item() == user("new")
    assert await session.pop_item() is None
    await session.add_items([user("again")])
    assert await session.get_items() == [user("again")]


async def test_corrupt_page_is_an_error_naming_the_key(session: DaprSession, raw_store: RawStore) -> None:
    await session.add_items([user("a")])
    await session.add_items([user("b")])
    head = head_of(raw_store, session)
    key = page_key(session, head, 0)
    raw_store.put(key, b'{"v":1,"base":0,"count":1,"prev":-1,"items":[{"role":"us')
    assert await session.get_items(limit=1) == [user("b")]  # the damaged page is not needed
    with pytest.raises(SessionCorruptedError) as raised:
        await session.get_items()
    assert raised.value.key == key
    assert key in str(raised.value)
    assert "statestore" in str(raised.value)


async def test_page_with_wrong_count_is_an_error(session: DaprSession, raw_store: RawStore) -> None:
    await session.add_items([user("a"), user("b")])
    head = head_of(raw_store, session)
    key = page_key(session, head, 0)
    raw_store.put(key, b'{"v":1,"base":0,"count":2,"prev":-1,"prev_exp":null,"exp":null,"items":[{"a":1}]}')
    with pytest.raises(SessionCorruptedError, match="declares 2 items but holds 1 items"):
        await session.get_items()


async def test_missing_page_is_an_error_not_a_shorter_history(
    session: DaprSession, raw_store: RawStore
) -> None:
    for text in "abc":
        await session.add_items([user(text)])
    head = head_of(raw_store, session)
    raw_store.delete(page_key(session, head, 1))
    assert await session.get_items(limit=1) == [user("c")]
    with pytest.raises(SessionCorruptedError) as raised:
        await session.get_items()
    assert raised.value.key == page_key(session, head, 1)


async def test_missing_part_is_an_error(session: DaprSession, raw_store: RawStore) -> None:
    await session.add_items([user("y" * 600_000)])
    head = head_of(raw_store, session)
    token, _ = head.big[0]
    raw_store.delete(f"{session.session_id}:part:{token}:1")
    with pytest.raises(SessionCorruptedError) as raised:
        await session.get_items()
    assert raised.value.key == f"{session.session_id}:part:{token}:1"


async def test_corrupt_head_is_an_error(session: DaprSession, raw_store: RawStore) -> None:
    await session.add_items([user("a")])
    raw_store.put(f"{session.session_id}:head", b"[1, 2, 3]")
    for operation in (session.get_items, session.pop_item, lambda: session.add_items([user("b")])):
        with pytest.raises(SessionCorruptedError, match="head"):
            await operation()


async def test_a_writer_that_stops_after_its_page_is_rolled_forward(
    make_session: Callable[..., DaprSession], raw_store: RawStore
) -> None:
    """The commit is the page insert: if the head is never moved, readers still see the page
    and the next writer moves the head before appending after it."""
    crashed = make_session()
    await crashed.add_items([user("a")])

    async def never_published(*args: Any) -> Any:
        from dapr_agents.ext.openai_agents._session import _Outcome

        return _Outcome.PUBLISHED

    crashed._publish = never_published  # type: ignore[method-assign]
    await crashed.add_items([user("b")])
    assert head_of(raw_store, crashed).next == 1  # head left one page behind

    other = make_session(crashed.session_id)
    assert await other.get_items() == [user("a"), user("b")]
    assert await other.get_items(limit=1) == [user("b")]
    await other.add_items([user("c")])
    assert await other.get_items() == [user("a"), user("b"), user("c")]
    assert head_of(raw_store, crashed).next == 3

    await crashed.pop_item()  # a pop whose head move is lost too
    assert await other.get_items() == [user("a"), user("b")]
    assert await other.pop_item() == user("b")
    assert await other.get_items() == [user("a")]


async def test_concurrent_first_writes_keep_every_item(make_session: Callable[..., DaprSession]) -> None:
    """Upstream keeps one item of these (an empty etag is last-write-wins)."""
    session_id = make_session().session_id
    writers = [make_session(session_id) for _ in range(25)]
    await asyncio.gather(*(writer.add_items([user(f"w{n}")]) for n, writer in enumerate(writers)))
    stored = sorted(texts(await writers[0].get_items()))
    assert stored == sorted(f"w{n}" for n in range(25))


async def test_concurrent_writers_lose_and_duplicate_nothing(
    make_session: Callable[..., DaprSession],
) -> None:
    session_id = make_session().session_id
    writers = [make_session(session_id) for _ in range(10)]

    async def write(n: int, writer: DaprSession) -> None:
        for i in range(8):
            await writer.add_items([user(f"{n}:{i}"), user(f"{n}:{i}b")])

    await asyncio.gather(*(write(n, writer) for n, writer in enumerate(writers)))
    stored = texts(await writers[0].get_items())
    assert len(stored) == len(set(stored)) == 160
    for n in range(10):
        mine = [text for text in stored if text.split(":")[0] == str(n)]
        assert mine == [f"{n}:{i}{suffix}" for i in range(8) for suffix in ("", "b")]


async def test_concurrent_pops_each_remove_one_item(make_session: Callable[..., DaprSession]) -> None:
    session = make_session()
    await session.add_items([user(str(n)) for n in range(30)])
    poppers = [make_session(session.session_id) for _ in range(10)]
    popped = await asyncio.gather(*(popper.pop_item() for popper in poppers for _ in range(2)))
    assert sorted(texts(popped)) == sorted(str(n) for n in range(10, 30))
    assert texts(await session.get_items()) == [str(n) for n in range(10)]


async def test_clear_during_concurrent_adds(
    make_session: Callable[..., DaprSession], raw_store: RawStore
) -> None:
    session = make_session()
    writers = [make_session(session.session_id) for _ in range(5)]

    async def write(n: int, writer: DaprSession) -> None:
        for i in range(6):
            await writer.add_items([user(f"{n}:{i}")])

    tasks = [asyncio.create_task(write(n, writer)) for n, writer in enumerate(writers)]
    await asyncio.sleep(0.01)
    await session.clear_session()
    await asyncio.gather(*tasks)
    stored = texts(await session.get_items())
    assert len(stored) == len(set(stored))
    for n in range(5):
        mine = [int(text.split(":")[1]) for text in stored if text.startswith(f"{n}:")]
        assert mine == sorted(mine) and (not mine or mine[-1] == 5)
    assert not head_of(raw_store, session).gc  # the retired generation was deleted


async def test_clear_deletes_the_old_keys(session: DaprSession, raw_store: RawStore) -> None:
    await session.add_items([user("a")])
    await session.add_items([user("z" * 600_000)])
    before = head_of(raw_store, session)
    token, parts = before.big[0]
    await session.clear_session()
    old = [page_key(session, before, slot) for slot in range(before.next)]
    old += [f"{session.session_id}:part:{token}:{index}" for index in range(parts)]
    assert all(raw_store.get(key)[0] == b"" for key in old)
    after = head_of(raw_store, session)
    assert after.gen != before.gen and after.count == 0 and not after.gc
    if raw_store.backend == "redis":
        assert raw_store.keys(session.session_id) == [f"{session.session_id}:head"]


async def test_atomic_replace_items(session: DaprSession, raw_store: RawStore) -> None:
    await session.add_items([user("a"), user("b")])
    before = head_of(raw_store, session)
    assert await session._atomic_replace_items([user("summary")]) is True
    assert await session.get_items() == [user("summary")]
    assert raw_store.get(page_key(session, before, 0))[0] == b""
    assert await session._atomic_replace_items([]) is True
    assert await session.get_items() == []


async def test_compaction_snapshot_replaces_a_suffix_only_if_unchanged(
    session: DaprSession, make_session: Callable[..., DaprSession]
) -> None:
    import agents.memory.session as sdk_session

    if not hasattr(sdk_session, "_CompactionSnapshot"):
        pytest.skip("this openai-agents has no suffix compaction (added after 0.8)")
    await session.add_items([user("keep-1"), user("keep-2")])
    await session.add_items([user("old-1"), user("old-2")])
    snapshot = await session._get_compaction_snapshot(3)
    assert snapshot.items == [user("keep-2"), user("old-1"), user("old-2")]
    assert snapshot.complete is False
    assert await snapshot.replace_suffix(1, [user("compacted")]) is True
    assert texts(await session.get_items()) == ["keep-1", "keep-2", "compacted"]

    stale = await session._get_compaction_snapshot(10)
    assert stale.complete is True
    await make_session(session.session_id).add_items([user("new")])
    assert await stale.replace_suffix(0, [user("lost")]) is False
    assert texts(await session.get_items()) == ["keep-1", "keep-2", "compacted", "new"]


async def test_stores_that_report_insert_conflicts_as_plain_errors(dapr_sidecar: Any) -> None:
    """daprd's PostgreSQL v1 store answers a first-write conflict with a plain error ("no item
    was updated"), and a timeout can hide a write that happened: the session reads the key back
    instead of trusting the error, so neither loses nor duplicates anything."""
    import grpc
    from dapr.aio.clients import DaprClient

    from dapr_agents.ext.openai_agents._store import status_code

    session_id = f"plain-errors-{uuid.uuid4().hex[:6]}"  # unique: an external daprd keeps state across runs
    client = DaprClient()
    original = client.save_state
    calls = 0

    async def save_state(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        try:
            result = await original(*args, **kwargs)
        except Exception as error:
            if status_code(error) == grpc.StatusCode.ABORTED and kwargs.get("etag") is None:
                raise RuntimeError(
                    "failed saving state in state store statestore: no item was updated"
                ) from None
            raise
        if kwargs.get("etag") is None and calls % 3 == 0:
            raise TimeoutError("deadline exceeded after the write was applied")
        return result

    client.save_state = save_state  # type: ignore[method-assign]
    try:
        writers = [
            DaprSession(session_id, state_store_name="statestore", dapr_client=client) for _ in range(6)
        ]
        await asyncio.gather(
            *(writer.add_items([user(f"{n}:{i}")]) for n, writer in enumerate(writers) for i in range(4))
        )
        stored = texts(await writers[0].get_items())
        assert sorted(stored) == sorted(f"{n}:{i}" for n in range(6) for i in range(4))
    finally:
        await client.close()
