"""Publishing hosted agents in the dapr-agents registry, so every DurableAgent finds them.

dapr-agents keeps a team's agents in the state store ``agent-registry``: one record per agent at
``agents:{team}:{name}`` (the ``AgentMetadataSchema`` JSON) and the list of names at
``agents:{team}:_index``, updated under an etag so concurrent registrations never drop a name.
``DurableAgent.load_tools`` reads both at the start of every run and turns each non-orchestrator
peer into a tool that schedules ``agent.metadata.workflow_name`` on ``agent.appid``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, Field

from ._errors import RegistryConflictError
from ._naming import agent_workflow_name
from ._ops import Op, Plan, grpc_code, run_async, run_sync

__all__ = ["DEFAULT_REGISTRY_STORE", "DEFAULT_TEAM", "AgentRecord", "AgentRegistry", "AsyncAgentRegistry"]

logger = logging.getLogger(__name__)

DEFAULT_REGISTRY_STORE = "agent-registry"
DEFAULT_TEAM = "default"
SCHEMA_VERSION = "1.0.0"
_INDEX_FIELD = "agents"
_CONFLICT_CODES = frozenset({"ABORTED", "FAILED_PRECONDITION"})


class AgentRecord(BaseModel):
    """One agent in the registry, in the terms of this package."""

    name: str
    app_id: str
    framework: str | None = None
    workflow_name: str | None = None
    role: str | None = None
    goal: str | None = None
    type: str = "HostedAgent"
    orchestrator: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def resolved_workflow_name(self) -> str:
        return agent_workflow_name(self.name, framework=self.framework, workflow_name=self.workflow_name)

    def to_registry(self, registered_at: datetime | None = None) -> dict[str, Any]:
        """The ``AgentMetadataSchema`` JSON dapr-agents reads."""
        metadata = {**self.metadata, "workflow_name": self.resolved_workflow_name}
        agent: dict[str, Any] = {
            "appid": self.app_id,
            "type": self.type,
            "orchestrator": self.orchestrator,
            "role": self.role,
            "goal": self.goal,
            "framework": self.framework,
            "metadata": metadata,
        }
        return {
            "version": SCHEMA_VERSION,
            "name": self.name,
            "registered_at": (registered_at or datetime.now(timezone.utc)).isoformat(),
            "agent": agent,
        }

    @classmethod
    def from_registry(cls, data: Mapping[str, Any]) -> AgentRecord:
        """Read a registry record written by dapr-agents or by this package."""
        agent = data.get("agent")
        if not isinstance(agent, Mapping):
            raise ValueError(f"registry record {data.get('name')!r} has no 'agent' object")
        metadata = dict(agent.get("metadata") or {})
        workflow_name = metadata.pop("workflow_name", None)
        return cls(
            name=str(data.get("name") or ""),
            app_id=str(agent.get("appid") or ""),
            framework=agent.get("framework"),
            workflow_name=workflow_name,
            role=agent.get("role"),
            goal=agent.get("goal"),
            type=str(agent.get("type") or ""),
            orchestrator=bool(agent.get("orchestrator", False)),
            metadata=metadata,
        )


def _decode(data: bytes | None) -> Any:
    if not data:
        return None
    return json.loads(data)


class _RegistryPlans:
    """The registry's read-decide-write logic, shared by the sync and async registries."""

    def __init__(self, store_name: str, team: str, max_attempts: int) -> None:
        if not store_name:
            raise ValueError("the registry needs a state store name (dapr-agents uses 'agent-registry')")
        if not team or ":" in team:
            raise ValueError(f"team {team!r} must be non-empty and contain no ':'")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.store_name = store_name
        self.team = team
        self.max_attempts = max_attempts

    @property
    def index_key(self) -> str:
        return f"agents:{self.team}:_index"

    def record_key(self, name: str) -> str:
        return f"agents:{self.team}:{name}"

    @property
    def state_metadata(self) -> dict[str, str]:
        return {"contentType": "application/json", "partitionKey": f"agents:{self.team}"}

    def _get(self, key: str) -> Op:
        return Op("state", "get_state", (self.store_name, key), {"state_metadata": self.state_metadata})

    def _save(self, key: str, value: Any, etag: str | None = None, *, guarded: bool = False) -> Op:
        kwargs: dict[str, Any] = {"state_metadata": self.state_metadata}
        if guarded:
            from dapr.clients.grpc._state import Concurrency, StateOptions

            kwargs["etag"] = etag or None
            kwargs["options"] = StateOptions(concurrency=Concurrency.first_write)
        return Op("state", "save_state", (self.store_name, key, json.dumps(value)), kwargs)

    def _mutate_index(self, change: Any) -> Plan[bool]:
        """Apply ``change(names) -> bool`` to the index under its etag; retry when we lose a race."""
        for attempt in range(self.max_attempts):
            response = yield self._get(self.index_key)
            current = _decode(response.data) or {}
            names = list(current.get(_INDEX_FIELD, [])) if isinstance(current, dict) else []
            if not change(names):
                return False
            try:
                yield self._save(self.index_key, {_INDEX_FIELD: names}, response.etag, guarded=True)
                return True
            except Exception as error:
                if grpc_code(error) not in _CONFLICT_CODES:
                    raise
                logger.debug("registry index %r changed under us (attempt %d)", self.index_key, attempt + 1)
                yield Op("clock", "sleep", (random.uniform(0.01, 0.05) * (attempt + 1),))
        raise RegistryConflictError(
            f"could not update {self.index_key!r} in state store {self.store_name!r} after "
            f"{self.max_attempts} etag-guarded attempts; too many agents registering at once, retry"
        )

    def register(self, record: AgentRecord) -> Plan[None]:
        if not record.app_id:
            raise ValueError(f"agent {record.name!r} needs the app id that hosts it")
        yield self._save(self.record_key(record.name), record.to_registry())

        def add(names: list[str]) -> bool:
            if record.name in names:
                return False
            names.append(record.name)
            return True

        yield from self._mutate_index(add)

    def unregister(self, name: str) -> Plan[None]:
        def remove(names: list[str]) -> bool:
            if name not in names:
                return False
            names[:] = [n for n in names if n != name]
            return True

        yield from self._mutate_index(remove)
        yield Op(
            "state",
            "delete_state",
            (self.store_name, self.record_key(name)),
            {"state_metadata": self.state_metadata},
        )

    def get(self, name: str) -> Plan[AgentRecord | None]:
        response = yield self._get(self.record_key(name))
        data = _decode(response.data)
        return AgentRecord.from_registry(data) if isinstance(data, dict) else None

    def list_agents(self) -> Plan[list[AgentRecord]]:
        response = yield self._get(self.index_key)
        index = _decode(response.data) or {}
        names = list(index.get(_INDEX_FIELD, [])) if isinstance(index, dict) else []
        records: list[AgentRecord] = []
        for name in names:
            record = yield from self.get(name)
            if record is not None:
                records.append(record)
        return records


class AgentRegistry:
    """The dapr-agents registry of one team, through a blocking ``DaprClient``.

    ``register(host.record(app_id))`` makes a hosted agent a tool of every DurableAgent on the
    team (they reload the registry at the start of each run).
    """

    def __init__(
        self,
        store_name: str = DEFAULT_REGISTRY_STORE,
        *,
        team: str = DEFAULT_TEAM,
        dapr_client: Any = None,
        max_attempts: int = 10,
    ) -> None:
        self._plans = _RegistryPlans(store_name, team, max_attempts)
        self._client = dapr_client

    def _targets(self) -> dict[str, Any]:
        if self._client is None:
            from dapr.clients import DaprClient

            self._client = DaprClient()
        return {"state": self._client, "clock": time}

    def register(self, record: AgentRecord) -> None:
        """Write the agent's record and add it to the team index (idempotent)."""
        run_sync(self._plans.register(record), self._targets())
        logger.info("registered agent %r of app %r in team %r", record.name, record.app_id, self._plans.team)

    def unregister(self, name: str) -> None:
        """Remove the agent from the team index and delete its record (idempotent)."""
        run_sync(self._plans.unregister(name), self._targets())

    def get(self, name: str) -> AgentRecord | None:
        return run_sync(self._plans.get(name), self._targets())

    def list_agents(self) -> list[AgentRecord]:
        """Every agent the team index lists (stale names without a record are skipped)."""
        return run_sync(self._plans.list_agents(), self._targets())


class _AsyncClock:
    @staticmethod
    async def sleep(seconds: float) -> None:
        import asyncio

        await asyncio.sleep(seconds)


class AsyncAgentRegistry:
    """:class:`AgentRegistry` through the asyncio ``dapr.aio.clients.DaprClient``."""

    def __init__(
        self,
        store_name: str = DEFAULT_REGISTRY_STORE,
        *,
        team: str = DEFAULT_TEAM,
        dapr_client: Any = None,
        max_attempts: int = 10,
    ) -> None:
        self._plans = _RegistryPlans(store_name, team, max_attempts)
        self._client = dapr_client

    def _targets(self) -> dict[str, Any]:
        if self._client is None:
            from dapr.aio.clients import DaprClient

            self._client = DaprClient()
        return {"state": self._client, "clock": _AsyncClock}

    async def register(self, record: AgentRecord) -> None:
        await run_async(self._plans.register(record), self._targets())
        logger.info("registered agent %r of app %r in team %r", record.name, record.app_id, self._plans.team)

    async def unregister(self, name: str) -> None:
        await run_async(self._plans.unregister(name), self._targets())

    async def get(self, name: str) -> AgentRecord | None:
        return await run_async(self._plans.get(name), self._targets())

    async def list_agents(self) -> list[AgentRecord]:
        return await run_async(self._plans.list_agents(), self._targets())
