"""``configuration.redis`` and the configuration API over the wire (official SDK, raw gRPC, HTTP).

Values are written straight into Redis as ``value||version``, as Dapr's configuration example
does with ``redis-cli``. Every test starts its own sidecar with ``dapr_sidecar_factory``, so it
runs on the dev sidecar and, with ``DAPR_TEST_SIDECAR=daprd``, on Dapr's real runtime. daprd
subscribes to Redis only after it has answered with the subscription id, so tests that watch
for a change keep making it until it arrives.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import grpc
import pytest
import redis
from dapr.aio.clients import DaprClient as AioDaprClient
from dapr.clients import DaprClient
from dapr.proto.runtime.v1 import configuration_pb2
from helpers import describe, rpc_fails
from sidecars import component, components, endpoint_of, http, raw_stub


def unique(prefix: str = "k") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def store_yaml(redis_server, name: str = "configstore", **metadata: str) -> str:
    return component(name, "configuration.redis", {"redisHost": redis_server.address, **metadata})


@pytest.fixture
def redis_client(redis_server):
    host, port = redis_server.address.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port))
    yield client
    client.close()


@pytest.fixture
def config_sidecar(tmp_path, dapr_sidecar_factory, redis_server):
    folder = components(tmp_path / "components", store_yaml(redis_server))
    return endpoint_of(dapr_sidecar_factory.start(folder, app_id=unique("config")))


def eventually(condition: Callable[[], bool], action: Callable[[], None], timeout: float = 15.0) -> None:
    """Repeat ``action`` until ``condition`` holds (daprd subscribes to Redis asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        action()
        for _ in range(5):
            if condition():
                return
            time.sleep(0.05)
    raise AssertionError("the change never arrived")


@pytest.mark.parametrize("kind", ["sync", "aio"])
async def test_get_configuration_reads_value_and_version(config_sidecar, redis_client, kind):
    k = {
        name: unique(name) for name in ("versioned", "plain", "three", "empty", "no_value", "hash", "missing")
    }
    redis_client.set(k["versioned"], "100||1")
    redis_client.set(k["plain"], "200")
    redis_client.set(k["three"], "a||b||c")
    redis_client.set(k["empty"], "")
    redis_client.set(k["no_value"], "||5")
    redis_client.hset(k["hash"], "field", "value")
    with config_sidecar.sdk_configured():
        if kind == "sync":
            with DaprClient() as client:
                items = client.get_configuration("configstore", list(k.values())).items
        else:
            async with AioDaprClient() as client:
                items = (await client.get_configuration("configstore", list(k.values()))).items
    found = {key: (item.value, item.version, item.metadata) for key, item in items.items()}
    assert found == {
        k["versioned"]: ("100", "1", {}),
        k["plain"]: ("200", "", {}),
        k["three"]: ("a", "b", {}),  # a third part is ignored
    }


def test_get_configuration_without_keys_returns_every_string_key(
    tmp_path, dapr_sidecar_factory, redis_server
):
    host, port = redis_server.address.rsplit(":", 1)
    own_db = redis.Redis(host=host, port=int(port), db=7)
    own_db.flushdb()
    own_db.set("orderId1", "100||1")
    own_db.set("orderId2", "200||1")
    own_db.hset("a-hash", "f", "v")
    folder = components(tmp_path / "components", store_yaml(redis_server, redisDB="7"))
    endpoint = endpoint_of(dapr_sidecar_factory.start(folder, app_id=unique("config")))
    try:
        with endpoint.sdk_configured(), DaprClient() as client:
            items = client.get_configuration("configstore", []).items
    finally:
        own_db.flushdb()
        own_db.close()
    assert {key: (i.value, i.version) for key, i in items.items()} == {
        "orderId1": ("100", "1"),
        "orderId2": ("200", "1"),
    }


def test_subscribe_delivers_each_change_until_unsubscribed(config_sidecar, redis_client):
    key, other = unique("watched"), unique("other")
    redis_client.set(key, "100||1")
    received: list[tuple[str, dict[str, tuple[str, str]]]] = []
    lock = threading.Lock()

    def handler(subscription_id, response):
        with lock:
            received.append((subscription_id, {k: (v.value, v.version) for k, v in response.items.items()}))

    def seen(value: tuple[str, str]) -> bool:
        with lock:
            return any(items.get(key) == value for _, items in received)

    with config_sidecar.sdk_configured(), DaprClient() as client:
        subscription_id = client.subscribe_configuration("configstore", [key], handler)
        assert subscription_id
        eventually(lambda: seen(("210", "2")), lambda: redis_client.set(key, "210||2"))
        redis_client.set(other, "not watched")
        eventually(lambda: seen(("", "")), lambda: redis_client.delete(key))  # gone: an empty item
        with lock:
            assert {sid for sid, _ in received} == {subscription_id}
            assert all(set(items) == {key} for _, items in received)
        assert client.unsubscribe_configuration("configstore", subscription_id) is True
        assert client.unsubscribe_configuration("configstore", subscription_id) is False
        time.sleep(0.3)
        with lock:
            count = len(received)
        redis_client.set(key, "300||3")
        time.sleep(0.5)
        with lock:
            assert len(received) == count


def test_subscribing_asks_redis_for_keyspace_notifications(config_sidecar, redis_client):
    redis_client.config_set("notify-keyspace-events", "")
    with config_sidecar.sdk_configured(), DaprClient() as client:
        subscription_id = client.subscribe_configuration("configstore", [unique()], lambda *_: None)
        deadline = time.monotonic() + 10
        while redis_client.config_get("notify-keyspace-events")["notify-keyspace-events"] == "":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        client.unsubscribe_configuration("configstore", subscription_id)
    flags = redis_client.config_get("notify-keyspace-events")["notify-keyspace-events"]
    assert sorted(flags) == sorted("Kg$xe")


@pytest.mark.parametrize("method", ["SubscribeConfiguration", "SubscribeConfigurationAlpha1"])
def test_the_stream_starts_with_the_id_alone_and_unsubscribe_ends_it(config_sidecar, redis_client, method):
    key = unique()
    with raw_stub(config_sidecar) as stub:
        stream = getattr(stub, method)(
            configuration_pb2.SubscribeConfigurationRequest(store_name="configstore")
        )
        first = next(stream)
        assert first.id and not first.items
        messages: list[configuration_pb2.SubscribeConfigurationResponse] = []
        outcome: list[grpc.StatusCode] = []

        def read() -> None:
            try:
                messages.extend(stream)
                outcome.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                outcome.append(exc.code())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        # Without keys the subscription covers every key.
        eventually(lambda: bool(messages), lambda: redis_client.set(key, "v||1"))
        assert messages[0].id == first.id
        assert {k: (v.value, v.version) for k, v in messages[0].items.items()} == {key: ("v", "1")}
        # The store name is not checked: the id alone names the subscription.
        answer = stub.UnsubscribeConfiguration(
            configuration_pb2.UnsubscribeConfigurationRequest(store_name="whatever", id=first.id)
        )
        assert answer.ok is True
        reader.join(10)
        assert outcome == [grpc.StatusCode.OK]  # the stream ended cleanly
        assert all(m.id == first.id for m in messages)
        again = stub.UnsubscribeConfigurationAlpha1(
            configuration_pb2.UnsubscribeConfigurationRequest(store_name="configstore", id=first.id)
        )
        assert (again.ok, again.message) == (
            False,
            f"failed to unsubscribe to configuration request {first.id}: subscription does not exist",
        )


def test_errors_are_daprds(config_sidecar):
    with config_sidecar.sdk_configured(), DaprClient() as client, rpc_fails() as unknown:
        client.get_configuration("nope", ["a"])
    assert unknown.code == grpc.StatusCode.INVALID_ARGUMENT
    assert unknown.details == "configuration store nope not found"
    assert unknown.reason == "ERR_CONFIGURATION_STORE_NOT_FOUND"
    with raw_stub(config_sidecar) as stub:
        stream = stub.SubscribeConfiguration(
            configuration_pb2.SubscribeConfigurationRequest(store_name="nope")
        )
        with pytest.raises(grpc.RpcError) as failed:
            next(stream)
    found = describe(failed.value)
    assert (found.code, found.details, found.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "configuration store nope not found",
        "ERR_CONFIGURATION_STORE_NOT_FOUND",
    )


def test_without_configuration_stores_the_api_says_none_is_configured(tmp_path, dapr_sidecar_factory):
    folder = components(tmp_path / "components", component("statestore", "state.in-memory"))
    endpoint = endpoint_of(dapr_sidecar_factory.start(folder, app_id=unique("config")))
    with raw_stub(endpoint) as stub:
        with rpc_fails() as failure:
            stub.GetConfiguration(configuration_pb2.GetConfigurationRequest(store_name="any", keys=["a"]))
        answer = stub.UnsubscribeConfiguration(configuration_pb2.UnsubscribeConfigurationRequest(id="x"))
    assert failure.code == grpc.StatusCode.FAILED_PRECONDITION
    assert failure.details == "configuration stores not configured"
    assert failure.reason == "ERR_CONFIGURATION_STORE_NOT_CONFIGURED"
    assert answer.ok is False
    body = {
        "errorCode": "ERR_CONFIGURATION_STORE_NOT_CONFIGURED",
        "message": "configuration stores not configured",
    }
    for path in (
        "/v1.0/configuration/any",
        "/v1.0/configuration/any/subscribe",
        "/v1.0/configuration/any/x/unsubscribe",
    ):
        answer_http = http(endpoint, "GET", path)
        assert (answer_http.status, answer_http.json()) == (500, body), path


def test_http_configuration_endpoints(config_sidecar, redis_client):
    key, other = unique("a"), unique("b")  # sorted as Go's encoding/json sorts them
    redis_client.set(key, "100||1")
    redis_client.set(other, "<b>")
    for version in ("v1.0", "v1.0-alpha1"):
        answer = http(
            config_sidecar, "GET", f"/{version}/configuration/configstore?key={key}&key={other}&key=none"
        )
        assert answer.status == 200
        expected = f'{{"{key}":{{"value":"100","version":"1"}},"{other}":{{"value":"\\u003cb\\u003e"}}}}\n'
        assert answer.body.decode() == expected
    assert http(config_sidecar, "GET", "/v1.0/configuration/configstore?key=none").status == 204
    unknown = http(config_sidecar, "GET", "/v1.0/configuration/nope?key=a")
    assert (unknown.status, unknown.json()) == (
        400,
        {"errorCode": "ERR_CONFIGURATION_STORE_NOT_FOUND", "message": "configuration store nope not found"},
    )
    # HTTP subscriptions post changes to the app, and this sidecar has no app port.
    subscribe = http(config_sidecar, "GET", f"/v1.0/configuration/configstore/subscribe?key={key}")
    assert (subscribe.status, subscribe.json()) == (
        500,
        {
            "errorCode": "ERR_APP_CHANNEL_NIL",
            "message": "app channel is not initialized. cannot subscribe to configuration updates",
        },
    )
    unsubscribe = http(config_sidecar, "GET", "/v1.0/configuration/configstore/abc/unsubscribe")
    assert (unsubscribe.status, unsubscribe.json()) == (
        500,
        {
            "message": "failed to unsubscribe to configuration request abc: subscription with id abc does not exist"
        },
    )


def test_configuration_and_lock_stores_are_listed_in_the_metadata(
    tmp_path, dapr_sidecar_factory, redis_server
):
    folder = components(
        tmp_path / "components",
        store_yaml(redis_server),
        component("lockstore", "lock.redis", {"redisHost": redis_server.address}),
    )
    endpoint = endpoint_of(dapr_sidecar_factory.start(folder, app_id=unique("config")))
    with endpoint.sdk_configured(), DaprClient() as client:
        registered = {
            c.name: (c.type, c.version, list(c.capabilities))
            for c in client.get_metadata().registered_components
        }
    assert registered["configstore"] == ("configuration.redis", "v1", [])
    assert registered["lockstore"] == ("lock.redis", "v1", [])
    listed = {c["name"]: c for c in http(endpoint, "GET", "/v1.0/metadata").json()["components"]}
    assert listed["configstore"] == {"name": "configstore", "type": "configuration.redis", "version": "v1"}
    assert listed["lockstore"] == {"name": "lockstore", "type": "lock.redis", "version": "v1"}
