"""The state-store contract shared by the in-memory, SQLite and Redis backends.

Backends see store keys that already carry daprd's prefix (``appid||key``); prefixing, request
validation and the mapping of failures to gRPC statuses live in the API layer, so every backend
implements only storage and its own concurrency rules (which differ between daprd's components,
and are reproduced per backend on purpose).
"""

from __future__ import annotations

import abc
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from ._errors import StoreError

_GO_INT = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True, slots=True)
class StoredItem:
    """A value as read back from a store."""

    value: bytes
    etag: str
    #: Expiry as epoch seconds (UTC), ``None`` when the item never expires.
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class SetOp:
    """An upsert. ``etag`` of ``None`` or ``""`` means "no etag" (daprd's ``HasETag``)."""

    key: str
    value: bytes
    etag: str | None = None
    first_write: bool = False
    last_write: bool = False
    ttl_seconds: int | None = None
    is_json: bool = False

    @property
    def has_etag(self) -> bool:
        return bool(self.etag)


@dataclass(frozen=True, slots=True)
class DeleteOp:
    """A delete, with the same etag rules as :class:`SetOp`."""

    key: str
    etag: str | None = None
    first_write: bool = False
    last_write: bool = False

    @property
    def has_etag(self) -> bool:
        return bool(self.etag)


StateOp = SetOp | DeleteOp


class StateBackend(abc.ABC):
    """One configured state store. Every method is a coroutine run on the sidecar's event loop."""

    #: Capabilities advertised through ``GetMetadata``, in daprd's order for the component.
    capabilities: tuple[str, ...] = ()

    def parse_ttl(self, raw: str) -> int | None:
        """Parse the ``ttlInSeconds`` request metadata with this store's rules.

        Returns the TTL in seconds, ``None`` for "no expiry"; raises ``StoreError`` with the
        store's own wording for a value it rejects. This default is daprd's in-memory rule.
        """
        value = parse_go_int(raw)
        if value is None:
            raise StoreError(f'strconv.Atoi: parsing "{raw}": invalid syntax')
        return value if value > 0 else None

    #: Whether ``GetState`` answers carry ``ttlExpireTime`` (daprd's Redis store does not).
    reports_expire_time: bool = True

    @abc.abstractmethod
    async def get(self, key: str) -> StoredItem | None:
        """Return the live (unexpired) item, or ``None``."""

    async def bulk_get(self, keys: Sequence[str]) -> list[StoredItem | None]:
        """Return the items in the order of ``keys``; backends override to batch."""
        return [await self.get(key) for key in keys]

    @abc.abstractmethod
    async def set(self, op: SetOp) -> None:
        """Write one item; raise ``EtagMismatchError``/``EtagInvalidError`` per the store's rules."""

    @abc.abstractmethod
    async def delete(self, op: DeleteOp) -> None:
        """Delete one item (deleting a missing key without an etag succeeds)."""

    @abc.abstractmethod
    async def transact(self, ops: Sequence[StateOp]) -> None:
        """Apply every operation or none of them."""

    async def close(self) -> None:  # noqa: B027 - most backends have nothing to release
        """Release connections and files; safe to call twice."""


def parse_go_int(text: str) -> int | None:
    """Parse an integer as Go's strconv does (no spaces, no underscores); ``None`` if invalid."""
    if not _GO_INT.fullmatch(text):
        return None
    return int(text)


def expiry_from_ttl(ttl_seconds: int | None, now: float) -> float | None:
    """The absolute expiry (epoch seconds) of a write, or ``None`` when it never expires."""
    if ttl_seconds is None or ttl_seconds <= 0:
        return None
    return now + ttl_seconds


def format_expire_time(epoch_seconds: float) -> str:
    """Render an expiry as daprd does in ``ttlExpireTime``: RFC 3339, UTC, ``Z`` suffix."""
    moment = datetime.fromtimestamp(math.floor(epoch_seconds), tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
