#!/usr/bin/env python
"""State API throughput and latency through the dev sidecar, with a direct-Redis baseline.

For every state backend (in-memory, sqlite, redis) this starts one dev sidecar in its own
process (``SidecarProcess``, so the benchmark client and the sidecar do not share a GIL) and
drives it with the official asynchronous Dapr SDK client, ``dapr.aio.clients.DaprClient``:

- ``get``:  ``get_state`` of a key that exists;
- ``save``: ``save_state`` of a 200-byte value (no etag, default concurrency);
- ``tx``:   ``execute_state_transaction`` with 2 upserts of 200-byte values.

Keys are drawn uniformly from 1,000 keys, which are written once before the measurements.
Each (backend, operation, concurrency) cell runs N concurrent asyncio tasks (N = 1, 16, 64 by
default) that all share ONE ``DaprClient`` (one gRPC channel, calls multiplexed over HTTP/2),
which is how an application normally uses the SDK. Each cell first warms up, then runs for a
fixed time (``--seconds``) or a fixed number of operations (``--ops``); it reports ops/s and
the p50/p99 latency of single calls as seen by the caller.

When ``redis`` is among the backends, the same operations are also run directly against the
same redis-server with redis-py's asyncio client (one shared ``redis.asyncio.Redis`` with its
connection pool), in daprd's hash layout, each in one round trip:

- ``get``:  ``HMGET key data version``;
- ``save``: ``MULTI; HSET key data <v>; HINCRBY key version 1; EXEC`` (one pipeline);
- ``tx``:   the same for 2 keys in one ``MULTI``/``EXEC`` pipeline.

The table then shows sidecar(redis) / direct for throughput and for p50: the sidecar's cost
(gRPC, the SDK, the sidecar's Python, its Lua script) over the cheapest equivalent client.

Usage::

    python benchmarks/bench_state.py [--backends in-memory,sqlite,redis]
                                     [--concurrency 1,16,64] [--seconds N | --ops N]
                                     [--warmup S] [--json out.json]

This is a benchmark, not a test: it asserts nothing about the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BACKENDS = ("in-memory", "sqlite", "redis")
DIRECT = "redis-direct"
OPERATIONS = ("get", "save", "tx")
STORE = "statestore"
APP_ID = "bench-state"
KEY_COUNT = 1_000
VALUE_SIZE = 200

# A 200-byte value; sent as bytes without a content type, so no store re-encodes it as JSON.
VALUE = (b'{"note":"' + b"x" * VALUE_SIZE)[: VALUE_SIZE - 2] + b'"}'
assert len(VALUE) == VALUE_SIZE
KEYS = [f"k{i:04d}" for i in range(KEY_COUNT)]
# The direct baseline writes next to the sidecar's keys (stored as "bench-state||kNNNN") in the
# same Redis, under its own prefix so the two never touch the same hash.
DIRECT_PREFIX = "direct||"

# Makes one operation for worker number i: a coroutine function taking no arguments.
OpFactory = Callable[[int], Callable[[], Awaitable[Any]]]


# -- measurement ------------------------------------------------------------------------------


@dataclass
class CellResult:
    backend: str
    op: str
    concurrency: int
    ops: int = 0
    errors: int = 0
    first_error: str | None = None
    elapsed_s: float = 0.0
    ops_per_s: float = 0.0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    max_ms: float | None = None
    client_cpu_pct: float | None = None  # CPU of this process, % of one core
    sidecar_cpu_pct: float | None = None  # CPU of the sidecar process, % of one core
    # Only on the redis backend's rows: sidecar / direct redis-py.
    ops_ratio_vs_direct: float | None = None
    p50_ratio_vs_direct: float | None = None
    notes: list[str] = field(default_factory=list)


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (q in 0..1)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of another process (Linux /proc); None where unavailable."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name, which is in parentheses and may contain spaces.
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


async def run_phase(
    factory: OpFactory,
    concurrency: int,
    *,
    seconds: float | None,
    ops: int | None,
    record: bool,
) -> tuple[list[float], int, int, str | None, float]:
    """Run ``concurrency`` workers until the time or op budget is spent.

    Returns (latencies in seconds, completed ops, errors, first error, elapsed seconds).
    """
    latencies: list[float] = []
    counters = {"done": 0, "errors": 0, "issued": 0}
    first_error: list[str] = []
    start = time.perf_counter()
    deadline = start + seconds if seconds is not None else math.inf

    async def worker(index: int) -> None:
        op = factory(index)
        clock = time.perf_counter
        while True:
            if ops is not None:
                if counters["issued"] >= ops:
                    return
                counters["issued"] += 1
            elif clock() >= deadline:
                return
            began = clock()
            try:
                await op()
            except Exception as exc:  # a benchmark reports errors, it does not stop
                counters["errors"] += 1
                if not first_error:
                    first_error.append(f"{type(exc).__name__}: {exc}".strip()[:500])
                # Nothing would be measured if every call fails: give up on this cell quickly.
                if counters["errors"] > 100 and counters["done"] == 0:
                    return
                continue
            ended = clock()
            counters["done"] += 1
            if record:
                latencies.append(ended - began)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - start
    return latencies, counters["done"], counters["errors"], (first_error[0] if first_error else None), elapsed


async def measure(
    backend: str,
    op_name: str,
    factory: OpFactory,
    concurrency: int,
    args: argparse.Namespace,
    sidecar_pid: int | None,
) -> CellResult:
    result = CellResult(backend=backend, op=op_name, concurrency=concurrency)
    budget = args.seconds + args.warmup + 120  # a hung sidecar must not hang the benchmark
    try:
        if args.warmup > 0:
            _, _, _, warm_error, _ = await asyncio.wait_for(
                run_phase(factory, concurrency, seconds=args.warmup, ops=None, record=False), budget
            )
            if warm_error:
                result.notes.append(f"warm-up error: {warm_error}")
        cpu_client0, cpu_sidecar0 = time.process_time(), process_cpu_seconds(sidecar_pid)
        latencies, done, errors, first_error, elapsed = await asyncio.wait_for(
            run_phase(
                factory,
                concurrency,
                seconds=None if args.ops else args.seconds,
                ops=args.ops,
                record=True,
            ),
            budget,
        )
        cpu_client1, cpu_sidecar1 = time.process_time(), process_cpu_seconds(sidecar_pid)
    except asyncio.TimeoutError:
        result.errors += 1
        result.first_error = f"cell did not finish within {budget:.0f}s (hung?)"
        return result
    latencies.sort()
    result.ops, result.errors, result.first_error, result.elapsed_s = done, errors, first_error, elapsed
    result.ops_per_s = done / elapsed if elapsed > 0 else 0.0
    to_ms = lambda value: None if value is None else value * 1000.0  # noqa: E731
    result.p50_ms = to_ms(percentile(latencies, 0.50))
    result.p90_ms = to_ms(percentile(latencies, 0.90))
    result.p99_ms = to_ms(percentile(latencies, 0.99))
    result.max_ms = to_ms(latencies[-1] if latencies else None)
    result.mean_ms = to_ms(sum(latencies) / len(latencies) if latencies else None)
    if elapsed > 0:
        result.client_cpu_pct = 100.0 * (cpu_client1 - cpu_client0) / elapsed
        if cpu_sidecar0 is not None and cpu_sidecar1 is not None:
            result.sidecar_cpu_pct = 100.0 * (cpu_sidecar1 - cpu_sidecar0) / elapsed
    return result


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def describe(result: CellResult) -> str:
    p50 = "-" if result.p50_ms is None else f"{result.p50_ms:.3f}"
    p99 = "-" if result.p99_ms is None else f"{result.p99_ms:.3f}"
    text = (
        f"  {result.backend:<12} {result.op:<4} c={result.concurrency:<3} "
        f"{result.ops_per_s:9.0f} ops/s  p50 {p50} ms  p99 {p99} ms"
    )
    if result.errors:
        text += f"  ERRORS {result.errors}: {result.first_error}"
    return text


# -- the operations ---------------------------------------------------------------------------


def sidecar_factories(client: Any) -> dict[str, OpFactory]:
    from dapr.clients.grpc._request import TransactionalStateOperation

    def get(index: int) -> Callable[[], Awaitable[Any]]:
        rng = random.Random(1000 + index)

        async def op() -> None:
            response = await client.get_state(STORE, rng.choice(KEYS))
            if len(response.data) != VALUE_SIZE:  # every key was written before measuring
                raise RuntimeError(f"get_state returned {len(response.data)} bytes, expected {VALUE_SIZE}")

        return op

    def save(index: int) -> Callable[[], Awaitable[Any]]:
        rng = random.Random(2000 + index)

        async def op() -> None:
            await client.save_state(STORE, rng.choice(KEYS), VALUE)

        return op

    def tx(index: int) -> Callable[[], Awaitable[Any]]:
        rng = random.Random(3000 + index)

        async def op() -> None:
            first, second = rng.sample(KEYS, 2)
            await client.execute_state_transaction(
                STORE,
                [
                    TransactionalStateOperation(key=first, data=VALUE),
                    TransactionalStateOperation(key=second, data=VALUE),
                ],
            )

        return op

    return {"get": get, "save": save, "tx": tx}


def direct_factories(redis_client: Any) -> dict[str, OpFactory]:
    def get(index: int) -> Callable[[], Awaitable[Any]]:
        rng = random.Random(1000 + index)

        async def op() -> None:
            data, _version = await redis_client.hmget(DIRECT_PREFIX + rng.choice(KEYS), "data", "version")
            if data is None or len(data) != VALUE_SIZE:
                raise RuntimeError(f"HMGET returned {data!r:.40}, expected {VALUE_SIZE} bytes")

        return op

    def save(index: int) -> Callable[[], Awaitable[Any]]:
        rng = random.Random(2000 + index)

        async def op() -> None:
            key = DIRECT_PREFIX + rng.choice(KEYS)
            pipe = redis_client.pipeline(transaction=True)
            pipe.hset(key, "data", VALUE)
            pipe.hincrby(key, "version", 1)
            await pipe.execute()

        return op

    def tx(index: int) -> Callable[[], Awaitable[Any]]:
        rng = random.Random(3000 + index)

        async def op() -> None:
            pipe = redis_client.pipeline(transaction=True)
            for key in rng.sample(KEYS, 2):
                pipe.hset(DIRECT_PREFIX + key, "data", VALUE)
                pipe.hincrby(DIRECT_PREFIX + key, "version", 1)
            await pipe.execute()

        return op

    return {"get": get, "save": save, "tx": tx}


async def preload(write: Callable[[str], Awaitable[Any]], parallel: int = 32) -> None:
    """Write every key once, so that reads always find a value."""
    queue = list(KEYS)

    async def worker() -> None:
        while queue:
            await write(queue.pop())

    await asyncio.gather(*(worker() for _ in range(parallel)))


# -- the runs ---------------------------------------------------------------------------------


async def bench_sidecar(
    backend: str, args: argparse.Namespace, workdir: Path, redis_address: str | None
) -> list[CellResult]:
    from dapr.aio.clients import DaprClient

    from dapr_agents.ext.devsidecar.testing import SidecarProcess, write_components

    folder = write_components(
        workdir / f"components-{backend}",
        state_backend=backend,
        sqlite_path=workdir / "state.db" if backend == "sqlite" else None,
        redis_address=redis_address,
        pubsub=None,
        actor_state_store=False,
    )
    progress(f"[{backend}] starting a sidecar process ...")
    sidecar = await asyncio.to_thread(SidecarProcess(app_id=APP_ID, resources_paths=[str(folder)]).start)
    results: list[CellResult] = []
    try:
        with sidecar.endpoint.sdk_configured():
            # Created inside the running loop: grpc.aio channels belong to the loop they start on.
            client = DaprClient()
            try:
                await preload(lambda key: client.save_state(STORE, key, VALUE))
                factories = sidecar_factories(client)
                for op_name in args.ops_list:
                    for concurrency in args.concurrency:
                        result = await measure(
                            backend, op_name, factories[op_name], concurrency, args, sidecar.pid
                        )
                        progress(describe(result))
                        results.append(result)
            finally:
                await client.close()
    finally:
        code = await asyncio.to_thread(sidecar.stop)
        if code not in (0, None, -15):
            progress(f"[{backend}] note: the sidecar process exited with code {code}")
    return results


async def bench_direct(args: argparse.Namespace, redis_port: int) -> list[CellResult]:
    import redis.asyncio as aioredis

    progress(f"[{DIRECT}] redis-py asyncio client against the same redis-server ...")
    client = aioredis.Redis(host="127.0.0.1", port=redis_port, decode_responses=False)
    results: list[CellResult] = []
    try:
        await client.ping()

        async def write(key: str) -> None:
            await client.hset(DIRECT_PREFIX + key, mapping={"data": VALUE, "version": 1})

        await preload(write)
        factories = direct_factories(client)
        for op_name in args.ops_list:
            for concurrency in args.concurrency:
                result = await measure(DIRECT, op_name, factories[op_name], concurrency, args, None)
                progress(describe(result))
                results.append(result)
    finally:
        await client.aclose()
    return results


def add_ratios(results: list[CellResult]) -> None:
    direct = {(r.op, r.concurrency): r for r in results if r.backend == DIRECT}
    for result in results:
        if result.backend != "redis":
            continue
        base = direct.get((result.op, result.concurrency))
        if base is None:
            continue
        if base.ops_per_s > 0 and result.ops:
            result.ops_ratio_vs_direct = result.ops_per_s / base.ops_per_s
        if base.p50_ms and result.p50_ms is not None:
            result.p50_ratio_vs_direct = result.p50_ms / base.p50_ms


async def run_all(args: argparse.Namespace, workdir: Path) -> list[CellResult]:
    results: list[CellResult] = []
    redis_server = None
    try:
        if "redis" in args.backends:
            from dapr_agents.ext.devsidecar.testing import RedisServer

            redis_server = await asyncio.to_thread(RedisServer().start)
            progress(f"redis-server {redis_server.binary} on {redis_server.address}")
        for backend in args.backends:
            address = redis_server.address if (backend == "redis" and redis_server) else None
            results += await bench_sidecar(backend, args, workdir, address)
            if backend == "redis" and redis_server is not None:
                results += await bench_direct(args, redis_server.port)
    finally:
        if redis_server is not None:
            await asyncio.to_thread(redis_server.stop)
    add_ratios(results)
    return results


# -- reporting --------------------------------------------------------------------------------


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment() -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    if hasattr(os, "sched_getaffinity"):
        env["cpus_usable"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError):
        env["loadavg_at_start"] = [round(value, 2) for value in os.getloadavg()]
    for name in ("dapr", "grpcio", "protobuf", "redis", "dapr-agents-ext-devsidecar"):
        env[name] = package_version(name)
    try:
        from dapr_agents.ext.devsidecar.testing import find_redis_server

        binary = find_redis_server()
        if binary:
            version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
            env["redis-server"] = version.stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        env["redis-server"] = f"unknown ({exc})"
    loop = asyncio.new_event_loop()  # the default policy's loop, which asyncio.run uses
    env["event_loop"] = type(loop).__name__
    loop.close()
    return env


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render_table(results: list[CellResult]) -> str:
    headers = [
        "backend",
        "op",
        "conc",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "cli cpu%",
        "sc cpu%",
        "ops/s vs direct",
        "p50 vs direct",
    ]
    rows = []
    for r in results:
        rows.append(
            [
                r.backend,
                r.op,
                str(r.concurrency),
                fmt(r.ops_per_s, ".0f"),
                fmt(r.p50_ms, ".3f"),
                fmt(r.p99_ms, ".3f"),
                str(r.errors),
                fmt(r.client_cpu_pct, ".0f"),
                fmt(r.sidecar_cpu_pct, ".0f"),
                "" if r.ops_ratio_vs_direct is None else f"{r.ops_ratio_vs_direct:.2f}x",
                "" if r.p50_ratio_vs_direct is None else f"{r.p50_ratio_vs_direct:.2f}x",
            ]
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(headers)]
    left = {0, 1}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out = [line(headers), "  ".join("-" * w for w in widths)]
    previous = None
    for r, row in zip(results, rows, strict=True):
        if previous is not None and r.backend != previous:
            out.append("")
        previous = r.backend
        out.append(line(row))
    return "\n".join(out)


# -- command line -----------------------------------------------------------------------------


def csv(kind: Callable[[str], Any], allowed: tuple[str, ...] | None = None) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        values = [kind(part.strip()) for part in text.split(",") if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError("empty list")
        if allowed is not None:
            unknown = [v for v in values if v not in allowed]
            if unknown:
                raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; use {', '.join(allowed)}")
        return values

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--backends",
        type=csv(str, BACKENDS),
        default=list(BACKENDS),
        help="comma-separated (default: in-memory,sqlite,redis)",
    )
    parser.add_argument(
        "--concurrency",
        type=csv(int),
        default=[1, 16, 64],
        help="concurrent callers, comma-separated (default: 1,16,64)",
    )
    parser.add_argument(
        "--operations",
        dest="ops_list",
        metavar="OPERATIONS",
        type=csv(str, OPERATIONS),
        default=list(OPERATIONS),
        help="get,save,tx (default: all)",
    )
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument(
        "--seconds", type=float, default=3.0, help="measured seconds per cell (default: %(default)s)"
    )
    budget.add_argument(
        "--ops", type=int, default=None, help="measured operations per cell, instead of --seconds"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=0.5,
        help="warm-up seconds per cell, not measured (default: %(default)s)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the environment, settings and raw results as JSON",
    )
    args = parser.parse_args(argv)
    if any(c < 1 for c in args.concurrency):
        parser.error("--concurrency values must be >= 1")
    if args.ops is not None and args.ops < 1:
        parser.error("--ops must be >= 1")
    if args.seconds <= 0 or args.warmup < 0:
        parser.error("--seconds must be > 0 and --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = environment()
    print("# dev sidecar state API benchmark")
    for key, value in env.items():
        print(f"# {key}: {value}")
    budget = f"{args.ops} ops" if args.ops else f"{args.seconds:g} s"
    print(
        f"# {budget} per cell after {args.warmup:g} s warm-up; value {VALUE_SIZE} B; {KEY_COUNT} keys; "
        "one shared dapr.aio DaprClient (direct: one shared redis.asyncio.Redis) for all concurrent callers; "
        "sidecar in its own process"
    )
    print("# cli cpu% = this client process, sc cpu% = the sidecar process (100 = one full core)")
    sys.stdout.flush()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-state-") as tmp:
        results = asyncio.run(run_all(args, Path(tmp)))
    total = time.perf_counter() - started
    print()
    print(render_table(results))
    print()
    ratio_rows = [r for r in results if r.ops_ratio_vs_direct is not None]
    if ratio_rows:
        print(
            "# vs direct: sidecar(redis) / redis-py straight to the same redis-server; "
            "ops/s below 1x and p50 above 1x are the sidecar's overhead"
        )
    failed = [r for r in results if r.errors]
    for r in failed:
        print(f"# ERRORS in {r.backend}/{r.op}/c={r.concurrency}: {r.errors}, first: {r.first_error}")
    for r in results:
        for note in r.notes:
            print(f"# note {r.backend}/{r.op}/c={r.concurrency}: {note}")
    print(f"# total wall time {total:.1f} s")
    if args.json:
        document = {
            "environment": env,
            "settings": {
                "backends": args.backends,
                "concurrency": args.concurrency,
                "operations": args.ops_list,
                "seconds": None if args.ops else args.seconds,
                "ops": args.ops,
                "warmup_seconds": args.warmup,
                "value_bytes": VALUE_SIZE,
                "keys": KEY_COUNT,
            },
            "results": [asdict(r) for r in results],
            "total_seconds": total,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"# raw results written to {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
