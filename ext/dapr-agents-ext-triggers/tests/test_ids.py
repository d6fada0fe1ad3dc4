"""Instance ids: deterministic, Dapr-safe, and distinct for distinct inputs (pure)."""

from __future__ import annotations

import re

from dapr_agents.ext.triggers._ids import instance_id, part


def test_safe_parts_stay_readable_and_unsafe_ones_get_a_digest() -> None:
    assert part("order-42_a") == "order-42_a"
    assert re.fullmatch(r"agent-pubsub_orders-[0-9a-f]{10}", part("agent-pubsub.orders"))
    assert part("a.b") != part("a_b")  # sanitising alone would merge them
    assert len(part("x" * 500)) <= 51


def test_instance_ids_are_deterministic_and_scoped() -> None:
    first = instance_id("boss", "topic", "pubsub.orders", "evt/1 2")
    assert first == instance_id("boss", "topic", "pubsub.orders", "evt/1 2")
    assert re.fullmatch(r"[A-Za-z0-9_-]+", first)
    assert first != instance_id("boss", "topic", "pubsub.returns", "evt/1 2")
    assert first != instance_id("boss", "webhook", "pubsub.orders", "evt/1 2")
    assert first != instance_id("clerk", "topic", "pubsub.orders", "evt/1 2")
