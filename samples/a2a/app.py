"""The blog's scenario: a Customer Service agent calls the Logistics Agent over A2A, through Dapr.

This app (app id ``a2a``) asks the Logistics Agent (app id ``logistics``, ``logistics.py``)
through its own sidecar: the card with ``GET /v1.0/invoke/logistics/method/.well-known/agent-card.json``,
then A2A JSON-RPC on the same route, so Dapr's access control, mTLS and resiliency apply. The call
is a workflow activity: durable, retried by policy, the same A2A message on every retry.

Started alone (``dapr-devsidecar run ... -- python app.py``), it starts the logistics app with its
own sidecar first, as ``dapr run`` would, and stops it at the end; with ``--no-server`` (the
``dapr.yaml`` run file starts both apps) it only waits for the logistics card.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf

from dapr_agents.ext.a2a import AgentCardError, a2a_agent_tool, call_a2a_agent, register_a2a_activity

HERE = Path(__file__).resolve().parent
LOGISTICS = "logistics"


def start_logistics(resources: str) -> subprocess.Popen[bytes]:
    """``dapr run --app-id logistics --app-port <port> -- python logistics.py``, with the same
    runner that started this app (the dev sidecar, or daprd with DAPR_DEVSIDECAR_RUNTIME=daprd)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    runner = shutil.which("dapr-devsidecar") or str(Path(sys.executable).parent / "dapr-devsidecar")
    command = [runner, "run", "--app-id", LOGISTICS, "--app-port", str(port), "--resources-path", resources]
    command += ["--", sys.executable, str(HERE / "logistics.py")]
    log = open("logistics.log", "wb")  # noqa: SIM115 (kept open for the child's lifetime)
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_card(tool: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return tool.card()
        except AgentCardError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-server", action="store_true", help="the logistics app is started elsewhere")
    parser.add_argument("--resources-path", default=str(HERE.parent.parent / "components"))
    args = parser.parse_args()
    server = None if args.no_server else start_logistics(args.resources_path)
    try:
        run(a2a_agent_tool(LOGISTICS, timeout=120))
    finally:
        if server is not None:
            os.killpg(server.pid, 15)
            server.wait(30)


def run(logistics: Any) -> None:
    card = wait_for_card(logistics)
    skills = ", ".join(skill.id for skill in card.skills)
    print(f"[customer-service] found {card.name!r} through Dapr: {card.description} (skills: {skills})")

    runtime = wf.WorkflowRuntime()
    ask = register_a2a_activity(runtime, logistics, name=LOGISTICS)

    def customer_service(ctx: wf.DaprWorkflowContext, complaint: str) -> Generator[Any, Any, str]:
        answer = yield from call_a2a_agent(ctx, ask, complaint)
        if answer["state"] == "input-required":
            if not ctx.is_replaying:
                print(f"[logistics] needs input: {answer['question']}", flush=True)
                print("[customer-service] answers: 1234", flush=True)
            answer = yield from call_a2a_agent(
                ctx, ask, "1234", task_id=answer["task_id"], context_id=answer["context_id"]
            )
        return str(answer["text"])

    runtime.register_workflow(customer_service, name="customer-service")
    runtime.start()
    try:
        client = wf.DaprWorkflowClient()
        complaint = "My parcel never arrived. Where is it?"
        print(f"[customer-service] asks logistics: {complaint}", flush=True)
        instance = client.schedule_new_workflow("customer-service", input=complaint)
        state = client.wait_for_workflow_completion(instance, timeout_in_seconds=120)
        if state is None or state.runtime_status != wf.WorkflowStatus.COMPLETED:
            raise SystemExit(f"the customer-service workflow did not complete: {state}")
        print(f"[logistics] {json.loads(state.serialized_output)}")
        print("[customer-service] done")
    finally:
        time.sleep(0.2)
        runtime.shutdown()


if __name__ == "__main__":
    main()
