"""The thin I/O shells that run :mod:`._plan` generators against Dapr's state API.

:func:`run_sync` / :func:`iterate_sync` use the sync ``dapr.clients.DaprClient``;
:func:`run_async` / :func:`iterate_async` use ``dapr.aio.clients.DaprClient``. Each request a
plan yields is exactly one call of the state API, so the logic (and its round-trip budget) is
the same for both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from dapr.clients.grpc._state import Concurrency, StateItem, StateOptions

from ._errors import StateStoreError
from ._plan import Delete, Emit, Failed, Insert, Item, Pause, Plan, Read, Transact, Upsert

# Keys per GetBulkState call: bounded so one request never grows with a thread's length.
READ_BATCH = 256


def _ttl_metadata(ttl: int | None) -> dict[str, str]:
    return {"ttlInSeconds": str(ttl)} if ttl is not None else {}


def _operations(request: Transact) -> list[TransactionalStateOperation]:
    ops = []
    for op in request.ops:
        if isinstance(op, Upsert):
            ops.append(
                TransactionalStateOperation(
                    key=op.key, data=op.value, etag=op.etag, metadata=_ttl_metadata(op.ttl) or None
                )
            )
        else:
            assert isinstance(op, Delete)
            ops.append(
                TransactionalStateOperation(
                    key=op.key, etag=op.etag, operation_type=TransactionOperationType.delete
                )
            )
    return ops


def _inserts(request: Insert) -> list[StateItem]:
    # dapr 1.18's save_bulk_state copies ``StateItem.options`` into the protobuf as is, so it
    # must already be the protobuf message (the SDK's own StateOptions wrapper is rejected).
    first_write: Any = StateOptions(concurrency=Concurrency.first_write).get_proto()
    return [
        StateItem(
            key=key,
            value=value,
            options=first_write if insert_only else None,
            metadata=_ttl_metadata(request.ttl),
        )
        for key, value, insert_only in request.items
    ]


def _read_error(store: str, keys: list[str], exc: BaseException) -> StateStoreError:
    shown = ", ".join(repr(k) for k in keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
    return StateStoreError(
        f"state store {store!r}: reading {shown} failed: {exc}. Check that a state store component "
        f"named {store!r} is loaded by the sidecar and that the sidecar is reachable."
    )


def _collect(store: str, keys: list[str], items: Any, out: dict[str, Item]) -> None:
    for item in items:
        if getattr(item, "error", ""):
            raise _read_error(store, keys, RuntimeError(f"key {item.key!r}: {item.error}"))
        data = item.data
        out[item.key] = Item(bytes(data) if data else None, item.etag or None)


def run_sync(client: Any, store: str, plan: Plan) -> Any:
    """Run a plan to completion with the sync client and return its result."""
    result_box: list[Any] = []
    for _ in iterate_sync(client, store, plan, result_box):
        raise AssertionError("this plan emits values; use iterate_sync")
    return result_box[0] if result_box else None


def iterate_sync(client: Any, store: str, plan: Plan, result_box: list[Any] | None = None) -> Iterator[Any]:
    """Run a plan with the sync client, yielding what it emits (``list``)."""
    answer: Any = None
    while True:
        try:
            request = plan.send(answer)
        except StopIteration as stop:
            if result_box is not None:
                result_box.append(stop.value)
            return
        answer = None
        if isinstance(request, Read):
            keys = list(dict.fromkeys(request.keys))
            found: dict[str, Item] = {}
            for start in range(0, len(keys), READ_BATCH):
                batch = keys[start : start + READ_BATCH]
                try:
                    response = client.get_bulk_state(store, batch, parallelism=8)
                except Exception as exc:
                    plan.close()
                    raise _read_error(store, batch, exc) from exc
                _collect(store, batch, response.items, found)
            answer = {key: found.get(key, Item(None, None)) for key in request.keys}
        elif isinstance(request, Transact):
            try:
                client.execute_state_transaction(store, _operations(request))
            except Exception as exc:
                answer = Failed(exc)
        elif isinstance(request, Insert):
            try:
                client.save_bulk_state(store, _inserts(request))
            except Exception as exc:
                answer = Failed(exc)
        elif isinstance(request, Emit):
            yield request.value
        elif isinstance(request, Pause):
            time.sleep(request.seconds)
        else:  # pragma: no cover - a planner bug
            raise TypeError(f"unknown state request {request!r}")


async def run_async(client: Any, store: str, plan: Plan) -> Any:
    """Run a plan to completion with the ``dapr.aio`` client and return its result."""
    result_box: list[Any] = []
    async for _ in iterate_async(client, store, plan, result_box):
        raise AssertionError("this plan emits values; use iterate_async")
    return result_box[0] if result_box else None


async def iterate_async(
    client: Any, store: str, plan: Plan, result_box: list[Any] | None = None
) -> AsyncIterator[Any]:
    """Run a plan with the ``dapr.aio`` client, yielding what it emits (``alist``)."""
    answer: Any = None
    while True:
        try:
            request = plan.send(answer)
        except StopIteration as stop:
            if result_box is not None:
                result_box.append(stop.value)
            return
        answer = None
        if isinstance(request, Read):
            keys = list(dict.fromkeys(request.keys))
            found: dict[str, Item] = {}
            for start in range(0, len(keys), READ_BATCH):
                batch = keys[start : start + READ_BATCH]
                try:
                    response = await client.get_bulk_state(store, batch, parallelism=8)
                except Exception as exc:
                    plan.close()
                    raise _read_error(store, batch, exc) from exc
                _collect(store, batch, response.items, found)
            answer = {key: found.get(key, Item(None, None)) for key in request.keys}
        elif isinstance(request, Transact):
            try:
                await client.execute_state_transaction(store, _operations(request))
            except Exception as exc:
                answer = Failed(exc)
        elif isinstance(request, Insert):
            try:
                await client.save_bulk_state(store, _inserts(request))
            except Exception as exc:
                answer = Failed(exc)
        elif isinstance(request, Emit):
            yield request.value
        elif isinstance(request, Pause):
            await asyncio.sleep(request.seconds)
        else:  # pragma: no cover - a planner bug
            raise TypeError(f"unknown state request {request!r}")
