"""The storage layout: key names and the binary envelope every value is stored in.

Dapr's state API has no key listing, so everything a read needs is reachable from keys that
can be computed (``thread -> namespaces -> index -> checkpoints -> blobs / writes``). The README
documents the same layout for operators. Every value starts with a magic prefix and a kind
byte, so data under a key that this checkpointer did not write (or that is truncated) is
reported as an error naming the key instead of being read as "nothing stored".
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from ._errors import CheckpointDataError

# 0x93 is never the first byte of UTF-8 text, so no store (or daprd) treats a value as JSON.
MAGIC = b"\x93LGD"
FORMAT_VERSION = 1
_HEADER = struct.Struct(">4sBcI")  # magic, format version, kind, header length

KIND_THREAD = b"T"
KIND_INDEX = b"I"
KIND_PAGE = b"P"
KIND_CHECKPOINT = b"C"
KIND_WRITES = b"M"
KIND_WRITE = b"W"
KIND_BLOB = b"B"
KIND_CHUNK = b"X"
KIND_RUN = b"R"

_KIND_NAMES = {
    KIND_THREAD: "thread registry",
    KIND_INDEX: "checkpoint index",
    KIND_PAGE: "checkpoint index page",
    KIND_CHECKPOINT: "checkpoint",
    KIND_WRITES: "pending-writes manifest",
    KIND_WRITE: "pending write",
    KIND_BLOB: "channel value",
    KIND_CHUNK: "value chunk",
    KIND_RUN: "run registry",
}


def _escape(part: str) -> str:
    # ":" separates key segments, "#" introduces chunk numbers and daprd rejects "||" in keys;
    # escaping them keeps any thread id, namespace or channel name unambiguous.
    return part.replace("%", "%25").replace(":", "%3A").replace("|", "%7C").replace("#", "%23")


@dataclass(frozen=True)
class Keys:
    """Computes every key this checkpointer reads or writes (see the README's layout table)."""

    prefix: str

    def thread(self, thread_id: str) -> str:
        return f"{self.prefix}:thread:{_escape(thread_id)}"

    def run(self, run_id: str) -> str:
        return f"{self.prefix}:run:{_escape(run_id)}"

    def index(self, thread_id: str, ns: str) -> str:
        return f"{self.prefix}:index:{_escape(thread_id)}:{_escape(ns)}"

    def page(self, thread_id: str, ns: str, number: int) -> str:
        return f"{self.index(thread_id, ns)}:{number}"

    def checkpoint(self, thread_id: str, ns: str, checkpoint_id: str) -> str:
        return f"{self.prefix}:checkpoint:{_escape(thread_id)}:{_escape(ns)}:{_escape(checkpoint_id)}"

    def writes(self, thread_id: str, ns: str, checkpoint_id: str) -> str:
        return f"{self.prefix}:writes:{_escape(thread_id)}:{_escape(ns)}:{_escape(checkpoint_id)}"

    def write(self, thread_id: str, ns: str, checkpoint_id: str, task_id: str, idx: int) -> str:
        return (
            f"{self.prefix}:write:{_escape(thread_id)}:{_escape(ns)}:{_escape(checkpoint_id)}"
            f":{_escape(task_id)}:{idx}"
        )

    def blob(self, thread_id: str, ns: str, channel: str, version: str | int | float) -> str:
        return f"{self.prefix}:blob:{_escape(thread_id)}:{_escape(ns)}:{_escape(channel)}:{_escape(str(version))}"


def chunk_key(key: str, number: int) -> str:
    """The key of chunk ``number`` (1-based) of a value split because it exceeded the size cap."""
    return f"{key}#{number}"


def encode(kind: bytes, header: dict[str, Any], payload: bytes = b"") -> bytes:
    """One stored value: magic, format version, kind, a JSON header and an opaque payload."""
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    return _HEADER.pack(MAGIC, FORMAT_VERSION, kind, len(head)) + head + payload


def decode(data: bytes, *, key: str, store: str, kind: bytes) -> tuple[dict[str, Any], bytes]:
    """The header and payload of a value of ``kind``; :class:`CheckpointDataError` otherwise."""
    expected = _KIND_NAMES[kind]
    if len(data) < _HEADER.size or data[:4] != MAGIC:
        raise CheckpointDataError(
            f"state store {store!r}, key {key!r}: expected a {expected} written by "
            f"dapr-agents-ext-langgraph but found {len(data)} bytes of other data "
            f"(starting {data[:16]!r}); another program wrote under this key prefix. Use a "
            "different key_prefix or remove the foreign key."
        )
    _, version, found, size = _HEADER.unpack_from(data)
    if version != FORMAT_VERSION:
        raise CheckpointDataError(
            f"state store {store!r}, key {key!r}: storage format {version} is not supported by "
            f"this version (format {FORMAT_VERSION}); upgrade dapr-agents-ext-langgraph."
        )
    if found != kind:
        raise CheckpointDataError(
            f"state store {store!r}, key {key!r}: expected a {expected} but found a "
            f"{_KIND_NAMES.get(found, repr(found))}; the key layout is corrupt."
        )
    end = _HEADER.size + size
    if len(data) < end:
        raise CheckpointDataError(
            f"state store {store!r}, key {key!r}: the {expected} is truncated "
            f"({len(data)} bytes, header says at least {end})."
        )
    try:
        header = json.loads(data[_HEADER.size : end])
    except ValueError as exc:
        raise CheckpointDataError(
            f"state store {store!r}, key {key!r}: unreadable {expected} header: {exc}"
        ) from exc
    if not isinstance(header, dict):
        raise CheckpointDataError(
            f"state store {store!r}, key {key!r}: the {expected} header is not an object"
        )
    return header, data[end:]
