"""``lock.redis`` and the distributed lock API over the wire (official SDK, raw gRPC, HTTP), and
the Redis keys it leaves, which a dev sidecar and daprd sharing one Redis must agree on.

Every test starts its sidecar with ``dapr_sidecar_factory``: a dev sidecar, or with
``DAPR_TEST_SIDECAR=daprd`` Dapr's real runtime.
"""

from __future__ import annotations

import time
import uuid

import grpc
import pytest
import redis
from dapr.aio.clients import DaprClient as AioDaprClient
from dapr.clients import DaprClient
from dapr.clients.grpc._response import UnlockResponseStatus
from dapr.proto.runtime.v1 import lock_pb2
from helpers import rpc_fails
from sidecars import component, components, endpoint_of, http, raw_stub

from dapr_agents.ext.devsidecar import DevSidecar

# The SDK warns that the lock API is alpha on every call.
pytestmark = pytest.mark.filterwarnings("ignore:The Distributed Lock API")


def unique(prefix: str = "r") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def lock_yaml(redis_server, name: str = "lockstore", **metadata: str) -> str:
    return component(name, "lock.redis", {"redisHost": redis_server.address, **metadata})


@pytest.fixture
def redis_client(redis_server):
    host, port = redis_server.address.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port))
    yield client
    client.close()


@pytest.fixture
def lock_sidecar(tmp_path, dapr_sidecar_factory, redis_server):
    folder = components(tmp_path / "components", lock_yaml(redis_server))
    return endpoint_of(dapr_sidecar_factory.start(folder, app_id=unique("lockapp")))


def test_the_sdk_example_flow(lock_sidecar):
    # dapr/python-sdk examples/distributed_lock: lock in a with-block, then unlock again.
    resource = unique()
    with lock_sidecar.sdk_configured(), DaprClient() as client:
        with client.try_lock("lockstore", resource, "example-client-id", 60) as lock:
            assert lock.success
            assert not client.try_lock("lockstore", resource, "someone-else", 60).success
        assert (
            client.unlock("lockstore", resource, "example-client-id").status
            == UnlockResponseStatus.lock_does_not_exist
        )


async def test_unlock_statuses_with_the_aio_client(lock_sidecar):
    resource = unique()
    with lock_sidecar.sdk_configured():
        async with AioDaprClient() as client:
            assert (await client.try_lock("lockstore", resource, "owner", 60)).success
            assert (
                await client.unlock("lockstore", resource, "intruder")
            ).status == UnlockResponseStatus.lock_belongs_to_others
            assert (
                await client.unlock("lockstore", resource, "owner")
            ).status == UnlockResponseStatus.success
            assert (
                await client.unlock("lockstore", resource, "owner")
            ).status == UnlockResponseStatus.lock_does_not_exist
            assert (await client.try_lock("lockstore", resource, "intruder", 60)).success  # free again


def test_a_lock_expires_after_its_expiry(lock_sidecar):
    resource = unique()
    with lock_sidecar.sdk_configured(), DaprClient() as client:
        assert client.try_lock("lockstore", resource, "first", 1).success
        assert not client.try_lock("lockstore", resource, "second", 30).success
        time.sleep(1.3)
        assert client.try_lock("lockstore", resource, "second", 30).success
        assert (
            client.unlock("lockstore", resource, "first").status
            == UnlockResponseStatus.lock_belongs_to_others
        )


def test_the_lock_is_a_redis_string_under_daprds_key(lock_sidecar, redis_client):
    resource = unique()
    with lock_sidecar.sdk_configured(), DaprClient() as client:
        assert client.try_lock("lockstore", resource, "owner-1", 30).success
    key = f"lock||{lock_sidecar.app_id}||{resource}"
    assert redis_client.type(key) == b"string"
    assert redis_client.get(key) == b"owner-1"
    assert 25 <= redis_client.ttl(key) <= 30


def test_key_prefix_options(tmp_path, dapr_sidecar_factory, redis_server, redis_client):
    folder = components(
        tmp_path / "components",
        lock_yaml(redis_server, "by-name", keyPrefix="name"),
        lock_yaml(redis_server, "no-prefix", keyPrefix="none"),
        lock_yaml(redis_server, "literal", keyPrefix="MyPrefix"),
    )
    endpoint = endpoint_of(dapr_sidecar_factory.start(folder, app_id=unique("lockapp")))
    resource = unique()
    with endpoint.sdk_configured(), DaprClient() as client:
        for store in ("by-name", "no-prefix", "literal"):
            assert client.try_lock(store, resource, "me", 30).success
    assert redis_client.get(f"lock||by-name||{resource}") == b"me"
    assert redis_client.get(f"lock||{resource}") == b"me"
    assert redis_client.get(f"lock||myprefix||{resource}") == b"me"  # lower-cased, as daprd


def test_two_sidecars_on_one_redis_contend_for_the_same_lock(tmp_path, dapr_sidecar_factory, redis_server):
    # The factory's sidecar is a real daprd in daprd mode: a dev sidecar for the same app must
    # then see daprd's locks, and daprd the dev sidecar's.
    folder = components(tmp_path / "components", lock_yaml(redis_server))
    app = unique("lockapp")
    first = endpoint_of(dapr_sidecar_factory.start(folder, app_id=app))
    resource = unique()
    with DevSidecar(app_id=app, resources_paths=[folder], api_token="") as dev:
        with first.sdk_configured(), DaprClient() as client:
            assert client.try_lock("lockstore", resource, "first", 30).success
        with dev.endpoint().sdk_configured(), DaprClient() as client:
            assert not client.try_lock("lockstore", resource, "dev", 30).success
            assert (
                client.unlock("lockstore", resource, "dev").status
                == UnlockResponseStatus.lock_belongs_to_others
            )
            assert client.unlock("lockstore", resource, "first").status == UnlockResponseStatus.success
            assert client.try_lock("lockstore", resource, "dev", 30).success
        with first.sdk_configured(), DaprClient() as client:
            assert (
                client.unlock("lockstore", resource, "first").status
                == UnlockResponseStatus.lock_belongs_to_others
            )


def test_request_errors_are_daprds(lock_sidecar):
    def try_lock(store="lockstore", resource="res", owner="me", expiry=10):
        return lock_pb2.TryLockRequest(
            store_name=store, resource_id=resource, lock_owner=owner, expiry_in_seconds=expiry
        )

    expected = {
        "expiry": (
            grpc.StatusCode.INVALID_ARGUMENT,
            "ExpiryInSeconds is not positive in lock store lockstore",
        ),
        "resource": (grpc.StatusCode.INVALID_ARGUMENT, "ResourceId is empty in lock store lockstore"),
        "owner": (grpc.StatusCode.INVALID_ARGUMENT, "LockOwner is empty in lock store lockstore"),
        "store": (grpc.StatusCode.INVALID_ARGUMENT, "lock store nope not found"),
        "separator": (
            grpc.StatusCode.INTERNAL,
            "failed to try acquiring lock: input key/keyPrefix 'a||b' can't contain '||'",
        ),
        "unlock-store": (grpc.StatusCode.INVALID_ARGUMENT, "lock store nope not found"),
        "unlock-separator": (
            grpc.StatusCode.INTERNAL,
            "failed to release lock: input key/keyPrefix 'a||b' can't contain '||'",
        ),
    }
    requests = {
        "expiry": ("TryLockAlpha1", try_lock(expiry=0)),
        "resource": ("TryLockAlpha1", try_lock(resource="")),
        "owner": ("TryLockAlpha1", try_lock(owner="")),
        "store": ("TryLockAlpha1", try_lock(store="nope")),
        "separator": ("TryLockAlpha1", try_lock(resource="a||b")),
        "unlock-store": (
            "UnlockAlpha1",
            lock_pb2.UnlockRequest(store_name="nope", resource_id="r", lock_owner="o"),
        ),
        "unlock-separator": (
            "UnlockAlpha1",
            lock_pb2.UnlockRequest(store_name="lockstore", resource_id="a||b", lock_owner="o"),
        ),
    }
    with raw_stub(lock_sidecar) as stub:
        for case, (method, request) in requests.items():
            with rpc_fails() as failure:
                getattr(stub, method)(request)
            assert (failure.code, failure.details) == expected[case], case
            assert failure.reason is None, case  # daprd's lock errors carry no details


def test_without_lock_stores_the_api_says_none_is_configured(tmp_path, dapr_sidecar_factory):
    folder = components(tmp_path / "components", component("statestore", "state.in-memory"))
    endpoint = endpoint_of(dapr_sidecar_factory.start(folder, app_id=unique("lockapp")))
    with raw_stub(endpoint) as stub:
        with rpc_fails() as failure:
            stub.TryLockAlpha1(
                lock_pb2.TryLockRequest(store_name="x", resource_id="r", lock_owner="o", expiry_in_seconds=5)
            )
        with rpc_fails() as expiry_first:
            stub.TryLockAlpha1(lock_pb2.TryLockRequest(store_name="x"))
    assert (failure.code, failure.details) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "lock store is not configured",
    )
    # The expiry is checked before anything else.
    assert (expiry_first.code, expiry_first.details) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "ExpiryInSeconds is not positive in lock store x",
    )
    answer = http(endpoint, "POST", "/v1.0-alpha1/unlock/x", "{}")
    assert (answer.status, answer.json()) == (
        500,
        {"errorCode": "ERR_LOCK_STORE_NOT_CONFIGURED", "message": "lock store is not configured"},
    )


def test_http_lock_and_unlock(lock_sidecar):
    resource = unique()

    def post(path: str, body: str):
        return http(lock_sidecar, "POST", f"/v1.0-alpha1/{path}/lockstore", body)

    held = post("lock", f'{{"resourceId":"{resource}","lockOwner":"o1","expiryInSeconds":60,"ignored":1}}')
    assert (held.status, held.body) == (200, b'{"success":true}')
    # snake_case names and numbers as strings are accepted, as protojson accepts them.
    refused = post("lock", f'{{"resource_id":"{resource}","lock_owner":"o2","expiry_in_seconds":"60"}}')
    assert (refused.status, refused.body) == (200, b'{"success":false}')
    assert post("unlock", f'{{"resourceId":"{resource}","lockOwner":"o2"}}').body == b'{"status":2}'
    assert post("unlock", f'{{"resourceId":"{resource}","lockOwner":"o1"}}').body == b'{"status":0}'
    assert post("unlock", f'{{"resourceId":"{resource}","lockOwner":"o1"}}').body == b'{"status":1}'
    empty = post("lock", "")
    assert (empty.status, empty.json()) == (
        400,
        {
            "errorCode": "ERR_MALFORMED_REQUEST",
            "message": "ExpiryInSeconds is not positive in lock store lockstore",
        },
    )
    malformed = post("lock", "not json")
    assert malformed.status == 400
    assert malformed.json()["errorCode"] == "ERR_MALFORMED_REQUEST"
    assert malformed.json()["message"].startswith("failed deserializing HTTP body: ")
    unknown = http(
        lock_sidecar,
        "POST",
        "/v1.0-alpha1/lock/nope",
        '{"resourceId":"r","lockOwner":"o","expiryInSeconds":5}',
    )
    assert (unknown.status, unknown.json()) == (
        400,
        {"errorCode": "ERR_LOCK_STORE_NOT_FOUND", "message": "lock store nope not found"},
    )
    separator = post("lock", '{"resourceId":"a||b","lockOwner":"o","expiryInSeconds":5}')
    assert (separator.status, separator.json()) == (
        500,
        {
            "errorCode": "ERR_TRY_LOCK",
            "message": "failed to try acquiring lock: input key/keyPrefix 'a||b' can't contain '||'",
        },
    )
