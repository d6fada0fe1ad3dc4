"""Crash safety: SIGKILL the sidecar process during a stream of writes to ``state.sqlite``;
after a restart on the same file every acknowledged write is there (and every transaction is
all-or-nothing). The in-memory store, like daprd's, keeps nothing across a restart.

The sidecar runs as a separate process (:class:`SidecarProcess`) so it can be killed; the writes
come from this process through the official ``dapr.aio`` client over gRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from pathlib import Path

import pytest
from dapr.aio.clients import DaprClient as AioDaprClient
from dapr.clients.grpc._request import TransactionalStateOperation

from dapr_agents.ext.devsidecar.testing import SidecarProcess, write_components

STORE = "statestore"
APP_ID = "crash-app"
WRITERS = 8
KILL_AFTER = 300  # acknowledged operations before the SIGKILL
MAX_OPERATIONS = 20_000  # a bound in case the kill never happens
STREAM_TIMEOUT = 60.0


def sqlite_folder(tmp_path: Path) -> Path:
    return write_components(
        tmp_path / "components", state_backend="sqlite", sqlite_path=tmp_path / "state.db", pubsub=None
    )


def aio_client(process: SidecarProcess) -> AioDaprClient:
    """A fresh aio client for ``process`` (its constructor waits for the sidecar's health)."""
    with process.endpoint.sdk_configured():
        return AioDaprClient()


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def run_stream_until_killed(
    process: SidecarProcess, operation
) -> tuple[set[int], set[int], list[BaseException]]:
    """Run ``operation(client, i)`` from WRITERS tasks; SIGKILL ``process`` after KILL_AFTER acks.

    Returns (attempted, acknowledged, failures). ``i`` joins ``acknowledged`` only after the call
    returned successfully; each writer stops at its first failure.
    """
    client = aio_client(process)
    counter = itertools.count()
    attempted: set[int] = set()
    acknowledged: set[int] = set()
    failures: list[BaseException] = []
    enough = asyncio.Event()

    async def writer() -> None:
        while True:
            i = next(counter)
            if i >= MAX_OPERATIONS:
                return
            attempted.add(i)
            try:
                await operation(client, i)
            except Exception as exc:  # the sidecar is gone: in-flight and later calls fail
                failures.append(exc)
                return
            acknowledged.add(i)
            if len(acknowledged) >= KILL_AFTER:
                enough.set()

    async def killer() -> None:
        await enough.wait()
        process.kill()  # SIGKILL while the other writers have calls in flight

    writers = [asyncio.create_task(writer()) for _ in range(WRITERS)]
    kill_task = asyncio.create_task(killer())
    try:
        await asyncio.wait_for(asyncio.gather(*writers), STREAM_TIMEOUT)
    finally:
        kill_task.cancel()
        for task in writers:
            task.cancel()
        with contextlib.suppress(Exception):
            await client.close()
    return attempted, acknowledged, failures


@pytest.mark.starts_sidecars  # dev sidecar processes, or real daprds with DAPR_TEST_SIDECAR=daprd
async def test_sigkill_during_a_write_stream_loses_no_acknowledged_write(tmp_path, dapr_sidecar_factory):
    folder = sqlite_folder(tmp_path)
    first = dapr_sidecar_factory.start(folder, app_id=APP_ID, subprocess=True)
    first_pid = first.pid

    async def save(client, i: int) -> None:
        await client.save_state(STORE, f"key-{i}", f"value-{i}")

    attempted, acknowledged, failures = await run_stream_until_killed(first, save)

    assert process_gone(first_pid)
    assert len(acknowledged) >= KILL_AFTER
    assert failures, "the kill must have interrupted the stream"
    assert len(attempted) < MAX_OPERATIONS

    second = dapr_sidecar_factory.start(folder, app_id=APP_ID, subprocess=True)
    client = aio_client(second)
    try:
        keys = [f"key-{i}" for i in sorted(acknowledged)]
        answer = await client.get_bulk_state(STORE, keys)
    finally:
        await client.close()
    found = {item.key: item.data for item in answer.items}
    missing = [key for key in keys if found.get(key) != f"value-{key[4:]}".encode()]
    assert not missing, (
        f"{len(missing)} acknowledged writes lost or wrong after the crash, e.g. {missing[:5]}"
    )


@pytest.mark.starts_sidecars
async def test_sigkill_during_a_transaction_stream_keeps_transactions_whole(tmp_path, dapr_sidecar_factory):
    folder = sqlite_folder(tmp_path)
    first = dapr_sidecar_factory.start(folder, app_id=APP_ID, subprocess=True)

    def keys_of(t: int) -> list[str]:
        return [f"tx-{t}-{part}" for part in ("a", "b", "c")]

    async def transaction(client, t: int) -> None:
        await client.execute_state_transaction(
            STORE, [TransactionalStateOperation(key=key, data=f"tx-value-{t}") for key in keys_of(t)]
        )

    attempted, acknowledged, failures = await run_stream_until_killed(first, transaction)
    assert len(acknowledged) >= KILL_AFTER
    assert failures
    unacknowledged = attempted - acknowledged
    assert unacknowledged, "some transactions must have been in flight or refused at the kill"

    second = dapr_sidecar_factory.start(folder, app_id=APP_ID, subprocess=True)
    client = aio_client(second)
    try:
        all_keys = [key for t in sorted(attempted) for key in keys_of(t)]
        answer = await client.get_bulk_state(STORE, all_keys)
    finally:
        await client.close()
    found = {item.key: item.data for item in answer.items if item.data}

    lost = [
        t for t in sorted(acknowledged) if any(found.get(k) != f"tx-value-{t}".encode() for k in keys_of(t))
    ]
    assert not lost, f"acknowledged transactions lost or partial after the crash: {lost[:5]}"
    torn = [t for t in sorted(attempted) if sum(k in found for k in keys_of(t)) not in (0, 3)]
    assert not torn, f"transactions applied partly across the crash: {torn[:5]}"
    for t in unacknowledged:
        if keys_of(t)[0] in found:
            assert all(found[k] == f"tx-value-{t}".encode() for k in keys_of(t))


@pytest.mark.starts_sidecars
async def test_the_in_memory_store_loses_everything_on_restart(tmp_path, dapr_sidecar_factory):
    folder = write_components(tmp_path / "components", state_backend="in-memory", pubsub=None)
    first = dapr_sidecar_factory.start(folder, app_id=APP_ID, subprocess=True)
    client = aio_client(first)
    try:
        await client.save_state(STORE, "ephemeral", "here for now")
        assert (await client.get_state(STORE, "ephemeral")).data == b"here for now"
    finally:
        await client.close()
    assert first.stop() == 0  # a clean stop: durability is not the point, the store is memory

    second = dapr_sidecar_factory.start(folder, app_id=APP_ID, subprocess=True)
    client = aio_client(second)
    try:
        answer = await client.get_state(STORE, "ephemeral")
    finally:
        await client.close()
    assert answer.data == b""
    assert answer.etag == ""
