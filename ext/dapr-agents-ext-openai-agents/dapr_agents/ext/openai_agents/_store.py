"""The few state operations the session needs, on the official ``dapr.aio`` client.

Each method is one Dapr call (bulk reads and deletes may be split into several). Conflicts are
reported as ``False`` rather than raised, because for the session a lost insert or a stale etag
is an ordinary outcome to retry, while anything else (store not found, sidecar down) is an
error for the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

import grpc
from dapr.aio.clients import DaprClient
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from dapr.clients.grpc._state import Concurrency, Consistency, StateOptions

logger = logging.getLogger(__name__)

#: Bulk reads are cut so one answer stays well below gRPC's default 4 MiB receive limit.
BULK_READ_BUDGET = 2 * 1024 * 1024
#: Deletes per state transaction (some Dapr stores cap the operations of one transaction).
DELETES_PER_TRANSACTION = 100


def status_code(error: BaseException) -> grpc.StatusCode | None:
    """The gRPC status of a failed Dapr call, whichever SDK exception wraps it."""
    code = getattr(error, "code", None)
    if callable(code):
        try:
            value = code()
        except Exception:  # a ``code`` attribute that is not the gRPC accessor
            value = None
        if isinstance(value, grpc.StatusCode):
            return value
    cause = error.__cause__
    if isinstance(cause, grpc.RpcError):
        return cause.code()  # type: ignore[no-any-return]
    return None


class StateIO:
    """State calls against one store, with the session's TTL and consistency applied."""

    def __init__(
        self,
        client: Callable[[], Coroutine[Any, Any, DaprClient]],
        store: str,
        *,
        ttl: int | None,
        consistency: Consistency,
    ) -> None:
        self._client = client
        self.store = store
        self._write_metadata = {"ttlInSeconds": str(ttl)} if ttl is not None else {}
        self._insert_options = StateOptions(concurrency=Concurrency.first_write, consistency=consistency)
        self._put_options = StateOptions(consistency=consistency)

    async def get(self, key: str) -> tuple[bytes | None, str]:
        """The value (``None`` when absent) and its etag."""
        client = await self._client()
        response = await client.get_state(self.store, key)
        data = bytes(response.data)
        return (data or None), (response.etag or "")

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes | None]:
        """Several values in one bulk read (split in halves if an answer is too large)."""
        if not keys:
            return {}
        client = await self._client()
        try:
            response = await client.get_bulk_state(self.store, list(keys), parallelism=min(len(keys), 16))
        except Exception as error:
            if status_code(error) == grpc.StatusCode.RESOURCE_EXHAUSTED and len(keys) > 1:
                middle = len(keys) // 2
                halves = await self.get_many(keys[:middle])
                halves.update(await self.get_many(keys[middle:]))
                return halves
            raise
        found: dict[str, bytes | None] = dict.fromkeys(keys)
        for item in response.items:
            if item.error:
                raise RuntimeError(
                    f"state store {self.store!r} could not read key {item.key!r}: {item.error}"
                )
            data = item.data if isinstance(item.data, bytes) else str(item.data).encode()
            found[item.key] = data or None
        return found

    async def insert(self, key: str, value: bytes, is_ours: Callable[[bytes], bool] | None = None) -> bool:
        """Write ``key`` only if it does not exist; ``False`` when it does.

        This is first-write concurrency without an etag, which every Dapr store with etag
        support treats as insert-only (Redis: for keys written this way, as all of ours are).
        Stores disagree on how they report the conflict (most as an etag mismatch, daprd's
        PostgreSQL v1 store as a plain error), and a timeout leaves the outcome unknown; so on
        any other error the key is read back: holding ``value`` means the insert happened,
        holding something else means it lost. Values are unique (each carries a random id),
        so a match cannot be another writer's. A key that others may legitimately rewrite right
        after the insert (the head) needs ``is_ours`` to recognise it by what cannot change.
        """
        try:
            return await self._save(key, value, None, self._insert_options)
        except Exception as error:
            try:
                found, _ = await self.get(key)
            except Exception:
                raise error from None
            if found is None:
                raise
            logger.debug("insert of %r failed (%s) but the key exists; using what it holds", key, error)
            return is_ours(found) if is_ours is not None else found == value

    async def replace(self, key: str, value: bytes, etag: str) -> bool:
        """Write ``key`` only if it still has ``etag``; ``False`` on a mismatch."""
        # First-write even with an etag, so that daprd's Redis store keeps the key marked
        # insert-only and a later insert of the same key fails as it should.
        return await self._save(key, value, etag or None, self._insert_options)

    async def put(self, key: str, value: bytes) -> None:
        """Write ``key`` unconditionally."""
        client = await self._client()
        await client.save_state(
            self.store, key, value, options=self._put_options, state_metadata=self._write_metadata
        )

    async def _save(self, key: str, value: bytes, etag: str | None, options: StateOptions) -> bool:
        client = await self._client()
        try:
            await client.save_state(
                self.store, key, value, etag=etag, options=options, state_metadata=self._write_metadata
            )
        except Exception as error:
            if status_code(error) == grpc.StatusCode.ABORTED:
                return False
            raise
        return True

    async def delete(self, key: str) -> None:
        """Delete one key, unconditionally."""
        client = await self._client()
        await client.delete_state(self.store, key)

    async def delete_many(self, keys: Iterable[str]) -> None:
        """Delete keys in state transactions of :data:`DELETES_PER_TRANSACTION` (one round trip
        each instead of one per key; deleting a missing key is not an error)."""
        client = await self._client()
        batch: list[TransactionalStateOperation] = []
        for key in keys:
            batch.append(TransactionalStateOperation(key=key, operation_type=TransactionOperationType.delete))
            if len(batch) == DELETES_PER_TRANSACTION:
                await client.execute_state_transaction(self.store, batch)
                batch = []
        if batch:
            await client.execute_state_transaction(self.store, batch)
