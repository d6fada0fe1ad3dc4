"""The A2A server app the tests start as a process of its own (so they can SIGKILL it).

Its agent reads the caller's text: ``echo X`` answers ``echo: X``; ``wait X`` records that it
started, then waits until the test creates ``release`` in ``A2A_TEST_DIR`` and answers
``done: X``; ``ask`` asks for a city (``input-required``) and then answers ``shipping to
<city>``; ``fail`` raises. Every run of the agent is appended to ``runs.log``, so tests can count
runs (a retried message must not run again).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import dapr.ext.workflow as wf

from dapr_agents.ext.a2a import A2ACall, InputRequired, serve_a2a

WORKDIR = Path(os.environ["A2A_TEST_DIR"])


def agent(call: A2ACall) -> str | InputRequired:
    text = call.text
    with (WORKDIR / "runs.log").open("a") as log:
        log.write(
            json.dumps({"task": call.task_id, "context": call.context_id, "turn": call.turn, "text": text})
            + "\n"
        )
    if text.startswith("echo "):
        return "echo: " + text.removeprefix("echo ")
    if text.startswith("wait "):
        (WORKDIR / f"started-{os.getpid()}").write_text(call.task_id)
        while not (WORKDIR / "release").exists():
            time.sleep(0.05)
        return "done: " + text.removeprefix("wait ")
    if text == "ask":
        return InputRequired("Which city should it ship to?")
    if call.turn == 1:
        return f"shipping to {text}"
    if text == "fail":
        raise ValueError("the warehouse is on fire")
    return f"unknown order {text!r}"


def main() -> None:
    runtime = wf.WorkflowRuntime()
    server = serve_a2a(
        runtime,
        name="Logistics Agent",
        description="Finds shipments and ships orders.",
        skills=[
            {
                "id": "shipments",
                "name": "Shipments",
                "description": "Where is my order?",
                "tags": ["logistics"],
            }
        ],
        run=agent,
        retry_policy=None,
        port=int(sys.argv[1]),
    )
    runtime.start()
    try:
        server.run()
    finally:
        runtime.shutdown()


if __name__ == "__main__":
    main()
