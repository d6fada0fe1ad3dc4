"""Test helpers: a Dapr client wrapper that counts state round trips and bytes written."""

from __future__ import annotations

from typing import Any

STATE_CALLS = (
    "get_state",
    "get_bulk_state",
    "save_state",
    "save_bulk_state",
    "execute_state_transaction",
    "delete_state",
)


def written_bytes(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """The value bytes a state call sends."""
    if method == "save_state":
        value = kwargs.get("value", args[2] if len(args) > 2 else b"")
        return len(value.encode() if isinstance(value, str) else value)
    if method == "save_bulk_state":
        states = kwargs.get("states", args[1] if len(args) > 1 else [])
        return sum(len(s.value.encode() if isinstance(s.value, str) else s.value) for s in states)
    if method == "execute_state_transaction":
        ops = kwargs.get("operations", args[1] if len(args) > 1 else [])
        total = 0
        for op in ops:
            data = op.data or b""
            total += len(data.encode() if isinstance(data, str) else data)
        return total
    return 0


class CountingClient:
    """Wraps a sync ``DaprClient``: every state call is one round trip."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.round_trips = 0
        self.bytes_written = 0
        self.calls: list[str] = []

    def reset(self) -> None:
        self.round_trips = 0
        self.bytes_written = 0
        self.calls = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in STATE_CALLS:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.round_trips += 1
            self.calls.append(name)
            self.bytes_written += written_bytes(name, args, kwargs)
            return attr(*args, **kwargs)

        return call
