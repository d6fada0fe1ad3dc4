"""``DaprSession``: OpenAI Agents SDK conversation memory in any Dapr state store.

The storage layout and its invariants are in :mod:`._log`; this module runs the protocol over
the wire. Every change is one insert-only write of a new page at the slot the head names, then
an etag-guarded move of the head. The insert is the commit point, so:

- a writer that loses the race for a slot wrote nothing and retries at the next slot;
- a writer that dies after its insert has committed; whoever comes next finds the head one page
  behind and rolls it forward (readers simply include that page);
- no operation relies on a multi-key transaction being atomic (daprd's Redis store does not
  roll back a failed transaction), and no key of the live history is ever overwritten.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final, Literal

from agents.memory.session import SessionABC
from agents.memory.session_settings import SessionSettings
from dapr.aio.clients import DaprClient
from dapr.clients.grpc._state import Consistency

from ._errors import (
    ItemNotSerializableError,
    SessionClosedError,
    SessionConflictError,
    SessionCorruptedError,
)
from ._log import (
    INLINE_LIMIT,
    Garbage,
    Head,
    Keys,
    Page,
    decode_page,
    decode_parts,
    expiry,
    is_expired,
    make_page,
    new_token,
    split_parts,
)
from ._store import BULK_READ_BUDGET, StateIO

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

logger = logging.getLogger(__name__)

ConsistencyLevel = Literal["eventual", "strong"]
DAPR_CONSISTENCY_EVENTUAL: ConsistencyLevel = "eventual"
DAPR_CONSISTENCY_STRONG: ConsistencyLevel = "strong"

#: How long one operation keeps retrying lost races before raising SessionConflictError.
_RETRY_BUDGET_SECONDS: Final = 60.0
_BACKOFF_BASE_SECONDS: Final = 0.002
_BACKOFF_CAP_SECONDS: Final = 0.25
#: Pages read per bulk call at most (the byte budget usually binds first).
_MAX_PAGES_PER_READ: Final = 512
#: Parts (512 KiB each) read per bulk call.
_PARTS_PER_READ: Final = 3


class _Outcome(enum.Enum):
    PUBLISHED = "published"
    #: The generation was retired (cleared or replaced) while the page was being committed.
    RETIRED = "retired"


@dataclass
class _Snapshot:
    """The last items of a session as read at one point, with what is needed to replace them."""

    items: list[Any]
    #: Whether ``items`` is the whole retained history.
    complete: bool
    stored: Head | None = None
    etag: str = ""
    #: The page found at the stored head's ``next`` slot (committed, head not yet moved).
    lagging: Page | None = None
    #: ``(slot, page, hi)`` of every page visited, newest first: positions ``page.base..hi-1``.
    visits: list[tuple[int, Page, int]] = field(default_factory=list)

    @property
    def state(self) -> Head | None:
        if self.stored is None or self.lagging is None:
            return self.stored
        return self.stored.advance(self.stored.next, self.lagging)

    def holder_of(self, position: int) -> tuple[int, int | None]:
        """Slot and recorded expiry of the page holding item ``position`` (-1 for none)."""
        if position < 0:
            return -1, None
        for slot, page, hi in self.visits:
            if page.base <= position < hi:
                return slot, page.exp
        oldest = self.visits[-1][1]
        return oldest.prev, oldest.prev_exp


class _VanishedError(Exception):
    """A page the chain points at is missing (expired, retired or lost; the caller decides)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _Backoff:
    """Jittered exponential backoff with a time budget, for lost races.

    It starts where this session's previous operation ended (one step lower): a writer that
    keeps meeting the same contenders keeps a pause that fits their number, instead of
    colliding through the short pauses again on every call. Every lost race means another
    writer made progress, so the pauses only space the contenders out; they never wait for a
    lock holder.
    """

    def __init__(self, session: DaprSession, operation: str) -> None:
        self._session = session
        self._what = f"{operation} on session {session.session_id!r}"
        self._deadline = time.monotonic() + _RETRY_BUDGET_SECONDS
        self._level = max(0, session._contention - 1)
        self.losses = 0

    async def wait(self) -> None:
        self.losses += 1
        self._level = min(self._level + 1, 16)
        self._session._contention = self._level
        if time.monotonic() > self._deadline:
            raise SessionConflictError(
                f"{self._what} lost {self.losses} races to concurrent writers within "
                f"{_RETRY_BUDGET_SECONDS:.0f}s; nothing was changed by this call, so it can be retried"
            )
        # Full jitter: spreads contenders out instead of waking them together.
        await asyncio.sleep(
            random.uniform(0, min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2**self._level))
        )

    def done(self) -> None:
        """Record an operation that succeeded: the next one starts a step lower."""
        self._session._contention = self._level if self.losses else max(0, self._session._contention - 1)


def _coerce_settings(value: SessionSettings | dict[str, Any] | None) -> SessionSettings:
    if value is None:
        return SessionSettings()
    if isinstance(value, SessionSettings):
        return value
    if isinstance(value, dict):
        return SessionSettings(**value)
    raise TypeError(f"session_settings must be a SessionSettings, a dict or None, not {type(value).__name__}")


class DaprSession(SessionABC):
    """A Session of the OpenAI Agents SDK stored in a Dapr state store.

    A drop-in replacement for ``agents.extensions.memory.DaprSession`` (same constructor and
    ``from_address`` arguments) whose appends cost the same at item 10,000 as at item 1, whose
    ``get_items(limit=N)`` reads only the pages holding the last N items, and whose concurrent
    writers, in any number of processes, neither lose nor duplicate items.

    Args:
        session_id: The conversation's id; it prefixes every state key of the session.
        state_store_name: The Dapr state store component (it needs etag support, as every
            Dapr store with transactions has).
        dapr_client: A ``dapr.aio.clients.DaprClient`` you manage. When omitted, the session
            creates one on first use (from ``DAPR_GRPC_ENDPOINT``/``DAPR_GRPC_PORT``) and
            closes it in :meth:`close`.
        ttl: Seconds each stored record lives after it was written. The head is rewritten on
            every change, so an idle session disappears ``ttl`` seconds after its last change;
            in a session active for longer than ``ttl`` the oldest items expire first.
        consistency: ``"eventual"`` or ``"strong"``, passed to the store on every write.
        session_settings: Defaults for session operations; its ``limit`` applies to
            :meth:`get_items` calls that give none.
    """

    session_settings: SessionSettings | None = None

    def __init__(
        self,
        session_id: str,
        *,
        state_store_name: str,
        dapr_client: DaprClient | None = None,
        ttl: int | None = None,
        consistency: ConsistencyLevel = DAPR_CONSISTENCY_EVENTUAL,
        session_settings: SessionSettings | dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(session_id, str) or not session_id or "||" in session_id:
            raise ValueError(
                f"session_id must be a non-empty string without '||' (Dapr's key separator), got {session_id!r}"
            )
        if not isinstance(state_store_name, str) or not state_store_name:
            raise ValueError(
                f"state_store_name must name a Dapr state store component, got {state_store_name!r}"
            )
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0):
            raise ValueError(f"ttl must be a positive number of seconds or None, got {ttl!r}")
        if dapr_client is not None and not inspect.iscoroutinefunction(
            getattr(dapr_client, "get_state", None)
        ):
            raise TypeError(
                "dapr_client must be the asyncio client, dapr.aio.clients.DaprClient, not "
                f"{type(dapr_client).__module__}.{type(dapr_client).__name__}"
            )
        if consistency not in (DAPR_CONSISTENCY_EVENTUAL, DAPR_CONSISTENCY_STRONG):
            raise ValueError(f"consistency must be 'eventual' or 'strong', got {consistency!r}")
        self.session_id = session_id
        self.session_settings = _coerce_settings(session_settings)
        self._state_store_name = state_store_name
        self._ttl = ttl
        self._consistency = consistency
        self._client: DaprClient | None = dapr_client
        self._owns_client = dapr_client is None
        self._address: str | None = None
        self._closed = False
        #: Backoff level that recent operations needed (see _Backoff).
        self._contention = 0
        self._keys = Keys(session_id)
        self._io = StateIO(
            self._dapr,
            state_store_name,
            ttl=ttl,
            consistency=Consistency.strong
            if consistency == DAPR_CONSISTENCY_STRONG
            else Consistency.eventual,
        )

    @classmethod
    def from_address(
        cls,
        session_id: str,
        *,
        state_store_name: str,
        dapr_address: str | None = None,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> DaprSession:
        """A session with its own Dapr client for the sidecar at ``dapr_address``.

        ``dapr_address`` is a gRPC address such as ``"localhost:50001"``; when omitted, the
        Dapr SDK's settings decide (``DAPR_GRPC_ENDPOINT``, or ``DAPR_RUNTIME_HOST`` and
        ``DAPR_GRPC_PORT``, as set by ``dapr run``). ``kwargs`` go to the constructor
        (``ttl``, ``consistency``). The client is created on first use and closed by
        :meth:`close`.
        """
        session = cls(
            session_id,
            state_store_name=state_store_name,
            session_settings=session_settings,
            **kwargs,
        )
        session._address = dapr_address
        return session

    # -- lifecycle ------------------------------------------------------------------------------

    async def _dapr(self) -> DaprClient:
        if self._closed:
            raise SessionClosedError(f"DaprSession {self.session_id!r} is closed")
        if self._client is None:
            # Created here, on the running loop, because grpc.aio channels belong to a loop.
            self._client = DaprClient(address=self._address)
        return self._client

    async def close(self) -> None:
        """Close the Dapr client if the session created it (then the session is unusable).

        A client passed in by the caller is left open, and the session stays usable.
        """
        if not self._owns_client:
            return
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def __aenter__(self) -> DaprSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def ping(self) -> bool:
        """Whether the sidecar and the state store answer (a read of the head record)."""
        try:
            await self._io.get(self._keys.head)
        except SessionClosedError:
            raise
        except Exception as error:
            logger.warning("Dapr state store %r did not answer: %s", self._state_store_name, error)
            return False
        return True

    # -- the Session protocol -------------------------------------------------------------------

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The conversation history, oldest first; with ``limit``, only the latest ``limit`` items.

        When ``limit`` is ``None`` the session settings' ``limit`` applies.
        """
        if limit is None and self.session_settings is not None:
            limit = self.session_settings.limit
        if limit is not None and limit <= 0:
            await self._dapr()  # a closed session still refuses
            return []
        snapshot = await self._snapshot(limit)
        return snapshot.items

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append items (one page; one insert and one small head update, whatever the history)."""
        await self._dapr()
        if not items:
            return
        items_json, data = self._serialize(items)
        parts = await self._write_parts(data) if len(data) > INLINE_LIMIT else None
        keep_parts = False
        backoff = _Backoff(self, "add_items")
        stuck: tuple[str, int] | None = None
        try:
            while True:
                stored, etag = await self._read_head()
                if stored is None:
                    # A new session: commit page 0 of a fresh generation, then create the head
                    # insert-only. Two first writers cannot both succeed (the loser retries).
                    head = Head(gen=new_token())
                    page, value = self._new_page(head.count, len(items), -1, None, items_json, parts)
                    page_key = self._keys.page(head.gen, 0)
                    if not await self._io.insert(page_key, value):
                        await backoff.wait()
                        continue
                    keep_parts = True
                    # Another writer may advance our head as soon as it exists, so a read-back
                    # after an ambiguous failure recognises it by its generation, not its bytes.
                    if await self._io.insert(
                        self._keys.head, head.advance(0, page).encode(), _same_gen(head.gen)
                    ):
                        backoff.done()
                        return
                    keep_parts = False
                    await self._forget(page_key)
                    await backoff.wait()
                    continue
                if stuck == (stored.gen, stored.next):
                    # The slot we lost is still the head's next: its writer died or stalls
                    # between its insert and its head update. Move the head for it.
                    await self._roll_forward(stored, etag)
                    stuck = None
                    continue
                slot = stored.next
                page, value = self._new_page(
                    stored.count, len(items), stored.last, stored.last_exp, items_json, parts
                )
                page_key = self._keys.page(stored.gen, slot)
                if not await self._io.insert(page_key, value):
                    stuck = (stored.gen, slot)
                    await backoff.wait()
                    continue
                keep_parts = True
                if await self._publish(stored, etag, None, slot, page) is _Outcome.PUBLISHED:
                    backoff.done()
                    return
                # Committed into a generation that was cleared or replaced meanwhile: drop it
                # and append again to the live one, so a concurrent clear never eats the add.
                keep_parts = False
                await self._forget(page_key)
        finally:
            if parts is not None and not keep_parts:
                await self._forget(*(self._keys.part(parts[0], index) for index in range(parts[1])))

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the latest item (``None`` when empty): one small page, one head update."""
        await self._dapr()
        backoff = _Backoff(self, "pop_item")
        stuck: tuple[str, int] | None = None
        while True:
            stored, etag = await self._read_head()
            if stored is None:
                return None
            if stuck == (stored.gen, stored.next):
                await self._roll_forward(stored, etag)
                stuck = None
                continue
            slots = [stored.next] + ([stored.last] if stored.last >= 0 else [])
            pages = await self._fetch_pages(stored.gen, slots)
            lagging = self._decode_page(stored.gen, stored.next, pages[stored.next])
            if lagging is not None:
                await self._roll_forward(stored, etag, lagging)
                continue
            if stored.count == 0:
                return None
            page = self._decode_page(stored.gen, stored.last, pages[stored.last])
            if page is None:
                if is_expired(stored.last_exp, time.time()):
                    return None  # the whole retained history has expired
                await self._check_vanished(stored, self._keys.page(stored.gen, stored.last))
                continue
            try:
                items = await self._page_items(stored.gen, stored.last, page)
            except _VanishedError as vanished:
                if is_expired(page.exp, time.time()):
                    return None
                await self._check_vanished(stored, vanished.key)
                continue
            position = stored.count - 1
            if not page.base <= position < page.end:
                raise self._corrupt(
                    self._keys.page(stored.gen, stored.last),
                    ValueError(f"the page covers items {page.base}..{page.end - 1}, not item {position}"),
                )
            item = items[position - page.base]
            if page.base < position:
                prev, prev_exp = stored.last, stored.last_exp
            else:
                prev, prev_exp = page.prev, page.prev_exp
            record, value = self._new_page(position, 0, prev, prev_exp, None, None)
            record_key = self._keys.page(stored.gen, stored.next)
            if not await self._io.insert(record_key, value):
                stuck = (stored.gen, stored.next)
                await backoff.wait()
                continue
            if await self._publish(stored, etag, None, stored.next, record) is _Outcome.RETIRED:
                # Cleared meanwhile: this pop is ordered before the clear, the item is the one
                # it removed. The record sits in a retired generation; drop it.
                await self._forget(record_key)
            backoff.done()
            return item  # type: ignore[no-any-return]

    async def clear_session(self) -> None:
        """Remove every item: one head update to a new generation, then delete the old keys."""
        await self._dapr()
        backoff = _Backoff(self, "clear_session")
        while True:
            stored, etag = await self._read_head()
            if stored is None:
                return
            retired = Garbage(stored.gen, stored.next, stored.big)
            fresh = Head(gen=new_token(), gc=(*stored.gc, retired))
            if await self._io.replace(self._keys.head, fresh.encode(), etag):
                break
            await backoff.wait()
        await self._collect_garbage()

    # -- compaction hooks of the SDK (private there, looked up with getattr) --------------------

    async def _atomic_replace_items(self, items: list[TResponseInputItem]) -> bool:
        """Replace the whole history in one commit (used by OpenAIResponsesCompactionSession)."""
        await self._dapr()
        items_json, data = self._serialize(items)
        parts = await self._write_parts(data) if items and len(data) > INLINE_LIMIT else None
        keep_parts = False
        backoff = _Backoff(self, "replacing the history")
        try:
            while True:
                stored, etag = await self._read_head()
                gc = (*stored.gc, Garbage(stored.gen, stored.next, stored.big)) if stored else ()
                fresh = Head(gen=new_token(), gc=gc)
                page_key = self._keys.page(fresh.gen, 0)
                if items:
                    page, value = self._new_page(0, len(items), -1, None, items_json, parts)
                    if not await self._io.insert(page_key, value):
                        await backoff.wait()
                        continue
                    fresh = fresh.advance(0, page)
                if stored is None:
                    ok = await self._io.insert(self._keys.head, fresh.encode(), _same_gen(fresh.gen))
                else:
                    ok = await self._io.replace(self._keys.head, fresh.encode(), etag)
                if ok:
                    keep_parts = True
                    break
                if items:
                    await self._forget(page_key)
                await backoff.wait()
        finally:
            if parts is not None and not keep_parts:
                await self._forget(*(self._keys.part(parts[0], index) for index in range(parts[1])))
        await self._collect_garbage()
        return True

    async def _get_compaction_snapshot(self, limit: int, *, prune_prefix: Any = None) -> Any:
        """The latest ``limit`` items and an atomic, conditional replacement of their suffix.

        The replacement is one page that keeps the items before the suffix and appends the
        compacted ones, inserted at the slot that was next when the snapshot was read: if
        anything was written since, the slot is taken and nothing changes (``False``).
        ``prune_prefix`` is accepted for the SDK's signature; expired items are left to the
        store's TTL.
        """
        try:
            from agents.memory.session import _CompactionSnapshot
        except ImportError:  # an SDK without suffix compaction never calls this
            return None
        if type(self) is not DaprSession:
            return None  # subclasses that transform items must supply their own
        snapshot = await self._snapshot(limit)

        async def replace_suffix(start: int, output: list[TResponseInputItem]) -> bool:
            return await self._replace_suffix(snapshot, start, output)

        return _CompactionSnapshot(snapshot.items, snapshot.complete, replace_suffix)

    async def _replace_suffix(self, snapshot: _Snapshot, start: int, output: list[Any]) -> bool:
        state = snapshot.state
        if state is None or snapshot.stored is None or not 0 <= start < len(snapshot.items):
            return False
        output_json, data = self._serialize(output)
        base = state.count - len(snapshot.items) + start
        prev, prev_exp = snapshot.holder_of(base - 1)
        parts = await self._write_parts(data) if output and len(data) > INLINE_LIMIT else None
        page, value = self._new_page(base, len(output), prev, prev_exp, output_json, parts)
        page_key = self._keys.page(state.gen, state.next)
        if await self._io.insert(page_key, value):
            outcome = await self._publish(snapshot.stored, snapshot.etag, snapshot.lagging, state.next, page)
            if outcome is _Outcome.PUBLISHED:
                return True
            await self._forget(page_key)
        if parts is not None:
            await self._forget(*(self._keys.part(parts[0], index) for index in range(parts[1])))
        return False

    # -- reading --------------------------------------------------------------------------------

    async def _read_head(self) -> tuple[Head | None, str]:
        data, etag = await self._io.get(self._keys.head)
        if data is None:
            return None, ""
        try:
            return Head.decode(data), etag
        except ValueError as error:
            raise self._corrupt(self._keys.head, error) from error

    async def _fetch_pages(self, gen: str, slots: Sequence[int]) -> dict[int, bytes | None]:
        """Stored pages by slot, undecoded: a damaged page that is read along but never needed
        must not fail the read."""
        keys = {self._keys.page(gen, slot): slot for slot in slots}
        found = await self._io.get_many(list(keys))
        return {slot: found.get(key) for key, slot in keys.items()}

    def _decode_page(self, gen: str, slot: int, data: bytes | None) -> Page | None:
        if data is None:
            return None
        try:
            return decode_page(data, slot)
        except ValueError as error:
            raise self._corrupt(self._keys.page(gen, slot), error) from error

    async def _page_items(self, gen: str, slot: int, page: Page) -> list[Any]:
        if page.items is not None:
            return page.items
        if page.parts is None:  # pragma: no cover - decode_page guarantees one of the two
            raise self._corrupt(self._keys.page(gen, slot), ValueError("the page holds no items"))
        token, count = page.parts
        keys = [self._keys.part(token, index) for index in range(count)]
        chunks: list[bytes] = []
        for start in range(0, len(keys), _PARTS_PER_READ):
            found = await self._io.get_many(keys[start : start + _PARTS_PER_READ])
            for key in keys[start : start + _PARTS_PER_READ]:
                data = found.get(key)
                if data is None:
                    raise _VanishedError(key)
                chunks.append(data)
        try:
            return decode_parts(chunks, page.count)
        except (ValueError, UnicodeDecodeError) as error:
            raise self._corrupt(keys[0], error) from error

    def _plan(self, state: Head, slot: int, need: int, have: dict[int, bytes | None]) -> list[int]:
        """Slots to read so the walk from ``slot`` likely finds ``need`` items in one call.

        Sized by the head's average items and bytes per page: a few pages too many at worst,
        and a bulk answer that stays within the gRPC message limit.
        """
        pages = max(1, state.next)
        per_page = max(1.0, state.count / pages)
        page_bytes = max(64.0, state.size / pages)
        count = math.ceil(need / per_page) + 1
        count = min(count, slot + 1, _MAX_PAGES_PER_READ, max(1, int(BULK_READ_BUDGET // page_bytes)))
        return [s for s in range(slot - count + 1, slot + 1) if s not in have]

    async def _snapshot(self, limit: int | None) -> _Snapshot:
        backoff = _Backoff(self, "get_items")
        while True:
            stored, etag = await self._read_head()
            if stored is None:
                return _Snapshot(items=[], complete=True)
            want = stored.count if limit is None else min(limit, stored.count)
            pages = await self._fetch_pages(
                stored.gen,
                [*self._plan(stored, stored.last, want, {}), stored.next]
                if stored.last >= 0
                else [stored.next],
            )
            lagging = self._decode_page(stored.gen, stored.next, pages[stored.next])
            snapshot = _Snapshot(items=[], complete=False, stored=stored, etag=etag, lagging=lagging)
            state = self._state_of(snapshot)
            want = state.count if limit is None else min(limit, state.count)
            try:
                await self._walk(snapshot, state, want, pages)
            except _VanishedError as vanished:
                # Retired meanwhile (a clear deletes the old generation's keys), or lost.
                await self._check_vanished(stored, vanished.key)
                await backoff.wait()
                continue
            return snapshot

    def _state_of(self, snapshot: _Snapshot) -> Head:
        try:
            state = snapshot.state
        except ValueError as error:
            assert snapshot.stored is not None
            key = self._keys.page(snapshot.stored.gen, snapshot.stored.next)
            raise self._corrupt(key, error) from error
        assert state is not None
        return state

    async def _walk(
        self, snapshot: _Snapshot, state: Head, want: int, pages: dict[int, bytes | None]
    ) -> None:
        """Collect the last ``want`` items by following ``prev`` back from the last page."""
        chunks: list[list[Any]] = []
        need, hi, slot, exp = want, state.count, state.last, state.last_exp
        expired = False
        while need > 0 and slot >= 0:
            if slot not in pages:
                pages.update(await self._fetch_pages(state.gen, self._plan(state, slot, need, pages)))
            page = self._decode_page(state.gen, slot, pages[slot])
            key = self._keys.page(state.gen, slot)
            if page is None:
                if is_expired(exp, time.time()):
                    expired = True  # the older history has expired: what is left is complete
                    break
                raise _VanishedError(key)
            if not page.base < hi <= page.end:
                raise self._corrupt(
                    key, ValueError(f"the page covers items {page.base}..{page.end - 1}, not item {hi - 1}")
                )
            try:
                items = await self._page_items(state.gen, slot, page)
            except _VanishedError:
                if is_expired(page.exp, time.time()):
                    expired = True
                    break
                raise
            visible = items[: hi - page.base]
            chunks.append(visible[-need:] if need < len(visible) else visible)
            need -= len(chunks[-1])
            snapshot.visits.append((slot, page, hi))
            hi, slot, exp = page.base, page.prev, page.prev_exp
        snapshot.items = [item for chunk in reversed(chunks) for item in chunk]
        # Complete when nothing older is retained: every item read, or the rest has expired.
        snapshot.complete = expired or len(snapshot.items) == state.count

    async def _check_vanished(self, stored: Head, key: str) -> None:
        """A page on the chain is missing. Fine if the generation was retired meanwhile (the
        caller re-reads); otherwise the history has lost a record: never return a shortened one."""
        current, _ = await self._read_head()
        if current is None or current.gen != stored.gen:
            return
        raise SessionCorruptedError(
            f"session {self.session_id!r}: key {key!r} in state store {self._state_store_name!r} is "
            "missing, but the session's head still refers to it (was it deleted outside this "
            "session, or did the store lose it?); the history cannot be read without it",
            store=self._state_store_name,
            key=key,
        )

    # -- writing --------------------------------------------------------------------------------

    def _new_page(
        self,
        base: int,
        count: int,
        prev: int,
        prev_exp: int | None,
        items_json: str | None,
        parts: tuple[str, int] | None,
    ) -> tuple[Page, bytes]:
        return make_page(
            base=base,
            count=count,
            prev=prev,
            prev_exp=prev_exp,
            exp=expiry(self._ttl, time.time()),
            items_json=items_json,
            parts=parts,
        )

    def _serialize(self, items: list[Any]) -> tuple[str, bytes]:
        """Items as compact JSON, checked before anything is written."""
        if not isinstance(items, list):
            raise ItemNotSerializableError(f"add_items takes a list of items, got {type(items).__name__}")
        try:
            text = json.dumps(items, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            return text, text.encode("utf-8")
        except (TypeError, ValueError) as error:
            index, bad = next(
                ((i, item) for i, item in enumerate(items) if not _serializable(item)), (None, None)
            )
            where = f"item {index} ({type(bad).__name__})" if index is not None else "an item"
            raise ItemNotSerializableError(
                f"session {self.session_id!r}: {where} cannot be stored as JSON: {error}. Items must "
                "be plain JSON values (dicts, lists, strings, finite numbers); nothing was written"
            ) from error

    async def _write_parts(self, data: bytes) -> tuple[str, int]:
        """Store oversized items in part keys first; the page that commits them names them."""
        token = new_token()
        chunks = split_parts(data)
        await asyncio.gather(
            *(self._io.put(self._keys.part(token, index), chunk) for index, chunk in enumerate(chunks))
        )
        return token, len(chunks)

    async def _publish(
        self, stored: Head, etag: str, lagging: Page | None, slot: int, page: Page
    ) -> _Outcome:
        """Move the head past ``page``, committed at ``slot``. A failed move is fine when
        someone else moved it for us; the page is committed either way."""
        try:
            base = stored.advance(stored.next, lagging) if lagging is not None else stored
            target = base.advance(slot, page)
        except ValueError as error:
            raise self._corrupt(self._keys.page(stored.gen, slot), error) from error
        if await self._io.replace(self._keys.head, target.encode(), etag):
            return _Outcome.PUBLISHED
        for _ in range(32):
            current, current_etag = await self._read_head()
            if current is None or current.gen != stored.gen:
                return _Outcome.RETIRED
            if current.next > slot:
                return _Outcome.PUBLISHED  # rolled forward by another writer or reader
            try:
                if current.next == slot - 1 and lagging is not None:
                    current = current.advance(current.next, lagging)
                if current.next != slot:
                    break
                # Same slot, new etag: a garbage collector rewrote the head's bookkeeping.
                target = current.advance(slot, page)
            except ValueError as error:
                raise self._corrupt(self._keys.page(stored.gen, slot), error) from error
            if await self._io.replace(self._keys.head, target.encode(), current_etag):
                return _Outcome.PUBLISHED
        # Committed all the same; the next operation rolls the head forward.
        return _Outcome.PUBLISHED

    async def _roll_forward(self, stored: Head, etag: str, page: Page | None = None) -> None:
        """Move a head that is one committed page behind (best effort: losing is fine)."""
        slot = stored.next
        if page is None:
            page = self._decode_page(stored.gen, slot, (await self._fetch_pages(stored.gen, [slot]))[slot])
            if page is None:
                return
        try:
            target = stored.advance(slot, page)
        except ValueError as error:
            raise self._corrupt(self._keys.page(stored.gen, slot), error) from error
        await self._io.replace(self._keys.head, target.encode(), etag)

    async def _collect_garbage(self) -> None:
        """Delete the keys of retired generations, then drop them from the head.

        Best effort: the clear or replacement is already committed, and whatever is left is
        deleted by the next clear (the head keeps the list until the deletes succeed).
        """
        try:
            stored, _ = await self._read_head()
            if stored is None or not stored.gc:
                return
            keys: list[str] = []
            for retired in stored.gc:
                keys += [self._keys.page(retired.gen, slot) for slot in range(retired.upto + 1)]
                keys += [
                    self._keys.part(token, index) for token, count in retired.big for index in range(count)
                ]
            await self._io.delete_many(keys)
            for _ in range(8):
                current, etag = await self._read_head()
                if current is None:
                    return
                remaining = tuple(entry for entry in current.gc if entry not in stored.gc)
                if remaining == current.gc or await self._io.replace(
                    self._keys.head, replace(current, gc=remaining).encode(), etag
                ):
                    return
        except Exception as error:  # the caller's change is committed; do not fail it
            logger.warning(
                "session %r: could not delete retired keys in state store %r yet (%s); the next "
                "clear_session retries",
                self.session_id,
                self._state_store_name,
                error,
            )

    async def _forget(self, *keys: str) -> None:
        """Delete keys nothing refers to (a lost attempt's page or parts); best effort."""
        try:
            if len(keys) == 1:
                await self._io.delete(keys[0])
            elif keys:
                await self._io.delete_many(keys)
        except Exception as error:
            logger.debug(
                "session %r: could not delete unreferenced keys %s: %s", self.session_id, keys, error
            )

    def _corrupt(self, key: str, error: Exception) -> SessionCorruptedError:
        return SessionCorruptedError(
            f"session {self.session_id!r}: key {key!r} in state store {self._state_store_name!r} "
            f"is not a valid record of this session: {error}. Refusing to return a shortened "
            "history; inspect or delete the key (clear_session starts the session afresh)",
            store=self._state_store_name,
            key=key,
        )


def _same_gen(gen: str) -> Callable[[bytes], bool]:
    """Recognise a head created by this writer: generations are random and never reused."""

    def check(data: bytes) -> bool:
        try:
            return Head.decode(data).gen == gen
        except Exception:  # not a head this code wrote: certainly not ours
            return False

    return check


def _serializable(item: Any) -> bool:
    try:
        json.dumps(item, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError):
        return False
    return True
