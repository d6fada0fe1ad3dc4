"""The Redis connection settings daprd's Redis components share (``configuration.redis``,
``lock.redis``): ``redisHost`` (``host:port``, or a host plus ``redisPort``), ``redisUsername``,
``redisPassword``, ``redisDB`` and ``enableTLS``. Sentinel and cluster modes are not supported.
"""

from __future__ import annotations

from typing import Any

from ._components import Component
from ._errors import ComponentError

DEFAULT_PORT = 6379


def _where(component: Component) -> str:
    return f"{component.source}: component {component.name!r} ({component.type})"


def redis_address(component: Component, *, default_host: str | None = None) -> tuple[str, int]:
    """``(host, port)`` from ``redisHost``/``redisPort``; ``default_host`` when none is given."""
    host = component.metadata_value("redisHost") or default_host
    if not host:
        raise ComponentError(f"{_where(component)}: metadata property redisHost is empty")
    port_text = component.metadata_value("redisPort") or ""
    if port_text and not port_text.isdigit():
        raise ComponentError(f"{_where(component)}: redisPort {port_text!r} is not a number")
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and "]" not in port:
        if port_text and int(port_text) != int(port):
            raise ComponentError(
                f"{_where(component)}: redis host {host!r} already contains port {port}, but redisPort "
                f"is set to {port_text}; remove one of them"
            )
        return name.strip("[]"), int(port)
    return host.strip("[]"), int(port_text) if port_text else DEFAULT_PORT


def redis_db(component: Component) -> int:
    text = component.metadata_value("redisDB") or "0"
    if not text.isdigit():
        raise ComponentError(f"{_where(component)}: redisDB {text!r} is not a number")
    return int(text)


def redis_client(component: Component, *, default_host: str | None = None) -> Any:
    """An asyncio redis-py client for the component (not connected yet)."""
    try:
        import redis.asyncio as aioredis
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ComponentError(
            f"{_where(component)} needs redis-py: pip install 'dapr-agents-ext-devsidecar[redis]'"
        ) from exc
    redis_type = (component.metadata_value("redisType") or "node").lower()
    if redis_type != "node" or component.flag("failover"):
        raise ComponentError(
            f"{_where(component)}: only a single Redis node is supported (redisType 'node', no failover)"
        )
    host, port = redis_address(component, default_host=default_host)
    return aioredis.Redis(
        host=host,
        port=port,
        db=redis_db(component),
        username=component.metadata_value("redisUsername") or None,
        password=component.metadata_value("redisPassword") or None,
        ssl=component.flag("enableTLS"),
        decode_responses=False,
    )
