"""Coexistence with PyPI's dapr-agents-ext-drasi: both live under dapr_agents.ext, both import in
one environment, and both activation hooks attach to one agent and come up together."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import uuid

from dapr_agents.ext.triggers import topic_trigger
from tests.conftest import Harness, task_requests, wait_until


def test_both_extensions_import_from_the_one_namespace() -> None:
    code = (
        "import dapr_agents.ext.drasi as d, dapr_agents.ext.triggers as t, dapr_agents.ext as ns;"
        "print(d.drasi_trigger.__name__, t.topic_trigger.__name__, hasattr(ns, '__file__') and ns.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["drasi_trigger", "topic_trigger", "None"]  # a namespace: no __init__
    assert importlib.metadata.version("dapr-agents-ext-drasi")


def test_both_triggers_attach_to_one_agent_and_run(harness: Harness) -> None:
    from dapr_agents.ext.drasi import drasi_trigger

    agent = harness.agent()
    query = f"q{uuid.uuid4().hex[:6]}"
    drasi_trigger(agent, query_id=query, pubsub="agent-pubsub")
    trigger = topic_trigger(agent, pubsub="agent-pubsub", topic="orders")
    assert len(agent.activations) == 2
    harness.runner().subscribe(agent)
    wait_until(lambda: harness.subscribers(f"drasi-events-{query}") == 1, what="drasi's subscription")
    assert harness.subscribers("orders") == 1
    tag = f"d{uuid.uuid4().hex[:8]}"
    harness.publish("orders", f"{tag} alongside drasi", event_id="with-drasi")
    harness.instances.append(trigger.instance_id_for("with-drasi"))
    harness.wait_finished(harness.instances)
    assert task_requests(harness.llm, tag) == [f"{tag} alongside drasi"]
