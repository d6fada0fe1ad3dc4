"""The Logistics Agent: an A2A server behind its Dapr sidecar (app id ``logistics``).

Every A2A task is a Dapr workflow instance: kill this process mid-task, start it again, and the
task completes. Without an order number it asks for one (``input-required``).
"""

from __future__ import annotations

import re

import dapr.ext.workflow as wf

from dapr_agents.ext.a2a import A2ACall, InputRequired, serve_a2a


def logistics(call: A2ACall) -> str | InputRequired:
    order = re.search(r"\d+", call.text)
    if order is None:
        return InputRequired("Which order number?")
    return f"order {order.group()}: delivery failed at the depot; a new attempt is booked for tomorrow"


def main() -> None:
    runtime = wf.WorkflowRuntime()
    server = serve_a2a(
        runtime,
        name="Logistics Agent",
        description="Tracks shipments and delivery attempts.",
        skills=[{"id": "track-shipment", "name": "Track shipment", "description": "Where is an order?"}],
        run=logistics,
    )  # port: APP_PORT, which 'dapr run --app-port' sets
    runtime.start()
    try:
        server.run()
    finally:
        runtime.shutdown()


if __name__ == "__main__":
    main()
