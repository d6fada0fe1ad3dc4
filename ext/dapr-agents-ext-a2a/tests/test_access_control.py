"""The blog's authorization: the agent's sidecar has an access control list that lets only the
customer service app read the card and send A2A requests; a third app is refused by the sidecar
before any agent code runs. Dev sidecar and real daprd (with mTLS and sentry, as ACLs need)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Apps, unique_id

from dapr_agents.ext.a2a import AgentCardError, a2a_agent_tool

pytestmark = pytest.mark.starts_sidecars


def access_control(folder: Path, allowed: str) -> Path:
    path = folder / "agent-config.yaml"
    policy = {
        "appId": allowed,
        "defaultAction": "deny",
        "trustDomain": "public",
        "namespace": "default",
        "operations": [
            {"name": "/.well-known/agent-card.json", "httpVerb": ["GET"], "action": "allow"},
            {"name": "/a2a", "httpVerb": ["POST"], "action": "allow"},
        ],
    }
    document = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Configuration",
        "metadata": {"name": "agent-config"},
        "spec": {"accessControl": {"defaultAction": "deny", "trustDomain": "public", "policies": [policy]}},
    }
    path.write_text(json.dumps(document, indent=2))  # JSON is YAML
    return path


def test_only_the_allowed_app_reaches_the_agent(
    make_apps: Callable[..., Apps],
    components: Path,
    dapr_sidecar_factory: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NAMESPACE", raising=False)
    caller_id = unique_id("customer-service")
    apps = make_apps(caller_id=caller_id, config=access_control(tmp_path, caller_id), enable_mtls=True)
    with apps.caller.sdk_configured():
        assert a2a_agent_tool(apps.server.app_id, timeout=60).call("echo allowed").text == "echo: allowed"
    intruder = dapr_sidecar_factory.start(components, app_id=unique_id("intruder"), enable_mtls=True)
    endpoint = intruder.endpoint() if callable(intruder.endpoint) else intruder.endpoint
    with endpoint.sdk_configured(), pytest.raises(AgentCardError, match="403"):
        a2a_agent_tool(apps.server.app_id).card()
    assert [run["text"] for run in apps.server.runs()] == ["echo allowed"]
