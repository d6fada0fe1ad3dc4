"""The README quickstart, run as written under a sidecar for app ``my-app-id`` that reaches the
app on its port (a free one replaces the README's 8001)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from conftest import endpoint_of

from dapr_agents.ext.devsidecar.testing import free_port

README = Path(__file__).parent.parent / "README.md"


@pytest.mark.starts_sidecars
def test_quickstart_runs(
    components: Path,
    dapr_sidecar_factory: Any,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DAPR_DEVSIDECAR_HOME", str(tmp_path / "home"))  # this test's app registry
    code = re.search(r"## Quickstart\n\n```python\n(.*?)```", README.read_text(), re.S)
    assert code, "the README lost its quickstart block"
    port = free_port()
    sidecar = endpoint_of(dapr_sidecar_factory.start(components, app_id="my-app-id", app_port=port))
    with sidecar.sdk_configured():
        exec(compile(code.group(1).replace("8001", str(port)), str(README), "exec"), {})
    assert "order 1234: out for delivery" in capsys.readouterr().out
