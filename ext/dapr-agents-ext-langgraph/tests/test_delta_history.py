"""``get_delta_channel_history`` / ``aget_delta_channel_history``: the contract of langgraph
main's delta_channel_history conformance spec (not in the 0.0.2 release), written for this
package, on every backend and through both the async and the sync methods; plus its round-trip
budget (no round trip per ancestor)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from helpers import CountingClient
from langgraph.checkpoint.base import Checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.serde.types import _DeltaSnapshot

from dapr_agents.ext.langgraph import DaprCheckpointer


def _checkpoint(values: dict[str, Any], versions: dict[str, Any]) -> Checkpoint:
    return Checkpoint(
        v=1,
        id=str(uuid6(clock_seq=-1)),
        ts="",
        channel_values=values,
        channel_versions=versions,
        versions_seen={},
        updated_channels=None,
    )


async def _chain(
    saver: Any,
    steps: int,
    *,
    stored: dict[int, dict[str, Any]] | None = None,
    writes: dict[int, Sequence[tuple[str, Any]]] | None = None,
    thread_id: str | None = None,
) -> list[dict[str, Any]]:
    """A linear chain: ``stored[step]`` are the channel values kept at that step (version
    ``step + 1``); ``writes[step]`` the pending writes put on it (one task per step)."""
    thread_id = thread_id or str(uuid.uuid4())
    configs: list[dict[str, Any]] = []
    for step in range(steps):
        config: dict[str, Any] = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
        if configs:
            config["configurable"]["checkpoint_id"] = configs[-1]["configurable"]["checkpoint_id"]
        values = dict((stored or {}).get(step, {}))
        versions = {channel: step + 1 for channel in values}
        stored_config = await saver.aput(
            config, _checkpoint(values, versions), {"source": "loop", "step": step, "parents": {}}, versions
        )
        configs.append(stored_config)
        if writes and writes.get(step):
            await saver.aput_writes(stored_config, list(writes[step]), str(uuid.uuid4()))
    return configs


def _snapshots(
    steps: Sequence[int], total: int, channel: str = "ch"
) -> tuple[dict[int, Any], dict[int, Any]]:
    """Snapshot value ``step`` at ``steps``; a write of ``step`` on every other step."""
    stored = {s: {channel: _DeltaSnapshot(s)} for s in steps}
    writes = {s: [(channel, s)] for s in range(total) if s not in steps}
    return stored, writes


def _values(history: Any, channel: str = "ch") -> list[Any]:
    return [w[2] for w in history[channel]["writes"]]


def _seed(history: Any, channel: str = "ch") -> Any:
    seed = history[channel]["seed"]
    return seed.value if isinstance(seed, _DeltaSnapshot) else seed


async def test_writes_come_oldest_first_from_the_parent_of_the_target(any_saver: Any) -> None:
    stored, writes = _snapshots([0], 5)
    configs = await _chain(any_saver, 5, stored=stored, writes=writes)
    history = await any_saver.aget_delta_channel_history(config=configs[-1], channels=["ch"])
    assert _values(history) == [1, 2, 3]
    assert _seed(history) == 0


async def test_the_walk_stops_at_the_nearest_stored_value(any_saver: Any) -> None:
    stored, writes = _snapshots([0, 3], 6)
    configs = await _chain(any_saver, 6, stored=stored, writes=writes)
    history = await any_saver.aget_delta_channel_history(config=configs[-1], channels=["ch"])
    assert _seed(history) == 3
    assert _values(history) == [4]


async def test_writes_on_the_target_itself_are_not_history(any_saver: Any) -> None:
    stored, writes = _snapshots([0], 3)
    configs = await _chain(any_saver, 3, stored=stored, writes=writes)
    await any_saver.aput_writes(configs[-1], [("ch", "pending")], str(uuid.uuid4()))
    history = await any_saver.aget_delta_channel_history(config=configs[-1], channels=["ch"])
    assert "pending" not in _values(history)
    assert _values(history) == [1]


async def test_each_channel_ends_its_walk_independently(any_saver: Any) -> None:
    stored = {1: {"a": _DeltaSnapshot("snap_a")}, 3: {"b": _DeltaSnapshot("snap_b")}}
    writes = {s: [("a", s), ("b", s)] for s in range(5)}
    configs = await _chain(any_saver, 5, stored=stored, writes=writes)
    history = await any_saver.aget_delta_channel_history(config=configs[-1], channels=["a", "b"])
    assert _values(history, "a") == [1, 2, 3]
    assert _values(history, "b") == [3]
    assert _seed(history, "a") == "snap_a"
    assert _seed(history, "b") == "snap_b"


async def test_no_channels_means_an_empty_mapping(any_saver: Any) -> None:
    stored, writes = _snapshots([0], 3)
    configs = await _chain(any_saver, 3, stored=stored, writes=writes)
    assert await any_saver.aget_delta_channel_history(config=configs[-1], channels=[]) == {}


async def test_reaching_the_root_without_a_value_leaves_out_the_seed(any_saver: Any) -> None:
    stored, writes = _snapshots([], 4)
    configs = await _chain(any_saver, 4, stored=stored, writes=writes)
    history = await any_saver.aget_delta_channel_history(config=configs[-1], channels=["ch"])
    assert "seed" not in history["ch"]
    assert _values(history) == [0, 1, 2]


async def test_a_plain_value_from_before_delta_channels_is_a_seed(any_saver: Any) -> None:
    configs = await _chain(
        any_saver,
        4,
        stored={1: {"ch": [10, 20, 30]}},
        writes={0: [("ch", 0)], 2: [("ch", 2)], 3: [("ch", 3)]},
    )
    history = await any_saver.aget_delta_channel_history(config=configs[-1], channels=["ch"])
    assert history["ch"]["seed"] == [10, 20, 30]
    assert _values(history) == [2]


async def test_writes_stored_at_the_seed_checkpoint_are_replayed(any_saver: Any) -> None:
    writes = {
        0: [("ch", "before-seed")],
        1: [("ch", "at-seed")],
        2: [("ch", "after-seed")],
        3: [("ch", "at-head")],
    }
    configs = await _chain(any_saver, 4, stored={0: {"ch": [10]}, 1: {"ch": [10, 20]}}, writes=writes)
    history = await any_saver.aget_delta_channel_history(config=configs[-1], channels=["ch"])
    assert history["ch"]["seed"] == [10, 20]
    assert _values(history) == ["at-seed", "after-seed"]


async def test_parallel_writes_replay_in_task_path_order(any_saver: Any) -> None:
    stored, writes = _snapshots([0], 3)
    configs = await _chain(any_saver, 3, stored=stored, writes=writes)
    await any_saver.aput_writes(configs[1], [("ch", "second")], "0" * 8, "~pull, 02")
    await any_saver.aput_writes(configs[1], [("ch", "first")], "f" * 8, "~pull, 01")
    history = await any_saver.aget_delta_channel_history(config=configs[-1], channels=["ch"])
    # The chain's own write on step 1 has no task path, so it replays first.
    assert _values(history) == [1, "first", "second"]


async def test_writes_without_a_task_path_replay_before_task_writes(any_saver: Any) -> None:
    stored, writes = _snapshots([0], 3)
    configs = await _chain(any_saver, 3, stored=stored, writes=writes)
    await any_saver.aput_writes(configs[1], [("ch", "from_node")], "0" * 8, "~pull, a")
    await any_saver.aput_writes(configs[1], [("ch", "from_input")], "f" * 8)
    history = await any_saver.aget_delta_channel_history(config=configs[-1], channels=["ch"])
    assert _values(history) == [1, "from_input", "from_node"]


async def test_forks_only_follow_their_own_branch(any_saver: Any) -> None:
    thread_id = str(uuid.uuid4())
    stored, writes = _snapshots([0], 3)
    configs = await _chain(any_saver, 3, stored=stored, writes=writes, thread_id=thread_id)
    # A fork from step 1: its history must not contain step 2's write.
    fork = await any_saver.aput(
        configs[1], _checkpoint({}, {}), {"source": "fork", "step": 2, "parents": {}}, {}
    )
    history = await any_saver.aget_delta_channel_history(config=fork, channels=["ch"])
    assert _values(history) == [1]


async def test_an_unknown_checkpoint_has_an_empty_history(any_saver: Any) -> None:
    config = {
        "configurable": {"thread_id": str(uuid.uuid4()), "checkpoint_ns": "", "checkpoint_id": str(uuid6())}
    }
    assert await any_saver.aget_delta_channel_history(config=config, channels=["ch"]) == {
        "ch": {"writes": []}
    }


@pytest.mark.parametrize("length", [10, 100])
def test_history_round_trips_do_not_grow_per_ancestor(sdk: Any, prefix: str, length: int) -> None:
    """A walk over ``length`` ancestors (index pages included) takes a handful of round trips."""
    import asyncio

    saver = DaprCheckpointer("statestore", prefix, index_page_size=8)
    stored, writes = _snapshots([0], length)
    configs = asyncio.run(_chain_sync(saver, length, stored, writes))
    counter = CountingClient(saver._sync_client())
    counted = DaprCheckpointer("statestore", prefix, client=counter, index_page_size=8)
    history = counted.get_delta_channel_history(config=configs[-1], channels=["ch"])
    assert _values(history) == list(range(1, length - 1))
    # index + index pages (batched, doubling) + one document batch per 32 ancestors + values
    assert counter.round_trips <= 3 + 5 + (length // 32 + 1)
    saver.close()


async def _chain_sync(saver: DaprCheckpointer, length: int, stored: Any, writes: Any) -> list[dict[str, Any]]:
    try:
        return await _chain(saver, length, stored=stored, writes=writes)
    finally:
        await saver.aclose()
