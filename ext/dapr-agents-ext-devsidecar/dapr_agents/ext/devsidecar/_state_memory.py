"""``state.in-memory``: daprd's in-memory store, reproduced rule for rule.

Every write gets a fresh UUIDv4 etag. A non-empty etag requires the key to exist with that etag;
``FIRST_WRITE`` without an etag requires the key to be absent; anything else is unconditional.
Transactions validate every etag first and then apply every operation; they cannot interleave
with other operations because the whole store lives on the sidecar's single event loop.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from ._errors import EtagMismatchError
from ._state import (
    DeleteOp,
    SetOp,
    StateBackend,
    StateOp,
    StoredItem,
    expiry_from_ttl,
)


class InMemoryStateBackend(StateBackend):
    """A dict of items; nothing survives the process, as with daprd."""

    capabilities = ("ETAG", "TRANSACTIONAL", "TTL", "DELETE_WITH_PREFIX", "KEYS_LIKE", "ACTOR")

    def __init__(self) -> None:
        self._items: dict[str, StoredItem] = {}

    def _live(self, key: str, now: float) -> StoredItem | None:
        item = self._items.get(key)
        if item is not None and item.expires_at is not None and item.expires_at <= now:
            del self._items[key]
            return None
        return item

    async def get(self, key: str) -> StoredItem | None:
        return self._live(key, time.time())

    async def bulk_get(self, keys: Sequence[str]) -> list[StoredItem | None]:
        now = time.time()
        return [self._live(key, now) for key in keys]

    def _check(self, op: StateOp, now: float) -> None:
        current = self._live(op.key, now)
        # Texts are daprd's in-memory store's, after "possible etag mismatch. error from state store: ".
        if op.has_etag:
            if current is None:
                raise EtagMismatchError(f"state not exist or expired for key={op.key}")
            if current.etag != op.etag:
                raise EtagMismatchError(
                    f"state etag not match for key={op.key}: current={current.etag}, expect={op.etag}"
                )
        elif op.first_write and current is not None and isinstance(op, SetOp):
            raise EtagMismatchError("item already exists and no etag was passed")

    def _apply(self, op: StateOp, now: float) -> None:
        if isinstance(op, SetOp):
            self._items[op.key] = StoredItem(
                value=op.value,
                etag=str(uuid.uuid4()),
                expires_at=expiry_from_ttl(op.ttl_seconds, now),
            )
        else:
            self._items.pop(op.key, None)

    async def set(self, op: SetOp) -> None:
        now = time.time()
        self._check(op, now)
        self._apply(op, now)

    async def delete(self, op: DeleteOp) -> None:
        now = time.time()
        self._check(op, now)
        self._apply(op, now)

    async def transact(self, ops: Sequence[StateOp]) -> None:
        now = time.time()
        for op in ops:
            self._check(op, now)
        for op in ops:
            self._apply(op, now)

    async def close(self) -> None:
        self._items.clear()
