"""A calling app whose workflow asks the A2A server app (``A2A_SERVER_APP_ID``) through an
activity (``register_a2a_activity``); a process of its own so tests can SIGKILL it mid-call."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Generator
from typing import Any

import dapr.ext.workflow as wf

from dapr_agents.ext.a2a import a2a_agent_tool, call_a2a_agent, register_a2a_activity

WORKFLOW = "ask-logistics"


def main() -> None:
    runtime = wf.WorkflowRuntime()
    tool = a2a_agent_tool(os.environ["A2A_SERVER_APP_ID"], timeout=120)
    activity = register_a2a_activity(runtime, tool, name="logistics")

    def ask_logistics(ctx: wf.DaprWorkflowContext, task: str) -> Generator[Any, Any, dict[str, Any]]:
        answer = yield from call_a2a_agent(ctx, activity, task)
        return answer

    runtime.register_workflow(ask_logistics, name=WORKFLOW)
    runtime.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("caller ready", flush=True)
    stop.wait()
    runtime.shutdown()


if __name__ == "__main__":
    main()
