"""The README's quickstart runs as written under ``dapr-devsidecar run``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dapr_agents.ext.devsidecar.testing import write_components

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.devsidecar_only  # runs the quickstart under its own dapr-devsidecar
def test_quickstart_runs_as_written(tmp_path: Path) -> None:
    section = README.read_text(encoding="utf-8").split("## Quickstart", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "the Quickstart section has no python block"
    script = tmp_path / "quickstart.py"
    script.write_text(code.group(1))
    components = write_components(tmp_path / "components", state_backend="sqlite")
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "CREWAI_DISABLE_TELEMETRY": "true",
        "CREWAI_TRACING_ENABLED": "false",
        "OTEL_SDK_DISABLED": "true",
        "CREWAI_STORAGE_DIR": str(tmp_path / "crewai"),
    }
    command = [
        sys.executable, "-m", "dapr_devsidecar", "run", "--app-id", "quickstart",
        "--resources-path", str(components), "--", sys.executable, str(script),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "AI is moving fast." in result.stdout.splitlines()
