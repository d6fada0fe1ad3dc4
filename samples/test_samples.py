"""Run every sample end to end with ``dapr-devsidecar run`` and check the lines it must print.

Each sample folder's README lists its expected output in a block after "Expected output:"; the
test runs the sample the way the README tells users to and asserts every one of those lines.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted(p.parent for p in Path(__file__).parent.glob("*/app.py"))


def expected_lines(readme: Path) -> list[str]:
    match = re.search(r"Expected output:\s*```[^\n]*\n(.*?)```", readme.read_text(encoding="utf-8"), re.S)
    assert match, f"{readme} has no 'Expected output:' block"
    return [line for line in match.group(1).splitlines() if line.strip()]


DEVSIDECAR = shutil.which("dapr-devsidecar") or str(Path(sys.executable).parent / "dapr-devsidecar")
# DAPR_DEVSIDECAR_RUNTIME=daprd: 'dapr-devsidecar run' runs each sample on Dapr's real runtime
# ('dapr run' without the Dapr CLI); each test then gets a placement and scheduler of its own, so
# that two tests of one app id are not taken for replicas of one app.
REAL_DAPRD = os.environ.get("DAPR_DEVSIDECAR_RUNTIME") == "daprd"


@pytest.fixture(autouse=True)
def _own_control_plane(tmp_path: Path) -> Iterator[None]:
    if not REAL_DAPRD:
        yield
        return
    home = tmp_path / "dapr-control-plane"
    try:
        yield
    finally:
        subprocess.run(
            [DEVSIDECAR, "uninit"], env={**os.environ, "DAPR_DEVSIDECAR_HOME": str(home)}, capture_output=True
        )


def run_sample(sample: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a sample the way its README does: under ``dapr-devsidecar run`` with components/."""
    command = [
        DEVSIDECAR,
        "run",
        "--app-id",
        sample.name,
        "--resources-path",
        str(ROOT / "components"),
        "--",
        sys.executable,
        str(sample / "app.py"),
        *args,
    ]
    # Offline by design: samples switch to a real model when OPENAI_API_KEY is set.
    env = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"}
    if REAL_DAPRD:
        env["DAPR_DEVSIDECAR_HOME"] = str(cwd / "dapr-control-plane")
    # From a scratch folder: components/ use relative paths (the SQLite files land there).
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def described(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit code {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr[-6000:]}"


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_sample_prints_its_expected_output(sample: Path, tmp_path: Path) -> None:
    result = run_sample(sample, tmp_path)
    assert result.returncode == 0, f"{sample.name}: {described(result)}"
    printed = result.stdout.splitlines()
    for line in expected_lines(sample / "README.md"):
        assert line in printed, f"{sample.name} did not print {line!r}: {described(result)}"


def test_flagship_killed_midway_finishes_without_repeating_a_step(tmp_path: Path) -> None:
    """The flagship's README promise: SIGKILL in the middle of the crew, start again, and the run
    finishes where it stopped; every step line (one per model turn, node, task, publish) appears
    once over both starts, and the second start prints only what was left."""
    flagship = ROOT / "samples" / "flagship"
    first = run_sample(flagship, tmp_path, "--crash")
    assert first.returncode == 137, f"--crash should end in SIGKILL: {described(first)}"
    second = run_sample(flagship, tmp_path)
    assert second.returncode == 0, f"the second start did not finish the run: {described(second)}"

    def steps(output: str) -> list[str]:
        return [line for line in output.splitlines() if not line.startswith(("[app]", "[asker]"))]

    before, after = steps(first.stdout), steps(second.stdout)
    assert "[reviewers] CrewAI task 'fact_check' done" in before
    assert "[reviewers] CrewAI task 'polish' done" not in before
    expected_steps = steps("\n".join(expected_lines(flagship / "README.md")))
    assert sorted(before + after) == sorted(expected_steps), (
        f"steps repeated or missing over the two starts:\n{described(first)}\n{described(second)}"
    )
    assert after[0] == "[reviewers] CrewAI task 'polish' done", described(second)
    final = [
        line for line in expected_lines(flagship / "README.md") if line.startswith("[app] final answer:")
    ]
    assert final[0] in second.stdout.splitlines()

    third = run_sample(flagship, tmp_path)  # the finished run is found, no model is called
    assert third.returncode == 0 and steps(third.stdout) == [], described(third)
    assert final[0] in third.stdout.splitlines()
