"""Three replicas of one agent app on Dapr's real runtime: runs spread over them, and losing one
(its app and its daprd, both SIGKILLed) loses no run and runs no activity again whose result was
settled before the kill.

Real engine only (``DAPR_TEST_SIDECAR=daprd``): the dev sidecar has no placement and serves one
process per app, so an app cannot have replicas. The test starts its own placement and
scheduler, three daprd of one app id with state and actor state on one real Redis, and three app
processes (``replica_app.py``) that journal every activity's start and end, and what each
orchestrator has seen, to one shared file. Its figures are printed: ``-s`` shows them, ``-rP``
under xdist.

What counts as a wrong re-run follows what daprd 1.18 does. Activities run at least once, and
the window is wider than "in flight on the killed replica": an activity that finished shortly
before the kill (on any replica) or after it, during the ~2 s placement takes to rebalance the
actors, may run again on a survivor even when its workflow already holds the result. daprd's
logs show why: the activity actor runs the activity again when its ``run-activity`` reminder was
not acknowledged before its daprd died, and when posting the result to a workflow whose host
died fails ("failed to invoke 'AddWorkflowEvent' method on workflow actor: context canceled",
after which the reminder fires again and a fresh owner dispatches the activity anew); a workflow
restarted from its last saved state also schedules again what it had dispatched after it. So an
activity may run again only after the kill, and only if it had not finished more than ``GRACE``
before it.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dapr.ext.workflow as wf
import pytest
from conftest import component, wait_until

from dapr_agents.ext.devsidecar.testing import (
    DaprControlPlane,
    DaprdProcess,
    RedisServer,
    SidecarEndpoint,
    sidecar_mode,
)
from dapr_agents.ext.interop import AgentClient, AgentResponse

needs_real_runtime = pytest.mark.skipif(
    sidecar_mode() != "daprd",
    reason="needs Dapr's real runtime (DAPR_TEST_SIDECAR=daprd) to start three daprd of one app: "
    "the dev sidecar has no placement and serves one process per app, an external daprd is one replica",
)

HERE = Path(__file__).parent
APP_ID = "replicated-agent"
REPLICAS = 3
RUNS = 100
STEPS = ("plan", "act", "answer")
#: Runs finished before one replica is killed: about a third.
KILL_AFTER = RUNS // 3
#: From the first run started until every run must have completed.
DEADLINE = 180.0
#: An activity that finished this shortly before the kill may run again (at least once); one that
#: finished earlier had its result delivered and its reminder acknowledged long before.
GRACE = 1.0


def expected_answer(task: str) -> str:
    return f"answer[act[plan[{task}]]]"


@dataclass
class Replica:
    """One replica: an app process and its own daprd."""

    index: int
    daprd: DaprdProcess
    app: subprocess.Popen[str]

    @property
    def pid(self) -> int:
        return self.app.pid

    def kill(self) -> None:
        """SIGKILL the app and its daprd, as a lost machine would."""
        self.app.kill()
        self.daprd.kill()
        self.app.wait(10)


@dataclass(frozen=True)
class Line:
    """One journal line: an activity's ``start`` or ``done``, or an orchestrator's ``seen``."""

    at: float
    kind: str
    instance_id: str
    step: str
    pid: int


def read_journal(path: Path) -> list[Line]:
    if not path.exists():
        return []
    lines = []
    for text in path.read_text().splitlines():
        at, kind, instance_id, step, pid = text.split()
        lines.append(Line(float(at), kind, instance_id, step, int(pid)))
    return lines


def finished_runs(lines: list[Line]) -> set[str]:
    """Runs whose orchestrator holds the final answer (it returns it at once)."""
    return {line.instance_id for line in lines if line.kind == "seen" and line.step == "answer"}


def in_flight(lines: list[Line], pid: int) -> int:
    started = Counter(
        (line.instance_id, line.step) for line in lines if line.pid == pid and line.kind == "start"
    )
    done = Counter((line.instance_id, line.step) for line in lines if line.pid == pid and line.kind == "done")
    return sum((started - done).values())


def epoch(moment: datetime) -> float:
    # The SDK returns daprd's timestamps as naive UTC datetimes.
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


@dataclass
class Verdict:
    """What the journal says about activities that ran more than once."""

    reruns: Counter[str]
    """Second (third...) starts of an activity, by cause."""
    violations: list[str]
    """Re-runs the rules forbid, explained."""
    oldest: float | None
    """How long before the kill the earliest finished attempt of a re-run activity finished."""


def judge(lines: list[Line], killed_pid: int, killed_at: float) -> Verdict:
    """Check every second start of an activity against what had happened when it was written.

    Forbidden: a second start before the kill, or on the killed replica (nothing had failed); a
    second start of an activity that had finished more than ``GRACE`` before the kill, on any
    replica (its result was long settled: running it again means the engine lost state).
    Allowed: a second start after the kill of an activity that was in flight on the killed
    replica or finished shortly before the kill or after it (see the module docstring).
    """
    starts: dict[tuple[str, str], list[Line]] = defaultdict(list)
    dones: dict[tuple[str, str], list[Line]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    reruns: Counter[str] = Counter()
    violations: list[str] = []
    oldest: float | None = None
    for line in lines:
        key = (line.instance_id, line.step)
        if line.kind == "seen":
            seen.add(key)
            continue
        if line.kind == "done":
            dones[key].append(line)
            continue
        if starts[key]:
            where = f"{line.step} of {line.instance_id} started again at {line.at:.3f} on pid {line.pid}"
            if line.pid == killed_pid or line.at < killed_at:
                violations.append(f"{where}, before any replica was lost")
            for done in dones[key]:
                oldest = max(-math.inf if oldest is None else oldest, killed_at - done.at)
                if done.at < killed_at - GRACE:
                    violations.append(
                        f"{where} though pid {done.pid} finished it {killed_at - done.at:.2f} s before the kill"
                    )
            if any(done.pid == killed_pid for done in dones[key]):
                cause = f"finished on the killed replica < {GRACE:g} s before the kill"
            elif any(start.pid == killed_pid for start in starts[key]):
                cause = "in flight on the killed replica"
            elif dones[key]:
                cause = "finished on a survivor around the kill"
            else:
                cause = "started twice on survivors"
            reruns[cause + (", result already recorded" if key in seen else "")] += 1
        starts[key].append(line)
    return Verdict(reruns, violations, oldest)


def wrong_runs(states: Mapping[str, Any], tasks: Mapping[str, str], lines: list[Line]) -> list[str]:
    """Runs that did not complete exactly as they should: missing, failed, wrong answer, or an
    activity that never finished; and journal lines of runs nobody started."""
    problems = []
    for instance_id, task in tasks.items():
        state = states.get(instance_id)
        if state is None:
            problems.append(f"{instance_id}: no such workflow instance")
        elif state.runtime_status != wf.WorkflowStatus.COMPLETED:
            problems.append(f"{instance_id}: {state.runtime_status.name}")
        elif state.serialized_output is None:
            problems.append(f"{instance_id}: completed without output")
        else:
            content = AgentResponse.from_workflow_output(state.serialized_output).content
            if content != expected_answer(task):
                problems.append(f"{instance_id}: answered {content!r}, expected {expected_answer(task)!r}")
    done = {(line.instance_id, line.step) for line in lines if line.kind == "done"}
    problems += [f"{i}: {step} never finished" for i in tasks for step in STEPS if (i, step) not in done]
    problems += [
        f"{i}: journalled but never started"
        for i in sorted({line.instance_id for line in lines} - set(tasks))
    ]
    return problems


@contextlib.contextmanager
def replicas(tmp_path: Path, redis: RedisServer, journal: Path) -> Iterator[list[Replica]]:
    components = tmp_path / "components"
    components.mkdir()
    # One store for workflow state and actor state, shared by every replica.
    (components / "statestore.yaml").write_text(
        component("agent-workflow", "redis", {"redisHost": redis.address, "actorStateStore": "true"})
    )
    daprds: list[DaprdProcess] = []
    apps: list[subprocess.Popen[str]] = []
    with DaprControlPlane(tmp_path / "control-plane") as control_plane:
        try:
            for _ in range(REPLICAS):
                daprds.append(DaprdProcess(APP_ID, control_plane, [components]).start())
            # Started together: an app's start is mostly Python importing the SDK.
            for index, daprd in enumerate(daprds):
                env = {key: value for key, value in os.environ.items() if key != "DAPR_API_TOKEN"}
                env.update(SidecarEndpoint(daprd.grpc_port, daprd.http_port, app_id=APP_ID).env())
                with open(tmp_path / f"replica-{index}.log", "w") as log:
                    apps.append(
                        subprocess.Popen(
                            [sys.executable, str(HERE / "replica_app.py"), str(journal)],
                            env=env,
                            stdout=subprocess.PIPE,
                            stderr=log,
                            text=True,
                        )
                    )
            for index, (daprd, app) in enumerate(zip(daprds, apps, strict=True)):
                assert app.stdout is not None
                ready = app.stdout.readline().strip()
                assert ready == "READY", (
                    f"replica {index} did not start; see {tmp_path}/replica-{index}.log and {daprd.log}"
                )
            yield [
                Replica(index, daprd, app)
                for index, (daprd, app) in enumerate(zip(daprds, apps, strict=True))
            ]
        finally:
            for app in apps:
                app.kill()
                app.wait(10)
                if app.stdout is not None:
                    app.stdout.close()
            for daprd in daprds:
                daprd.stop()


@needs_real_runtime
def test_runs_survive_losing_one_of_three_replicas(tmp_path: Path, redis_server: RedisServer) -> None:
    redis_server.flushall()
    journal = tmp_path / "journal.txt"
    tasks = {f"run-{n:03d}": f"task {n}" for n in range(RUNS)}
    with replicas(tmp_path, redis_server, journal) as apps:
        front = apps[0].daprd
        workflows = wf.DaprWorkflowClient(host="127.0.0.1", port=str(front.grpc_port))
        client = AgentClient(workflow_client=workflows)

        def start(instance_id: str) -> str:
            return client.start("pipeline", tasks[instance_id], framework="scripted", instance_id=instance_id)

        # Started from a pool, watched from here: the kill lands after about a third of the runs
        # however fast the starting goes (the last starts may come after it, still via replica 0).
        pool = ThreadPoolExecutor(max_workers=8)
        began = time.time()
        starting = pool.map(start, tasks)
        wait_until(lambda: len(finished_runs(read_journal(journal))) >= KILL_AFTER, timeout=DEADLINE)

        # The victim: the busiest replica other than the one the client talks to.
        lines = read_journal(journal)
        victim = max(apps[1:], key=lambda replica: in_flight(lines, replica.pid))
        killed_at = time.time()
        victim.kill()
        assert sorted(starting) == sorted(tasks)
        pool.shutdown()

        states = {}
        for instance_id in tasks:
            remaining = max(1, int(began + DEADLINE - time.time()))
            try:
                states[instance_id] = workflows.wait_for_workflow_completion(
                    instance_id, fetch_payloads=True, timeout_in_seconds=remaining
                )
            except TimeoutError:  # reported with the others below
                states[instance_id] = workflows.get_workflow_state(instance_id, fetch_payloads=True)
        wall = time.time() - began

    lines = read_journal(journal)
    verdict = judge(lines, victim.pid, killed_at)
    finished_at = [
        epoch(state.last_updated_at)
        for state in states.values()
        if state is not None and state.runtime_status == wf.WorkflowStatus.COMPLETED
    ]
    activities = Counter(line.pid for line in lines if line.kind == "done")
    hosts = Counter(pid for _, pid in {(line.instance_id, line.pid) for line in lines if line.kind == "seen"})

    def per_replica(counts: Counter[int]) -> str:
        return ", ".join(f"{r.index}{' (killed)' if r is victim else ''}: {counts[r.pid]}" for r in apps)

    causes = "; ".join(f"{cause}: {count}" for cause, count in sorted(verdict.reruns.items()))
    oldest = "-"
    if verdict.oldest is not None:
        oldest = f"{abs(verdict.oldest):.2f} s {'before' if verdict.oldest >= 0 else 'after'} the kill"
    figures = [
        f"runs: {RUNS} on {REPLICAS} replicas of app {APP_ID!r}, {len(STEPS)} activities each",
        f"wall time: {wall:.1f} s (first run started to last run completed)",
        f"runs finished before the kill: {sum(at < killed_at for at in finished_at)}",
        f"killed: replica {victim.index} (app pid {victim.pid}), {killed_at - began:.1f} s in",
        f"activities re-run after the kill: {sum(verdict.reruns.values())} ({causes or 'none'})",
        f"earliest finish of an activity that ran again: {oldest}",
        f"activities finished per replica: {per_replica(activities)}",
        f"workflows run (at least partly) per replica: {per_replica(hosts)}",
        f"kill to every run finished: {max(finished_at, default=killed_at) - killed_at:.1f} s",
        f"daprd logs: {', '.join(str(r.daprd.log) for r in apps)}",
    ]
    print("\n" + "\n".join(f"replicas: {figure}" for figure in figures))

    problems = wrong_runs(states, tasks, lines)
    assert not problems, "\n".join(problems)
    assert not verdict.violations, "\n".join(verdict.violations)
    # The kill must have hit work: every replica ran activities, and runs were still going.
    assert all(activities[r.pid] > 0 for r in apps), f"a replica ran no activity: {per_replica(activities)}"
    assert any(at >= killed_at for at in finished_at), "every run had finished before the kill"


# The checks themselves, on made-up journals: they run in every mode.


def journal_of(*entries: tuple[float, str, str, str, int]) -> list[Line]:
    return [Line(*entry) for entry in entries]


def test_judge_allows_rerunning_what_was_in_flight_or_just_finished_on_the_killed_replica() -> None:
    lines = journal_of(
        (1.0, "start", "r1", "plan", 10),  # in flight on the killed replica (pid 10)
        (9.5, "start", "r2", "plan", 10),
        (9.6, "done", "r2", "plan", 10),  # finished 0.4 s before the kill at 10.0
        (12.0, "start", "r1", "plan", 20),
        (12.1, "done", "r1", "plan", 20),
        (12.2, "start", "r2", "plan", 30),
    )
    verdict = judge(lines, killed_pid=10, killed_at=10.0)
    assert verdict.violations == []
    assert sum(verdict.reruns.values()) == 2


def test_judge_catches_a_settled_activity_run_again() -> None:
    lines = journal_of(
        (1.0, "start", "r1", "plan", 20),
        (1.1, "done", "r1", "plan", 20),  # a survivor finished it long before the kill
        (1.2, "seen", "r1", "plan", 30),
        (5.0, "start", "r2", "act", 10),
        (5.1, "done", "r2", "act", 10),  # the killed replica finished it 4.9 s before the kill
        (12.0, "start", "r1", "plan", 30),
        (12.0, "start", "r2", "act", 30),
    )
    verdict = judge(lines, killed_pid=10, killed_at=10.0)
    assert len(verdict.violations) == 2, verdict.violations
    assert "finished it 8.90 s before the kill" in verdict.violations[0]


def test_judge_catches_a_rerun_before_the_kill() -> None:
    lines = journal_of((1.0, "start", "r1", "plan", 20), (1.5, "start", "r1", "plan", 30))
    assert judge(lines, killed_pid=10, killed_at=10.0).violations


def test_wrong_runs_names_lost_failed_and_wrong_runs() -> None:
    def state(status: wf.WorkflowStatus, content: str | None) -> SimpleNamespace:
        output = None if content is None else f'{{"role": "assistant", "content": "{content}"}}'
        return SimpleNamespace(runtime_status=status, serialized_output=output)

    tasks = {f"r{n}": f"task {n}" for n in range(4)}
    states = {
        "r0": state(wf.WorkflowStatus.COMPLETED, expected_answer("task 0")),
        "r1": state(wf.WorkflowStatus.COMPLETED, "answer[act[plan[task 0]]]"),
        "r2": state(wf.WorkflowStatus.FAILED, None),
    }
    lines = [Line(1.0, "done", i, step, 20) for i in ("r0", "r1", "r2", "r3") for step in STEPS]
    lines[-1] = Line(1.0, "done", "r9", "plan", 20)  # r3's answer never finished; r9 was never started
    assert wrong_runs(states, tasks, lines) == [
        "r1: answered 'answer[act[plan[task 0]]]', expected 'answer[act[plan[task 1]]]'",
        "r2: FAILED",
        "r3: no such workflow instance",
        "r3: answer never finished",
        "r9: journalled but never started",
    ]
