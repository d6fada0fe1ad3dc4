"""The README's quickstart runs as written, under ``dapr-devsidecar run`` (as under ``dapr run``)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dapr_agents.ext.devsidecar.testing import free_port, write_components

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.devsidecar_only  # runs the quickstart under its own dapr-devsidecar
async def test_quickstart_runs_as_written(tmp_path: Path) -> None:
    section = README.read_text(encoding="utf-8").split("## Quickstart", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "the Quickstart section has no python block"
    (tmp_path / "quickstart.py").write_text(code.group(1))
    components = write_components(tmp_path / "components", state_backend="sqlite")
    command = [
        sys.executable, "-m", "dapr_devsidecar", "run", "--app-id", "quickstart",
        "--dapr-grpc-port", str(free_port()), "--dapr-http-port", str(free_port()),
        "--resources-path", str(components), "--log-level", "warn",
        "--", sys.executable, "quickstart.py",
    ]  # fmt: skip
    result = await asyncio.to_thread(
        subprocess.run, command, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "[{'role': 'user', 'content': 'Hello'}]" in result.stdout.splitlines()
