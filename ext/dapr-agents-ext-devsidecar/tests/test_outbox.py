"""The transactional outbox (a state store with ``outboxPublishPubsub``/``outboxPublishTopic``), on
the dev sidecar and on real daprd: a committed transaction's upserts reach the topic, a projection
is published instead of saved, and the marker keys are gone once the events are forwarded.

The outbox pub/sub is pubsub.redis, as in the Dapr SDK's state_store example: with pubsub.in-memory
a transaction of two upserts stalls on daprd too (its bus makes the second internal publish wait
for the first event's handler, which waits for a marker the unfinished transaction has not
written; after 11 s that event is refused)."""

from __future__ import annotations

import json
import threading

import pytest
from dapr.clients import DaprClient
from dapr.clients.grpc._request import TransactionalStateOperation
from sidecars import component, components, endpoint_of

pytestmark = pytest.mark.starts_sidecars


def outbox_components(folder, redis_server, topic: str, **extra: str):
    metadata = {"keyPrefix": "none", "outboxPublishPubsub": "pubsub", "outboxPublishTopic": topic, **extra}
    return components(
        folder,
        component("statestore", "state.in-memory", metadata),
        component("pubsub", "pubsub.redis", {"redisHost": redis_server.address}),
    )


class Inbox:
    """A streaming subscription read on a thread (the SDK's reads block)."""

    def __init__(self, client: DaprClient, topic: str) -> None:
        self.subscription = client.subscribe(pubsub_name="pubsub", topic=topic)
        self.events: list[dict] = []
        self.arrived = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                message = self.subscription.next_message()
            except Exception:
                return
            if message is None:
                continue
            self.subscription.respond_success(message)
            with self.arrived:
                self.events.append(
                    {
                        "id": message.id(),
                        "data": message.raw_data(),
                        "topic": message.topic(),
                        "pubsub": message.pubsub_name(),
                        "content_type": message.data_content_type(),
                    }
                )
                self.arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 30) -> list[dict]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.events) >= count, timeout), (
                f"{len(self.events)} of {count} outbox events arrived: {self.events}"
            )
            return list(self.events)

    def close(self) -> None:
        self.subscription.close()


def test_committed_upserts_are_published_and_a_projection_replaces_the_saved_value(
    tmp_path, dapr_sidecar_factory, redis_server, unique
):
    topic = f"{unique}-orders"
    folder = outbox_components(tmp_path / "components", redis_server, topic)
    sidecar = dapr_sidecar_factory.start(folder, app_id=f"{unique}-outbox")
    with endpoint_of(sidecar).sdk_configured(), DaprClient() as client:
        inbox = Inbox(client, topic)
        try:
            # The Dapr SDK's state_store example: the projection is what subscribers get for key1.
            client.execute_state_transaction(
                store_name="statestore",
                operations=[
                    TransactionalStateOperation(key="key1", data="val1", metadata={"outbox.projection": "false"}),
                    TransactionalStateOperation(key="key1", data="val2", metadata={"outbox.projection": "true"}),
                    TransactionalStateOperation(key="key2", data=json.dumps({"n": 2}), metadata={"contentType": "application/json"}),
                ],
            )  # fmt: skip
            assert client.get_state("statestore", "key1").data == b"val1"
            assert client.get_state("statestore", "key2").data == b'{"n": 2}'
            events = sorted(inbox.wait_for(2), key=lambda event: event["data"])
            assert [event["data"] for event in events] == [b"val2", b'{"n":2}']
            assert [event["content_type"] for event in events] == ["text/plain", "application/json"]
            assert {(event["topic"], event["pubsub"]) for event in events} == {(topic, "pubsub")}
            markers = [event["id"] for event in events]
            assert all(marker.startswith("outbox-") for marker in markers), markers
            # The markers (keys without the app's prefix, in the same transaction) are deleted
            # once their events are forwarded.
            for marker in markers:
                for _ in range(100):
                    if client.get_state("statestore", marker).data == b"":
                        break
                    threading.Event().wait(0.1)
                assert client.get_state("statestore", marker).data == b""
        finally:
            inbox.close()


def test_a_missing_outbox_pubsub_fails_the_transaction_and_saves_nothing(
    tmp_path, dapr_sidecar_factory, redis_server, unique
):
    folder = outbox_components(
        tmp_path / "components", redis_server, f"{unique}-orders", outboxPubsub="nosuch"
    )
    sidecar = dapr_sidecar_factory.start(folder, app_id=f"{unique}-outbox")
    with endpoint_of(sidecar).sdk_configured(), DaprClient() as client:
        with pytest.raises(Exception) as failure:
            client.execute_state_transaction(
                store_name="statestore", operations=[TransactionalStateOperation(key="k", data="v")]
            )
        assert "error while publishing outbox message: pubsub 'nosuch' not found" in str(failure.value)
        assert client.get_state("statestore", "k").data == b""
