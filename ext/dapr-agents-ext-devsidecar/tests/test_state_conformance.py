"""State API conformance, through the official sync and aio clients, on every backend.

Expectations follow daprd 1.18's components; where daprd's stores differ (Redis's etag rules,
``ttlExpireTime``), the test reads the store's type from GetMetadata and expects that store's
behaviour, so the same file runs against an external daprd (``DAPR_TEST_SIDECAR=external``).
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import grpc
import pytest
from dapr.clients.exceptions import DaprGrpcError, DaprInternalError
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from dapr.clients.grpc._state import Concurrency, StateOptions
from dapr.proto.runtime.v1 import metadata_pb2, state_pb2
from helpers import describe, rpc_fails

STORE = "statestore"


async def store_type(dapr) -> str:
    metadata = await dapr.call("get_metadata")
    for component in metadata.registered_components:
        if component.name == STORE:
            return component.type
    raise AssertionError(f"no component {STORE!r} in {metadata.registered_components}")


async def test_missing_key_reads_as_empty_with_no_etag(dapr, unique):
    answer = await dapr.call("get_state", STORE, f"{unique}-absent")
    assert answer.data == b""
    assert answer.etag == ""


async def test_save_then_get_round_trips_bytes_and_gives_an_etag(dapr, unique):
    payload = bytes(range(256)) * 4  # binary, not UTF-8
    await dapr.call("save_state", STORE, f"{unique}-bin", payload)
    answer = await dapr.call("get_state", STORE, f"{unique}-bin")
    assert answer.data == payload
    assert answer.etag != ""


async def test_unicode_and_large_values_round_trip(dapr, unique):
    text = "héllo wörld ✓ 你好 " * 20_000  # ~ 460 KB of UTF-8
    await dapr.call("save_state", STORE, f"{unique}-big", text)
    assert (await dapr.call("get_state", STORE, f"{unique}-big")).data == text.encode("utf-8")


async def test_each_write_changes_the_etag_and_a_stale_etag_is_aborted(dapr, unique):
    key = f"{unique}-etag"
    await dapr.call("save_state", STORE, key, "v1")
    first = (await dapr.call("get_state", STORE, key)).etag
    await dapr.call("save_state", STORE, key, "v2", etag=first)
    second = (await dapr.call("get_state", STORE, key)).etag
    assert second != first
    with rpc_fails() as failure:
        await dapr.call("save_state", STORE, key, "v3", etag=first)
    assert failure.code == grpc.StatusCode.ABORTED
    assert f"failed saving state in state store {STORE}: possible etag mismatch" in failure.details
    assert failure.reason == "ERR_STATE_SAVE"
    assert (await dapr.call("get_state", STORE, key)).data == b"v2"


async def test_an_empty_etag_means_no_etag(dapr, unique):
    key = f"{unique}-empty-etag"
    await dapr.call("save_state", STORE, key, "v1")
    await dapr.call("save_state", STORE, key, "v2", etag="")
    assert (await dapr.call("get_state", STORE, key)).data == b"v2"


async def test_an_etag_on_a_missing_key(dapr, unique):
    key = f"{unique}-ghost"
    kind = await store_type(dapr)
    if kind == "state.redis":
        # daprd's Redis script accepts any etag when the key does not exist.
        await dapr.call("save_state", STORE, key, "v", etag="7")
        assert (await dapr.call("get_state", STORE, key)).data == b"v"
    else:
        with rpc_fails() as failure:
            await dapr.call("save_state", STORE, key, "v", etag="7")
        assert failure.code == grpc.StatusCode.ABORTED
        assert (await dapr.call("get_state", STORE, key)).data == b""


async def test_first_write_without_etag(dapr, unique):
    key = f"{unique}-first"
    first_write = StateOptions(concurrency=Concurrency.first_write)
    await dapr.call("save_state", STORE, key, "v1", options=first_write)
    kind = await store_type(dapr)
    # Every store refuses a second first-write insert of a key written with first-write.
    with rpc_fails() as failure:
        await dapr.call("save_state", STORE, key, "v2", options=first_write)
    assert failure.code == grpc.StatusCode.ABORTED
    other = f"{unique}-first-other"
    await dapr.call("save_state", STORE, other, "plain")
    if kind == "state.redis":
        # Redis only enforces it on keys that were themselves written with first-write.
        await dapr.call("save_state", STORE, other, "again", options=first_write)
        assert (await dapr.call("get_state", STORE, other)).data == b"again"
    else:
        with rpc_fails():
            await dapr.call("save_state", STORE, other, "again", options=first_write)
        assert (await dapr.call("get_state", STORE, other)).data == b"plain"


async def test_concurrent_etag_guarded_increments_lose_no_update(dapr, unique):
    key = f"{unique}-counter"
    await dapr.call("save_state", STORE, key, "0")

    async def increment() -> int:
        conflicts = 0
        while True:
            current = await dapr.call("get_state", STORE, key)
            try:
                await dapr.call("save_state", STORE, key, str(int(current.data) + 1), etag=current.etag)
                return conflicts
            except (DaprGrpcError, DaprInternalError) as exc:
                assert describe(exc).code == grpc.StatusCode.ABORTED
                conflicts += 1

    conflicts = await asyncio.gather(*(increment() for _ in range(20)))
    assert int((await dapr.call("get_state", STORE, key)).data) == 20
    assert sum(conflicts) >= 0


async def test_delete_honours_etags_and_tolerates_missing_keys(dapr, unique):
    key = f"{unique}-del"
    await dapr.call("delete_state", STORE, f"{unique}-never-written")
    await dapr.call("save_state", STORE, key, "v")
    etag = (await dapr.call("get_state", STORE, key)).etag
    wrong = "999" if etag != "999" else "998"
    with rpc_fails() as failure:
        await dapr.call("delete_state", STORE, key, etag=wrong)
    assert failure.code == grpc.StatusCode.ABORTED
    assert failure.details.startswith(f"failed deleting state with key {key}: possible etag mismatch")
    await dapr.call("delete_state", STORE, key, etag=etag)
    assert (await dapr.call("get_state", STORE, key)).data == b""


async def test_transaction_applies_upserts_and_deletes_together(dapr, unique):
    await dapr.call("save_state", STORE, f"{unique}-gone", "x")
    await dapr.call(
        "execute_state_transaction",
        STORE,
        [
            TransactionalStateOperation(key=f"{unique}-a", data="1"),
            TransactionalStateOperation(key=f"{unique}-b", data=b"\x00\x01"),
            TransactionalStateOperation(key=f"{unique}-gone", operation_type=TransactionOperationType.delete),
        ],
    )
    bulk = await dapr.call("get_bulk_state", STORE, [f"{unique}-a", f"{unique}-b", f"{unique}-gone"])
    values = {item.key: item.data for item in bulk.items}
    assert values == {f"{unique}-a": b"1", f"{unique}-b": b"\x00\x01", f"{unique}-gone": b""}


async def test_failed_transaction_is_internal_and_applies_nothing(dapr, unique):
    await dapr.call("save_state", STORE, f"{unique}-guarded", "original")
    with rpc_fails() as failure:
        await dapr.call(
            "execute_state_transaction",
            STORE,
            [
                TransactionalStateOperation(key=f"{unique}-new", data="should not exist"),
                TransactionalStateOperation(key=f"{unique}-guarded", data="changed", etag="12345"),
            ],
        )
    assert failure.code == grpc.StatusCode.INTERNAL
    assert failure.details.startswith("error while executing state transaction: ")
    if await store_type(dapr) != "state.redis":  # daprd's Redis MULTI does not roll back
        assert (await dapr.call("get_state", STORE, f"{unique}-new")).data == b""
    assert (await dapr.call("get_state", STORE, f"{unique}-guarded")).data == b"original"


async def test_bulk_get_returns_every_key_unprefixed(dapr, unique):
    keys = [f"{unique}-bulk-{i}" for i in range(5)]
    for index, key in enumerate(keys[:3]):
        await dapr.call("save_state", STORE, key, f"value-{index}")
    answer = await dapr.call("get_bulk_state", STORE, keys)
    found = {item.key: (item.data, bool(item.etag)) for item in answer.items}
    assert set(found) == set(keys)
    for index, key in enumerate(keys):
        expected = (f"value-{index}".encode(), True) if index < 3 else (b"", False)
        assert found[key] == expected


async def test_json_content_type_validates_and_reencodes(dapr, unique):
    key = f"{unique}-json"
    await dapr.call(
        "save_state",
        STORE,
        key,
        json.dumps({"b": [1, 2.5], "a": "<x&y>"}, indent=2),
        state_metadata={"contentType": "application/json"},
    )
    stored = (await dapr.call("get_state", STORE, key)).data
    assert json.loads(stored) == {"b": [1, 2.5], "a": "<x&y>"}
    if await store_type(dapr) != "state.redis":  # encoding/json: sorted, compact, HTML-escaped
        assert stored == b'{"a":"\\u003cx\\u0026y\\u003e","b":[1,2.5]}'
    with rpc_fails() as failure:
        await dapr.call(
            "save_state",
            STORE,
            f"{unique}-bad-json",
            "{not json",
            state_metadata={"contentType": "application/json"},
        )
    assert failure.code == grpc.StatusCode.UNKNOWN
    assert "invalid character" in failure.details


async def test_ttl_expires_keys(dapr, unique):
    key = f"{unique}-ttl"
    await dapr.call("save_state", STORE, key, "short-lived", state_metadata={"ttlInSeconds": "1"})
    assert (await dapr.call("get_state", STORE, key)).data == b"short-lived"
    deadline = time.monotonic() + 5
    while (await dapr.call("get_state", STORE, key)).data and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert (await dapr.call("get_state", STORE, key)).data == b""


async def test_a_bad_ttl_names_the_store(dapr, unique):
    with rpc_fails() as failure:
        await dapr.call("save_state", STORE, f"{unique}-badttl", "v", state_metadata={"ttlInSeconds": "soon"})
    assert failure.code == grpc.StatusCode.INTERNAL
    assert f"failed saving state in state store {STORE}" in failure.details
    assert "soon" in failure.details


def test_ttl_expire_time_is_reported_in_rfc3339(raw_stub, dapr_sidecar, unique):
    key = f"{unique}-ttl-meta"
    raw_stub.SaveState(
        state_pb2.SaveStateRequest(
            store_name=STORE,
            states=[{"key": key, "value": b"v", "metadata": {"ttlInSeconds": "100"}}],
        ),
        metadata=raw_stub.call_metadata,
    )
    answer = raw_stub.GetState(
        state_pb2.GetStateRequest(store_name=STORE, key=key), metadata=raw_stub.call_metadata
    )
    bulk = raw_stub.GetBulkState(
        state_pb2.GetBulkStateRequest(store_name=STORE, keys=[key]), metadata=raw_stub.call_metadata
    )
    metadata = raw_stub.GetMetadata(metadata_pb2.GetMetadataRequest(), metadata=raw_stub.call_metadata)
    kind = next(c.type for c in metadata.registered_components if c.name == STORE)
    if kind == "state.redis":
        assert "ttlExpireTime" not in answer.metadata  # daprd's Redis store does not report it
        return
    expire = answer.metadata["ttlExpireTime"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", expire)
    remaining = time.mktime(time.strptime(expire, "%Y-%m-%dT%H:%M:%SZ")) - time.mktime(time.gmtime())
    assert 90 <= remaining <= 101
    assert bulk.items[0].metadata["ttlExpireTime"] == expire


async def test_keys_with_the_separator_are_rejected(dapr):
    with rpc_fails() as failure:
        await dapr.call("get_state", STORE, "a||b")
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.details == "input key/keyPrefix 'a||b' can't contain '||'"
    assert failure.reason == "DAPR_STATE_ILLEGAL_KEY"


async def test_an_empty_key_cannot_be_saved(dapr):
    with rpc_fails() as failure:
        await dapr.call("save_state", STORE, "", "v")
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.details == "state key cannot be empty"


async def test_an_unknown_store_is_named(dapr):
    with rpc_fails() as failure:
        await dapr.call("get_state", "no-such-store", "k")
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.details == "state store no-such-store is not found"
    assert failure.reason == "DAPR_STATE_NOT_FOUND"


async def test_query_is_refused_like_daprd(dapr):
    with rpc_fails() as failure:
        await dapr.call("query_state", STORE, json.dumps({"filter": {"EQ": {"a": 1}}}))
    assert failure.code == grpc.StatusCode.INTERNAL
    kind = await store_type(dapr)
    if kind == "state.redis":
        assert "redis-json server support is required" in failure.details
    else:
        assert failure.details == "state store does not support querying"


async def test_save_bulk_state_reports_every_etag_conflict(dapr, unique):
    from dapr.clients.grpc._state import StateItem

    await dapr.call("save_state", STORE, f"{unique}-x", "1")
    await dapr.call("save_state", STORE, f"{unique}-y", "1")
    with rpc_fails() as failure:
        await dapr.call(
            "save_bulk_state",
            STORE,
            [
                StateItem(key=f"{unique}-x", value="2", etag="111"),
                StateItem(key=f"{unique}-y", value="2", etag="222"),
            ],
        )
    assert failure.code == grpc.StatusCode.ABORTED
    await dapr.call(
        "save_bulk_state",
        STORE,
        [StateItem(key=f"{unique}-x", value="3"), StateItem(key=f"{unique}-y", value="3")],
    )
    bulk = await dapr.call("get_bulk_state", STORE, [f"{unique}-x", f"{unique}-y"])
    assert {item.data for item in bulk.items} == {b"3"}


def test_delete_bulk_state_deletes_every_key_and_checks_etags(raw_stub, unique):
    from dapr.proto.common.v1 import common_pb2

    keys = [f"{unique}-db-{i}" for i in range(3)]
    raw_stub.SaveState(
        state_pb2.SaveStateRequest(store_name=STORE, states=[{"key": k, "value": b"v"} for k in keys]),
        metadata=raw_stub.call_metadata,
    )
    with pytest.raises(grpc.RpcError) as failure:
        raw_stub.DeleteBulkState(
            state_pb2.DeleteBulkStateRequest(
                store_name=STORE,
                states=[common_pb2.StateItem(key=keys[0], etag=common_pb2.Etag(value="4242"))],
            ),
            metadata=raw_stub.call_metadata,
        )
    assert failure.value.code() == grpc.StatusCode.ABORTED
    assert failure.value.details().startswith(f"failed deleting state in state store {STORE}: ")
    raw_stub.DeleteBulkState(
        state_pb2.DeleteBulkStateRequest(
            store_name=STORE, states=[common_pb2.StateItem(key=k) for k in keys]
        ),
        metadata=raw_stub.call_metadata,
    )
    bulk = raw_stub.GetBulkState(
        state_pb2.GetBulkStateRequest(store_name=STORE, keys=keys), metadata=raw_stub.call_metadata
    )
    assert [item.data for item in bulk.items] == [b"", b"", b""]
