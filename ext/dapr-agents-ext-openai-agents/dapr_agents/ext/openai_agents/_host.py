"""Hosting an OpenAI Agents SDK ``Agent`` as a Dapr agent workflow (``dapr.openai.{name}.workflow``).

Each call runs the agent with ``Runner.run`` inside the one durable activity that interop's
:func:`~dapr_agents.ext.interop.host_agent` registers, on a :class:`DaprSession` per caller so
that a caller's follow-up calls see its earlier ones. The run does not write to that session as
it goes: it works on an overlay that reads the caller's history and keeps the run's new items in
memory, and the call commits them in one append at the end, recorded under the workflow
instance id in a small call record. So a crashed or failed attempt leaves nothing in the
history, and an attempt redelivered after the commit returns the recorded answer instead of
running (and appending) again; every call's exchange lands exactly once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import dapr.ext.workflow as wf
import pydantic_core
from agents import Agent, RunConfig, Runner, RunResult
from agents.items import TResponseInputItem
from agents.memory import SessionABC
from dapr.clients.grpc._state import Consistency

from dapr_agents.ext.interop import DEFAULT_RETRY_POLICY, AgentCall, AgentHost, host_agent

from ._errors import ItemNotSerializableError, SessionCorruptedError
from ._scope import _CALL_SCOPE
from ._session import DaprSession
from ._store import StateIO

T = TypeVar("T")

__all__ = [
    "DEFAULT_CALL_RECORD_TTL",
    "DEFAULT_MAX_TURNS",
    "default_output_mapper",
    "default_session_key",
    "host_openai_agent",
]

logger = logging.getLogger(__name__)

FRAMEWORK = "openai"
DEFAULT_MAX_TURNS = 10
"""The SDK's own default for ``Runner.run(max_turns=...)``."""
DEFAULT_CALL_RECORD_TTL = 7 * 24 * 3600
"""Seconds a call record lives: far longer than Dapr keeps redelivering one activity."""


def default_session_key(call: AgentCall) -> str:
    """``"{agent name}:{caller}"``: one conversation per calling agent (``anonymous`` if unnamed)."""
    return f"{call.agent_name}:{call.source or 'anonymous'}"


def default_output_mapper(result: RunResult) -> str:
    """``result.final_output`` as text: a string as is, anything else (a pydantic model, a
    dataclass, a dict) as JSON."""
    output = result.final_output
    if isinstance(output, str):
        return output
    return pydantic_core.to_json(output, fallback=str).decode()


class _CallSession(SessionABC):
    """What one call's run sees: the caller's committed history, then this run's own items.

    New items stay in memory until the call commits them in one append, so an attempt that
    dies leaves nothing behind in the caller's history.
    """

    def __init__(self, committed: DaprSession) -> None:
        self.session_id = committed.session_id
        self.session_settings = committed.session_settings
        self._committed = committed
        self.staged: list[TResponseInputItem] = []

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        if limit is None and self.session_settings is not None:
            limit = self.session_settings.limit
        if limit is not None:
            if limit <= 0:
                return []
            if len(self.staged) >= limit:
                return list(self.staged[-limit:])
            return [*await self._committed.get_items(limit - len(self.staged)), *self.staged]
        return [*await self._committed.get_items(), *self.staged]

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        self.staged.extend(items)

    async def pop_item(self) -> TResponseInputItem | None:
        # Only this run's items can be taken back: the committed history belongs to earlier calls.
        return self.staged.pop() if self.staged else None

    async def clear_session(self) -> None:
        self.staged.clear()


class _CallRecords:
    """The record of each call at ``{session}:call:{instance id}``: ``committing`` (with the
    items being appended and the answer) before the append, ``done`` (with the answer) after."""

    def __init__(self, session: DaprSession, ttl: int | None) -> None:
        self._session = session
        self._io = StateIO(session._dapr, session._state_store_name, ttl=ttl, consistency=Consistency.strong)

    def key(self, instance_id: str) -> str:
        return f"{self._session.session_id}:call:{instance_id}"

    async def read(self, instance_id: str) -> dict[str, Any] | None:
        key = self.key(instance_id)
        data, _ = await self._io.get(key)
        if data is None:
            return None
        try:
            record = json.loads(data)
            if not isinstance(record, dict) or record.get("state") not in ("committing", "done"):
                raise ValueError(f"unknown call record shape: {data[:80]!s}")
            if not isinstance(record.get("output"), str):
                raise ValueError("the call record has no text output")
        except ValueError as error:
            raise SessionCorruptedError(
                f"call record {key!r} in state store {self._io.store!r} is unreadable ({error}); "
                "delete the key to let the call run again",
                store=self._io.store,
                key=key,
            ) from error
        return record

    async def write(self, instance_id: str, record: dict[str, Any]) -> None:
        try:
            data = json.dumps({"v": 1, **record}, separators=(",", ":")).encode()
        except (TypeError, ValueError) as error:
            raise ItemNotSerializableError(
                f"the items of call {instance_id!r} are not JSON ({error}); the session cannot store them"
            ) from error
        await self._io.put(self.key(instance_id), data)


async def _item_count(session: DaprSession) -> int:
    snapshot = await session._snapshot(0)
    return session._state_of(snapshot).count if snapshot.stored is not None else 0


async def _finish_commit(session: DaprSession, record: dict[str, Any]) -> None:
    """Complete a commit that an earlier attempt began: append its items unless they landed."""
    items = record.get("items") or []
    if not items:
        return
    base = int(record.get("base", 0))
    count = await _item_count(session)
    if count - base >= len(items):
        # The append is one page, so if it landed its items are contiguous somewhere after base.
        after = await session.get_items(limit=count - base)
        for start in range(len(after) - len(items) + 1):
            if after[start : start + len(items)] == items:
                return
    await session.add_items(items)


class _HostLoop:
    """One event loop in a daemon thread per hosted agent; activities submit their runs to it."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name=f"openai-agents-host-{self._name}", daemon=True
                )
                thread.start()
                self._loop = loop
            return self._loop

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._ensure()).result()


def host_openai_agent(
    runtime: wf.WorkflowRuntime,
    agent: Agent[Any],
    *,
    name: str | None = None,
    session_store: str = "statestore",
    session_key: Callable[[AgentCall], str] | None = None,
    session_ttl: int | None = None,
    max_turns: int = DEFAULT_MAX_TURNS,
    run_config: RunConfig | None = None,
    context: Callable[[AgentCall], Any] | None = None,
    output_mapper: Callable[[RunResult], str] | None = None,
    role: str | None = None,
    goal: str | None = None,
    workflow_name: str | None = None,
    retry_policy: wf.RetryPolicy | None = DEFAULT_RETRY_POLICY,
    call_record_ttl: int | None = DEFAULT_CALL_RECORD_TTL,
) -> AgentHost:
    """Make ``agent`` callable as the Dapr workflow ``dapr.openai.{name}.workflow``.

    Every call runs ``Runner.run(agent, call.task, session=...)`` in one durable activity and
    answers ``{"role": "assistant", "content": <text>}``; a failing run fails the workflow.
    The conversation is kept per caller in a :class:`DaprSession` on ``session_store``
    (id ``session_key(call)``, by default ``"{name}:{caller name}"``), so follow-up calls
    from the same caller remember the earlier ones and different callers never see each other.

    A call's items (the task and what the run produced) are appended to the session once, in
    one commit, when the run has finished; an attempt that crashes or fails before that leaves
    the history untouched, and a redelivered attempt after it returns the recorded answer
    without running again. Register before ``runtime.start()``, on the app's only runtime.

    Args:
        runtime: the app's ``WorkflowRuntime``.
        agent: the SDK agent to run (with its tools, handoffs and model).
        name: the hosted name (default ``agent.name``); sanitised into the workflow name.
        session_store: the Dapr state store of the sessions and call records.
        session_key: ``session_key(call) -> session id`` instead of one per caller.
        session_ttl: ``ttl`` of the sessions (seconds; see :class:`DaprSession`).
        max_turns, run_config: passed to ``Runner.run``.
        context: ``context(call) -> run context`` passed to ``Runner.run(context=...)``.
        output_mapper: ``output_mapper(result) -> str`` instead of :func:`default_output_mapper`.
        role, goal: what the registry record shows dapr-agents' LLMs.
        workflow_name: an explicit workflow name instead of the derived one.
        retry_policy: attempts of the run activity on failure (interop's default: 3).
        call_record_ttl: seconds each call record lives (``None``: forever).

    Publish it for every DurableAgent of a team with
    ``AgentRegistry().register(host.record(app_id))``.
    """
    if not isinstance(agent, Agent):
        raise TypeError(f"agent must be an agents.Agent, got {type(agent).__name__}")
    if max_turns <= 0:
        raise ValueError(f"max_turns must be positive, got {max_turns!r}")
    hosted_name = name or agent.name
    mapper = output_mapper or default_output_mapper

    async def run_call(call: AgentCall) -> str:
        session_id = session_key(call) if session_key is not None else default_session_key(call)
        async with DaprSession(session_id, state_store_name=session_store, ttl=session_ttl) as session:
            records = _CallRecords(session, call_record_ttl)
            record = await records.read(call.instance_id)
            if record is not None:
                if record["state"] == "committing":
                    logger.info("call %s: finishing the commit of an earlier attempt", call.instance_id)
                    await _finish_commit(session, record)
                    await records.write(call.instance_id, {"state": "done", "output": record["output"]})
                else:
                    logger.info("call %s already ran; returning its recorded answer", call.instance_id)
                return str(record["output"])
            overlay = _CallSession(session)
            token = _CALL_SCOPE.set(call.instance_id)
            try:
                result = await Runner.run(
                    agent,
                    call.task,
                    session=overlay,
                    max_turns=max_turns,
                    run_config=run_config,
                    context=context(call) if context is not None else None,
                )
            finally:
                _CALL_SCOPE.reset(token)
            output = mapper(result)
            if not isinstance(output, str):
                raise TypeError(
                    f"output_mapper of hosted agent {hosted_name!r} returned {type(output).__name__}, not str"
                )
            base = await _item_count(session)
            await records.write(
                call.instance_id,
                {"state": "committing", "base": base, "items": overlay.staged, "output": output},
            )
            if overlay.staged:
                await session.add_items(overlay.staged)
            await records.write(call.instance_id, {"state": "done", "output": output})
            return output

    loop = _HostLoop(hosted_name)

    def run(call: AgentCall) -> str:
        # A plain activity that hands the run to the host's own long-lived loop: the agent's
        # AsyncOpenAI client keeps connections bound to the loop it first ran on, so a fresh
        # loop per call (asyncio.run) breaks the second call with "Event loop is closed"; and
        # dapr-ext-workflow 1.18.0 does not await async activities anyway.
        return loop.run(run_call(call))

    return host_agent(
        runtime,
        name=hosted_name,
        framework=FRAMEWORK,
        run=run,
        role=role,
        goal=goal,
        workflow_name=workflow_name,
        retry_policy=retry_policy,
    )
