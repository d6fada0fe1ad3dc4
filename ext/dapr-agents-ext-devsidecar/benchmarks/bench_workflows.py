"""Workflow engine benchmark: prints figures, asserts nothing.

Runs the dev sidecar in its own process and 1 or 4 worker processes running the unmodified
``WorkflowRuntime``, then measures, per actor-store backend (SQLite is durable; in-memory is the
baseline that shows what durability costs, as a ratio):

- workflows/s and activities/s for a batch of one-activity workflows, with 1 and 4 workers;
- latency per hop of a sequential chain of 100 activities;
- a fan-out of 1,000 activities;
- the sidecar's resident memory after N completed instances (default 10,000).

    python benchmarks/bench_workflows.py [--backends sqlite,in-memory] [--instances 10000]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import dapr.ext.workflow as wf

from dapr_agents.ext.devsidecar.testing import SidecarProcess, write_components

WORKER = textwrap.dedent(
    """
    import sys, time
    import dapr.ext.workflow as wf

    runtime = wf.WorkflowRuntime(maximum_concurrent_activity_work_items=64)

    @runtime.activity(name="noop")
    def noop(ctx, value):
        return value

    @runtime.workflow(name="one")
    def one(ctx, value):
        return (yield ctx.call_activity(noop, input=value))

    @runtime.workflow(name="empty")
    def empty(ctx, value):
        return value

    @runtime.workflow(name="chain")
    def chain(ctx, hops):
        for i in range(hops):
            yield ctx.call_activity(noop, input=i)
        return hops

    @runtime.workflow(name="fan")
    def fan(ctx, width):
        results = yield wf.when_all([ctx.call_activity(noop, input=i) for i in range(width)])
        return len(results)

    runtime.start()
    print("ready", flush=True)
    while True:
        time.sleep(1)
    """
)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_workers(count: int, env: dict[str, str], folder: Path) -> list[subprocess.Popen[str]]:
    script = folder / "worker.py"
    script.write_text(WORKER)
    workers = [
        subprocess.Popen(
            [sys.executable, str(script)], env={**os.environ, **env}, stdout=subprocess.PIPE, text=True
        )
        for _ in range(count)
    ]
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
    time.sleep(0.5)  # let every worker open its work-item stream
    return workers


def run_batch(client: wf.DaprWorkflowClient, name: str, payloads: list[object], prefix: str) -> float:
    """Start every workflow from 16 client threads (a start waits for the first turn), then wait."""

    def one(index: int) -> None:
        instance = client.schedule_new_workflow(name, input=payloads[index], instance_id=f"{prefix}-{index}")
        state = client.wait_for_workflow_completion(instance, timeout_in_seconds=600)
        assert state is not None and state.runtime_status == wf.WorkflowStatus.COMPLETED, state

    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, range(len(payloads))))
    return time.perf_counter() - began


def bench_backend(backend: str, args: argparse.Namespace) -> dict[str, float]:
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = write_components(Path(scratch) / "components", state_backend=backend)
        for workers_count in (1, 4):
            sidecar = SidecarProcess(app_id="bench", resources_paths=[str(folder)]).start()
            workers = start_workers(workers_count, sidecar.endpoint.env(), Path(scratch))
            try:
                with sidecar.endpoint.sdk_configured():
                    client = wf.DaprWorkflowClient()
                    run_batch(client, "one", list(range(20)), f"warm{workers_count}")
                    elapsed = run_batch(client, "one", list(range(args.batch)), f"one{workers_count}")
                    results[f"workflows/s ({workers_count} worker{'s' if workers_count > 1 else ''})"] = (
                        args.batch / elapsed
                    )
                    results[f"activities/s ({workers_count} worker{'s' if workers_count > 1 else ''})"] = (
                        args.batch / elapsed
                    )
                    if workers_count == 1:
                        elapsed = run_batch(client, "chain", [100], "chain")
                        results["chain of 100: ms per hop"] = elapsed / 100 * 1000
                        elapsed = run_batch(client, "fan", [1000], "fan")
                        results["fan-out of 1,000: seconds"] = elapsed
                        before = rss_mb(sidecar.pid)
                        elapsed = run_batch(client, "empty", list(range(args.instances)), "many")
                        results[f"{args.instances:,} instances: workflows/s"] = args.instances / elapsed
                        results["sidecar RSS before (MB)"] = before
                        results[f"sidecar RSS after {args.instances:,} instances (MB)"] = rss_mb(sidecar.pid)
            finally:
                for worker in workers:
                    worker.kill()
                    worker.wait()
                sidecar.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="sqlite,in-memory")
    parser.add_argument("--batch", type=int, default=300, help="one-activity workflows per throughput run")
    parser.add_argument("--instances", type=int, default=10_000, help="instances for the memory figure")
    args = parser.parse_args(argv)
    print(f"# python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print("# sidecar and workers in separate processes; client in this one")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    table = {backend: bench_backend(backend, args) for backend in backends}
    metrics = list(next(iter(table.values())))
    header = f"{'metric':45}" + "".join(f"{b:>14}" for b in backends)
    if len(backends) == 2:
        header += f"{backends[0] + ' / ' + backends[1]:>24}"
    print(header)
    for metric in metrics:
        row = f"{metric:45}" + "".join(f"{table[b][metric]:>14.1f}" for b in backends)
        if len(backends) == 2 and table[backends[1]][metric]:
            row += f"{table[backends[0]][metric] / table[backends[1]][metric]:>23.2f}x"
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
