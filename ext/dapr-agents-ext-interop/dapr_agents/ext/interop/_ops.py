"""Plans of Dapr calls, run by a sync or an async shell.

The logic of a registry update or an agent call (read, decide, write, retry on a conflict) is
written once as a generator that yields :class:`Op` objects and receives their results; the two
shells below run the same generator against a blocking client or an asyncio one. Exceptions
raised by a call are thrown back into the generator, so the plan handles them itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Op:
    """Call ``target.method(*args, **kwargs)``; ``target`` names which client ("state", "workflow")."""

    target: str
    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


Plan = Generator[Op, Any, T]


def run_sync(plan: Plan[T], targets: dict[str, Any]) -> T:
    """Run ``plan`` with blocking clients."""
    try:
        op = next(plan)
        while True:
            try:
                result = getattr(targets[op.target], op.method)(*op.args, **op.kwargs)
            except Exception as error:  # handed to the plan, which decides
                op = plan.throw(error)
            else:
                op = plan.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        plan.close()


async def run_async(plan: Plan[T], targets: dict[str, Any]) -> T:
    """Run ``plan`` with asyncio clients (methods may also be plain functions)."""
    try:
        op = next(plan)
        while True:
            try:
                result = getattr(targets[op.target], op.method)(*op.args, **op.kwargs)
                if inspect.isawaitable(result):
                    result = await result
            except Exception as error:
                op = plan.throw(error)
            else:
                op = plan.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        plan.close()


def grpc_code(error: BaseException) -> str | None:
    """The gRPC status code name behind an SDK error (the aio client wraps it in its cause)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = getattr(current, "code", None)
        if callable(code):
            try:
                value = code()
            except Exception:  # some wrappers need arguments; keep walking
                value = None
            name = getattr(value, "name", None)
            if isinstance(name, str):
                return name
        current = current.__cause__ or current.__context__
    return None
