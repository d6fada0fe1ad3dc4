"""Three activation triggers start one DurableAgent from outside events, in one process.

- ``schedule_trigger``: a durable schedule (every 2 s here) starts a run per fire.
- ``topic_trigger``: the same pub/sub event published three times starts exactly one run.
- ``webhook_trigger``: a signed ``POST /hooks/orders`` on the app's own HTTP server starts a run;
  a retry with the same ``Idempotency-Key`` gets the same instance id, a bad signature a 401.

The app is its own event source (publisher, webhook sender); in production those are other
services. It uses a real model when OPENAI_API_KEY is set, a scripted offline one otherwise.
Run it with the dev sidecar or with Dapr; see README.md next to this file.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable

import httpx
import uvicorn
from dapr.clients import DaprClient
from dapr.ext.workflow import DaprWorkflowClient
from fastapi import FastAPI

from dapr_agents import AgentRunner, DurableAgent
from dapr_agents.ext.devsidecar import ScriptedChatServer, ScriptedReply
from dapr_agents.ext.triggers import Fire, schedule_trigger, signature, topic_trigger, webhook_trigger
from dapr_agents.llm.openai import OpenAIChatClient

PUBSUB, TOPIC, HOOK_PATH = "pubsub", "orders", "/hooks/orders"
# Fresh per app start: the dedupe ledger remembers keys for 24 h, so a fixed id would make a
# rerun in the same folder a duplicate (which is the point of the ledger, but not of this demo).
RUN = uuid.uuid4().hex[:8]

SCRIPT = [
    # dapr-agents asks for a conversation summary after every run.
    ScriptedReply('{"summary": "done"}', when="Summarize the following conversation", repeat=True),
    ScriptedReply("Stock checked: all items available.", when="Check stock levels", repeat=True),
    ScriptedReply("Order 42 is packed and ready to ship.", when="Pack order 42", repeat=True),
    ScriptedReply("Refund for order 7 issued.", when="Refund order 7", repeat=True),
]


def make_llm() -> tuple[OpenAIChatClient, ScriptedChatServer | None]:
    if os.environ.get("OPENAI_API_KEY"):
        model = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
        print(f"LLM: {model} (OPENAI_API_KEY is set)")
        client = OpenAIChatClient(model=model, base_url=os.environ.get("OPENAI_BASE_URL"))
        return client, None
    server = ScriptedChatServer(SCRIPT, fallback="echo").start()
    print("LLM: scripted (offline)")
    return OpenAIChatClient(base_url=server.base_url, api_key="scripted", model="scripted"), server


def answer(workflows: DaprWorkflowClient, instance_id: str, timeout: float = 60) -> str:
    """Wait for a run to exist (a trigger may still be scheduling it), then for its answer."""
    deadline = time.monotonic() + timeout
    while workflows.get_workflow_state(instance_id, fetch_payloads=False) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {instance_id} never started")
        time.sleep(0.1)
    state = workflows.wait_for_workflow_completion(instance_id, timeout_in_seconds=int(timeout))
    return json.loads(state.serialized_output)["content"]


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def llm_calls(server: ScriptedChatServer | None, task: str) -> int | None:
    """Agent-loop requests (summaries excluded) for ``task``: one per run for a tool-less agent."""
    if server is None:
        return None
    last_messages = [str(request["messages"][-1].get("content")) for request in server.requests]
    return sum(task in text and "Summarize the following" not in text for text in last_messages)


def start_http_server(app: FastAPI, port: int) -> tuple[uvicorn.Server, threading.Thread, str]:
    """Serve ``app`` on 127.0.0.1 (port 0: a free one) in a thread, so the app can also be the sender."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))  # binding here (not in uvicorn) tells us the port up front
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="http", daemon=True)
    thread.start()
    wait_for(lambda: server.started, "the HTTP server")
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


def wait_for_stop_signal() -> None:
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    while not stop.wait(0.5):  # a timeout keeps the main thread responsive to signals
        pass


def main() -> int:
    llm, scripted = make_llm()
    agent = DurableAgent(
        name="order-desk",
        role="Order desk",
        goal="Handle shop orders",
        instructions=["Answer in one short sentence."],
        llm=llm,
    )

    # One line per trigger; they come up when the runner hosts the agent.
    fires: dict[str, Fire] = {}

    def stock_check(fire: Fire) -> str:
        fires[fire.instance_id] = fire  # keyed: an activity retry must not count twice
        return "Check stock levels"

    schedule = schedule_trigger(agent, every=2, task=stock_check, overlap="skip")
    orders = topic_trigger(agent, pubsub=PUBSUB, topic=TOPIC)
    secret = os.environ.get("SHOP_WEBHOOK_SECRET") or secrets.token_hex(16)
    hook = webhook_trigger(agent, path=HOOK_PATH, secret=secret)

    runner = AgentRunner()
    # With app= serve() mounts its routes and returns; without it, serve() blocks in uvicorn.run().
    app = runner.serve(agent, app=FastAPI())
    http, http_thread, base_url = start_http_server(app, int(os.environ.get("WEBHOOK_PORT", "0")))
    print(f"webhook listening on {base_url}{HOOK_PATH}")
    workflows = DaprWorkflowClient()
    try:
        # 1. The schedule started when the agent was hosted: let it fire twice, then remove it.
        # (overlap="skip" drops a fire while the previous run still runs: slow models take longer)
        wait_for(lambda: len(fires) >= 2, "two schedule fires", timeout=120)
        workflows.terminate_workflow(schedule.instance_id)
        workflows.wait_for_workflow_completion(schedule.instance_id, timeout_in_seconds=30)
        answers = [answer(workflows, instance_id) for instance_id in sorted(fires)]
        print(f"schedule fired {len(fires)} times")
        for number, text in enumerate(answers, start=1):
            print(f"schedule run {number}: {text}")

        # 2. At-least-once delivery, simulated: the same event (same CloudEvent id) three times.
        event_id = f"order-42-{RUN}"
        with DaprClient() as client:
            for _ in range(3):
                client.publish_event(
                    PUBSUB,
                    TOPIC,
                    json.dumps({"task": "Pack order 42"}),
                    data_content_type="application/json",
                    publish_metadata={"cloudevent.id": event_id},
                )
        print(f"topic answer: {answer(workflows, orders.instance_id_for(event_id))}")
        wait_for(lambda: orders.stats.received == 3, "three deliveries")
        stats = orders.stats
        print(f"topic: {stats.received} deliveries, {stats.started} run, {stats.duplicates} duplicates")
        if (calls := llm_calls(scripted, "Pack order 42")) is not None:
            print(f"topic: the LLM was asked {calls} time(s)")

        # 3. A webhook sender: sign the exact body bytes, retry with the same Idempotency-Key.
        body = json.dumps({"task": "Refund order 7"}).encode()
        headers = {"content-type": "application/json", "Idempotency-Key": f"refund-7-{RUN}"}
        url = base_url + HOOK_PATH
        first = httpx.post(url, content=body, headers={**headers, "X-Signature-256": signature(secret, body)})
        again = httpx.post(url, content=body, headers={**headers, "X-Signature-256": signature(secret, body)})
        forged = httpx.post(
            url, content=body, headers={**headers, "X-Signature-256": signature("guess", body)}
        )
        print(f"webhook signed: {first.status_code}, duplicate={first.json()['duplicate']}")
        print(f"webhook retry: {again.status_code}, duplicate={again.json()['duplicate']}")
        same = first.json()["instance_id"] == again.json()["instance_id"]
        print(f"webhook retry got the same instance id: {same}")
        print(f"webhook wrong signature: {forged.status_code}")
        print(f"webhook answer: {answer(workflows, first.json()['instance_id'])}")
        print(f"webhook: {hook.stats.started} run, {hook.stats.duplicates} duplicate")
        if os.environ.get("KEEP_SERVING"):
            print("serving the webhook until Ctrl+C")
            wait_for_stop_signal()
    finally:
        # Stop taking requests, then unhost; every run above has finished, so no activity is
        # still running when the workflow runtime stops.
        http.should_exit = True
        http_thread.join(10)
        workflows.close()
        runner.shutdown()
        if scripted is not None:
            scripted.stop()
    print("triggers done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
