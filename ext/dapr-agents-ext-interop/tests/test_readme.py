"""The README quickstart, run as written (under the in-process sidecar this test starts)."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import App

README = Path(__file__).parent.parent / "README.md"


def test_quickstart_runs(app: App, capsys: object) -> None:
    code = re.search(r"## Quickstart\n\n```python\n(.*?)```", README.read_text(), re.S)
    assert code, "the README lost its quickstart block"
    # The fixture points the SDK at the test's sidecar, as `dapr run` does through the environment.
    exec(compile(code.group(1), str(README), "exec"), {})
    assert "echo hello" in capsys.readouterr().out  # type: ignore[attr-defined]
    from dapr_agents.ext.interop import AgentRegistry

    [record] = AgentRegistry().list_agents()
    assert record.name == "Echo Agent" and record.app_id == "my-app-id"
