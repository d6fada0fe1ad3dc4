"""A real dapr-agents DurableAgent calls the A2A agent as a tool (its call a workflow activity),
through its sidecar, on a scripted model; and the package imports no dapr-agents at import time."""

from __future__ import annotations

import ast
import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import dapr.ext.workflow as wf
import pytest
from conftest import Apps

import dapr_agents.ext.a2a as a2a
from dapr_agents.ext.a2a import a2a_agent_tool, durable_agent_tool
from dapr_agents.ext.devsidecar import ScriptedChatServer, ScriptedReply, ScriptedToolCall

#: dapr-agents asks for a conversation summary after each DurableAgent run; the script answers it.
SUMMARY = ScriptedReply('{"summary": "done"}', when="Summarize the following conversation", repeat=True)


def test_the_package_imports_no_dapr_agents_at_module_level() -> None:
    """Only ``dapr_agents.ext.*`` at the top of a module: dapr-agents itself is imported inside
    the DurableAgent adapter, when it is used (its import costs seconds)."""
    package = Path(a2a.__file__).parent
    for module in package.glob("*.py"):
        tree = ast.parse(module.read_text())
        for node in tree.body:
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith("dapr_agents") or name.startswith("dapr_agents.ext."), (
                    f"{module.name} imports {name} at module level"
                )


@pytest.mark.starts_sidecars
def test_durable_agent_calls_the_a2a_agent(make_apps: Callable[..., Apps]) -> None:
    pytest.importorskip("dapr_agents.agents")
    from dapr_agents import AgentRunner, DurableAgent
    from dapr_agents.llm.openai import OpenAIChatClient

    apps = make_apps()
    script = [
        SUMMARY,
        ScriptedReply(tool_calls=[ScriptedToolCall("LogisticsAgent", {"task": "echo where is parcel 5"})]),
        ScriptedReply("final: parcel 5 is on its way", when="echo: where is parcel 5"),
    ]
    with apps.caller.sdk_configured(), ScriptedChatServer(script).start() as llm:
        runtime = wf.WorkflowRuntime(host=apps.caller.host, port=str(apps.caller.grpc_port))
        tool = durable_agent_tool(a2a_agent_tool(apps.server.app_id, timeout=60), runtime)
        agent = DurableAgent(
            name="dispatcher",
            role="dispatcher",
            goal="answer customers",
            llm=OpenAIChatClient(base_url=llm.base_url, api_key="scripted", model="scripted"),
            tools=[tool],
            runtime=runtime,
        )
        runner = AgentRunner()
        try:
            output = asyncio.run(
                runner.run(agent, payload={"task": "where is parcel 5?"}, wait=True, timeout_in_seconds=120)
            )
        finally:
            runner.shutdown()
            time.sleep(0.2)
            runtime.shutdown()
        assert output is not None, "the DurableAgent run failed or timed out (see the log)"
        assert json.loads(output)["content"] == "final: parcel 5 is on its way"
        tool_results = [
            m.get("content") for r in llm.requests for m in r.get("messages", []) if m.get("role") == "tool"
        ]
        assert "echo: where is parcel 5" in tool_results
    assert [run["text"] for run in apps.server.runs()] == ["echo where is parcel 5"]
