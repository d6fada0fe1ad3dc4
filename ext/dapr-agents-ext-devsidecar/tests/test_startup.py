"""The ``dapr-devsidecar`` command does not pay for dapr-agents' ``__init__``.

With dapr-agents installed, ``dapr_agents`` is a regular package that shares its folder with this
distribution, and its ``__init__`` costs 7-10 s. The tests rebuild that layout in a temporary
folder: a ``dapr_agents/__init__.py`` that records that it ran, with this package linked under
``dapr_agents/ext/devsidecar``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import dapr_agents.ext.devsidecar as devsidecar


@pytest.fixture
def regular_dapr_agents(tmp_path: Path) -> tuple[Path, Path]:
    """A site folder where ``dapr_agents`` is a regular package, as with dapr-agents installed."""
    site = tmp_path / "site"
    package = site / "dapr_agents"
    (package / "ext").mkdir(parents=True)
    marker = tmp_path / "init-ran"
    (package / "__init__.py").write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            Path({str(marker)!r}).write_text("ran")
            DURABLE = "the real package's attribute"
            """
        )
    )
    (package / "ext" / "devsidecar").symlink_to(Path(devsidecar.__file__).parent)
    return site, marker


def _python(site: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_the_command_starts_without_running_dapr_agents_init(regular_dapr_agents):
    site, marker = regular_dapr_agents
    result = _python(
        site,
        "import sys, dapr_devsidecar; sys.argv[0] = 'dapr-devsidecar'; sys.exit(dapr_devsidecar.main())",
        "run",
        "--help",
    )
    assert result.returncode == 0, result.stderr
    assert "--runtime" in result.stdout
    assert not marker.exists(), "dapr_agents/__init__.py ran: the command paid for dapr-agents"


def test_the_real_init_runs_when_code_in_the_process_uses_dapr_agents(regular_dapr_agents):
    site, marker = regular_dapr_agents
    result = _python(
        site,
        "import dapr_devsidecar; dapr_devsidecar._defer_dapr_agents_init();"
        "import dapr_agents.ext.devsidecar, dapr_agents; print(dapr_agents.DURABLE)",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "the real package's attribute"
    assert marker.read_text() == "ran"


def test_an_unknown_attribute_is_still_an_attribute_error(regular_dapr_agents):
    site, _marker = regular_dapr_agents
    result = _python(
        site,
        "import dapr_devsidecar; dapr_devsidecar._defer_dapr_agents_init(); import dapr_agents; dapr_agents.nothing",
    )
    assert "AttributeError: module 'dapr_agents' has no attribute 'nothing'" in result.stderr
