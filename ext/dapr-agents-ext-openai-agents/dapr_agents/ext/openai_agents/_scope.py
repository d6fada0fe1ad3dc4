"""The scope that names a run in the idempotency keys of :func:`dapr_agent_tool` calls.

A context variable, so that :func:`host_openai_agent` (or an application's own durable code) can
set it around ``Runner.run`` and every tool call of that run, in whichever task the SDK runs it,
inherits it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

__all__ = ["current_tool_scope", "dapr_tool_scope"]

#: The durable scope of the current hosted call, read by dapr_agent_tool's default key.
_CALL_SCOPE: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "dapr_openai_call_scope", default=None
)


@contextlib.contextmanager
def dapr_tool_scope(scope: str) -> Iterator[None]:
    """Scope the idempotency keys of :func:`dapr_agent_tool` calls made inside this block.

    A tool call then becomes the Dapr instance derived from ``(scope, tool call id)``: a run
    repeated with the same scope (after a crash, by a durable activity of yours) re-attaches to
    the calls it made before instead of starting them again. Use an id that is unique per
    logical run (an order id, your activity's instance id). :func:`host_openai_agent` sets it
    to the workflow instance id of each call.
    """
    if not isinstance(scope, str) or not scope:
        raise ValueError(f"a tool scope must be a non-empty string, got {scope!r}")
    token = _CALL_SCOPE.set(scope)
    try:
        yield
    finally:
        _CALL_SCOPE.reset(token)


def current_tool_scope() -> str | None:
    return _CALL_SCOPE.get()
