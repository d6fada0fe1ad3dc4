"""Workflow versioning that stalls, as daprd 1.18 does (orchestrator/versioning.go), on the dev
sidecar and on real daprd: a worker without the version an instance started with, or whose
patches no longer match the history, gets the instance STALLED, its events kept; after a restart
of the sidecar, a worker that has the version again finishes it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf
import grpc
import pytest

from dapr_agents.ext.devsidecar.testing import SidecarEndpoint, write_components

pytestmark = pytest.mark.starts_sidecars

# CODE selects the worker's code: "v1" (version1 latest), "v2" (version2 only), "v1v2" (both,
# version2 latest), "patched" (is_patched('patch1')), "unpatched" (the same without the check).
WORKER = textwrap.dedent(
    """
    import os, sys, time
    import dapr.ext.workflow as wf

    journal, code = sys.argv[1], os.environ["CODE"]

    def note(line):
        with open(journal, "a") as f:
            f.write(line + "\\n")

    runtime = wf.WorkflowRuntime()

    @runtime.activity(name="note")
    def note_activity(ctx, line):
        note(line)

    def versioned(name, latest):
        @runtime.versioned_workflow(name="stall_workflow", version_name=name, is_latest=latest)
        def workflow(ctx):
            yield ctx.call_activity(note_activity, input=f"{name} received")
            yield ctx.wait_for_external_event(name="event")
            yield ctx.call_activity(note_activity, input=f"{name} finished")
            return name

    if code == "v1":
        versioned("version1", True)
    elif code == "v2":
        versioned("version2", True)
    elif code == "v1v2":
        versioned("version1", False)
        versioned("version2", True)
    else:
        @runtime.workflow(name="patching_workflow")
        def patching_workflow(ctx):
            if code == "patched" and ctx.is_patched("patch1"):
                pass
            yield ctx.wait_for_external_event(name="event")
            yield ctx.call_activity(note_activity, input=f"{code} finished")
            return code

    runtime.start()
    note(f"worker {code} ready")
    while True:
        time.sleep(1)
    """
)


class App:
    def __init__(self, tmp_path: Path, endpoint: SidecarEndpoint, journal: Path, code: str) -> None:
        script = tmp_path / "worker.py"
        script.write_text(WORKER)
        self.process = subprocess.Popen(
            [sys.executable, str(script), str(journal)], env={**os.environ, **endpoint.env(), "CODE": code}
        )
        wait_for_line(journal, f"worker {code} ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def journal_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def wait_for_line(path: Path, line: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while line not in journal_lines(path):
        assert time.monotonic() < deadline, (
            f"{line!r} not in the journal after {timeout}s: {journal_lines(path)}"
        )
        time.sleep(0.05)


def wait_for_runtime_status(
    client: wf.DaprWorkflowClient, instance: str, status: wf.WorkflowStatus, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        state = client.get_workflow_state(instance)
        if state is not None and state.runtime_status == status:
            return
        assert time.monotonic() < deadline, f"{instance} is {state and state.runtime_status}, not {status}"
        time.sleep(0.1)


@pytest.fixture
def sidecar(tmp_path: Path, dapr_sidecar_factory: Any) -> Any:
    components = write_components(tmp_path / "components", state_backend="sqlite")
    return dapr_sidecar_factory.start(components, app_id="versioning-app", subprocess=True)


def stall_then_resume(
    tmp_path: Path, sidecar: Any, workflow: str, first: str, second: str, last: str
) -> list[str]:
    """Start ``workflow`` under worker ``first``, raise its event under ``second`` (it must stall),
    restart the sidecar and finish under ``last``; returns the journal."""
    journal = tmp_path / "journal.txt"
    app = App(tmp_path, sidecar.endpoint, journal, first)
    try:
        with sidecar.endpoint.sdk_configured():
            client = wf.DaprWorkflowClient()
            instance = client.schedule_new_workflow(workflow, instance_id=f"{workflow}-1")
            if workflow == "stall_workflow":
                wait_for_line(journal, "version1 received")
            else:
                wait_for_runtime_status(client, instance, wf.WorkflowStatus.RUNNING)
                time.sleep(1)  # the first turn is committed once the workflow waits for its event
            app.stop()
            app = App(tmp_path, sidecar.endpoint, journal, second)
            client.raise_workflow_event(instance, event_name="event")
            wait_for_runtime_status(client, instance, wf.WorkflowStatus.STALLED)
            time.sleep(1)
            assert client.get_workflow_state(instance).runtime_status == wf.WorkflowStatus.STALLED
            # daprd refuses what needs the stalled workflow's actor, and a purge of the unfinished.
            held = f"failed to invoke method for workflow '{instance}': actor is stalled"
            for call, refusal in (
                (lambda: client.raise_workflow_event(instance, event_name="other"), held),
                (lambda: client.pause_workflow(instance), held),
                (lambda: client.terminate_workflow(instance), f"failed to submit termination request: {held}"),
                (lambda: client.purge_workflow(instance), "failed to purge workflow state: orchestration has not yet completed"),
            ):  # fmt: skip
                with pytest.raises(grpc.RpcError) as refused:
                    call()
                assert (refused.value.code(), refused.value.details()) == (grpc.StatusCode.UNKNOWN, refusal)
            app.stop()
            sidecar.kill()
            sidecar.start()  # the same ports, the same store
            app = App(tmp_path, sidecar.endpoint, journal, last)
            client = wf.DaprWorkflowClient()
            state = client.wait_for_workflow_completion(instance, timeout_in_seconds=60)
        assert state is not None
        assert state.runtime_status == wf.WorkflowStatus.COMPLETED
        return journal_lines(journal)
    finally:
        app.stop()
        sidecar.stop()


def test_an_instance_whose_version_the_worker_lacks_stalls_until_a_worker_has_it(
    tmp_path: Path, sidecar: Any
) -> None:
    lines = stall_then_resume(tmp_path, sidecar, "stall_workflow", "v1", "v2", "v1v2")
    # The event raised while stalled was kept, and version1 (the instance's) finished it.
    assert lines.count("version1 finished") == 1, lines
    assert "version2 received" not in lines and "version2 finished" not in lines, lines


def test_an_instance_whose_patches_no_longer_match_stalls_until_they_do(tmp_path: Path, sidecar: Any) -> None:
    lines = stall_then_resume(tmp_path, sidecar, "patching_workflow", "patched", "unpatched", "patched")
    assert lines.count("patched finished") == 1, lines
    assert "unpatched finished" not in lines, lines
