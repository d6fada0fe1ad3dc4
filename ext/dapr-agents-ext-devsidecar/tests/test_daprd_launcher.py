"""The launcher of Dapr's real runtime (``DaprControlPlane``, ``DaprdProcess``, ``--runtime daprd``).

These need the binaries that ``nox -s daprd`` builds, so they run with ``DAPR_TEST_SIDECAR=daprd``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dapr_agents.ext.devsidecar.testing import sidecar_mode, write_components

pytestmark = pytest.mark.skipif(
    sidecar_mode() != "daprd", reason="needs Dapr's runtime binaries (DAPR_TEST_SIDECAR=daprd)"
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_a_killed_parent_leaves_no_runtime_process_behind(tmp_path: Path) -> None:
    folder = write_components(tmp_path / "components", pubsub=None)
    script = textwrap.dedent(
        f"""
        import json, time
        from dapr_agents.ext.devsidecar.testing import DaprControlPlane, DaprdProcess
        control_plane = DaprControlPlane({str(tmp_path / "cp")!r}).start()
        daprd = DaprdProcess("orphan-check", control_plane, [{str(folder)!r}]).start()
        print(json.dumps([*control_plane.pids.values(), daprd.pid]), flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pids = json.loads(parent.stdout.readline())
    assert len(pids) == 3 and all(alive(pid) for pid in pids)
    parent.send_signal(signal.SIGKILL)  # no finally, no atexit: only the kernel can clean up
    parent.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if alive(pid)], (
        "placement, scheduler or daprd outlived a SIGKILLed parent"
    )


def test_runs_share_one_control_plane_until_uninit(tmp_path: Path) -> None:
    folder = write_components(tmp_path / "components", pubsub=None)
    env = {**os.environ, "DAPR_DEVSIDECAR_HOME": str(tmp_path / "home")}
    command = [sys.executable, "-m", "dapr_devsidecar"]
    app = [sys.executable, "-c", "import os; print(os.environ['DAPR_GRPC_PORT'])"]
    for _ in range(2):
        run = subprocess.run(
            [
                *command,
                "run",
                "--runtime",
                "daprd",
                "--app-id",
                "cp-check",
                "--resources-path",
                str(folder),
                "--",
                *app,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
    record = json.loads((tmp_path / "home" / "control-plane.json").read_text())
    pids = list(record["pids"].values())
    assert all(alive(pid) for pid in pids), "the control plane must outlive the runs (as dapr init's)"
    uninit = subprocess.run([*command, "uninit"], env=env, capture_output=True, text=True, timeout=60)
    assert "stopped" in uninit.stdout
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in pids)
    assert not (tmp_path / "home" / "control-plane.json").exists()


def test_enable_mtls_runs_daprd_with_sentry_until_uninit(tmp_path: Path) -> None:
    folder = write_components(tmp_path / "components", pubsub=None)
    home = tmp_path / "home"
    env = {**os.environ, "DAPR_DEVSIDECAR_HOME": str(home)}
    command = [sys.executable, "-m", "dapr_devsidecar"]
    app = [sys.executable, "-c", "import os; print(os.environ['DAPR_GRPC_PORT'])"]
    run = subprocess.run(
        [
            *command,
            "run",
            "--runtime",
            "daprd",
            "--enable-mtls",
            "--app-id",
            "mtls-check",
            "--resources-path",
            str(folder),
            "--",
            *app,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    record = json.loads((home / "mtls" / "control-plane.json").read_text())
    assert set(record["pids"]) == {"placement", "scheduler", "sentry"}
    assert (home / "mtls" / "sentry-certs" / "ca.crt").read_text().startswith("-----BEGIN CERTIFICATE-----")
    (log,) = (home / "mtls" / "logs").glob("daprd-mtls-check-*.log")
    assert "Security is initialized successfully" in log.read_text()
    assert not (home / "control-plane.json").exists()  # the plain control plane was not needed
    pids = list(record["pids"].values())
    uninit = subprocess.run([*command, "uninit"], env=env, capture_output=True, text=True, timeout=60)
    assert "stopped" in uninit.stdout
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in pids)
