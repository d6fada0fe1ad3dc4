"""The storage layout of a session: key names, the head record and the pages, as pure data.

A session is a log of immutable *pages* plus one small *head* record. Each page is one change:
"keep the first ``base`` items, then append ``items``" (an append has ``base`` = the current
count, a pop has ``base`` = count - 1 and no items, a compaction replaces a suffix). A page also
points at the page holding item ``base - 1`` (``prev``), so the visible history is found by
walking back from the page holding the last item, touching only pages with visible items.

A page is written once, with an insert-only write, at the slot the head names as ``next``;
that insert is the commit point. The head is a cache of the state after the pages before
``next`` (count, last page, sizes), moved forward with etag-guarded writes by the writer or by
anyone who finds it one page behind. Every value here is derived from the previous head and
one page, so any process can roll the head forward. Nothing in this module does I/O.
"""

from __future__ import annotations

import json
import math
import secrets
from dataclasses import dataclass, replace
from typing import Any

#: Version of the stored format, written into every record.
FORMAT_VERSION = 1

#: Serialized items larger than this go to part keys instead of the page. daprd's default
#: request limit is 4 MiB; staying far below it keeps every write and bulk read legal.
INLINE_LIMIT = 512 * 1024

#: Size of one part of an oversized page.
PART_SIZE = 512 * 1024

#: A missing page whose recorded expiry is this close (seconds) counts as expired, not lost:
#: stores compute expiry with their own clock and some round it down to the second.
EXPIRY_TOLERANCE = 5.0


class Keys:
    """The state keys of one session (daprd prefixes them with ``<app-id>||`` in the store)."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.head = f"{session_id}:head"

    def page(self, gen: str, slot: int) -> str:
        return f"{self.session_id}:page:{gen}:{slot}"

    def part(self, token: str, index: int) -> str:
        return f"{self.session_id}:part:{token}:{index}"


def new_token() -> str:
    """A random name for a generation or for the parts of one oversized page."""
    return secrets.token_hex(6)


def expiry(ttl: int | None, now: float) -> int | None:
    """The epoch second at which a record written now with ``ttl`` expires (rounded up)."""
    return None if ttl is None else math.ceil(now + ttl)


def is_expired(exp: float | None, now: float) -> bool:
    """Whether a record that recorded expiry ``exp`` may already have been removed by its store."""
    return exp is not None and exp - EXPIRY_TOLERANCE <= now


@dataclass(frozen=True, slots=True)
class Garbage:
    """A retired generation whose keys still have to be deleted."""

    gen: str
    #: Pages may exist at slots ``0..upto`` inclusive (``upto`` is the head's ``next`` then,
    #: which covers a page committed by a writer that died before moving the head).
    upto: int
    #: ``(token, parts)`` of the oversized pages of that generation.
    big: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Page:
    """One decoded page."""

    base: int
    count: int
    prev: int
    prev_exp: int | None
    exp: int | None
    #: The items, or ``None`` when they are stored in parts.
    items: list[Any] | None
    #: ``(token, number of parts)`` for an oversized page.
    parts: tuple[str, int] | None
    #: Size of the stored value in bytes.
    size: int

    @property
    def end(self) -> int:
        """The item count right after this page."""
        return self.base + self.count


@dataclass(frozen=True, slots=True)
class Head:
    """The head record: the generation and the state after the pages ``0..next-1``."""

    gen: str
    next: int = 0
    count: int = 0
    #: Slot of the page holding item ``count - 1`` (-1 when empty) and its recorded expiry.
    last: int = -1
    last_exp: int | None = None
    #: Bytes of the pages of this generation; readers size their bulk reads with it.
    size: int = 0
    big: tuple[tuple[str, int], ...] = ()
    gc: tuple[Garbage, ...] = ()

    def advance(self, slot: int, page: Page) -> Head:
        """The head after committing ``page`` at ``slot`` (which must be ``next``)."""
        if slot != self.next:
            raise ValueError(f"page slot {slot} does not follow the head (next is {self.next})")
        if page.base > self.count:
            raise ValueError(f"page base {page.base} is beyond the item count {self.count}")
        if page.count:
            last, last_exp = slot, page.exp
        else:
            last, last_exp = page.prev, page.prev_exp
        return replace(
            self,
            next=slot + 1,
            count=page.end,
            last=last,
            last_exp=last_exp,
            size=self.size + page.size,
            big=self.big + ((page.parts,) if page.parts else ()),
        )

    def encode(self) -> bytes:
        record: dict[str, Any] = {
            "v": FORMAT_VERSION,
            "gen": self.gen,
            "next": self.next,
            "count": self.count,
            "last": self.last,
            "last_exp": self.last_exp,
            "size": self.size,
        }
        if self.big:
            record["big"] = [list(entry) for entry in self.big]
        if self.gc:
            record["gc"] = [
                {"gen": g.gen, "upto": g.upto, "big": [list(entry) for entry in g.big]} for g in self.gc
            ]
        return json.dumps(record, separators=(",", ":")).encode()

    @staticmethod
    def decode(data: bytes) -> Head:
        """Parse a stored head; ``ValueError`` describes what is wrong."""
        record = _load_object(data)
        _check_version(record)
        head = Head(
            gen=_str(record, "gen"),
            next=_int(record, "next", 0),
            count=_int(record, "count", 0),
            last=_int(record, "last", -1),
            last_exp=_opt_int(record, "last_exp"),
            size=_int(record, "size", 0),
            big=_big(record.get("big", [])),
            gc=tuple(_garbage(entry) for entry in _list(record, "gc")),
        )
        if (head.count == 0) != (head.last == -1) or head.last >= head.next:
            raise ValueError(f"inconsistent head: count {head.count}, last {head.last}, next {head.next}")
        return head


def make_page(
    *,
    base: int,
    count: int,
    prev: int,
    prev_exp: int | None,
    exp: int | None,
    items_json: str | None,
    parts: tuple[str, int] | None = None,
) -> tuple[Page, bytes]:
    """A page and its stored value; the already serialized items are spliced in, not re-encoded.

    ``items_json`` is ignored when ``parts`` is given (the items then live in part keys).
    """
    header: dict[str, Any] = {
        "v": FORMAT_VERSION,
        # A random id makes every attempt's value unique, so a writer that reads a slot back
        # after an ambiguous error can tell its own page from another writer's.
        "id": new_token(),
        "base": base,
        "count": count,
        "prev": prev,
        "prev_exp": prev_exp,
        "exp": exp,
    }
    if parts is not None:
        header["parts"] = list(parts)
        value = json.dumps(header, separators=(",", ":")).encode()
    else:
        text = json.dumps(header, separators=(",", ":"))
        value = (text[:-1] + ',"items":' + (items_json or "[]") + "}").encode()
    page = Page(
        base=base,
        count=count,
        prev=prev,
        prev_exp=prev_exp,
        exp=exp,
        items=None,
        parts=parts,
        size=len(value),
    )
    return page, value


def decode_page(data: bytes, slot: int) -> Page:
    """Parse a stored page found at ``slot``; ``ValueError`` describes what is wrong."""
    record = _load_object(data)
    _check_version(record)
    base = _int(record, "base")
    count = _int(record, "count")
    prev = _int(record, "prev")
    if base < 0 or count < 0 or prev < -1 or prev >= slot or (prev == -1) != (base == 0):
        raise ValueError(f"inconsistent page header: base {base}, count {count}, prev {prev} at slot {slot}")
    parts = None
    items = None
    if "parts" in record:
        raw = record["parts"]
        if not (
            isinstance(raw, list)
            and len(raw) == 2
            and isinstance(raw[0], str)
            and isinstance(raw[1], int)
            and raw[1] >= 1
        ):
            raise ValueError(f"bad 'parts' field {raw!r}")
        parts = (raw[0], raw[1])
    else:
        items = record.get("items")
        if not isinstance(items, list) or len(items) != count:
            raise ValueError(f"the page declares {count} items but holds {_describe(items)}")
    return Page(
        base=base,
        count=count,
        prev=prev,
        prev_exp=_opt_int(record, "prev_exp"),
        exp=_opt_int(record, "exp"),
        items=items,
        parts=parts,
        size=len(data),
    )


def decode_parts(chunks: list[bytes], count: int) -> list[Any]:
    """Join the parts of an oversized page and parse its items."""
    items = json.loads(b"".join(chunks).decode("utf-8"))
    if not isinstance(items, list) or len(items) != count:
        raise ValueError(f"the parts declare {count} items but hold {_describe(items)}")
    return items


def split_parts(data: bytes) -> list[bytes]:
    """Cut serialized items into parts of at most :data:`PART_SIZE` bytes (anywhere, even
    inside a character: the parts are joined as bytes before decoding)."""
    return [data[start : start + PART_SIZE] for start in range(0, len(data), PART_SIZE)]


# -- validation helpers -------------------------------------------------------------------------


def _describe(value: Any) -> str:
    return f"{len(value)} items" if isinstance(value, list) else f"a {type(value).__name__}"


def _load_object(data: bytes) -> dict[str, Any]:
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not valid JSON ({exc})") from exc
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, found {type(record).__name__}")
    return record


def _check_version(record: dict[str, Any]) -> None:
    version = record.get("v")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"format version {version!r} is not {FORMAT_VERSION}; it was written by a different "
            "version of dapr-agents-ext-openai-agents"
        )


def _int(record: dict[str, Any], name: str, default: int | None = None) -> int:
    value = record.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"field {name!r} must be an integer, found {value!r}")
    return value


def _opt_int(record: dict[str, Any], name: str) -> int | None:
    value = record.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"field {name!r} must be an integer or null, found {value!r}")
    return value


def _str(record: dict[str, Any], name: str) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"field {name!r} must be a non-empty string, found {value!r}")
    return value


def _list(record: dict[str, Any], name: str) -> list[Any]:
    value = record.get(name, [])
    if not isinstance(value, list):
        raise ValueError(f"field {name!r} must be a list, found {value!r}")
    return value


def _big(value: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, list):
        raise ValueError(f"field 'big' must be a list, found {value!r}")
    entries = []
    for entry in value:
        if not (
            isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], str)
            and isinstance(entry[1], int)
        ):
            raise ValueError(f"bad entry {entry!r} in 'big'")
        entries.append((entry[0], entry[1]))
    return tuple(entries)


def _garbage(entry: Any) -> Garbage:
    if not isinstance(entry, dict):
        raise ValueError(f"bad entry {entry!r} in 'gc'")
    return Garbage(gen=_str(entry, "gen"), upto=_int(entry, "upto"), big=_big(entry.get("big", [])))
