"""SIGKILL the app (a real process), then the sidecar, in the middle of a trigger's life; start
them again on the same SQLite store and count agent runs at the scripted LLM: exactly one per
pub/sub event (redeliveries included), and every schedule fire time once, none missed.

One app carries both triggers so the suite pays for three process starts, not six
(``import dapr_agents`` takes seconds)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dapr_agents.ext.devsidecar import ScriptedChatServer
from dapr_agents.ext.devsidecar.testing import SidecarProcess
from tests.conftest import task_requests, wait_until, write_agent_components

# A dev sidecar process, or a real daprd with DAPR_TEST_SIDECAR=daprd: both are SIGKILLed.
pytestmark = pytest.mark.starts_sidecars

APP = Path(__file__).with_name("trigger_app.py")
ROOT = Path(__file__).resolve().parent.parent


class App:
    def __init__(self, sidecar: SidecarProcess, llm: ScriptedChatServer, tmp: Path) -> None:
        self.sidecar, self.llm, self.tmp = sidecar, llm, tmp
        self.name = f"c{uuid.uuid4().hex[:8]}"
        self.tag = f"k{uuid.uuid4().hex[:8]}"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> App:
        self.starts += 1
        ready = self.tmp / f"ready-{self.starts}"
        log = self.tmp / f"app-{self.starts}.log"
        env = {
            **os.environ,
            **self.sidecar.endpoint.env(),
            "LLM_URL": self.llm.base_url,
            "PYTHONPATH": str(ROOT),
        }
        with open(log, "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, str(APP), self.name, self.tag, str(ready)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        process = self.process
        wait_until(lambda: ready.exists() or process.poll() is not None, 90, "the app to host its agent")
        assert process.poll() is None, log.read_text()[-3000:]
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def runs(self, label: str) -> int:
        return len(task_requests(self.llm, f"{self.tag} {label}"))

    def fires(self) -> list[str]:
        return [text.rsplit(" ", 1)[1] for text in task_requests(self.llm, f"{self.tag} tick")]

    def publish(self, label: str) -> None:
        from dapr.clients import DaprClient

        with self.sidecar.endpoint.sdk_configured(), DaprClient() as client:
            client.publish_event(
                "agent-pubsub",
                "orders",
                f"{self.tag} {label}",
                data_content_type="text/plain",
                publish_metadata={"cloudevent.id": label},
            )

    def publish_until_run(self, label: str, timeout: float = 90) -> None:
        """Publish one event (same id every time) until its run reached the LLM: after a restart
        the subscription may not be back yet, and pubsub.in-memory drops unheard events."""
        deadline = time.monotonic() + timeout
        while not self.runs(label):
            if time.monotonic() > deadline:
                raise AssertionError(f"no run for {label} after {timeout}s")
            self.publish(label)
            end = time.monotonic() + 1.5
            while not self.runs(label) and time.monotonic() < end:
                time.sleep(0.05)

    def between_runs(self) -> None:
        """Wait for a fresh fire, then for its run to end: a kill now interrupts no run (an
        interrupted run's LLM activity would run again and look like a second fire)."""
        seen = len(self.fires())
        wait_until(lambda: len(self.fires()) > seen, 30, "the next fire")
        time.sleep(0.7)


def gaps(times: list[str]) -> set[timedelta]:
    """The spacings between consecutive fires (every 2 s) that are not 2 s."""
    parsed = sorted(datetime.strptime(t, "%H:%M:%S") for t in times)
    return {b - a for a, b in itertools.pairwise(parsed)} - {timedelta(seconds=2)}


@pytest.fixture
def sidecar(tmp_path: Path, dapr_sidecar_factory: Any) -> Iterator[SidecarProcess]:
    folder = write_agent_components(tmp_path / "components", sqlite_path=tmp_path / "state.db")
    process = dapr_sidecar_factory.start(folder, app_id=f"crash{uuid.uuid4().hex[:6]}", subprocess=True)
    yield process
    process.kill()


def test_app_and_sidecar_kills_neither_double_nor_lose_runs(
    sidecar: SidecarProcess, llm: ScriptedChatServer, tmp_path: Path
) -> None:
    app = App(sidecar, llm, tmp_path).start()
    try:
        app.publish_until_run("evt-1")
        app.between_runs()
        app.kill()
        time.sleep(2.5)  # a fire time passes while the app is down
        app.start()
        app.publish("evt-1")  # a redelivery after the restart
        app.publish_until_run("evt-2")
        assert (app.runs("evt-1"), app.runs("evt-2")) == (1, 1)

        app.between_runs()
        sidecar.kill()  # the app keeps running; its trigger must resubscribe
        time.sleep(1)
        sidecar.start()
        app.publish_until_run("evt-3")
        app.publish("evt-1")
        app.publish("evt-2")
        app.publish_until_run("evt-4")
        seen = len(app.fires())
        # A fire due while the sidecar was down may run late (on daprd its reminder and the
        # actor placement come back first); late is allowed, lost is not: wait for the gaps to fill.
        wait_until(
            lambda: len(app.fires()) >= seen + 2 and not gaps(app.fires()),
            60,
            "fires after the sidecar restart",
        )
    finally:
        app.kill()
    assert [app.runs(f"evt-{i}") for i in range(1, 5)] == [1, 1, 1, 1]
    times = app.fires()
    assert len(times) == len(set(times)), f"a fire ran twice: {times}"
    assert not gaps(times), f"a fire was missed: {times}"
