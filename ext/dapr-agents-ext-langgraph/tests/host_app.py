"""The app of the host crash test: a two-node graph hosted with ``host_graph``.

argv: journal file. Node ``first`` appends "first" to the journal; node ``second`` appends
"second" and, while the file ``<journal>.block`` exists, "blocked" and then waits, so the test
can SIGKILL the app in the middle of the agent's activity. Prints READY once the runtime runs.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf
from langchain_core.messages import AIMessage
from langgraph.graph import END, START, MessagesState, StateGraph

from dapr_agents.ext.langgraph import DaprCheckpointer, host_graph

journal = Path(sys.argv[1])
block = Path(f"{journal}.block")


def note(line: str) -> None:
    with open(journal, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def first(state: MessagesState) -> dict[str, Any]:
    note("first")
    return {"messages": [AIMessage("outline ready")]}


def second(state: MessagesState) -> dict[str, Any]:
    note("second")
    if block.exists():
        note("blocked")
        time.sleep(600)
    return {"messages": [AIMessage(f"report on {state['messages'][0].text}")]}


builder = StateGraph(MessagesState)
builder.add_node("first", first)
builder.add_node("second", second)
builder.add_edge(START, "first")
builder.add_edge("first", "second")
builder.add_edge("second", END)

runtime = wf.WorkflowRuntime()
host_graph(runtime, builder.compile(), name="reporter", checkpointer=DaprCheckpointer("statestore", "crash"))
runtime.start()
print("READY", flush=True)
while True:
    time.sleep(1)
