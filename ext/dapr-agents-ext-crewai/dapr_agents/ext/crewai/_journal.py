"""The tool journal: at most one execution per distinct tool call of a task, across retries and
crashes.

Semantics: inside one workflow instance and one task, the n-th call of tool T with arguments A
(canonical JSON) is a distinct call. Before it runs, a ``started`` record is written to the state
store; after it returns, the result (as the string the agent sees). When the task runs again (an
activity retry, or redelivery after a crash), a call with a ``done`` record returns the recorded
result without running the tool; a call with only a ``started`` record (the process died while
the tool ran) is not run again either: the agent gets a :class:`ToolOutcomeUnknownError` as the
tool's answer. Tools listed in ``unjournaled_tools`` run every time (use it for pure, read-only
tools). Records are kept under ``crewai-journal:<instance>:<task>:<hash>:<n>``.

Tools that are idempotent by themselves (:class:`DaprAgentTool`: an agent call with a
deterministic instance id) are keyed instead of journaled: the same key becomes the call's
idempotency key, so a retried task re-attaches to the agent run it started, even one that was
still running when the process died.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from typing import Any

from pydantic import PrivateAttr

from crewai.tools import BaseTool

from ._errors import ToolOutcomeUnknownError
from ._tool import CallScope, call_scope


class ToolJournal:
    """The journal of one task attempt (one activity execution)."""

    def __init__(self, store: str | None, instance_id: str, task_index: int) -> None:
        self.store = store
        self.prefix = f"crewai-journal:{instance_id}:{task_index}"
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    def key(self, tool: str, arguments: dict[str, Any]) -> str:
        canonical = json.dumps([tool, arguments], sort_keys=True, default=str)
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:32]
        with self._lock:
            self._seen[digest] += 1
            occurrence = self._seen[digest]
        return f"{self.prefix}:{digest}:{occurrence}"

    def call(self, tool: BaseTool, arguments: dict[str, Any]) -> Any:
        from dapr.clients import DaprClient

        key = self.key(tool.name, arguments)
        if self.store is None:
            raise ValueError("this journal has no state store; it can only key calls")
        with DaprClient() as client:
            found = client.get_state(self.store, key).data
            if found:
                record = json.loads(found)
                if record.get("status") == "done":
                    return record["result"]
                raise ToolOutcomeUnknownError(
                    f"tool {tool.name!r} with arguments {arguments} started before a crash and its "
                    "outcome is unknown; it is not called again (at most once)"
                )
            client.save_state(self.store, key, json.dumps({"status": "started", "tool": tool.name}))
            result = tool.run(**arguments)
            client.save_state(
                self.store, key, json.dumps({"status": "done", "tool": tool.name, "result": str(result)})
            )
        return result


class JournaledTool(BaseTool):
    """Wraps a CrewAI tool so that its calls go through a :class:`ToolJournal`."""

    _inner: Any = PrivateAttr(default=None)
    _journal: Any = PrivateAttr(default=None)

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        if args:  # CrewAI passes validated keyword arguments; positional calls bypass the journal
            return self._inner.run(*args, **kwargs)
        return self._journal.call(self._inner, kwargs)


class KeyedTool(BaseTool):
    """Wraps an idempotent tool: each distinct call runs with its journal key as idempotency key."""

    _inner: Any = PrivateAttr(default=None)
    _journal: Any = PrivateAttr(default=None)
    _source: str | None = PrivateAttr(default=None)

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        if args:
            return self._inner.run(*args, **kwargs)
        key = self._journal.key(self._inner.name, kwargs)
        with call_scope(CallScope(key=key, source=self._source)):
            return self._inner.run(**kwargs)


def _wrap(cls: type[BaseTool], tool: BaseTool) -> Any:
    return cls(
        name=tool.name,
        description=tool.description,
        args_schema=tool.args_schema,
        result_schema=tool.result_schema,
        description_updated=True,
        cache_function=tool.cache_function,
        result_as_answer=tool.result_as_answer,
        # the wrapped tool enforces its own usage limit
        tool_failure_policy=tool.tool_failure_policy,
    )


def journaled(tool: BaseTool, journal: ToolJournal) -> BaseTool:
    wrapper = _wrap(JournaledTool, tool)
    wrapper._inner = tool
    wrapper._journal = journal
    return wrapper  # type: ignore[no-any-return]


def keyed(tool: BaseTool, journal: ToolJournal, source: str | None) -> BaseTool:
    wrapper = _wrap(KeyedTool, tool)
    wrapper._inner = tool
    wrapper._journal = journal
    wrapper._source = source
    return wrapper  # type: ignore[no-any-return]
