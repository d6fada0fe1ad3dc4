"""One replica of an app hosting ``dapr.scripted.pipeline.workflow`` (for the replica kill test).

argv: journal file. The agent is a deterministic orchestrator of three activities in sequence
(plan, act, answer), each ~0.1 s; its answer is derived from the task, so the test can check every
run's output. Each activity appends ``start`` and ``done`` lines (time, kind, instance id, step,
pid) to the journal shared by all replicas, and the orchestrator a ``seen`` line once it holds a
step's result: daprd saves an activity's result in the workflow's state before the orchestrator
gets it, so from a ``seen`` line on that result is durable. One ``os.write`` per line on an
``O_APPEND`` fd: lines of different processes never interleave, and the file order is the order
they were written in. The Dapr SDK finds this replica's daprd through the environment.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Generator
from typing import Any

import dapr.ext.workflow as wf

from dapr_agents.ext.interop import AgentRequest, host_agent_workflow

STEP_SECONDS = 0.1

journal = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def note(kind: str, instance_id: str, step: str) -> None:
    os.write(journal, f"{time.time():.6f} {kind} {instance_id} {step} {os.getpid()}\n".encode())
    os.fsync(journal)


def step(name: str, transform: Any) -> Any:
    def activity(ctx: wf.WorkflowActivityContext, text: str) -> str:
        note("start", ctx.workflow_id, name)
        time.sleep(STEP_SECONDS)
        result = transform(text)
        note("done", ctx.workflow_id, name)
        return result

    activity.__name__ = name
    return activity


# Each step wraps its input, so the final answer proves all three ran, in order, on the right data.
plan = step("plan", lambda task: f"plan[{task}]")
act = step("act", lambda plan: f"act[{plan}]")
answer = step("answer", lambda acted: f"answer[{acted}]")


def pipeline(ctx: wf.DaprWorkflowContext, request: AgentRequest) -> Generator[Any, Any, str]:
    # Journalled on replays too: the test wants the first moment any replica held the result.
    planned = yield ctx.call_activity("pipeline.plan", input=request.task)
    note("seen", ctx.instance_id, "plan")
    acted = yield ctx.call_activity("pipeline.act", input=planned)
    note("seen", ctx.instance_id, "act")
    answered = yield ctx.call_activity("pipeline.answer", input=acted)
    note("seen", ctx.instance_id, "answer")
    return answered


runtime = wf.WorkflowRuntime()
for activity in (plan, act, answer):
    runtime.register_activity(activity, name=f"pipeline.{activity.__name__}")
host_agent_workflow(runtime, name="pipeline", framework="scripted", orchestrator=pipeline)
runtime.start()
print("READY", flush=True)
while True:
    time.sleep(1)
