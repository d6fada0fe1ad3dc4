"""SIGKILL the app hosting a graph in the middle of an agent call, start it again: the call
completes, and the superstep that had completed before the kill does not run again (on a dev
sidecar process, or a real daprd with ``DAPR_TEST_SIDECAR=daprd``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dapr_agents.ext.devsidecar.testing import SidecarEndpoint, write_components
from dapr_agents.ext.interop import AgentClient

pytestmark = pytest.mark.starts_sidecars

APP = Path(__file__).with_name("host_app.py")


def lines(journal: Path) -> list[str]:
    return journal.read_text().splitlines() if journal.exists() else []


def start_app(endpoint: SidecarEndpoint, journal: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(APP), str(journal)], env={**os.environ, **endpoint.env()})


def test_a_killed_host_resumes_the_graph_after_its_last_superstep(
    tmp_path: Path, dapr_sidecar_factory: Any
) -> None:
    folder = write_components(tmp_path / "components", state_backend="sqlite", pubsub=None)
    journal = tmp_path / "journal.txt"
    Path(f"{journal}.block").touch()
    sidecar = dapr_sidecar_factory.start(folder, app_id="lg-host", subprocess=True)
    app = start_app(sidecar.endpoint, journal)
    try:
        with sidecar.endpoint.sdk_configured():
            client = AgentClient()
            instance = client.start("reporter", "Q3 sales", framework="langgraph", idempotency_key="report-1")
            deadline = time.monotonic() + 60
            while "blocked" not in lines(journal):
                assert time.monotonic() < deadline, lines(journal)
                time.sleep(0.05)
            app.send_signal(signal.SIGKILL)
            app.wait(10)
            Path(f"{journal}.block").unlink()
            app = start_app(sidecar.endpoint, journal)
            # The same key re-attaches to the running call, which completes after the restart.
            answer = client.call(
                "reporter", "Q3 sales", framework="langgraph", idempotency_key="report-1", timeout=90
            )
    finally:
        app.kill()
        app.wait(10)
    assert answer.content == "report on Q3 sales"
    assert lines(journal) == ["first", "second", "blocked", "second"]
    assert instance.startswith("langgraph.reporter-")
