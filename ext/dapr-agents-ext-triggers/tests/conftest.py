"""Shared fixtures: a dev sidecar per test (in this process, SQLite state), one scripted LLM for the
session, and a factory of real ``DurableAgent``s that tears its runners down only after their
runs finished (an activity ending after ``WorkflowRuntime.shutdown()`` can crash the SDK).

With ``DAPR_TEST_SIDECAR=external`` every test uses the daprd named by ``DAPR_GRPC_PORT``
(app id ``APP_ID``), started with ``tests/external-components``; agent names are unique per
test, so tests do not see each other's runs or dedupe records."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dapr_agents.ext.devsidecar import DevSidecar, ScriptedChatServer, ScriptedReply
from dapr_agents.ext.devsidecar.testing import (
    SidecarEndpoint,
    external_endpoint,
    external_mode,
    write_components,
)

#: dapr-agents asks for a structured conversation summary after every run; its prompt starts so.
SUMMARY_PROMPT = "Summarize the following conversation"

RESILIENCY_YAML = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: trigger-tests
spec:
  policies:
    timeouts:
      quick: 400ms
    retries:
      again:
        policy: constant
        duration: 50ms
        maxRetries: 3
  targets:
    components:
      retry-pubsub:
        inbound:
          timeout: quick
          retry: again
"""

RETRY_PUBSUB_YAML = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: retry-pubsub
spec:
  type: pubsub.in-memory
  version: v1
  metadata: []
"""


def write_agent_components(folder: Path, *, sqlite_path: Path | None = None) -> Path:
    """The stores a DurableAgent looks for, on SQLite, plus a pub/sub with a retry policy."""
    write_components(
        folder,
        state_backend="sqlite",
        state_store="agent-workflow",
        sqlite_path=sqlite_path,
        pubsub="agent-pubsub",
    )
    (folder / "retry-pubsub.yaml").write_text(RETRY_PUBSUB_YAML)
    (folder / "resiliency.yaml").write_text(RESILIENCY_YAML)
    return folder


def summary_reply() -> ScriptedReply:
    return ScriptedReply('{"summary": "done"}', when=SUMMARY_PROMPT, repeat=True)


@pytest.fixture(scope="session")
def llm() -> Iterator[ScriptedChatServer]:
    server = ScriptedChatServer([summary_reply()], fallback="echo").start()
    yield server
    server.stop()


def task_requests(llm: ScriptedChatServer, marker: str) -> list[str]:
    """The first user message of every agent-loop LLM request whose task contains ``marker``
    (one per run when the agent answers without tools)."""
    found = []
    for request in llm.requests:
        messages = request["messages"]
        users = [m for m in messages if m.get("role") == "user"]
        if not users or SUMMARY_PROMPT in str(users[-1].get("content")):
            continue
        if any(m.get("role") == "tool" for m in messages):
            continue  # the follow-up call after a tool result belongs to the same run
        text = str(users[0].get("content"))
        if marker in text:
            found.append(text)
    return found


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def non_daemon_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.is_alive()}


class Harness:
    """One test's sidecar, agents and runners."""

    def __init__(
        self, endpoint: SidecarEndpoint, sidecar: DevSidecar | None, llm: ScriptedChatServer
    ) -> None:
        self.endpoint = endpoint
        self.sidecar = sidecar
        self.llm = llm
        self.runners: list[Any] = []
        self.instances: list[str] = []

    def agent(self, name: str | None = None, **kwargs: Any) -> Any:
        from dapr_agents import DurableAgent
        from dapr_agents.llm.openai import OpenAIChatClient

        return DurableAgent(
            name=name or f"a{uuid.uuid4().hex[:8]}",
            role="tester",
            goal="answer",
            llm=OpenAIChatClient(base_url=self.llm.base_url, api_key="x", model="scripted"),
            **kwargs,
        )

    def runner(self) -> Any:
        from dapr_agents import AgentRunner

        runner = AgentRunner()
        self.runners.append(runner)
        return runner

    def client(self) -> Any:
        from dapr.clients import DaprClient

        return DaprClient()

    def publish(
        self, topic: str, data: Any, *, event_id: str | None = None, pubsub: str = "agent-pubsub"
    ) -> None:
        import json

        metadata = {"cloudevent.id": event_id} if event_id else None
        with self.client() as client:
            client.publish_event(
                pubsub,
                topic,
                json.dumps(data),
                data_content_type="application/json",
                publish_metadata=metadata or {},
            )

    def wait_finished(self, instance_ids: list[str], timeout: float = 60) -> list[Any]:
        from dapr.ext.workflow import DaprWorkflowClient

        client = DaprWorkflowClient()
        try:
            states = []
            for iid in instance_ids:
                wait_until(
                    lambda iid=iid: client.get_workflow_state(iid, fetch_payloads=False),
                    timeout,
                    f"{iid} to exist",
                )
                states.append(client.wait_for_workflow_completion(iid, timeout_in_seconds=int(timeout)))
            return states
        finally:
            client.close()

    def subscribers(self, topic: str, pubsub: str = "agent-pubsub") -> int:
        """How many streaming subscriptions the sidecar lists for ``topic`` in its metadata
        (through the generated stub: the SDK's GetMetadataResponse leaves subscriptions out)."""
        from dapr.proto import api_v1

        with self.client() as client:
            response = client._stub.GetMetadata(api_v1.GetMetadataRequest())
        return sum(1 for s in response.subscriptions if s.pubsub_name == pubsub and s.topic == topic)

    def close(self) -> None:
        if self.instances:
            self.wait_finished(self.instances)
        for runner in self.runners:
            runner.shutdown()


@pytest.fixture
def harness(tmp_path: Path, llm: ScriptedChatServer) -> Iterator[Harness]:
    sidecar: DevSidecar | None = None
    if external_mode():
        endpoint = external_endpoint()
    else:
        folder = write_agent_components(tmp_path / "components")
        sidecar = DevSidecar(app_id=f"app{uuid.uuid4().hex[:6]}", resources_paths=[str(folder)]).start()
        endpoint = SidecarEndpoint(sidecar.grpc_port, sidecar.http_port, app_id=sidecar.app_id)
    with endpoint.sdk_configured():
        h = Harness(endpoint, sidecar, llm)
        try:
            yield h
        finally:
            h.close()
    if sidecar is not None:
        sidecar.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)
