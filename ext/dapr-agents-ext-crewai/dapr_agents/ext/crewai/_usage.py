"""Token usage attributed to the task that caused it, even when tasks share one LLM instance.

CrewAI counts usage per LLM instance (``BaseLLM._token_usage``, cumulative). A task activity
that snapshots the counters before and after would also count what a parallel task running on
the same instance used meanwhile. Instead, every increment (``_track_token_usage_internal``,
through which every CrewAI LLM reports usage) is also added to the collector of the context that
made the call: the activity sets a collector and reads, per LLM instance, exactly what its own
calls used. Outside a collector nothing changes.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from crewai.llms.base_llm import BaseLLM

from ._serde import add_usage, usage_delta

_collector: contextvars.ContextVar[dict[int, dict[str, int]] | None] = contextvars.ContextVar(
    "dapr_crewai_usage", default=None
)
_lock = threading.Lock()
_installed = False


def install() -> None:
    """Wrap ``BaseLLM._track_token_usage_internal`` once per process (idempotent).

    The wrapper calls CrewAI's own method unchanged and, only when a collector is active in the
    calling context, adds the increment to it.
    """
    global _installed
    with _lock:
        if _installed:
            return
        original = BaseLLM._track_token_usage_internal

        def track(self: BaseLLM, usage_data: dict[str, Any]) -> None:
            collector = _collector.get()
            if collector is None:
                original(self, usage_data)
                return
            with _lock:
                before = self.get_token_usage_summary()
                original(self, usage_data)
                after = self.get_token_usage_summary()
            add_usage(collector.setdefault(id(self), {}), usage_delta(before, after))

        BaseLLM._track_token_usage_internal = track  # type: ignore[method-assign]
        _installed = True


@contextmanager
def collecting() -> Iterator[dict[int, dict[str, int]]]:
    """Collect, per LLM instance (``id``), the usage of the calls made in this context."""
    collected: dict[int, dict[str, int]] = {}
    token = _collector.set(collected)
    try:
        yield collected
    finally:
        _collector.reset(token)
