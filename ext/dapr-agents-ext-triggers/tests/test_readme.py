"""The README's quickstart runs as written under ``dapr-devsidecar run``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_agent_components

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.devsidecar_only
def test_quickstart_runs_as_written(tmp_path: Path) -> None:
    section = README.read_text(encoding="utf-8").split("## Quickstart", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "the Quickstart section has no python block"
    script = tmp_path / "app.py"
    script.write_text(code.group(1))
    components = write_agent_components(tmp_path / "components")
    command = [
        sys.executable, "-m", "dapr_devsidecar", "run", "--app-id", "packer",
        "--resources-path", str(components), "--", sys.executable, str(script),
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Order 42 is packed." in result.stdout.splitlines()
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
