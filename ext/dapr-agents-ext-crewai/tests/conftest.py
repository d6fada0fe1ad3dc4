"""Offline, deterministic CrewAI (see ../shared notes): local cost map, telemetry off, storage in
a temporary folder. Set before crewai is imported by any test module."""

from __future__ import annotations

import os
import tempfile
import uuid

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
os.environ.setdefault("CREWAI_STORAGE_DIR", tempfile.mkdtemp(prefix="crewai-storage-"))


@pytest.fixture
def unique() -> str:
    return f"t{uuid.uuid4().hex[:10]}"
