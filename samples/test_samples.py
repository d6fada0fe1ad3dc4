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
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted(p.parent for p in Path(__file__).parent.glob("*/app.py"))


def expected_lines(readme: Path) -> list[str]:
    match = re.search(r"Expected output:\s*```[^\n]*\n(.*?)```", readme.read_text(encoding="utf-8"), re.S)
    assert match, f"{readme} has no 'Expected output:' block"
    return [line for line in match.group(1).splitlines() if line.strip()]


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_sample_prints_its_expected_output(sample: Path, tmp_path: Path) -> None:
    devsidecar = shutil.which("dapr-devsidecar") or str(Path(sys.executable).parent / "dapr-devsidecar")
    command = [
        devsidecar,
        "run",
        "--app-id",
        sample.name,
        "--resources-path",
        str(ROOT / "components"),
        "--",
        sys.executable,
        str(sample / "app.py"),
    ]
    # Run from a scratch folder: components/ use relative paths (the SQLite file lands here).
    # Offline by design: samples switch to a real model when OPENAI_API_KEY is set.
    env = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"}
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, (
        f"{sample.name} exited with {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    printed = result.stdout.splitlines()
    for line in expected_lines(sample / "README.md"):
        assert line in printed, (
            f"{sample.name} did not print {line!r}; it printed:\n{result.stdout}\n{result.stderr}"
        )
