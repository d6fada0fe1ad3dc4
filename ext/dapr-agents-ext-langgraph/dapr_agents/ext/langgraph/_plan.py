"""The checkpointer's logic, free of I/O: each operation is a generator of state requests.

Every public operation (put, put_writes, get_tuple, list, the deletes, copy, delta history) is a
generator that *yields* the state requests it needs (:class:`Read`, :class:`Transact`,
:class:`Insert`) and receives their results; :mod:`._io` runs the same generator with the sync
``DaprClient`` or the ``dapr.aio`` client. So the sync and async methods share one
implementation, and the number of state round trips of each operation is visible here: one per
``yield`` (a :class:`Read` of several keys is one ``GetBulkState``).

The layout (see the README): a thread registry lists a thread's namespaces; per namespace an
etag-guarded index holds the newest entries (id, parent id, metadata) and descriptors of sealed
pages of older entries; per checkpoint a document (the checkpoint without its channel values)
and a manifest of its pending writes; per channel version one blob, written only when that
channel changed.
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig

from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    CheckpointTuple,
    get_checkpoint_id,
)

from ._errors import CheckpointConflictError, CheckpointDataError, MissingThreadIdError, StateStoreError
from ._layout import (
    KIND_BLOB,
    KIND_CHECKPOINT,
    KIND_CHUNK,
    KIND_INDEX,
    KIND_PAGE,
    KIND_RUN,
    KIND_THREAD,
    KIND_WRITE,
    KIND_WRITES,
    Keys,
    chunk_key,
    decode,
    encode,
)

try:  # langgraph-checkpoint >= 4.1
    from langgraph.checkpoint.base import get_serializable_checkpoint_metadata as _checkpoint_metadata
except ImportError:  # pragma: no cover - older langgraph-checkpoint
    from langgraph.checkpoint.base import get_checkpoint_metadata as _checkpoint_metadata

try:
    from langgraph.checkpoint.base import writes_sort_key
except ImportError:  # pragma: no cover - before langgraph-checkpoint added it

    def writes_sort_key(task_path: str, task_id: str = "", idx: int = 0) -> tuple[str, str, int]:
        return (task_path, task_id, idx)


# --------------------------------------------------------------------------------------------
# Requests the planners yield, and what the I/O shells send back
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """A value as read: ``data`` is ``None`` when the key does not exist."""

    data: bytes | None
    etag: str | None


@dataclass(frozen=True)
class Read:
    """Read keys (one ``GetBulkState``); answered with ``dict[key, Item]``."""

    keys: tuple[str, ...]


@dataclass(frozen=True)
class Upsert:
    key: str
    value: bytes
    etag: str | None = None
    ttl: int | None = None


@dataclass(frozen=True)
class Delete:
    key: str
    etag: str | None = None


@dataclass(frozen=True)
class Transact:
    """One ``ExecuteStateTransaction``; answered with ``None`` or a :class:`Failed`."""

    ops: tuple[Upsert | Delete, ...]


@dataclass(frozen=True)
class Insert:
    """One non-transactional ``SaveBulkState``: ``(key, value, insert_only)`` items, the
    insert-only ones with ``FIRST_WRITE`` and no etag. Answered with ``None`` or a
    :class:`Failed`, which is expected when another writer created a key first."""

    items: tuple[tuple[str, bytes, bool], ...]
    ttl: int | None = None


@dataclass(frozen=True)
class Emit:
    """Not I/O: a listed checkpoint tuple for the caller of ``list``."""

    value: CheckpointTuple


@dataclass(frozen=True)
class Pause:
    """Not I/O: wait before retrying a lost race (``time.sleep`` or ``asyncio.sleep``)."""

    seconds: float


@dataclass(frozen=True)
class Failed:
    error: BaseException


Request = Read | Transact | Insert | Emit | Pause
Plan = Generator[Request, Any, Any]


@dataclass(frozen=True)
class Context:
    """Everything a planner needs besides the call's arguments."""

    store: str
    keys: Keys
    serde: Any
    ttl: int | None = None
    max_value_bytes: int = 256 * 1024
    page_size: int = 32
    max_retries: int = 30

    @property
    def blob_ttl(self) -> int | None:
        # Blobs are shared by every later checkpoint that did not change the channel; living
        # twice as long (and being refreshed once per ttl) keeps them alive as long as any
        # checkpoint that still references them.
        return None if self.ttl is None else 2 * self.ttl


# Keys per transaction in bulk deletes and per read in bulk loads: bounded so no single request
# grows with a thread's length.
DELETE_BATCH = 100
LOAD_BATCH = 32


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def thread_id_of(config: RunnableConfig | None) -> str:
    configurable = (config or {}).get("configurable") or {}
    thread_id = configurable.get("thread_id")
    if thread_id is None:
        raise MissingThreadIdError(
            "thread_id: the config has no configurable.thread_id; pass "
            "{'configurable': {'thread_id': ...}} when invoking a graph with a checkpointer"
        )
    return str(thread_id)


def _ns_of(config: RunnableConfig) -> str:
    return str((config.get("configurable") or {}).get("checkpoint_ns") or "")


def _config(thread_id: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}}


def encode_metadata(serde: Any, metadata: Mapping[str, Any]) -> Any:
    """Metadata as JSON when it is plain JSON (so the index stays readable and filterable),
    otherwise the serializer's typed bytes."""
    try:
        json.dumps(metadata, allow_nan=False)
        return dict(metadata)
    except (TypeError, ValueError):
        kind, data = serde.dumps_typed(dict(metadata))
        return {"__serde__": [kind, base64.b64encode(data).decode()]}


def decode_metadata(serde: Any, value: Any) -> dict[str, Any]:
    if isinstance(value, dict) and "__serde__" in value and len(value) == 1:
        kind, data = value["__serde__"]
        return dict(serde.loads_typed((kind, base64.b64decode(data))))
    return dict(value or {})


def _matches(metadata: Mapping[str, Any], wanted: Mapping[str, Any] | None) -> bool:
    return not wanted or all(metadata.get(key) == value for key, value in wanted.items())


def _value_ops(
    ctx: Context, kind: bytes, key: str, header: dict[str, Any], payload: bytes, ttl: int | None
) -> tuple[list[Upsert], int]:
    """The upserts storing one value, split into chunks above ``max_value_bytes``."""
    size = ctx.max_value_bytes
    if len(payload) <= size:
        return [Upsert(key, encode(kind, header, payload), ttl=ttl)], 0
    parts = [payload[i : i + size] for i in range(0, len(payload), size)]
    ops = [Upsert(key, encode(kind, {**header, "chunks": len(parts)}), ttl=ttl)]
    ops += [
        Upsert(chunk_key(key, n), encode(KIND_CHUNK, {}, part), ttl=ttl) for n, part in enumerate(parts, 1)
    ]
    return ops, len(parts)


def _with_chunks(key: str, chunks: int) -> list[str]:
    return [key] + [chunk_key(key, n) for n in range(1, chunks + 1)]


def read_values(ctx: Context, wanted: Mapping[str, bytes]) -> Plan:
    """Read values of known kinds, reassembling chunked ones (one more round trip only when a
    value was chunked). Returns ``{key: (header, payload) | None}``."""
    if not wanted:
        return {}
    items: dict[str, Item] = yield Read(tuple(wanted))
    out: dict[str, tuple[dict[str, Any], bytes] | None] = {}
    chunked: dict[str, tuple[dict[str, Any], int]] = {}
    for key, kind in wanted.items():
        item = items[key]
        if item.data is None:
            out[key] = None
            continue
        header, payload = decode(item.data, key=key, store=ctx.store, kind=kind)
        if header.get("chunks"):
            chunked[key] = (header, int(header["chunks"]))
        out[key] = (header, payload)
    if chunked:
        keys = tuple(chunk_key(key, n) for key, (_, count) in chunked.items() for n in range(1, count + 1))
        parts: dict[str, Item] = yield Read(keys)
        for key, (header, count) in chunked.items():
            buffer = []
            for n in range(1, count + 1):
                data = parts[chunk_key(key, n)].data
                if data is None:
                    raise CheckpointDataError(
                        f"state store {ctx.store!r}, key {chunk_key(key, n)!r}: chunk {n} of {count} "
                        f"of {key!r} is missing (expired or deleted); the value cannot be rebuilt."
                    )
                buffer.append(decode(data, key=chunk_key(key, n), store=ctx.store, kind=KIND_CHUNK)[1])
            out[key] = (header, b"".join(buffer))
    return out


def _transact_batches(ops: Sequence[Upsert | Delete], what: str, ctx: Context) -> Plan:
    """Unguarded operations (deletes, copies) in bounded transactions."""
    for start in range(0, len(ops), DELETE_BATCH):
        result = yield Transact(tuple(ops[start : start + DELETE_BATCH]))
        if isinstance(result, Failed):
            raise StateStoreError(
                f"state store {ctx.store!r}: {what} failed: {result.error}"
            ) from result.error


# --------------------------------------------------------------------------------------------
# The per-namespace index
# --------------------------------------------------------------------------------------------


@dataclass
class Index:
    """The etag-guarded head of one (thread, namespace): newest entries plus page descriptors.

    An entry is ``[checkpoint_id, parent_id, metadata]``. When ``tail`` reaches the page size it
    is sealed into page key ``index:...:<n>`` (written once) and only ``[n, min_id, max_id]``
    stays here, so each put rewrites a bounded index, and ``list``/history read only the pages
    they need.
    """

    tail: list[list[Any]] = field(default_factory=list)
    pages: list[list[Any]] = field(default_factory=list)
    next_page: int = 0
    latest: str | None = None
    adopted: list[list[Any]] = field(default_factory=list)
    blob_times: dict[str, list[Any]] = field(default_factory=dict)

    @classmethod
    def decode(cls, data: bytes, *, key: str, store: str) -> Index:
        header, _ = decode(data, key=key, store=store, kind=KIND_INDEX)
        try:
            return cls(
                tail=list(header.get("tail", [])),
                pages=list(header.get("pages", [])),
                next_page=int(header.get("next_page", 0)),
                latest=header.get("latest"),
                adopted=list(header.get("adopted", [])),
                blob_times=dict(header.get("blob_times", {})),
            )
        except (TypeError, ValueError) as exc:
            raise CheckpointDataError(
                f"state store {store!r}, key {key!r}: malformed checkpoint index: {exc}"
            ) from exc

    def encode(self) -> bytes:
        header: dict[str, Any] = {"tail": self.tail, "pages": self.pages, "next_page": self.next_page}
        if self.latest is not None:
            header["latest"] = self.latest
        if self.adopted:
            header["adopted"] = self.adopted
        if self.blob_times:
            header["blob_times"] = self.blob_times
        return encode(KIND_INDEX, header)

    def add(self, entry: list[Any], page_size: int) -> tuple[int, list[list[Any]]] | None:
        """Add (or replace) an entry; returns ``(page number, entries)`` when a page is sealed."""
        self.tail = [e for e in self.tail if e[0] != entry[0]]
        self.tail.append(entry)
        if self.latest is None or entry[0] > self.latest:
            self.latest = entry[0]
        if len(self.tail) < page_size:
            return None
        sealed = sorted(self.tail, key=lambda e: e[0])
        number = self.next_page
        self.pages.append([number, sealed[0][0], sealed[-1][0]])
        self.next_page += 1
        self.tail = []
        return number, sealed

    def rebuild(self, entries: Iterable[list[Any]], page_size: int) -> list[tuple[int, list[list[Any]]]]:
        """Replace all entries (after deletes); returns the new pages to write."""
        ordered = sorted(entries, key=lambda e: e[0])
        self.pages = []
        self.tail = []
        self.latest = ordered[-1][0] if ordered else None
        written = []
        full = len(ordered) - len(ordered) % page_size
        for start in range(0, full, page_size):
            chunk = ordered[start : start + page_size]
            written.append((self.next_page, chunk))
            self.pages.append([self.next_page, chunk[0][0], chunk[-1][0]])
            self.next_page += 1
        self.tail = ordered[full:]
        return written


def _empty_index() -> bytes:
    return Index().encode()


def _decode_list(data: bytes | None, *, key: str, ctx: Context, kind: bytes, field_name: str) -> list[Any]:
    if data is None:
        return []
    header, _ = decode(data, key=key, store=ctx.store, kind=kind)
    value = header.get(field_name, [])
    if not isinstance(value, list):
        raise CheckpointDataError(f"state store {ctx.store!r}, key {key!r}: {field_name!r} is not a list")
    return value


class IndexReader:
    """An index plus the pages read so far, reading more pages (newest first) on demand."""

    def __init__(self, ctx: Context, thread_id: str, ns: str, index: Index) -> None:
        self.ctx = ctx
        self.thread_id = thread_id
        self.ns = ns
        self.index = index
        self.entries: dict[str, list[Any]] = {e[0]: e for e in index.tail}
        self.unread = sorted(index.pages, key=lambda p: p[2], reverse=True)
        self._batch = 1

    def threshold(self) -> str | None:
        """The largest id that an unread page may hold."""
        return self.unread[0][2] if self.unread else None

    def skip_pages_from(self, before_id: str) -> None:
        self.unread = [p for p in self.unread if p[1] < before_id]

    def read_more(self, count: int | None = None) -> Plan:
        """Read the next pages; grows the batch so long walks take few round trips."""
        count = count or self._batch
        self._batch = min(self._batch * 2, 16)
        take, self.unread = self.unread[:count], self.unread[count:]
        keys = {self.ctx.keys.page(self.thread_id, self.ns, p[0]): p for p in take}
        items: dict[str, Item] = yield Read(tuple(keys))
        for key, _ in keys.items():
            data = items[key].data
            if data is None:
                if self.ctx.ttl is not None:
                    continue  # expired with the old checkpoints it listed
                raise CheckpointDataError(
                    f"state store {self.ctx.store!r}, key {key!r}: the checkpoint index of thread "
                    f"{self.thread_id!r} (namespace {self.ns!r}) lists this page but it is missing."
                )
            for entry in _decode_list(data, key=key, ctx=self.ctx, kind=KIND_PAGE, field_name="entries"):
                # Entries already known (tail, newer pages) win over an older copy.
                self.entries.setdefault(entry[0], entry)

    def read_all(self) -> Plan:
        while self.unread:
            yield from self.read_more(len(self.unread))


# --------------------------------------------------------------------------------------------
# Checkpoint documents and tuples
# --------------------------------------------------------------------------------------------


@dataclass
class Loaded:
    """One checkpoint as stored: the document, its writes and (when asked) its values."""

    checkpoint_id: str
    checkpoint: dict[str, Any]
    metadata: dict[str, Any]
    parent: str | None
    present: list[str]
    owned: list[list[Any]]
    doc_chunks: int
    writes: list[list[Any]]  # [task_id, idx, channel, task_path, chunks]
    manifest_exists: bool
    values: dict[str, Any] = field(default_factory=dict)
    write_values: dict[tuple[str, int], Any] = field(default_factory=dict)

    def blob_keys(self, ctx: Context, thread_id: str, ns: str) -> dict[str, str]:
        versions = self.checkpoint.get("channel_versions", {})
        return {ch: ctx.keys.blob(thread_id, ns, ch, versions[ch]) for ch in self.present if ch in versions}

    def write_keys(self, ctx: Context, thread_id: str, ns: str) -> list[str]:
        return [ctx.keys.write(thread_id, ns, self.checkpoint_id, w[0], w[1]) for w in self.writes]

    def all_keys(self, ctx: Context, thread_id: str, ns: str) -> list[str]:
        """Every key of this checkpoint except shared blobs it does not own."""
        keys = _with_chunks(ctx.keys.checkpoint(thread_id, ns, self.checkpoint_id), self.doc_chunks)
        keys.append(ctx.keys.writes(thread_id, ns, self.checkpoint_id))
        for w in self.writes:
            keys += _with_chunks(ctx.keys.write(thread_id, ns, self.checkpoint_id, w[0], w[1]), int(w[4]))
        return keys

    def to_tuple(self, thread_id: str, ns: str) -> CheckpointTuple:
        checkpoint = dict(self.checkpoint)
        checkpoint["channel_values"] = dict(self.values)
        ordered = sorted(self.writes, key=lambda w: writes_sort_key(w[3], w[0], w[1]))
        return CheckpointTuple(
            config=_config(thread_id, ns, self.checkpoint_id),
            checkpoint=checkpoint,  # type: ignore[arg-type]
            metadata=self.metadata,  # type: ignore[arg-type]
            parent_config=_config(thread_id, ns, self.parent) if self.parent else None,
            pending_writes=[(w[0], w[2], self.write_values[(w[0], w[1])]) for w in ordered],
        )


def load_docs(ctx: Context, thread_id: str, ns: str, ids: Sequence[str]) -> Plan:
    """Documents and write manifests of ``ids`` (one round trip): ``{id: Loaded | None}``."""
    wanted: dict[str, bytes] = {}
    for cid in ids:
        wanted[ctx.keys.checkpoint(thread_id, ns, cid)] = KIND_CHECKPOINT
        wanted[ctx.keys.writes(thread_id, ns, cid)] = KIND_WRITES
    values = yield from read_values(ctx, wanted)
    out: dict[str, Loaded | None] = {}
    for cid in ids:
        doc_key = ctx.keys.checkpoint(thread_id, ns, cid)
        doc = values[doc_key]
        if doc is None:
            out[cid] = None
            continue
        header, payload = doc
        try:
            checkpoint = ctx.serde.loads_typed((header["t"], payload))
            manifest = values[ctx.keys.writes(thread_id, ns, cid)]
            out[cid] = Loaded(
                checkpoint_id=cid,
                checkpoint=checkpoint,
                metadata=decode_metadata(ctx.serde, header.get("meta")),
                parent=header.get("parent"),
                present=list(header.get("present", [])),
                owned=list(header.get("owned", [])),
                doc_chunks=int(header.get("chunks", 0)),
                writes=list(manifest[0].get("w", [])) if manifest else [],
                manifest_exists=manifest is not None,
            )
        except CheckpointDataError:
            raise
        except Exception as exc:
            raise CheckpointDataError(
                f"state store {ctx.store!r}, key {doc_key!r}: checkpoint {cid!r} of thread {thread_id!r} "
                f"cannot be decoded with the configured serializer: {exc!r}"
            ) from exc
    return out


def load_values(ctx: Context, thread_id: str, ns: str, docs: Sequence[Loaded]) -> Plan:
    """Channel values and pending-write values of loaded documents (one round trip)."""
    wanted: dict[str, bytes] = {}
    for doc in docs:
        for key in doc.blob_keys(ctx, thread_id, ns).values():
            wanted[key] = KIND_BLOB
        for key in doc.write_keys(ctx, thread_id, ns):
            wanted[key] = KIND_WRITE
    values = yield from read_values(ctx, wanted)
    for doc in docs:
        for channel, key in doc.blob_keys(ctx, thread_id, ns).items():
            found = values[key]
            if found is None:
                if ctx.ttl is not None:
                    continue
                raise CheckpointDataError(
                    f"state store {ctx.store!r}, key {key!r}: the value of channel {channel!r} of "
                    f"checkpoint {doc.checkpoint_id!r} (thread {thread_id!r}) is missing; it was "
                    "deleted outside this checkpointer."
                )
            doc.values[channel] = _loads(ctx, found, key)
        kept = []
        for w, key in zip(doc.writes, doc.write_keys(ctx, thread_id, ns), strict=True):
            found = values[key]
            if found is None:
                if ctx.ttl is not None:
                    continue
                raise CheckpointDataError(
                    f"state store {ctx.store!r}, key {key!r}: pending write {w[1]} of task {w[0]!r} "
                    f"on checkpoint {doc.checkpoint_id!r} is listed but missing."
                )
            doc.write_values[(w[0], w[1])] = _loads(ctx, found, key)
            kept.append(w)
        doc.writes = kept


def _loads(ctx: Context, found: tuple[dict[str, Any], bytes], key: str) -> Any:
    header, payload = found
    try:
        return ctx.serde.loads_typed((header["t"], payload))
    except Exception as exc:
        raise CheckpointDataError(
            f"state store {ctx.store!r}, key {key!r}: cannot be decoded with the configured serializer: {exc!r}"
        ) from exc


def load_tuples(ctx: Context, thread_id: str, ns: str, ids: Sequence[str]) -> Plan:
    """Full checkpoint tuples for ``ids`` (two round trips): ``[CheckpointTuple | None]``."""
    docs = yield from load_docs(ctx, thread_id, ns, ids)
    present = [d for d in docs.values() if d is not None]
    yield from load_values(ctx, thread_id, ns, present)
    return [docs[cid].to_tuple(thread_id, ns) if docs[cid] is not None else None for cid in ids]  # type: ignore[union-attr]


# --------------------------------------------------------------------------------------------
# put / put_writes
# --------------------------------------------------------------------------------------------


def plan_put(
    ctx: Context,
    config: RunnableConfig,
    checkpoint: Mapping[str, Any],
    metadata: Mapping[str, Any],
    new_versions: Mapping[str, Any],
) -> Plan:
    thread_id = thread_id_of(config)
    ns = _ns_of(config)
    parent = (config.get("configurable") or {}).get("checkpoint_id")
    meta = dict(_checkpoint_metadata(config, metadata))  # type: ignore[arg-type]
    yield from put_checkpoint(ctx, thread_id, ns, checkpoint, meta, parent, new_versions)
    return _config(thread_id, ns, checkpoint["id"])


def put_checkpoint(
    ctx: Context,
    thread_id: str,
    ns: str,
    checkpoint: Mapping[str, Any],
    meta: dict[str, Any],
    parent: str | None,
    new_versions: Mapping[str, Any],
) -> Plan:
    """Store one checkpoint: 2 round trips (read the index, one transaction); the first
    checkpoint of a (thread, namespace) takes 2 more to create its etag-guarded index."""
    keys = ctx.keys
    cid = str(checkpoint["id"])
    values: Mapping[str, Any] = checkpoint.get("channel_values") or {}
    versions: Mapping[str, Any] = checkpoint.get("channel_versions") or {}
    body = {k: v for k, v in checkpoint.items() if k != "channel_values"}
    doc_type, doc_payload = ctx.serde.dumps_typed(body)
    present = sorted(ch for ch in values if ch in versions)
    # Serialize outside the retry loop: a conflict re-plans the index, not the values.
    fresh = {ch: (new_versions[ch], ctx.serde.dumps_typed(values[ch])) for ch in new_versions if ch in values}
    meta_value = encode_metadata(ctx.serde, meta)
    run_id = meta.get("run_id")
    run_key = keys.run(str(run_id)) if isinstance(run_id, str) and run_id else None
    index_key, thread_key = keys.index(thread_id, ns), keys.thread(thread_id)
    read_keys = (index_key, thread_key) + ((run_key,) if run_key else ())
    failure: tuple[dict[str, str | None], Failed] | None = None

    for _attempt in range(ctx.max_retries):
        items: dict[str, Item] = yield Read(read_keys)
        index_item, thread_item = items[index_key], items[thread_key]
        if failure is not None and all(items[k].etag == etag for k, etag in failure[0].items()):
            raise StateStoreError(
                f"state store {ctx.store!r}: storing checkpoint {cid!r} of thread {thread_id!r} "
                f"failed: {failure[1].error}"
            ) from failure[1].error
        if index_item.data is None or thread_item.data is None:
            # No store can insert-only inside a transaction, so the etag-guarded keys are
            # created empty first (insert-only); the next pass updates them under their etags.
            missing = [
                (key, value, True)
                for key, value, item in (
                    (index_key, _empty_index(), index_item),
                    (thread_key, encode(KIND_THREAD, {"ns": []}), thread_item),
                )
                if item.data is None
            ]
            result = yield Insert(tuple(missing), ttl=ctx.ttl)
            failure = ({k: None for k, _, _ in missing}, result) if isinstance(result, Failed) else None
            continue
        index = Index.decode(index_item.data, key=index_key, store=ctx.store)
        namespaces = _decode_list(
            thread_item.data, key=thread_key, ctx=ctx, kind=KIND_THREAD, field_name="ns"
        )
        ops: list[Upsert | Delete] = []
        owned = []
        now = time.time()
        blob_times: dict[str, list[Any]] = {}
        to_write = dict(fresh)
        if ctx.ttl is not None:
            for ch in present:
                if ch in to_write:
                    continue
                seen = index.blob_times.get(ch)
                if seen and str(seen[0]) == str(versions[ch]) and now - float(seen[1]) < ctx.ttl:
                    blob_times[ch] = seen
                else:  # unknown age or older than ttl: refresh it so it outlives this checkpoint
                    to_write[ch] = (versions[ch], ctx.serde.dumps_typed(values[ch]))
        for ch, (version, (kind, data)) in to_write.items():
            blob_ops, chunks = _value_ops(
                ctx, KIND_BLOB, keys.blob(thread_id, ns, ch, version), {"t": kind}, data, ctx.blob_ttl
            )
            ops += blob_ops
            if ch in fresh:
                owned.append([ch, version, chunks])
            if ctx.ttl is not None:
                blob_times[ch] = [version, now]
        doc_header = {"t": doc_type, "parent": parent, "meta": meta_value, "present": present, "owned": owned}
        doc_ops, _ = _value_ops(
            ctx, KIND_CHECKPOINT, keys.checkpoint(thread_id, ns, cid), doc_header, doc_payload, ctx.ttl
        )
        ops += doc_ops
        sealed = index.add([cid, parent, meta_value], ctx.page_size)
        if sealed is not None:
            ops.append(
                Upsert(
                    keys.page(thread_id, ns, sealed[0]),
                    encode(KIND_PAGE, {"entries": sealed[1]}),
                    ttl=ctx.ttl,
                )
            )
        if ctx.ttl is not None:
            index.blob_times = blob_times
        guarded: dict[str, str | None] = {index_key: index_item.etag}
        ops.append(Upsert(index_key, index.encode(), etag=index_item.etag, ttl=ctx.ttl))
        if ns not in namespaces or ctx.ttl is not None:
            guarded[thread_key] = thread_item.etag
            new_ns = namespaces if ns in namespaces else [*namespaces, ns]
            ops.append(
                Upsert(thread_key, encode(KIND_THREAD, {"ns": new_ns}), etag=thread_item.etag, ttl=ctx.ttl)
            )
        if run_key:
            run_item = items[run_key]
            threads = _decode_list(run_item.data, key=run_key, ctx=ctx, kind=KIND_RUN, field_name="threads")
            if thread_id not in threads:
                guarded[run_key] = run_item.etag
                ops.append(
                    Upsert(
                        run_key,
                        encode(KIND_RUN, {"threads": [*threads, thread_id]}),
                        etag=run_item.etag,
                        ttl=ctx.ttl,
                    )
                )
        result = yield Transact(tuple(ops))
        if not isinstance(result, Failed):
            return None
        failure = (guarded, result)
        yield from _backoff()
    raise CheckpointConflictError(
        f"state store {ctx.store!r}, key {index_key!r}: storing checkpoint {cid!r} of thread "
        f"{thread_id!r} (namespace {ns!r}) lost {ctx.max_retries} races with concurrent writers; "
        "retry the step, or give concurrent runs distinct thread ids."
    )


def _backoff() -> Plan:
    # Contention on one thread is short-lived (the winner's transaction is already applied), so
    # a small random pause is enough to let racing writers spread out.
    yield Pause(random.uniform(0.001, 0.01))


def plan_put_writes(
    ctx: Context, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str
) -> Plan:
    thread_id = thread_id_of(config)
    ns = _ns_of(config)
    checkpoint_id = (config.get("configurable") or {}).get("checkpoint_id")
    if not checkpoint_id:
        raise KeyError(
            "checkpoint_id: put_writes needs the config returned by put() (configurable.checkpoint_id)"
        )
    indexed = [
        (WRITES_IDX_MAP.get(channel, idx), channel, value) for idx, (channel, value) in enumerate(writes)
    ]
    yield from put_writes(ctx, thread_id, ns, str(checkpoint_id), indexed, task_id, task_path)


def put_writes(
    ctx: Context,
    thread_id: str,
    ns: str,
    checkpoint_id: str,
    writes: Sequence[tuple[int, str, Any]],
    task_id: str,
    task_path: str,
) -> Plan:
    """Store pending writes, idempotent per (task, idx): 2 round trips, 1 when nothing is new.
    Special writes (errors, interrupts; negative idx) replace an earlier one, as in LangGraph's
    own savers."""
    if not writes:
        return
    keys = ctx.keys
    manifest_key = keys.writes(thread_id, ns, checkpoint_id)
    serialized = [(idx, channel, ctx.serde.dumps_typed(value)) for idx, channel, value in writes]
    failure: tuple[str | None, Failed] | None = None
    for _attempt in range(ctx.max_retries):
        items: dict[str, Item] = yield Read((manifest_key,))
        item = items[manifest_key]
        if failure is not None and item.etag == failure[0]:
            raise StateStoreError(
                f"state store {ctx.store!r}: storing writes of task {task_id!r} on checkpoint "
                f"{checkpoint_id!r} (thread {thread_id!r}) failed: {failure[1].error}"
            ) from failure[1].error
        entries = _decode_list(item.data, key=manifest_key, ctx=ctx, kind=KIND_WRITES, field_name="w")
        existing = {(e[0], e[1]): e for e in entries}
        ops: list[Upsert | Delete] = []
        for idx, channel, (kind, data) in serialized:
            old = existing.get((task_id, idx))
            if old is not None and idx >= 0:
                continue
            key = keys.write(thread_id, ns, checkpoint_id, task_id, idx)
            value_ops, chunks = _value_ops(ctx, KIND_WRITE, key, {"t": kind}, data, ctx.ttl)
            ops += value_ops
            if old is not None:  # a replaced special write may have had more chunks
                ops += [Delete(chunk_key(key, n)) for n in range(chunks + 1, int(old[4]) + 1)]
            existing[(task_id, idx)] = [task_id, idx, channel, task_path, chunks]
        if not ops:
            return
        manifest = encode(KIND_WRITES, {"w": list(existing.values())})
        if item.data is None:
            # The first writes on a checkpoint create its manifest insert-only, in the same
            # (non-transactional) call as the values: concurrent tasks race on the insert and
            # the losers merge under the etag, and ``put`` never touches the manifest.
            inserts = [(op.key, op.value, False) for op in ops if isinstance(op, Upsert)]
            result = yield Insert((*inserts, (manifest_key, manifest, True)), ttl=ctx.ttl)
            if not isinstance(result, Failed):
                return
            failure = (None, result)
            continue
        ops.append(Upsert(manifest_key, manifest, etag=item.etag, ttl=ctx.ttl))
        result = yield Transact(tuple(ops))
        if not isinstance(result, Failed):
            return
        failure = (item.etag, result)
        yield from _backoff()
    raise CheckpointConflictError(
        f"state store {ctx.store!r}, key {manifest_key!r}: storing writes of task {task_id!r} lost "
        f"{ctx.max_retries} races with concurrent writers; retry the step."
    )


# --------------------------------------------------------------------------------------------
# get_tuple / list / delta history
# --------------------------------------------------------------------------------------------


def _read_index(ctx: Context, thread_id: str, ns: str) -> Plan:
    key = ctx.keys.index(thread_id, ns)
    items: dict[str, Item] = yield Read((key,))
    data = items[key].data
    return None if data is None else Index.decode(data, key=key, store=ctx.store)


def plan_get_tuple(ctx: Context, config: RunnableConfig) -> Plan:
    """At most 3 round trips: the index (only without a checkpoint_id), documents, values."""
    thread_id = thread_id_of(config)
    ns = _ns_of(config)
    checkpoint_id = get_checkpoint_id(config)
    if not checkpoint_id:
        index = yield from _read_index(ctx, thread_id, ns)
        if index is None or index.latest is None:
            return None
        checkpoint_id = index.latest
    tuples = yield from load_tuples(ctx, thread_id, ns, [checkpoint_id])
    return tuples[0]


def plan_list(
    ctx: Context,
    config: RunnableConfig | None,
    filter: Mapping[str, Any] | None,
    before: RunnableConfig | None,
    limit: int | None,
) -> Plan:
    if config is None or not (config.get("configurable") or {}).get("thread_id"):
        raise ValueError(
            "list() needs a config with configurable.thread_id: Dapr state stores cannot enumerate "
            "keys, so checkpoints are listed per thread (DaprCheckpointer keeps a per-thread index)."
        )
    thread_id = thread_id_of(config)
    configurable = config.get("configurable") or {}
    only_id = get_checkpoint_id(config)
    before_id = get_checkpoint_id(before) if before else None
    if "checkpoint_ns" in configurable and configurable["checkpoint_ns"] is not None:
        namespaces = [str(configurable["checkpoint_ns"])]
    else:
        key = ctx.keys.thread(thread_id)
        items: dict[str, Item] = yield Read((key,))
        namespaces = _decode_list(items[key].data, key=key, ctx=ctx, kind=KIND_THREAD, field_name="ns")
    if limit is not None and limit <= 0:
        return
    remaining = [limit]
    for ns in namespaces:
        yield from _list_namespace(ctx, thread_id, ns, filter, before_id, only_id, remaining)
        if remaining[0] is not None and remaining[0] <= 0:
            return


def _list_namespace(
    ctx: Context,
    thread_id: str,
    ns: str,
    filter: Mapping[str, Any] | None,
    before_id: str | None,
    only_id: str | None,
    remaining: list[int | None],
) -> Plan:
    index = yield from _read_index(ctx, thread_id, ns)
    if index is None:
        return
    reader = IndexReader(ctx, thread_id, ns, index)
    if before_id:
        reader.skip_pages_from(before_id)
    emitted: set[str] = set()
    while True:
        threshold = reader.threshold()
        ready = sorted(
            (
                e
                for cid, e in reader.entries.items()
                if cid not in emitted and (threshold is None or cid > threshold)
            ),
            key=lambda e: e[0],
            reverse=True,
        )
        emitted.update(e[0] for e in ready)
        matched = [
            e[0]
            for e in ready
            if (before_id is None or e[0] < before_id)
            and (only_id is None or e[0] == only_id)
            and _matches(decode_metadata(ctx.serde, e[2]), filter)
        ]
        while matched:
            room = LOAD_BATCH if remaining[0] is None else min(LOAD_BATCH, remaining[0])
            batch, matched = matched[:room], matched[room:]
            for found in (yield from load_tuples(ctx, thread_id, ns, batch)):
                if found is None:
                    continue  # expired (ttl) between reading the index and the document
                yield Emit(found)
                if remaining[0] is not None:
                    remaining[0] -= 1
                    if remaining[0] <= 0:
                        return
        if not reader.unread:
            return
        yield from reader.read_more()


def plan_delta_history(ctx: Context, config: RunnableConfig, channels: Sequence[str]) -> Plan:
    """Per-channel writes and seed along the parent chain, a batch of ancestors per round trip
    (index, then documents + manifests per 32 ancestors, then the values: 3 for short chains)."""
    if not channels:
        return {}
    thread_id = thread_id_of(config)
    ns = _ns_of(config)
    remaining = set(channels)
    collected: list[tuple[Loaded, list[list[Any]]]] = []  # newest ancestor first
    seed_keys: dict[str, str] = {}
    index = yield from _read_index(ctx, thread_id, ns)
    if index is not None:
        reader = IndexReader(ctx, thread_id, ns, index)
        target = get_checkpoint_id(config) or index.latest
        cursor = (yield from _parent_of(reader, target)) if target else None
        while cursor and remaining:
            batch: list[str] = []
            while cursor and len(batch) < LOAD_BATCH:
                if cursor not in reader.entries:
                    if not reader.unread:
                        break
                    yield from reader.read_more()
                    continue
                batch.append(cursor)
                cursor = reader.entries[cursor][1]
            if not batch:
                break
            docs = yield from load_docs(ctx, thread_id, ns, batch)
            for cid in batch:
                doc = docs[cid]
                if doc is None:  # pruned (or expired): the chain ends here
                    cursor = None
                    break
                versions = doc.checkpoint.get("channel_versions", {})
                wanted = [w for w in doc.writes if w[2] in remaining]
                collected.append((doc, wanted))
                for ch in [c for c in remaining if c in doc.present and c in versions]:
                    seed_keys[ch] = ctx.keys.blob(thread_id, ns, ch, versions[ch])
                    remaining.discard(ch)
                if not remaining:
                    break
    wanted_values: dict[str, bytes] = {key: KIND_BLOB for key in seed_keys.values()}
    for doc, writes in collected:
        for w in writes:
            wanted_values[ctx.keys.write(thread_id, ns, doc.checkpoint_id, w[0], w[1])] = KIND_WRITE
    values = yield from read_values(ctx, wanted_values)
    result: dict[str, dict[str, Any]] = {ch: {"writes": []} for ch in channels}
    for doc, writes in reversed(collected):  # oldest ancestor first
        for w in sorted(writes, key=lambda w: writes_sort_key(w[3], w[0], w[1])):
            key = ctx.keys.write(thread_id, ns, doc.checkpoint_id, w[0], w[1])
            found = values[key]
            if found is None:
                if ctx.ttl is not None:
                    continue
                raise CheckpointDataError(
                    f"state store {ctx.store!r}, key {key!r}: a listed pending write is missing."
                )
            result[w[2]]["writes"].append((w[0], w[2], _loads(ctx, found, key)))
    for ch, key in seed_keys.items():
        found = values[key]
        if found is None:
            if ctx.ttl is not None:
                continue
            raise CheckpointDataError(
                f"state store {ctx.store!r}, key {key!r}: the seed value of channel {ch!r} is missing."
            )
        result[ch]["seed"] = _loads(ctx, found, key)
    return result


def _parent_of(reader: IndexReader, checkpoint_id: str) -> Plan:
    while checkpoint_id not in reader.entries and reader.unread:
        yield from reader.read_more()
    entry = reader.entries.get(checkpoint_id)
    return entry[1] if entry else None


# --------------------------------------------------------------------------------------------
# delete_thread / delete_for_runs / prune / copy_thread
# --------------------------------------------------------------------------------------------


@dataclass
class NamespaceState:
    ns: str
    index: Index
    etag: str | None
    entries: dict[str, list[Any]]
    page_numbers: list[int]


def read_thread(ctx: Context, thread_id: str) -> Plan:
    """The registry etag, and every namespace's index with all its entries."""
    thread_key = ctx.keys.thread(thread_id)
    items: dict[str, Item] = yield Read((thread_key,))
    namespaces = _decode_list(
        items[thread_key].data, key=thread_key, ctx=ctx, kind=KIND_THREAD, field_name="ns"
    )
    states: list[NamespaceState] = []
    if namespaces:
        index_keys = {ctx.keys.index(thread_id, ns): ns for ns in namespaces}
        heads: dict[str, Item] = yield Read(tuple(index_keys))
        for key, ns in index_keys.items():
            data = heads[key].data
            if data is None:
                continue
            index = Index.decode(data, key=key, store=ctx.store)
            reader = IndexReader(ctx, thread_id, ns, index)
            yield from reader.read_all()
            states.append(
                NamespaceState(ns, index, heads[key].etag, reader.entries, [p[0] for p in index.pages])
            )
    return items[thread_key], states


def load_all_docs(ctx: Context, thread_id: str, ns: str, ids: Sequence[str]) -> Plan:
    out: dict[str, Loaded | None] = {}
    for start in range(0, len(ids), LOAD_BATCH):
        out.update((yield from load_docs(ctx, thread_id, ns, ids[start : start + LOAD_BATCH])))
    return out


def _owned_keys(
    ctx: Context, thread_id: str, ns: str, owned: Iterable[Sequence[Any]]
) -> dict[str, list[str]]:
    """Blob key -> the key and its chunk keys."""
    out: dict[str, list[str]] = {}
    for ch, version, chunks in owned:
        key = ctx.keys.blob(thread_id, ns, ch, version)
        out[key] = sorted(set(out.get(key, []) + _with_chunks(key, int(chunks))))
    return out


def plan_delete_thread(ctx: Context, thread_id: str) -> Plan:
    thread_item, states = yield from read_thread(ctx, thread_id)
    if thread_item.data is None:
        return
    index_ops: list[Upsert | Delete] = [Delete(ctx.keys.thread(thread_id))]
    data_keys: list[str] = []
    for state in states:
        index_ops.append(Delete(ctx.keys.index(thread_id, state.ns)))
        index_ops += [Delete(ctx.keys.page(thread_id, state.ns, n)) for n in state.page_numbers]
        docs = yield from load_all_docs(ctx, thread_id, state.ns, sorted(state.entries))
        owned: list[Sequence[Any]] = list(state.index.adopted)
        for doc in docs.values():
            if doc is not None:
                data_keys += doc.all_keys(ctx, thread_id, state.ns)
                owned += doc.owned
        for keys in _owned_keys(ctx, thread_id, state.ns, owned).values():
            data_keys += keys
    # The index goes first: a crash half-way leaves unreachable data, never dangling entries.
    yield from _transact_batches(index_ops, f"deleting the index of thread {thread_id!r}", ctx)
    yield from _transact_batches(
        [Delete(k) for k in dict.fromkeys(data_keys)], f"deleting thread {thread_id!r}", ctx
    )


def _remove_checkpoints(
    ctx: Context,
    thread_id: str,
    state: NamespaceState,
    victims: set[str],
    *,
    keep_index_entries: bool = False,
) -> Plan:
    """Remove ``victims`` from one namespace: index first (etag-guarded), then their keys.
    Blobs they own that survivors still reference are adopted by the index instead."""
    docs = yield from load_all_docs(ctx, thread_id, state.ns, sorted(state.entries))
    survivors = [d for cid, d in docs.items() if d is not None and cid not in victims]
    referenced = {key for d in survivors for key in d.blob_keys(ctx, thread_id, state.ns).values()}
    owned: list[Sequence[Any]] = list(state.index.adopted)
    data_keys: list[str] = []
    for cid in victims:
        doc = docs.get(cid)
        if doc is not None:
            data_keys += doc.all_keys(ctx, thread_id, state.ns)
            owned += doc.owned
    survivor_owned = {key for d in survivors for key in _owned_keys(ctx, thread_id, state.ns, d.owned)}
    adopted: list[list[Any]] = []
    for entry in owned:
        key = ctx.keys.blob(thread_id, state.ns, entry[0], entry[1])
        if key in survivor_owned:
            continue
        if key in referenced:
            if list(entry) not in adopted:
                adopted.append(list(entry))
        else:
            data_keys += _with_chunks(key, int(entry[2]))
    index = state.index
    index.adopted = adopted
    pages = index.rebuild([e for cid, e in state.entries.items() if cid not in victims], ctx.page_size)
    index_key = ctx.keys.index(thread_id, state.ns)
    ops: list[Upsert | Delete] = [
        Upsert(ctx.keys.page(thread_id, state.ns, n), encode(KIND_PAGE, {"entries": entries}), ttl=ctx.ttl)
        for n, entries in pages
    ]
    ops += [Delete(ctx.keys.page(thread_id, state.ns, n)) for n in state.page_numbers]
    ops.append(Upsert(index_key, index.encode(), etag=state.etag, ttl=ctx.ttl))
    result = yield Transact(tuple(ops))
    if isinstance(result, Failed):
        return result
    yield from _transact_batches(
        [Delete(k) for k in dict.fromkeys(data_keys) if k not in referenced],
        f"deleting checkpoints of thread {thread_id!r}",
        ctx,
    )
    return None


def _with_retries(ctx: Context, thread_id: str, what: str, step: Any) -> Plan:
    """Run ``step()`` (a plan returning ``None`` or :class:`Failed`) until it wins its race."""
    for _attempt in range(ctx.max_retries):
        result = yield from step()
        if not isinstance(result, Failed):
            return
        yield from _backoff()
    raise CheckpointConflictError(
        f"state store {ctx.store!r}: {what} of thread {thread_id!r} lost {ctx.max_retries} races with "
        "concurrent writers; retry when the thread is idle."
    )


def plan_delete_for_runs(ctx: Context, run_ids: Sequence[str]) -> Plan:
    wanted = {str(r) for r in run_ids}
    if not wanted:
        return
    run_keys = [ctx.keys.run(r) for r in sorted(wanted)]
    items: dict[str, Item] = yield Read(tuple(run_keys))
    threads: list[str] = []
    for key in run_keys:
        for thread_id in _decode_list(items[key].data, key=key, ctx=ctx, kind=KIND_RUN, field_name="threads"):
            if thread_id not in threads:
                threads.append(thread_id)
    for thread_id in threads:

        def step(thread_id: str = thread_id) -> Plan:
            _, states = yield from read_thread(ctx, thread_id)
            for state in states:
                victims = {
                    cid
                    for cid, e in state.entries.items()
                    if decode_metadata(ctx.serde, e[2]).get("run_id") in wanted
                }
                if victims:
                    result = yield from _remove_checkpoints(ctx, thread_id, state, victims)
                    if isinstance(result, Failed):
                        return result
            return None

        yield from _with_retries(ctx, thread_id, "deleting runs", step)
    yield from _transact_batches(
        [Delete(k) for k in run_keys if items[k].data is not None], "deleting run registries", ctx
    )


def plan_prune(ctx: Context, thread_ids: Sequence[str], strategy: str) -> Plan:
    if strategy not in ("keep_latest", "delete"):
        raise ValueError(f"prune strategy {strategy!r} is not supported; use 'keep_latest' or 'delete'")
    for thread_id in thread_ids:
        if strategy == "delete":
            yield from plan_delete_thread(ctx, str(thread_id))
            continue

        def step(thread_id: str = str(thread_id)) -> Plan:
            _, states = yield from read_thread(ctx, thread_id)
            for state in states:
                keep = state.index.latest
                victims = {cid for cid in state.entries if cid != keep}
                if victims:
                    result = yield from _remove_checkpoints(ctx, thread_id, state, victims)
                    if isinstance(result, Failed):
                        return result
            return None

        yield from _with_retries(ctx, str(thread_id), "pruning", step)


def plan_copy_thread(ctx: Context, source: str, target: str) -> Plan:
    """Replay every checkpoint of ``source`` (oldest first, per namespace) into ``target``:
    the same ids, parents, metadata, values and pending writes, through the normal put path."""
    _, states = yield from read_thread(ctx, source)
    for state in states:
        ids = sorted(state.entries)
        for start in range(0, len(ids), LOAD_BATCH):
            docs = yield from load_docs(ctx, source, state.ns, ids[start : start + LOAD_BATCH])
            loaded = [d for d in docs.values() if d is not None]
            yield from load_values(ctx, source, state.ns, loaded)
            for doc in sorted(loaded, key=lambda d: d.checkpoint_id):
                checkpoint = dict(doc.checkpoint)
                checkpoint["channel_values"] = doc.values
                versions = checkpoint.get("channel_versions", {})
                # The target must own every value this checkpoint references but its (copied)
                # ancestors do not provide: its own blobs plus adopted ones.
                new_versions = {ch: versions[ch] for ch, _, _ in doc.owned if ch in versions}
                if doc.checkpoint_id == min(ids):
                    new_versions = {ch: versions[ch] for ch in doc.values if ch in versions}
                for ch, version, _ in state.index.adopted:
                    if ch in doc.values and str(versions.get(ch)) == str(version):
                        new_versions[ch] = version
                yield from put_checkpoint(
                    ctx, target, state.ns, checkpoint, doc.metadata, doc.parent, new_versions
                )
                by_task: dict[tuple[str, str], list[tuple[int, str, Any]]] = {}
                for w in doc.writes:
                    by_task.setdefault((w[0], w[3]), []).append((w[1], w[2], doc.write_values[(w[0], w[1])]))
                for (task_id, task_path), writes in by_task.items():
                    yield from put_writes(
                        ctx, target, state.ns, doc.checkpoint_id, writes, task_id, task_path
                    )
