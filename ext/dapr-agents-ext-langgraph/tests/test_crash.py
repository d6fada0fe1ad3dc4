"""A graph process SIGKILLed mid-run resumes from its last checkpoint in a new process.

The sidecar runs in its own process on SQLite; the graph runs in a child Python process that
is killed while its second node is running. A new process resumes the thread with
``invoke(None, config)``: the first node is not run again, the killed one is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dapr_agents.ext.devsidecar.testing import write_components

APP = """
import os, sys, time, operator
from typing import Annotated, TypedDict
from langgraph.graph import StateGraph, START, END
from dapr_agents.ext.langgraph import DaprCheckpointer

LOG = sys.argv[1]

def log(line):
    with open(LOG, "a") as f:
        f.write(line + "\\n")

class S(TypedDict):
    done: Annotated[list[str], operator.add]

def first(state):
    log("first")
    return {"done": ["first"]}

def second(state):
    log("second")
    if os.environ.get("HANG") == "1":
        print("IN_SECOND", flush=True)
        time.sleep(120)
    return {"done": ["second"]}

def third(state):
    log("third")
    return {"done": ["third"]}

b = StateGraph(S)
b.add_node("first", first); b.add_node("second", second); b.add_node("third", third)
b.add_edge(START, "first"); b.add_edge("first", "second"); b.add_edge("second", "third"); b.add_edge("third", END)
graph = b.compile(checkpointer=DaprCheckpointer("statestore", "crash"))
config = {"configurable": {"thread_id": "crash-1"}}
if sys.argv[2] == "start":
    # durability="sync": each checkpoint is stored before the next step starts (the default,
    # "async", stores it in the background, so a kill may lose the newest one).
    graph.invoke({"done": []}, config, durability="sync")
else:
    print("NEXT", graph.get_state(config).next, flush=True)
    print("RESULT", graph.invoke(None, config)["done"], flush=True)
"""


@pytest.mark.starts_sidecars  # a dev sidecar process, or a real daprd with DAPR_TEST_SIDECAR=daprd
def test_a_killed_graph_resumes_from_its_last_checkpoint(
    backend: str, tmp_path: Path, dapr_sidecar_factory: Any
) -> None:
    if backend not in ("sqlite", "external"):
        pytest.skip("runs once, on a durable SQLite store in a sidecar process")
    folder = write_components(tmp_path / "components", state_backend="sqlite", pubsub=None)
    sidecar = dapr_sidecar_factory.start(folder, subprocess=True, app_id="crash-app")
    env = {**os.environ, **sidecar.endpoint.env()}
    script, log = tmp_path / "app.py", tmp_path / "log.txt"
    script.write_text(APP)

    child = subprocess.Popen(
        [sys.executable, str(script), str(log), "start"],
        env={**env, "HANG": "1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if child.stdout.readline().strip() == "IN_SECOND":
                break
        else:  # pragma: no cover - diagnostics
            pytest.fail("the child never reached the second node")
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL

    resumed = subprocess.run(
        [sys.executable, str(script), str(log), "resume"], env=env, capture_output=True, text=True, timeout=60
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "NEXT ('second',)" in resumed.stdout
    assert "RESULT ['first', 'second', 'third']" in resumed.stdout
    assert log.read_text().split() == ["first", "second", "second", "third"]
