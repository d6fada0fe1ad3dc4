"""``state.sqlite``: a durable store in one SQLite file, laid out like daprd's component.

The table has daprd's columns (``key``, ``value``, ``is_binary``, ``etag``, ``expiration_time``,
``update_time``), so a file written here can be opened by daprd's ``state.sqlite`` and back.
Values sent with the JSON content type are kept as text; everything else as base64 with
``is_binary`` set. Etags are UUIDv4 strings; the etag and first-write rules are expressed in the
SQL statements so they also hold across processes sharing the file.

All statements run on one dedicated thread that owns the connection (sqlite3 connections are
thread-bound); the event loop awaits them. The database is in WAL mode with
``synchronous=NORMAL`` unless ``disableWAL`` is set: a committed write survives a crash of the
sidecar process (the guarantee the crash test checks), though not necessarily a power loss.
"""

from __future__ import annotations

import asyncio
import base64
import calendar
import concurrent.futures
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ._components import Component
from ._errors import ComponentError, EtagMismatchError, StoreError
from ._state import DeleteOp, SetOp, StateBackend, StateOp, StoredItem, parse_go_int

_T = TypeVar("_T")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LIVE = "(expiration_time IS NULL OR expiration_time > CURRENT_TIMESTAMP)"
_EXPIRY = "CASE WHEN ? IS NULL THEN NULL ELSE DATETIME(CURRENT_TIMESTAMP, '+' || ? || ' seconds') END"


def _parse_duration_seconds(text: str, what: str) -> float:
    """Parse a Go-style duration ("30s", "5m", "1h", "500ms") or a bare number of seconds."""
    text = text.strip()
    if not text:
        raise ComponentError(f"{what} is empty")
    try:
        return float(text)
    except ValueError:
        pass
    total = 0.0
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text):
        total += float(number) * units[unit]
    if not re.fullmatch(r"(\d+(?:\.\d+)?(ms|s|m|h))+", text):
        raise ComponentError(f"{what} {text!r} is not a duration such as '30s' or '5m'")
    return total


def _sqlite_path(connection_string: str) -> tuple[str, bool]:
    """Return (path or URI, is_uri) for sqlite3.connect from daprd's connectionString."""
    if connection_string.startswith("file:"):
        return connection_string, True
    return connection_string, False


class SqliteStateBackend(StateBackend):
    """State in a SQLite database file."""

    capabilities = ("ETAG", "TRANSACTIONAL", "TTL", "KEYS_LIKE", "ACTOR")

    def parse_ttl(self, raw: str) -> int | None:
        prefix = "error parsing TTL: incorrect value for metadata 'ttlInSeconds': "
        value = parse_go_int(raw)
        if value is None:
            raise StoreError(f'{prefix}strconv.ParseInt: parsing "{raw}": invalid syntax')
        if value < -1 or value > 2**31 - 1:
            raise StoreError(f"{prefix}must be -1 or greater")
        return value if value > 0 else None

    def __init__(self, component: Component) -> None:
        connection_string = component.metadata_value("connectionString") or component.metadata_value("url")
        if not connection_string:
            raise ComponentError(
                f"{component.source}: component {component.name!r} (state.sqlite): missing "
                "connection string; set the 'connectionString' metadata, e.g. 'data.db'"
            )
        table = component.metadata_value("tableName") or "state"
        if not _IDENTIFIER.match(table):
            raise ComponentError(
                f"{component.source}: component {component.name!r}: tableName {table!r} must be "
                "a plain SQL identifier"
            )
        metadata_table = component.metadata_value("metadataTableName") or "metadata"
        if not _IDENTIFIER.match(metadata_table):
            raise ComponentError(
                f"{component.source}: component {component.name!r}: metadataTableName "
                f"{metadata_table!r} must be a plain SQL identifier"
            )
        busy = component.metadata_value("busyTimeout") or "2s"
        self._busy_timeout_ms = int(
            _parse_duration_seconds(busy, f"component {component.name!r} busyTimeout") * 1000
        )
        # daprd's default is 0: expired rows are filtered on read but never deleted.
        cleanup = (
            component.metadata_value("cleanupInterval")
            or component.metadata_value("cleanupIntervalInSeconds")
            or "0"
        )
        cleanup_seconds = _parse_duration_seconds(cleanup, f"component {component.name!r} cleanupInterval")
        self._cleanup_interval = cleanup_seconds if cleanup_seconds > 0 else None
        self._table = table
        self._metadata_table = metadata_table
        self._name = component.name
        self._path, self._is_uri = _sqlite_path(connection_string)
        self._wal = not component.flag("disableWAL")
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"sqlite-{component.name}"
        )
        self._conn: sqlite3.Connection | None = None
        self._last_cleanup = time.monotonic()
        self._closed = threading.Event()
        try:
            self._executor.submit(self._open).result()
        except sqlite3.Error as exc:
            self._executor.shutdown(wait=False)
            raise ComponentError(
                f"{component.source}: component {component.name!r} (state.sqlite) cannot open "
                f"{connection_string!r}: {exc}"
            ) from exc

    # -- connection thread -------------------------------------------------------------------

    def _open(self) -> None:
        conn = sqlite3.connect(self._path, uri=self._is_uri, isolation_level=None, check_same_thread=True)
        conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        if self._wal:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self._table} ("
            "key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL, is_binary BOOLEAN NOT NULL, "
            "etag TEXT NOT NULL, expiration_time TIMESTAMP DEFAULT NULL, "
            "update_time TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        )
        conn.execute(
            f"CREATE INDEX IF NOT EXISTS {self._table}_expiration_time_idx ON {self._table} (expiration_time)"
        )
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self._metadata_table} "
            "(key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL)"
        )
        # daprd's migration level, so daprd opening this file finds its schema current.
        conn.execute(f"INSERT OR IGNORE INTO {self._metadata_table} (key, value) VALUES ('migrations', '1')")
        self._conn = conn

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"state store {self._name!r} is closed")
        return self._conn

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite error in state store {self._name!r}: {exc}") from exc
        except RuntimeError as exc:
            if self._closed.is_set():
                raise StoreError(f"state store {self._name!r} is closed") from exc
            raise

    @staticmethod
    def _decode(value: str, is_binary: int, etag: str, expiration: str | None) -> StoredItem:
        data = base64.b64decode(value) if is_binary else value.encode("utf-8")
        expires_at = None
        if expiration:
            expires_at = float(calendar.timegm(time.strptime(expiration[:19], "%Y-%m-%d %H:%M:%S")))
        return StoredItem(value=data, etag=etag, expires_at=expires_at)

    def _select(self, keys: Sequence[str]) -> dict[str, StoredItem]:
        conn = self._connection()
        found: dict[str, StoredItem] = {}
        # SQLite caps bound variables; 500 per statement stays far below every build's limit.
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT key, value, is_binary, etag, expiration_time FROM {self._table} "
                f"WHERE key IN ({marks}) AND {_LIVE}",
                chunk,
            ).fetchall()
            for key, value, is_binary, etag, expiration in rows:
                found[key] = self._decode(value, is_binary, etag, expiration)
        return found

    def _write(self, conn: sqlite3.Connection, op: StateOp) -> None:
        if isinstance(op, SetOp):
            if op.is_json:
                value, is_binary = op.value.decode("utf-8"), 0
            else:
                value, is_binary = base64.b64encode(op.value).decode("ascii"), 1
            ttl = op.ttl_seconds if op.ttl_seconds is not None and op.ttl_seconds > 0 else None
            etag = str(uuid.uuid4())
            if op.has_etag:
                cursor = conn.execute(
                    f"UPDATE {self._table} SET value = ?, is_binary = ?, etag = ?, "
                    f"expiration_time = {_EXPIRY}, update_time = CURRENT_TIMESTAMP "
                    f"WHERE key = ? AND etag = ? AND {_LIVE}",
                    (value, is_binary, etag, ttl, ttl, op.key, op.etag),
                )
                if cursor.rowcount != 1:
                    raise EtagMismatchError("")
            elif op.first_write:
                # An expired row counts as absent, so the insert may replace it.
                cursor = conn.execute(
                    f"INSERT INTO {self._table} "
                    "(key, value, is_binary, etag, expiration_time, update_time) "
                    f"VALUES (?, ?, ?, ?, {_EXPIRY}, CURRENT_TIMESTAMP) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                    "is_binary = excluded.is_binary, etag = excluded.etag, "
                    "expiration_time = excluded.expiration_time, update_time = CURRENT_TIMESTAMP "
                    f"WHERE NOT {_LIVE.replace('expiration_time', self._table + '.expiration_time')}",
                    (op.key, value, is_binary, etag, ttl, ttl),
                )
                if cursor.rowcount != 1:
                    raise EtagMismatchError("")
            else:
                conn.execute(
                    f"INSERT INTO {self._table} "
                    "(key, value, is_binary, etag, expiration_time, update_time) "
                    f"VALUES (?, ?, ?, ?, {_EXPIRY}, CURRENT_TIMESTAMP) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                    "is_binary = excluded.is_binary, etag = excluded.etag, "
                    "expiration_time = excluded.expiration_time, update_time = CURRENT_TIMESTAMP",
                    (op.key, value, is_binary, etag, ttl, ttl),
                )
        elif op.has_etag:
            cursor = conn.execute(
                f"DELETE FROM {self._table} WHERE key = ? AND etag = ? AND {_LIVE}",
                (op.key, op.etag),
            )
            if cursor.rowcount != 1:
                raise EtagMismatchError("")
        else:
            conn.execute(f"DELETE FROM {self._table} WHERE key = ?", (op.key,))

    def _transaction(self, ops: Sequence[StateOp]) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op in ops:
                self._write(conn, op)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        self._maybe_cleanup(conn)

    def _maybe_cleanup(self, conn: sqlite3.Connection) -> None:
        if self._cleanup_interval is None:
            return
        now = time.monotonic()
        if now - self._last_cleanup < self._cleanup_interval:
            return
        self._last_cleanup = now
        conn.execute(
            f"DELETE FROM {self._table} WHERE expiration_time IS NOT NULL "
            "AND expiration_time <= CURRENT_TIMESTAMP"
        )

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- StateBackend --------------------------------------------------------------------------

    async def get(self, key: str) -> StoredItem | None:
        return (await self._run(self._select, [key])).get(key)

    async def bulk_get(self, keys: Sequence[str]) -> list[StoredItem | None]:
        found = await self._run(self._select, list(keys))
        return [found.get(key) for key in keys]

    async def set(self, op: SetOp) -> None:
        await self._run(self._transaction, [op])

    async def delete(self, op: DeleteOp) -> None:
        await self._run(self._transaction, [op])

    async def transact(self, ops: Sequence[StateOp]) -> None:
        await self._run(self._transaction, list(ops))

    async def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)
