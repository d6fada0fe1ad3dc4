"""Quickstart: state and pub/sub through the official Dapr SDK, against any Dapr sidecar.

Run it with the dev sidecar (no Docker) or with real Dapr; see README.md next to this file.
"""

from __future__ import annotations

import asyncio
import json
import sys

from dapr.aio.clients import DaprClient
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType

STORE, PUBSUB, TOPIC = "statestore", "pubsub", "quickstart-orders"


async def main() -> int:
    async with DaprClient() as client:
        await client.save_state(STORE, "order-1", json.dumps({"item": "coffee", "qty": 2}))
        order = json.loads((await client.get_state(STORE, "order-1")).data)
        print(f"read back order-1: {order['qty']} x {order['item']}")

        await client.execute_state_transaction(
            STORE,
            [
                TransactionalStateOperation(key="order-2", data=json.dumps({"item": "tea", "qty": 1})),
                TransactionalStateOperation(key="order-1", operation_type=TransactionOperationType.delete),
            ],
        )
        bulk = await client.get_bulk_state(STORE, ["order-1", "order-2"])
        print(f"after the transaction: {', '.join(item.key for item in bulk.items if item.data)}")

        # A streaming subscription: the sidecar pushes events, the app acknowledges each one.
        subscription = await client.subscribe(PUBSUB, TOPIC)
        try:
            await client.publish_event(
                PUBSUB, TOPIC, json.dumps({"order": "order-2"}), data_content_type="application/json"
            )
            message = await asyncio.wait_for(subscription.next_message(), timeout=10)
            print(f"received event {message.type()} with {message.data()}")
            await subscription.respond_success(message)
        finally:
            await subscription.close()
    print("quickstart done")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
