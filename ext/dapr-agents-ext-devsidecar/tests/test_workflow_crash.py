"""Crash scenarios with real processes and SIGKILL: the sidecar, then the app.

The app is a separate Python process running an unmodified ``WorkflowRuntime``; every activity
appends a line to a journal file, so the test can count how often each one really ran. With
``DAPR_TEST_SIDECAR=daprd`` the sidecar that is killed and restarted is a real daprd (its
placement and scheduler stay up, as they would on a machine or in a cluster).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf
import pytest

from dapr_agents.ext.devsidecar.testing import SidecarEndpoint, free_port, write_components

pytestmark = pytest.mark.starts_sidecars

WORKER = textwrap.dedent(
    """
    import os, sys, time
    from datetime import timedelta
    import dapr.ext.workflow as wf

    journal = sys.argv[1]
    slow_seconds = float(os.environ.get("SLOW_SECONDS", "0"))

    def note(line):
        with open(journal, "a") as f:
            f.write(line + "\\n")
            f.flush()
            os.fsync(f.fileno())

    runtime = wf.WorkflowRuntime()

    @runtime.activity(name="step")
    def step(ctx, name):
        note(f"step {name}")
        return name

    @runtime.activity(name="slow")
    def slow(ctx, _):
        note("slow start")
        time.sleep(slow_seconds)
        note("slow end")
        return "slow done"

    @runtime.workflow(name="chain")
    def chain(ctx, pause):
        first = yield ctx.call_activity(step, input="1")
        ctx.set_custom_status("timer")  # stored with step 1's result, in the same commit
        yield ctx.create_timer(ctx.current_utc_datetime + timedelta(seconds=pause))
        second = yield ctx.call_activity(step, input="2")
        third = yield ctx.call_activity(step, input="3")
        return [first, second, third]

    @runtime.workflow(name="with_slow")
    def with_slow(ctx, _):
        first = yield ctx.call_activity(step, input="a")
        second = yield ctx.call_activity(slow)
        return [first, second]

    runtime.start()
    note("worker ready")
    while True:
        time.sleep(1)
    """
)


def journal_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def wait_for_line(path: Path, line: str, timeout: float = 30, count: int = 1) -> None:
    deadline = time.monotonic() + timeout
    while journal_lines(path).count(line) < count:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{line!r} x{count} not in the journal after {timeout}s: {journal_lines(path)}"
            )
        time.sleep(0.05)


def wait_for_status(client: wf.DaprWorkflowClient, instance: str, status: str, timeout: float = 30) -> None:
    """Until the workflow's custom status contains ``status`` (stored with the turn's results)."""
    deadline = time.monotonic() + timeout
    while status not in (client.get_workflow_state(instance).serialized_custom_status or ""):
        assert time.monotonic() < deadline, f"custom status {status!r} never stored for {instance}"
        time.sleep(0.05)


class App:
    """The worker process."""

    def __init__(self, tmp_path: Path, endpoint: SidecarEndpoint, journal: Path, **env: str) -> None:
        script = tmp_path / "worker.py"
        script.write_text(WORKER)
        self.process = subprocess.Popen(
            [sys.executable, str(script), str(journal)],
            env={**os.environ, **endpoint.env(), **env},
        )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def sqlite_components(tmp_path: Path) -> Path:
    return write_components(tmp_path / "components", state_backend="sqlite")


def sidecar_process(factory: Any, components: Path, **ports: int) -> Any:
    """A dev sidecar process, or a real daprd: either can be SIGKILLed and started again."""
    return factory.start(components, app_id="crash-app", subprocess=True, **ports)


def test_workflows_resume_after_the_sidecar_is_killed_during_a_timer(
    tmp_path: Path, sqlite_components: Path, dapr_sidecar_factory: Any
) -> None:
    journal = tmp_path / "journal.txt"
    grpc_port, http_port = free_port(), free_port()
    sidecar = sidecar_process(
        dapr_sidecar_factory, sqlite_components, grpc_port=grpc_port, http_port=http_port
    )
    app = App(tmp_path, sidecar.endpoint, journal)
    try:
        wait_for_line(journal, "worker ready")
        with sidecar.endpoint.sdk_configured():
            client = wf.DaprWorkflowClient()
            instance = client.schedule_new_workflow("chain", input=3, instance_id="chain-1")
            wait_for_line(journal, "step 1")
            # The journal line only says the activity ran; kill once its result is stored.
            wait_for_status(client, instance, "timer")
            sidecar.kill()  # the timer is pending
            sidecar.start()  # the same ports, the same store
            client = wf.DaprWorkflowClient()
            state = client.wait_for_workflow_completion(instance, timeout_in_seconds=60)
        assert state is not None
        assert state.runtime_status == wf.WorkflowStatus.COMPLETED
        assert state.serialized_output == '["1", "2", "3"]'
        lines = journal_lines(journal)
        assert [lines.count(f"step {n}") for n in "123"] == [1, 1, 1], lines
    finally:
        app.stop()
        sidecar.stop()


def test_an_activity_running_when_the_app_is_killed_is_redelivered(
    tmp_path: Path, sqlite_components: Path, dapr_sidecar_factory: Any
) -> None:
    journal = tmp_path / "journal.txt"
    sidecar = sidecar_process(dapr_sidecar_factory, sqlite_components)
    app = App(tmp_path, sidecar.endpoint, journal, SLOW_SECONDS="60")
    try:
        wait_for_line(journal, "worker ready")
        with sidecar.endpoint.sdk_configured():
            client = wf.DaprWorkflowClient()
            instance = client.schedule_new_workflow("with_slow", instance_id="slow-1")
            wait_for_line(journal, "slow start")
            app.kill()  # mid-activity
            app = App(tmp_path, sidecar.endpoint, journal, SLOW_SECONDS="0")
            state = client.wait_for_workflow_completion(instance, timeout_in_seconds=60)
        assert state is not None
        assert state.runtime_status == wf.WorkflowStatus.COMPLETED
        lines = journal_lines(journal)
        assert lines.count("step a") == 1, lines  # completed before the crash: never run again
        assert lines.count("slow start") == 2, lines  # at least once: it ran again
        assert lines.count("slow end") == 1, lines
    finally:
        app.stop()
        sidecar.stop()


def test_work_that_arrives_while_the_app_is_down_is_delivered_when_it_returns(
    tmp_path: Path, sqlite_components: Path, dapr_sidecar_factory: Any
) -> None:
    journal = tmp_path / "journal.txt"
    sidecar = sidecar_process(dapr_sidecar_factory, sqlite_components)
    app = App(tmp_path, sidecar.endpoint, journal)
    try:
        wait_for_line(journal, "worker ready")
        with sidecar.endpoint.sdk_configured():
            client = wf.DaprWorkflowClient()
            instance = client.schedule_new_workflow("chain", input=1, instance_id="chain-down")
            wait_for_line(journal, "step 1")
            # Kill once step 1's result is stored: killed earlier, step 1 may rightly run again
            # (at least once), which is not what this test is about.
            wait_for_status(client, instance, "timer")
            app.kill()
            time.sleep(1.5)  # the timer fires while no worker is connected
            app = App(tmp_path, sidecar.endpoint, journal)
            state: Any = client.wait_for_workflow_completion(instance, timeout_in_seconds=60)
        assert state.runtime_status == wf.WorkflowStatus.COMPLETED
        lines = journal_lines(journal)
        assert [lines.count(f"step {n}") for n in "123"] == [1, 1, 1], lines
    finally:
        app.stop()
        sidecar.stop()


@pytest.mark.devsidecar_only  # the dev sidecar's own store layout
def test_corrupt_workflow_state_stops_the_sidecar_with_the_instance_and_key(
    tmp_path: Path, sqlite_components: Path
) -> None:
    import sqlite3

    from dapr_agents.ext.devsidecar import DevSidecar

    def workflow(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
        yield ctx.wait_for_external_event("never")

    with (
        DevSidecar(app_id="corrupt-app", resources_paths=[sqlite_components]) as sidecar,
        sidecar.endpoint().sdk_configured(),
    ):
        runtime = wf.WorkflowRuntime()
        runtime.register_workflow(workflow, name="waits")
        runtime.start()
        try:
            client = wf.DaprWorkflowClient()
            client.schedule_new_workflow("waits", instance_id="broken-1")
            client.wait_for_workflow_start("broken-1", timeout_in_seconds=30)
        finally:
            runtime.shutdown()
    database = sqlite3.connect(sqlite_components / "state.db")
    key = "corrupt-app||dapr.internal.default.corrupt-app.workflow||broken-1||metadata"
    assert database.execute("UPDATE state SET value = ? WHERE key = ?", ("bm90IGpzb24=", key)).rowcount == 1
    database.commit()
    database.close()
    with pytest.raises(Exception) as failure:
        DevSidecar(app_id="corrupt-app", resources_paths=[sqlite_components]).start()
    assert "broken-1" in str(failure.value)
    assert key in str(failure.value)
