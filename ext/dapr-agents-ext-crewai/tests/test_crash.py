"""SIGKILL the app (a real process) in the middle of a durable crew run, start it again, and check
what ran twice: nothing that had completed (task 1's LLM calls, a journaled tool call)."""

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

from dapr_agents.ext.devsidecar.testing import SidecarProcess, write_components

pytestmark = pytest.mark.devsidecar_only

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
    sidecar: SidecarProcess, journal: Path, instance: str, result: Path, pause: str
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(APP), str(journal), instance, str(result), pause],
        env={**os.environ, **sidecar.endpoint.env()},
    )


@pytest.fixture(params=["sqlite", "redis"])
def sidecar(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    redis_address = None
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        server.flushall()
        redis_address = server.address
    folder = write_components(
        tmp_path / "components", state_backend=request.param, redis_address=redis_address
    )
    process = SidecarProcess(app_id="crash-crew", resources_paths=[str(folder)]).start()
    yield process
    process.stop()


@pytest.mark.parametrize("pause", ["before-write", "after-publish"])
def test_a_killed_app_resumes_without_repeating_completed_work(
    sidecar: SidecarProcess, tmp_path: Path, pause: str
) -> None:
    reference_journal = tmp_path / "reference.txt"
    reference = tmp_path / "reference.json"
    app = run_app(sidecar, reference_journal, "reference", reference, "none")
    assert app.wait(120) == 0

    journal = tmp_path / "journal.txt"
    result = tmp_path / "result.json"
    Path(f"{journal}.pause").touch()
    app = run_app(sidecar, journal, "crashed", result, pause)
    try:
        wait_for(journal, f"paused {pause}")
        app.send_signal(signal.SIGKILL)
        app.wait()
    finally:
        if app.poll() is None:
            app.kill()
    Path(f"{journal}.pause").unlink()
    before_restart = lines(journal)
    app = run_app(sidecar, journal, "crashed", result, pause)
    assert app.wait(120) == 0

    after = lines(journal)
    restarted = after[len(before_restart) :]
    # Task 1 (two researcher LLM calls, one lookup) ran before the kill and never again.
    assert after.count("tool lookup Paris") == 1, after
    assert not [line for line in restarted if line.startswith("llm researcher")], restarted
    # The publish tool ran once even when the kill came after it, mid-task 2.
    assert after.count("tool publish Paris, 2.1M") == 1, after
    assert json.loads(result.read_text()) == json.loads(reference.read_text())
