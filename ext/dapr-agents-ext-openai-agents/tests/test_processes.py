"""Separate processes against one dev sidecar process per store (in-memory, SQLite, Redis):
many writers at once lose and duplicate nothing, and writers killed with SIGKILL at the worst
moments leave a history that is readable, writable and holds each item once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dapr.aio.clients import DaprClient

from dapr_agents.ext.devsidecar.testing import (
    STATE_BACKENDS,
    SidecarEndpoint,
    SidecarProcess,
    write_components,
)
from dapr_agents.ext.openai_agents import DaprSession

# Starts its own sidecar process per store (Redis and SQLite included).
pytestmark = pytest.mark.devsidecar_only

WRITERS = 8
APPENDS = 200

# Each launcher imports the SDK once, then forks its workers before any gRPC channel exists:
# eight processes start in a fraction of a second instead of importing openai-agents eight
# times over on two cores.
PRELUDE = """
import asyncio, os, signal, sys
from dapr.aio.clients import DaprClient
from dapr_agents.ext.openai_agents import DaprSession, _store

def fork_all(jobs):
    children = []
    for job in jobs:
        pid = os.fork()
        if pid == 0:
            try:
                asyncio.run(job())
                code = 0
            except BaseException as error:
                print(f"worker failed: {error!r}", file=sys.stderr, flush=True)
                code = 1
            os._exit(code)
        children.append(pid)
    return [os.waitpid(pid, 0)[1] for pid in children]
"""

WRITERS_LAUNCHER = PRELUDE + textwrap.dedent(
    """
    writers, appends, session_id = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    addresses = sys.argv[4:]

    async def append_all(writer, address):
        async with DaprClient(address) as client:
            session = DaprSession(session_id, state_store_name="statestore", dapr_client=client)
            for index in range(appends):
                await session.add_items([{"role": "user", "content": f"{writer}:{index}"}])

    def writer_job(writer):
        async def job():
            await asyncio.gather(*(append_all(writer, address) for address in addresses))
        return job

    statuses = fork_all([writer_job(writer) for writer in range(writers)])
    print(f"{len(statuses)} writers, {sum(1 for s in statuses if s)} failed", flush=True)
    """
)

# Writers that SIGKILL themselves right after one write of their second add: after the parts
# of an oversized add ("put": nothing committed yet) or after the page insert ("insert":
# committed, head not moved yet).
CRASH_LAUNCHER = PRELUDE + textwrap.dedent(
    """
    jobs = []
    for arg in sys.argv[1:]:
        address, session_id, die_on = arg.split(",")

        def crashing_job(address=address, session_id=session_id, die_on=die_on):
            async def job():
                async with DaprClient(address) as client:
                    session = DaprSession(session_id, state_store_name="statestore", dapr_client=client)
                    await session.add_items([{"role": "user", "content": "before"}])
                    original = getattr(_store.StateIO, die_on)

                    async def dying(self, key, *args):
                        result = await original(self, key, *args)
                        if not key.endswith(":head"):
                            os.kill(os.getpid(), signal.SIGKILL)
                        return result

                    setattr(_store.StateIO, die_on, dying)
                    size = 700_000 if die_on == "put" else 10
                    await session.add_items([{"role": "user", "content": "x" * size}])
            return job

        jobs.append(crashing_job())
    statuses = fork_all(jobs)
    print(" ".join(str(os.WTERMSIG(s)) if os.WIFSIGNALED(s) else f"exit{s}" for s in statuses), flush=True)
    """
)


@pytest.fixture(scope="module")
def sidecars(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[SidecarEndpoint]]:
    """One dev sidecar process per store, shared by this module's tests."""
    redis_server.flushall()
    root = tmp_path_factory.mktemp("sidecars")
    started: list[SidecarProcess] = []
    try:
        for backend in STATE_BACKENDS:
            folder = write_components(
                root / backend,
                state_backend=backend,
                redis_address=redis_server.address if backend == "redis" else None,
            )
            started.append(SidecarProcess(app_id=f"proc-{backend}", resources_paths=[str(folder)]).start())
        yield [process.endpoint for process in started]
    finally:
        for process in started:
            process.stop()


async def run_launcher(script: str, args: list[str], endpoint: SidecarEndpoint, tmp_path: Path) -> str:
    path = tmp_path / "launcher.py"
    path.write_text(script)
    # The SDK health-checks the HTTP port named here; every sidecar is up by now.
    env = {**os.environ, **endpoint.env()}
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, str(path), *args], env=env, capture_output=True, timeout=170
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return result.stdout.decode().strip()


async def read_contents(endpoint: SidecarEndpoint, session_id: str) -> list[str]:
    async with opened(endpoint) as client:
        session = DaprSession(session_id, state_store_name="statestore", dapr_client=client)
        return [item["content"] for item in await session.get_items()]


class opened:  # noqa: N801 - used like a function
    """An aio client for ``endpoint`` (the SDK health-checks the HTTP port from its settings)."""

    def __init__(self, endpoint: SidecarEndpoint) -> None:
        self._endpoint = endpoint

    async def __aenter__(self) -> DaprClient:
        with self._endpoint.sdk_configured():
            self._client = DaprClient(self._endpoint.grpc_address)
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        await self._client.close()


async def test_writer_processes_lose_and_duplicate_nothing(
    sidecars: list[SidecarEndpoint], tmp_path: Path
) -> None:
    session_id = f"mp-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    out = await run_launcher(
        WRITERS_LAUNCHER,
        [str(WRITERS), str(APPENDS), session_id, *(endpoint.grpc_address for endpoint in sidecars)],
        sidecars[0],
        tmp_path,
    )
    print(
        f"{WRITERS} writers x {APPENDS} appends on {len(sidecars)} stores at once: {time.monotonic() - started:.1f}s"
    )
    assert out == f"{WRITERS} writers, 0 failed"
    for backend, endpoint in zip(STATE_BACKENDS, sidecars, strict=True):
        stored = await read_contents(endpoint, session_id)
        assert len(stored) == WRITERS * APPENDS, backend
        assert len(set(stored)) == len(stored), f"{backend}: duplicates"
        for writer in range(WRITERS):
            mine = [int(text.split(":")[1]) for text in stored if text.startswith(f"{writer}:")]
            assert mine == list(range(APPENDS)), f"{backend}: writer {writer} lost or reordered items"


async def test_sigkill_between_writes_neither_corrupts_nor_duplicates(
    sidecars: list[SidecarEndpoint], tmp_path: Path
) -> None:
    cases = [
        (backend, endpoint, f"crash-{die_on}-{uuid.uuid4().hex[:6]}", die_on)
        for backend, endpoint in zip(STATE_BACKENDS, sidecars, strict=True)
        for die_on in ("put", "insert")
    ]
    out = await run_launcher(
        CRASH_LAUNCHER,
        [f"{endpoint.grpc_address},{session_id},{die_on}" for _, endpoint, session_id, die_on in cases],
        sidecars[0],
        tmp_path,
    )
    assert out.split() == [str(int(signal.SIGKILL))] * len(cases)
    for backend, endpoint, session_id, die_on in cases:
        committed = ["before"] if die_on == "put" else ["before", "x" * 10]
        assert await read_contents(endpoint, session_id) == committed, (backend, die_on)
        async with opened(endpoint) as client:
            session = DaprSession(session_id, state_store_name="statestore", dapr_client=client)
            await session.add_items([{"role": "user", "content": "after"}])
            await session.add_items([{"role": "user", "content": "end"}])
            assert [item["content"] for item in await session.get_items()] == [*committed, "after", "end"]
            assert [item["content"] for item in await session.get_items(limit=2)] == ["after", "end"]
