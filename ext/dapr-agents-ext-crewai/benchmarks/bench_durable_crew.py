"""Overhead of a durable crew run per task, against a plain ``crew.kickoff()`` of the same crew,
with a zero-latency scripted LLM (so the figure is the workflow's own cost).

    python benchmarks/bench_durable_crew.py [--tasks 5] [--runs 5] [--backend sqlite]

Starts a dev sidecar (dapr-agents-ext-devsidecar) in process; prints medians and the per-task
overhead. Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
os.environ.setdefault("CREWAI_STORAGE_DIR", tempfile.mkdtemp(prefix="crewai-bench-"))

import dapr.ext.workflow as wf
from crewai import Agent, Crew, Task

from dapr_agents.ext.crewai import DaprCrew
from dapr_agents.ext.crewai.testing import ScriptedLLM
from dapr_agents.ext.devsidecar import DevSidecar
from dapr_agents.ext.devsidecar.testing import SidecarEndpoint, write_components


def make_crew(tasks: int) -> Crew:
    agents = [
        Agent(
            role=f"worker {i}",
            goal="work",
            backstory="fast",
            llm=ScriptedLLM([f"done {i}"]),
            max_retry_limit=0,
        )
        for i in range(tasks)
    ]
    return Crew(
        name="bench",
        agents=agents,
        tasks=[
            Task(description=f"Step {i}.", expected_output="A line.", agent=a) for i, a in enumerate(agents)
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--backend", default="sqlite", choices=["in-memory", "sqlite"])
    args = parser.parse_args()

    plain = []
    for _ in range(args.runs):
        crew = make_crew(args.tasks)
        start = time.perf_counter()
        crew.kickoff()
        plain.append(time.perf_counter() - start)

    folder = write_components(tempfile.mkdtemp(prefix="bench-components-"), state_backend=args.backend)
    durable_times = []
    with DevSidecar(app_id="bench", resources_paths=[str(folder)]) as sidecar:
        endpoint = SidecarEndpoint(sidecar.grpc_port, sidecar.http_port, app_id="bench")
        with endpoint.sdk_configured():
            for _ in range(args.runs):
                # A fresh crew per run, like the plain runs; one runtime per run as kickoff_durable does,
                # but timed from schedule to result (runtime start-up is a one-off per process).
                durable = DaprCrew(make_crew(args.tasks))
                runtime = wf.WorkflowRuntime()
                durable.register(runtime)
                runtime.start()
                client = wf.DaprWorkflowClient()
                start = time.perf_counter()
                instance = durable.schedule(client, instance_id=f"bench-{uuid.uuid4().hex[:8]}")
                durable.wait(client, instance, timeout=120)
                durable_times.append(time.perf_counter() - start)
                runtime.shutdown()

    p, d = statistics.median(plain), statistics.median(durable_times)
    print(f"tasks per crew: {args.tasks}, runs: {args.runs}, backend: {args.backend}")
    print(f"plain kickoff   median {p * 1000:8.1f} ms  ({p / args.tasks * 1000:6.1f} ms/task)")
    print(f"durable run     median {d * 1000:8.1f} ms  ({d / args.tasks * 1000:6.1f} ms/task)")
    print(f"overhead        {(d - p) / args.tasks * 1000:8.1f} ms per task  (ratio {d / p:.2f}x)")


if __name__ == "__main__":
    main()
