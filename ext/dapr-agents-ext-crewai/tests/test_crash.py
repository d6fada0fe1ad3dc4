"""SIGKILL the app (a real process) in the middle of a durable crew run, start it again, and check
what ran twice: nothing that had completed (task 1's LLM calls, a journaled tool call).

Only the app is killed, so with ``DAPR_TEST_SIDECAR=external`` the external daprd serves it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dapr_agents.ext.devsidecar.testing import (
    SidecarEndpoint,
    SidecarProcess,
    external_endpoint,
    external_mode,
    write_components,
)

APP = Path(__file__).with_name("crash_app.py")


def lines(journal: Path) -> list[str]:
    return journal.read_text().splitlines() if journal.exists() else []


def wait_for(journal: Path, line: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while line not in lines(journal):
        if time.monotonic() > deadline:
            raise AssertionError(f"{line!r} not in the journal after {timeout}s: {lines(journal)}")
        time.sleep(0.05)


def run_app(
    sidecar: SidecarEndpoint, journal: Path, instance: str, result: Path, pause: str
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(APP), str(journal), instance, str(result), pause],
        env={**os.environ, **sidecar.env()},
    )


@pytest.fixture(params=["external"] if external_mode() else ["sqlite", "redis"])
def sidecar(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "external":
        yield external_endpoint()
        return
    redis_address = None
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        server.flushall()
        redis_address = server.address
    folder = write_components(
        tmp_path / "components", state_backend=request.param, redis_address=redis_address
    )
    process = SidecarProcess(app_id="crash-crew", resources_paths=[str(folder)]).start()
    yield process.endpoint
    process.stop()


@pytest.mark.parametrize("pause", ["before-write", "after-publish"])
def test_a_killed_app_resumes_without_repeating_completed_work(
    sidecar: SidecarEndpoint, tmp_path: Path, pause: str, unique: str
) -> None:
    # Unique instance ids: an external daprd keeps every workflow across tests and runs.
    reference_journal = tmp_path / "reference.txt"
    reference = tmp_path / "reference.json"
    app = run_app(sidecar, reference_journal, f"reference-{unique}", reference, "none")
    assert app.wait(120) == 0

    journal = tmp_path / "journal.txt"
    result = tmp_path / "result.json"
    Path(f"{journal}.pause").touch()
    app = run_app(sidecar, journal, f"crashed-{unique}", result, pause)
    try:
        wait_for(journal, f"paused {pause}")
        app.send_signal(signal.SIGKILL)
        app.wait()
    finally:
        if app.poll() is None:
            app.kill()
    Path(f"{journal}.pause").unlink()
    before_restart = lines(journal)
    app = run_app(sidecar, journal, f"crashed-{unique}", result, pause)
    assert app.wait(120) == 0

    after = lines(journal)
    restarted = after[len(before_restart) :]
    # Task 1 (two researcher LLM calls, one lookup) ran before the kill and never again.
    assert after.count("tool lookup Paris") == 1, after
    assert not [line for line in restarted if line.startswith("llm researcher")], restarted
    # The publish tool ran once even when the kill came after it, mid-task 2.
    assert after.count("tool publish Paris, 2.1M") == 1, after
    assert json.loads(result.read_text()) == json.loads(reference.read_text())
