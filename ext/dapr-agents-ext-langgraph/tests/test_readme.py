"""The README's quickstart runs as written, under ``dapr-devsidecar run`` (as under ``dapr run``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from dapr_agents.ext.devsidecar.testing import write_components

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.devsidecar_only
def test_quickstart_runs_as_written(backend: str, tmp_path: Path) -> None:
    if backend != "sqlite":
        pytest.skip("runs once")
    section = README.read_text(encoding="utf-8").split("## Quickstart", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "the Quickstart section has no python block"
    (tmp_path / "app.py").write_text(code.group(1))
    folder = write_components(tmp_path / "components", state_backend="sqlite", pubsub=None)
    command = [sys.executable, "-m", "dapr_devsidecar", "run", "--app-id", "quickstart"]
    command += ["--resources-path", str(folder), "--", sys.executable, "app.py"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "['turn 1', 'turn 2']" in result.stdout.splitlines()
