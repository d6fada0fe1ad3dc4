"""``state.redis``: daprd's Redis layout, so the dev sidecar and daprd can share one Redis.

Each key is a HASH ``<prefix>||<key>`` with ``data`` (the bytes, or the JSON text) and
``version`` (incremented on every write; it is the etag), plus ``first-write`` once a key was
written with ``FIRST_WRITE``. The concurrency rules are daprd's Redis rules, which differ from
the in-memory store: under ``LAST_WRITE`` the etag is ignored, an etag on a missing key is
accepted, and a ``FIRST_WRITE`` insert without etag only fails on keys that were themselves
written with ``FIRST_WRITE``. Each operation is one Lua script (one round trip, atomic).
Transactions are one script too: every etag is checked before anything is written, which is
stricter than daprd's MULTI pipeline (that applies the operations before the failing one).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ._components import Component
from ._errors import ComponentError, EtagInvalidError, EtagMismatchError, StoreError
from ._state import DeleteOp, SetOp, StateBackend, StateOp, StoredItem, parse_go_int

# Reads several keys: for each one returns {data, version, pttl} or false. Plain string values
# (written by something other than a state store) are returned with version "" like daprd's GET
# fallback.
_GET_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do
  local kind = redis.call("TYPE", key)["ok"]
  if kind == "hash" then
    local fields = redis.call("HMGET", key, "data", "version")
    out[i] = {fields[1] or "", fields[2] or "", redis.call("PTTL", key)}
  elseif kind == "string" then
    out[i] = {redis.call("GET", key), "", redis.call("PTTL", key)}
  else
    out[i] = false
  end
end
return out
"""

# Validates then applies a list of operations. ARGV holds 5 values per operation:
# kind ("set"/"del"), etag version ("" = none, else an integer as text; "0" when the rules say
# "no etag"), data, flags ("f" first-write, "l" last-write), ttl seconds ("" = not given).
_APPLY_SCRIPT = """
local n = #KEYS
local function check(i)
  local key = KEYS[i]
  local base = (i - 1) * 5
  local kind, etag, flags = ARGV[base + 1], ARGV[base + 2], ARGV[base + 4]
  local htype = redis.call("TYPE", key)["ok"]
  if htype ~= "hash" then return true end
  local version = redis.call("HGET", key, "version")
  if not version then return true end
  if kind == "del" then
    return etag == "" or etag == version
  end
  local fwr = redis.call("HGET", key, "first-write")
  if etag == "" then
    return not fwr
  end
  return etag == version
end
for i = 1, n do
  if not check(i) then
    return redis.error_reply("ETAGMISMATCH " .. ARGV[(i - 1) * 5 + 1] .. " " .. KEYS[i])
  end
end
for i = 1, n do
  local key = KEYS[i]
  local base = (i - 1) * 5
  local kind, data, flags, ttl = ARGV[base + 1], ARGV[base + 3], ARGV[base + 4], ARGV[base + 5]
  if kind == "del" then
    redis.call("DEL", key)
  else
    if redis.call("TYPE", key)["ok"] ~= "hash" then redis.call("DEL", key) end
    redis.call("HSET", key, "data", data)
    if string.find(flags, "f", 1, true) then
      redis.call("HSET", key, "first-write", 0)
    end
    redis.call("HINCRBY", key, "version", 1)
    if ttl ~= "" then
      local seconds = tonumber(ttl)
      if seconds > 0 then redis.call("EXPIRE", key, seconds) else redis.call("PERSIST", key) end
    end
  end
end
return n
"""


def _parse_host(host: str, component: Component) -> tuple[str, int]:
    name, _, port = host.rpartition(":")
    if not name or not port.isdigit():
        raise ComponentError(
            f"{component.source}: component {component.name!r} (state.redis): redisHost {host!r} "
            "must be host:port, e.g. localhost:6379"
        )
    return name, int(port)


class RedisStateBackend(StateBackend):
    """State in Redis hashes, compatible with daprd's ``state.redis``."""

    capabilities = ("ETAG", "TRANSACTIONAL", "TTL", "KEYS_LIKE", "ACTOR")
    reports_expire_time = False

    def parse_ttl(self, raw: str) -> int | None:
        value = parse_go_int(raw)
        if value is None:
            raise StoreError(
                f'failed to parse ttl from metadata: strconv.ParseInt: parsing "{raw}": invalid syntax'
            )
        # Zero or negative clears an expiry (PERSIST); keep it distinct from "not given".
        return value

    def __init__(self, component: Component) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:  # pragma: no cover - exercised only without the extra
            raise ComponentError(
                f"{component.source}: component {component.name!r} is state.redis, which needs "
                "redis-py: pip install 'dapr-agents-ext-devsidecar[redis]'"
            ) from exc
        host = component.metadata_value("redisHost")
        if not host:
            raise ComponentError(
                f"{component.source}: component {component.name!r} (state.redis) needs the "
                "'redisHost' metadata, e.g. localhost:6379"
            )
        hostname, port = _parse_host(host, component)
        db_text = component.metadata_value("redisDB") or "0"
        if not db_text.isdigit():
            raise ComponentError(
                f"{component.source}: component {component.name!r}: redisDB {db_text!r} is not a number"
            )
        default_ttl = component.metadata_value("ttlInSeconds")
        self._default_ttl: int | None = None
        if default_ttl:
            try:
                self._default_ttl = int(default_ttl)
            except ValueError as exc:
                raise ComponentError(
                    f"{component.source}: component {component.name!r}: ttlInSeconds "
                    f"{default_ttl!r} is not an integer"
                ) from exc
        self._name = component.name
        self._client = aioredis.Redis(
            host=hostname,
            port=port,
            db=int(db_text),
            username=component.metadata_value("redisUsername") or None,
            password=component.metadata_value("redisPassword") or None,
            ssl=component.flag("enableTLS"),
            decode_responses=False,
        )
        self._get_script = self._client.register_script(_GET_SCRIPT)
        self._apply_script = self._client.register_script(_APPLY_SCRIPT)

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        import redis.exceptions

        try:
            return await script(keys=keys, args=args)
        except redis.exceptions.ResponseError as exc:
            text = str(exc)
            if "ETAGMISMATCH" in text:
                kind, _, key = text.split("ETAGMISMATCH", 1)[1].strip().partition(" ")
                what = "failed to delete" if kind == "del" else "failed to set key"
                raise EtagMismatchError(f"{what} {key}") from exc
            raise StoreError(f"redis error in state store {self._name!r}: {exc}") from exc
        except redis.exceptions.RedisError as exc:
            raise StoreError(f"redis error in state store {self._name!r}: {exc}") from exc

    async def get(self, key: str) -> StoredItem | None:
        return (await self.bulk_get([key]))[0]

    async def bulk_get(self, keys: Sequence[str]) -> list[StoredItem | None]:
        if not keys:
            return []
        now = time.time()
        rows = await self._call(self._get_script, list(keys), [])
        items: list[StoredItem | None] = []
        for row in rows:
            if not row:
                items.append(None)
                continue
            data, version, pttl = row
            expires_at = now + int(pttl) / 1000.0 if int(pttl) > 0 else None
            items.append(StoredItem(value=bytes(data), etag=version.decode(), expires_at=expires_at))
        return items

    def _encode(self, op: StateOp, *, in_transaction: bool) -> list[Any]:
        etag = ""
        if op.has_etag and not op.last_write:
            assert op.etag is not None
            # daprd parses set etags as integers (a bad one is "invalid"); delete etags are
            # compared as text, so a bad one is just a mismatch.
            if isinstance(op, SetOp) and parse_go_int(op.etag) is None:
                raise EtagInvalidError(f'strconv.Atoi: parsing "{op.etag}": invalid syntax')
            etag = op.etag
        # daprd's transaction script has no first-write argument: first-write is ignored there.
        flags = "f" if op.first_write and not in_transaction else ""
        if isinstance(op, SetOp):
            ttl = op.ttl_seconds if op.ttl_seconds is not None else self._default_ttl
            return ["set", etag, op.value, flags, "" if ttl is None else str(ttl)]
        return ["del", etag, b"", flags, ""]

    async def _apply(self, ops: Sequence[StateOp], *, in_transaction: bool = False) -> None:
        args: list[Any] = []
        for op in ops:
            args.extend(self._encode(op, in_transaction=in_transaction))
        await self._call(self._apply_script, [op.key for op in ops], args)

    async def set(self, op: SetOp) -> None:
        await self._apply([op])

    async def delete(self, op: DeleteOp) -> None:
        await self._apply([op])

    async def transact(self, ops: Sequence[StateOp]) -> None:
        if ops:
            await self._apply(ops, in_transaction=True)

    async def close(self) -> None:
        await self._client.aclose()  # type: ignore[attr-defined]  # redis-py >= 5
