"""The storage design's promises, over the wire on every backend: round-trip budgets, bytes
that follow the changed channels, etag-guarded concurrency, chunking, TTL, bad input."""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any

import pytest
from dapr.clients import DaprClient
from helpers import CountingClient
from langgraph.checkpoint.base import Checkpoint, empty_checkpoint
from langgraph.checkpoint.base.id import uuid6

from dapr_agents.ext.langgraph import (
    CheckpointDataError,
    DaprCheckpointer,
    MissingThreadIdError,
    StateStoreError,
)

CHANNELS = [f"ch{i:02}" for i in range(20)]


def _step(
    saver: DaprCheckpointer,
    config: dict[str, Any],
    values: dict[str, Any],
    versions: dict[str, Any],
    changed: list[str],
    step: int,
) -> dict[str, Any]:
    checkpoint = Checkpoint(
        v=1,
        id=str(uuid6(clock_seq=step)),
        ts="",
        channel_values=dict(values),
        channel_versions=dict(versions),
        versions_seen={"node": dict(versions)},
        updated_channels=changed,
    )
    return saver.put(
        config, checkpoint, {"source": "loop", "step": step, "parents": {}}, {c: versions[c] for c in changed}
    )


@pytest.fixture
def counted(sdk: Any, prefix: str) -> Any:
    client = CountingClient(DaprClient())
    saver = DaprCheckpointer("statestore", prefix, client=client)
    yield saver, client
    client.inner.close()


def test_put_costs_two_round_trips_and_bytes_follow_the_changed_channel(counted: Any) -> None:
    saver, client = counted
    config: dict[str, Any] = {"configurable": {"thread_id": "budget", "checkpoint_ns": ""}}
    values = {c: "x" * 2000 for c in CHANNELS}
    versions: dict[str, Any] = {c: saver.get_next_version(None, None) for c in CHANNELS}
    config = _step(saver, config, values, versions, CHANNELS, 0)
    first_bytes = client.bytes_written
    per_step = []
    for step in range(1, 40):
        changed = CHANNELS[step % 20]
        versions[changed] = saver.get_next_version(versions[changed], None)
        values[changed] = f"{step}" * 2000
        client.reset()
        config = _step(saver, config, values, versions, [changed], step)
        assert client.round_trips == 2, client.calls  # read the index, one transaction
        per_step.append(client.bytes_written)
    assert first_bytes > 40_000  # every channel once
    # One changed 2 KB channel: the blob, the checkpoint document and the bounded index.
    assert max(per_step) < 12_000, per_step
    client.reset()
    latest = saver.get_tuple({"configurable": {"thread_id": "budget", "checkpoint_ns": ""}})
    assert client.round_trips == 3  # index, documents + manifest, values
    assert latest is not None and latest.checkpoint["channel_values"] == values
    client.reset()
    assert saver.get_tuple(config) is not None
    assert client.round_trips == 2  # with a checkpoint_id the index is not needed


def test_put_writes_is_idempotent_and_costs_two_round_trips(counted: Any) -> None:
    saver, client = counted
    config = saver.put({"configurable": {"thread_id": "w", "checkpoint_ns": ""}}, empty_checkpoint(), {}, {})
    client.reset()
    saver.put_writes(config, [("a", 1), ("b", 2)], "task-1", "~pull, a")
    assert client.round_trips == 2
    client.reset()
    saver.put_writes(config, [("a", 1), ("b", 2)], "task-1", "~pull, a")
    assert client.round_trips == 1  # nothing new to write
    tup = saver.get_tuple(config)
    assert tup is not None and tup.pending_writes == [("task-1", "a", 1), ("task-1", "b", 2)]


def test_list_pages_through_a_long_thread(sdk: Any, prefix: str) -> None:
    saver = DaprCheckpointer("statestore", prefix, index_page_size=4)
    config: dict[str, Any] = {"configurable": {"thread_id": "long", "checkpoint_ns": ""}}
    ids = []
    for step in range(23):
        checkpoint = empty_checkpoint()
        config = saver.put(config, checkpoint, {"source": "loop", "step": step, "parents": {}}, {})
        ids.append(checkpoint["id"])
    base = {"configurable": {"thread_id": "long"}}
    assert [t.checkpoint["id"] for t in saver.list(base)] == ids[::-1]
    assert [t.metadata["step"] for t in saver.list(base, filter={"step": 3})] == [3]
    before = {"configurable": {"checkpoint_id": ids[10]}}
    assert [t.checkpoint["id"] for t in saver.list(base, before=before, limit=3)] == ids[9:6:-1]
    assert saver.get_tuple(base).checkpoint["id"] == ids[-1]  # type: ignore[union-attr]
    saver.prune(["long"])
    assert [t.checkpoint["id"] for t in saver.list(base)] == [ids[-1]]
    saver.close()


def test_concurrent_writers_to_one_thread_lose_no_checkpoint(sdk: Any, prefix: str) -> None:
    saver = DaprCheckpointer("statestore", prefix, index_page_size=5)
    thread = {"configurable": {"thread_id": "busy", "checkpoint_ns": ""}}
    written: list[str] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        for step in range(6):
            checkpoint = empty_checkpoint()
            saver.put(thread, checkpoint, {"source": "loop", "step": step, "writer": n, "parents": {}}, {})
            with lock:
                written.append(checkpoint["id"])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    listed = [t.checkpoint["id"] for t in saver.list(thread)]
    assert sorted(listed) == sorted(written)
    assert len(listed) == 24
    saver.close()


async def test_concurrent_async_writes_to_one_checkpoint_are_all_kept(saver: DaprCheckpointer) -> None:
    config = await saver.aput(
        {"configurable": {"thread_id": "fan", "checkpoint_ns": ""}}, empty_checkpoint(), {}, {}
    )
    await asyncio.gather(
        *(saver.aput_writes(config, [("out", n)], f"task-{n}", f"~pull, {n:02}") for n in range(8))
    )
    tup = await saver.aget_tuple(config)
    assert tup is not None and [w[2] for w in tup.pending_writes or []] == list(range(8))


def test_large_values_are_chunked_and_read_back(counted: Any) -> None:
    saver, client = counted
    small = DaprCheckpointer(saver.store_name, saver.key_prefix, client=client, max_value_bytes=4096)
    big = bytes(range(256)) * 100  # 25.6 KB -> 7 chunks
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"doc": big}
    checkpoint["channel_versions"] = {"doc": 1}
    config = small.put(
        {"configurable": {"thread_id": "big", "checkpoint_ns": ""}}, checkpoint, {}, {"doc": 1}
    )
    small.put_writes(config, [("doc", big)], "t")
    client.reset()
    tup = small.get_tuple(config)
    assert tup is not None
    assert tup.checkpoint["channel_values"]["doc"] == big
    assert tup.pending_writes == [("t", "doc", big)]
    assert client.round_trips == 3  # documents, values, then the chunks
    small.delete_thread("big")
    assert small.get_tuple(config) is None


def test_foreign_data_under_a_key_is_an_error_naming_the_key(sdk: Any, prefix: str) -> None:
    saver = DaprCheckpointer("statestore", prefix)
    with DaprClient() as client:
        client.save_state("statestore", f"{prefix}:index:t1:", b"not a checkpoint index")
    with pytest.raises(CheckpointDataError, match=rf"{prefix}:index:t1:"):
        saver.get_tuple({"configurable": {"thread_id": "t1"}})
    saver.close()


def test_missing_thread_id_raises_key_error_like_langgraph_savers(sdk: Any, prefix: str) -> None:
    saver = DaprCheckpointer("statestore", prefix)
    with pytest.raises(KeyError) as caught:
        saver.get_tuple({"configurable": {}})
    assert isinstance(caught.value, MissingThreadIdError)
    with pytest.raises(KeyError):
        saver.put({"configurable": {}}, empty_checkpoint(), {}, {})
    saver.close()


def test_an_unknown_store_is_an_error_naming_it(sdk: Any, prefix: str) -> None:
    saver = DaprCheckpointer("no-such-store", prefix)
    with pytest.raises(StateStoreError, match="no-such-store"):
        saver.get_tuple({"configurable": {"thread_id": "x"}})
    saver.close()


def test_ttl_is_set_on_every_key(backend: str, sdk: Any, prefix: str) -> None:
    if backend != "in-memory":
        pytest.skip("only the in-memory store reports ttlExpireTime")
    saver = DaprCheckpointer("statestore", prefix, ttl=60)
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"a": 1}
    checkpoint["channel_versions"] = {"a": 1}
    config = saver.put({"configurable": {"thread_id": "ttl", "checkpoint_ns": ""}}, checkpoint, {}, {"a": 1})
    saver.put_writes(config, [("a", 2)], "t")
    with DaprClient() as client:
        for key in (
            f"{prefix}:thread:ttl",
            f"{prefix}:index:ttl:",
            f"{prefix}:checkpoint:ttl::{checkpoint['id']}",
            f"{prefix}:blob:ttl::a:1",
        ):
            assert client.get_state("statestore", key).data, key
    assert saver.get_tuple(config).checkpoint["channel_values"] == {"a": 1}  # type: ignore[union-attr]
    saver.close()


def test_the_upstream_constructor_is_accepted() -> None:
    """``DaprCheckpointer(store_name, key_prefix)`` as in dapr.ext.langgraph."""
    parameters = list(inspect.signature(DaprCheckpointer).parameters.values())
    assert [p.name for p in parameters[:2]] == ["store_name", "key_prefix"]
    assert all(p.kind is p.KEYWORD_ONLY for p in parameters[2:])
    saver = DaprCheckpointer("statestore", "checkpoints")
    assert (saver.store_name, saver.key_prefix) == ("statestore", "checkpoints")


def test_versions_sort_as_strings() -> None:
    saver = DaprCheckpointer()
    v = None
    seen = []
    for _ in range(12):
        v = saver.get_next_version(v, None)
        seen.append(v)
    assert seen == sorted(seen)
