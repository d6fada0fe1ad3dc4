"""What a durable A2A task costs: blocking ``SendMessage`` round trips of an echo agent, sent one
after another with the official a2a-sdk client, in three setups measured in the same run:

- baseline: a2a-sdk's own ``DefaultRequestHandler`` with its ``InMemoryTaskStore`` (tasks in
  process memory: lost with the process), called directly;
- serve_a2a, called directly on the app port (each task a Dapr workflow instance);
- serve_a2a through the caller's sidecar (``/v1.0/invoke/<app-id>/method``), as the client does.

    python benchmarks/bench_tasks.py [--runtime dev|daprd] [--tasks 40]

Prints the median and p90 per setup and the ratio of each median to the baseline's. The dev
sidecar keeps workflows in SQLite; ``--runtime daprd`` runs Dapr's real runtime from ~/.dapr/bin.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf
import httpx
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import a2a_pb2

from dapr_agents.ext.a2a import serve_a2a
from dapr_agents.ext.devsidecar.testing import (
    DaprControlPlane,
    DaprdProcess,
    SidecarEndpoint,
    free_port,
    write_components,
)


class EchoExecutor(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message = context.message
        assert message is not None
        task = context.current_task or a2a_pb2.Task(
            id=context.task_id, context_id=context.context_id, status={"state": a2a_pb2.TASK_STATE_SUBMITTED}
        )
        task.history.append(message)
        await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.add_artifact([a2a_pb2.Part(text="echo: " + message.parts[0].text)], name="answer")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


def serve_in_thread(app: Any, port: int) -> Any:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return server


def baseline_app(port: int) -> Any:
    from starlette.applications import Starlette

    card = a2a_pb2.AgentCard(
        name="Echo",
        description="echo",
        version="1",
        supported_interfaces=[
            a2a_pb2.AgentInterface(
                url=f"http://127.0.0.1:{port}/a2a", protocol_binding="JSONRPC", protocol_version="1.0"
            )
        ],
        capabilities=a2a_pb2.AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[a2a_pb2.AgentSkill(id="echo", name="echo", description="echo", tags=["echo"])],
    )
    handler = DefaultRequestHandler(
        agent_executor=EchoExecutor(), task_store=InMemoryTaskStore(), agent_card=card
    )
    return Starlette(routes=create_agent_card_routes(card) + create_jsonrpc_routes(handler, "/a2a"))


async def measure(base_url: str, tasks: int, through_dapr: bool) -> list[float]:
    async with httpx.AsyncClient(timeout=60) as http:
        card = await A2ACardResolver(http, base_url).get_agent_card()
        if through_dapr:
            for interface in card.supported_interfaces:
                interface.url = base_url + "/a2a"
        client = ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(card)
        times = []
        for index in range(tasks + 3):  # the first three warm up
            message = a2a_pb2.Message(
                message_id=uuid.uuid4().hex, role=a2a_pb2.ROLE_USER, parts=[a2a_pb2.Part(text=f"n{index}")]
            )
            started = time.perf_counter()
            [answer] = [e async for e in client.send_message(a2a_pb2.SendMessageRequest(message=message))]
            elapsed = time.perf_counter() - started
            assert answer.task.status.state == a2a_pb2.TASK_STATE_COMPLETED, answer
            if index >= 3:
                times.append(elapsed)
        await client.close()
        return times


def report(name: str, times: list[float], baseline: float) -> None:
    ordered = sorted(times)
    median = statistics.median(ordered)
    p90 = ordered[int(len(ordered) * 0.9) - 1]
    print(f"{name:<34} median {median * 1000:7.1f} ms   p90 {p90 * 1000:7.1f} ms   x{median / baseline:6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runtime", choices=["dev", "daprd"], default="dev")
    parser.add_argument("--tasks", type=int, default=40)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="a2a-bench-"))
    components = write_components(workdir / "components", state_backend="sqlite", pubsub=None)
    app_port, base_port = free_port(), free_port()
    baseline_server = serve_in_thread(baseline_app(base_port), base_port)
    stack: list[Any] = []
    try:
        if args.runtime == "dev":
            from dapr_agents.ext.devsidecar import DevSidecar

            sidecar = DevSidecar(
                app_id="bench-agent", resources_paths=[components], app_port=app_port
            ).start()
            stack.append(sidecar)
            endpoint = sidecar.endpoint()
        else:
            plane = DaprControlPlane(workdir).start()
            stack.append(plane)
            daprd = DaprdProcess(
                "bench-agent", plane, [components], app_port=app_port, log_dir=workdir
            ).start()
            stack.append(daprd)
            endpoint = daprd.endpoint
        endpoint = SidecarEndpoint(endpoint.grpc_port, endpoint.http_port, app_id="bench-agent")
        with endpoint.sdk_configured():
            runtime = wf.WorkflowRuntime(host=endpoint.host, port=str(endpoint.grpc_port))
            server = serve_a2a(runtime, name="Echo", run=lambda call: "echo: " + call.text, port=app_port)
            runtime.start()
            server.start()
            try:
                base = asyncio.run(measure(f"http://127.0.0.1:{base_port}", args.tasks, False))
                direct = asyncio.run(measure(f"http://127.0.0.1:{app_port}", args.tasks, False))
                invoke = f"{endpoint.http_endpoint}/v1.0/invoke/bench-agent/method"
                through = asyncio.run(measure(invoke, args.tasks, True))
            finally:
                server.stop()
                time.sleep(0.2)
                runtime.shutdown()
        baseline = statistics.median(base)
        print(f"{args.tasks} blocking SendMessage round trips each, runtime {args.runtime}")
        report("a2a-sdk in-memory (baseline)", base, baseline)
        report("serve_a2a, direct", direct, baseline)
        report("serve_a2a, through the sidecar", through, baseline)
    finally:
        baseline_server.should_exit = True
        for item in reversed(stack):
            item.stop()


if __name__ == "__main__":
    main()
