"""Throughput of topic_trigger: events per second from publish to scheduled and to finished runs,
at max_concurrency 1 and 16, against a baseline measured in the same run (the same runs scheduled
directly with ``runner.run_workflow``, the same concurrency, no pub/sub and no ledger).

    python benchmarks/bench_triggers.py [--events 40] [--state in-memory|sqlite]

Everything runs in this process against a dev sidecar and the scripted LLM (each agent run is two
LLM calls: the answer and dapr-agents' conversation summary). Each measurement gets a fresh
sidecar and agent (one WorkflowRuntime per app).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dapr_agents.ext.devsidecar import DevSidecar, ScriptedChatServer, ScriptedReply
from dapr_agents.ext.devsidecar.testing import SidecarEndpoint, write_components


def wait_all(client: Any, ids: list[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    for iid in ids:
        while client.get_workflow_state(iid, fetch_payloads=False) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(iid)
            time.sleep(0.01)
        client.wait_for_workflow_completion(iid, fetch_payloads=False, timeout_in_seconds=int(timeout))


class Setup:
    """A sidecar, an agent and a runner for one measurement."""

    def __init__(self, llm: ScriptedChatServer, state: str, folder: Path) -> None:
        components = write_components(
            folder, state_backend=state, state_store="agent-workflow", pubsub="agent-pubsub"
        )
        self.sidecar = DevSidecar(
            app_id=f"bench{uuid.uuid4().hex[:6]}", resources_paths=[str(components)]
        ).start()
        self.endpoint = SidecarEndpoint(
            self.sidecar.grpc_port, self.sidecar.http_port, app_id=self.sidecar.app_id
        )
        self._sdk = self.endpoint.sdk_configured()
        self._sdk.__enter__()
        from dapr_agents import AgentRunner, DurableAgent
        from dapr_agents.llm.openai import OpenAIChatClient

        self.agent = DurableAgent(
            name=f"b{uuid.uuid4().hex[:6]}",
            role="bench",
            goal="answer",
            llm=OpenAIChatClient(base_url=llm.base_url, api_key="x", model="scripted"),
        )
        self.runner = AgentRunner()

    def close(self) -> None:
        self.runner.shutdown()
        self._sdk.__exit__(None, None, None)
        self.sidecar.stop()


def baseline(setup: Setup, events: int, concurrency: int) -> tuple[float, float]:
    """Runs scheduled with run_workflow, at most ``concurrency`` unfinished at once."""
    from dapr.ext.workflow import DaprWorkflowClient

    setup.runner.workflow(setup.agent)
    entry = setup.runner.discover_entry(setup.agent)
    client = DaprWorkflowClient()
    scheduled: list[float] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        iid = f"base-{i}"
        setup.runner.run_workflow(entry, {"task": f"baseline {i}"}, instance_id=iid)
        with lock:
            scheduled.append(time.perf_counter())
        client.wait_for_workflow_completion(iid, fetch_payloads=False, timeout_in_seconds=300)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(events)))
    end = time.perf_counter()
    client.close()
    return events / (max(scheduled) - start), events / (end - start)


def triggered(setup: Setup, events: int, concurrency: int) -> tuple[float, float]:
    """The same runs, each started by an event on a topic through topic_trigger."""
    from dapr.clients import DaprClient
    from dapr.ext.workflow import DaprWorkflowClient

    from dapr_agents.ext.triggers import topic_trigger

    trigger = topic_trigger(setup.agent, pubsub="agent-pubsub", topic="bench", max_concurrency=concurrency)
    setup.runner.workflow(setup.agent)
    client = DaprWorkflowClient()
    ids = [trigger.instance_id_for(f"e{i}") for i in range(events)]
    scheduled_at: list[float] = []

    def watch() -> None:
        while trigger.stats.started < events:
            time.sleep(0.002)
        scheduled_at.append(time.perf_counter())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()

    def publish() -> None:
        with DaprClient() as dapr:
            for i in range(events):
                dapr.publish_event(
                    "agent-pubsub",
                    "bench",
                    json.dumps({"task": f"event {i}"}),
                    data_content_type="application/json",
                    publish_metadata={"cloudevent.id": f"e{i}"},
                )

    start = time.perf_counter()
    publisher = threading.Thread(target=publish, daemon=True)  # pub/sub back-pressure blocks it
    publisher.start()
    wait_all(client, ids)
    end = time.perf_counter()
    watcher.join(5)
    publisher.join(5)
    client.close()
    assert trigger.stats.started == events, trigger.stats
    return events / (scheduled_at[0] - start), events / (end - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--state", choices=["in-memory", "sqlite"], default="in-memory")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    llm = ScriptedChatServer(
        [ScriptedReply('{"summary": "ok"}', when="Summarize", repeat=True)], fallback="echo"
    ).start()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for concurrency in (1, 16):
            results = {}
            for name, measure in (("baseline", baseline), ("trigger", triggered)):
                setup = Setup(llm, args.state, Path(tmp) / f"{name}-{concurrency}")
                try:
                    results[name] = measure(setup, args.events, concurrency)
                finally:
                    setup.close()
            rows.append((concurrency, results["baseline"], results["trigger"]))
    llm.stop()
    print(f"topic_trigger throughput, {args.events} events, state store {args.state}, events/s")
    print(f"{'concurrency':>11} | {'baseline sched':>14} {'trigger sched':>13} {'ratio':>6} | "
          f"{'baseline done':>13} {'trigger done':>12} {'ratio':>6}")  # fmt: skip
    for concurrency, (b_sched, b_done), (t_sched, t_done) in rows:
        print(
            f"{concurrency:>11} | {b_sched:>14.1f} {t_sched:>13.1f} {t_sched / b_sched:>6.2f} | "
            f"{b_done:>13.1f} {t_done:>12.1f} {t_done / b_done:>6.2f}"
        )


if __name__ == "__main__":
    main()
