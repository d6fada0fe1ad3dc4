"""Hosting a compiled LangGraph graph as a Dapr agent workflow that dapr-agents can call.

:func:`host_graph` registers ``dapr.langgraph.{name}.workflow`` through interop's
``host_agent``: one durable activity runs the graph on a checkpointer (a ``DaprCheckpointer``
unless told otherwise) with ``thread_id`` = the agent workflow's instance id. That id survives
activity retries and crash redelivery, so a retried activity finds the thread it wrote before and
resumes from its last completed superstep instead of starting over; a thread that already
finished answers again without running anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union, cast

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig

from dapr_agents.ext.interop import (
    DEFAULT_RETRY_POLICY,
    AgentCall,
    AgentHost,
    AgentRequest,
    AgentResponse,
    InteropError,
    host_agent,
)
from langgraph.checkpoint.base import BaseCheckpointSaver

from ._errors import GraphInterruptedError, GraphMappingError

if TYPE_CHECKING:
    import dapr.ext.workflow as wf

    from langgraph.pregel import Pregel
    from langgraph.types import StateSnapshot

__all__ = ["FRAMEWORK", "host_graph"]

logger = logging.getLogger(__name__)

FRAMEWORK = "langgraph"
"""The framework segment of the workflow name: ``dapr.langgraph.{name}.workflow``."""

InputMapper = Callable[[AgentRequest], Any]
OutputMapper = Callable[[Any], Union[str, AgentResponse, Mapping[str, Any]]]  # noqa: UP007

# Checkpoint metadata (LangGraph copies ``config["metadata"]`` into every checkpoint): the digest
# of the request a thread answers, so that a reused instance id with another task starts afresh.
_REQUEST_DIGEST = "dapr_agent_request"


def _chat_input(request: AgentRequest) -> dict[str, Any]:
    """The default input mapper: the task as the one human message of a ``MessagesState`` graph."""
    return {"messages": [HumanMessage(content=request.task)]}


def _state_keys(graph: Any) -> list[str]:
    builder = getattr(graph, "builder", None)
    schemas = getattr(builder, "schemas", None)
    input_schema = getattr(builder, "input_schema", None)
    if isinstance(schemas, Mapping) and input_schema in schemas:
        return sorted(map(str, schemas[input_schema]))
    channels = getattr(graph, "stream_channels_asis", None)
    if isinstance(channels, str):
        return [channels]
    return sorted(map(str, channels or []))


def _message_text(message: BaseMessage) -> str:
    return str(message.text)  # the text blocks of the content (a property since langchain-core 1.0)


@dataclass(frozen=True)
class _Graph:
    """One hosted graph: how to start, resume and read it (the logic shared by sync and async)."""

    graph: Pregel
    name: str
    workflow_name: str
    input_mapper: InputMapper | None
    output_mapper: OutputMapper | None
    config: RunnableConfig | None

    def describe(self) -> str:
        return f"graph {self.graph.get_name()!r} hosted as {self.workflow_name!r}"

    def run_config(self, call: AgentCall) -> tuple[RunnableConfig, str]:
        base: dict[str, Any] = dict(self.config or {})
        digest = hashlib.sha256(
            json.dumps(call.request.to_input(), sort_keys=True, default=str).encode()
        ).hexdigest()[:32]
        configurable = {**base.get("configurable", {}), "thread_id": call.instance_id, "checkpoint_ns": ""}
        configurable.pop("checkpoint_id", None)
        metadata = {**base.get("metadata", {}), _REQUEST_DIGEST: digest}
        return cast(RunnableConfig, {**base, "configurable": configurable, "metadata": metadata}), digest

    def graph_input(self, request: AgentRequest) -> Any:
        if self.input_mapper is not None:
            return self.input_mapper(request)
        return _chat_input(request)

    def answer(self, values: Any, thread: str) -> AgentResponse:
        if self.output_mapper is not None:
            result = self.output_mapper(values)
            try:
                return AgentResponse.from_result(result)
            except InteropError as error:
                raise GraphMappingError(
                    f"the output_mapper of {self.describe()} returned {type(result).__name__}, not text: "
                    f"{error} (thread {thread!r})"
                ) from None
        keys = sorted(map(str, values)) if isinstance(values, Mapping) else None
        messages = values.get("messages") if isinstance(values, Mapping) else None
        if not isinstance(messages, list):
            raise GraphMappingError(
                f"{self.describe()} finished with state keys {keys} and no 'messages' list; the default "
                "output mapper reads the last AI message of a MessagesState graph: pass "
                "output_mapper=lambda state: <text from state> to host_graph"
            )
        for message in reversed(messages):
            if isinstance(message, AIMessage):
                return AgentResponse(content=_message_text(message))
        raise GraphMappingError(
            f"{self.describe()} finished without an AI message in 'messages' (thread {thread!r}, "
            f"{len(messages)} messages); pass output_mapper=... to host_graph to choose the answer"
        )

    def check_stopped(self, snapshot: StateSnapshot, thread: str) -> None:
        """Raise when the thread waits for a human (``interrupt()``) instead of running on."""
        interrupts = list(getattr(snapshot, "interrupts", ()) or ())
        if not interrupts:
            for task in snapshot.tasks:
                interrupts.extend(getattr(task, "interrupts", ()) or ())
        if interrupts:
            values = [getattr(item, "value", item) for item in interrupts]
            raise GraphInterruptedError(
                f"{self.describe()} stopped at interrupt() in node(s) {list(snapshot.next)} with "
                f"{values!r} (thread {thread!r}); an agent called as a tool must answer in one call, "
                "with no human in the loop. Remove interrupt() from the hosted graph, or run the graph "
                "yourself and resume the thread with Command(resume=...)"
            )

    def plan(self, call: AgentCall) -> Generator[tuple[str, tuple[Any, ...]], Any, AgentResponse]:
        """Yields ``(operation, args)`` for the shell: ``get_state``, ``invoke``, ``delete_thread``."""
        config, digest = self.run_config(call)
        thread = call.instance_id
        snapshot: StateSnapshot = yield ("get_state", (config,))
        stored = snapshot.created_at is not None
        if stored:
            recorded = (snapshot.metadata or {}).get(_REQUEST_DIGEST)
            if recorded is not None and recorded != digest:
                # Dapr lets a finished instance id be reused; that run's thread is not ours.
                logger.info("thread %s holds another request; starting it over", thread)
                yield ("delete_thread", (thread,))
                stored = False
        if not stored:
            logger.debug("%s: starting thread %s", self.describe(), thread)
            yield ("invoke", (self.graph_input(call.request), config))
            snapshot = yield ("get_state", (config,))
        elif snapshot.next:
            self.check_stopped(snapshot, thread)
            logger.info("%s: resuming thread %s at %s", self.describe(), thread, list(snapshot.next))
            yield ("invoke", (None, config))
            snapshot = yield ("get_state", (config,))
        else:
            logger.debug("%s: thread %s already finished", self.describe(), thread)
        if snapshot.next:
            self.check_stopped(snapshot, thread)
            raise GraphInterruptedError(
                f"{self.describe()} stopped before node(s) {list(snapshot.next)} (thread {thread!r}): "
                "compile the hosted graph without interrupt_before / interrupt_after"
            )
        return self.answer(snapshot.values, thread)

    def run_sync(self, call: AgentCall) -> AgentResponse:
        plan = self.plan(call)
        result: Any = None
        try:
            while True:
                operation, args = plan.send(result)
                if operation == "get_state":
                    result = self.graph.get_state(*args)
                elif operation == "invoke":
                    result = self.graph.invoke(*args, durability="sync")
                else:
                    self._saver().delete_thread(*args)
                    result = None
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def run_async(self, call: AgentCall) -> AgentResponse:
        plan = self.plan(call)
        result: Any = None
        try:
            while True:
                operation, args = plan.send(result)
                if operation == "get_state":
                    result = await self.graph.aget_state(*args)
                elif operation == "invoke":
                    result = await self.graph.ainvoke(*args, durability="sync")
                else:
                    await self._saver().adelete_thread(*args)
                    result = None
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def _saver(self) -> BaseCheckpointSaver[Any]:
        saver = self.graph.checkpointer
        assert isinstance(saver, BaseCheckpointSaver)
        return saver


def host_graph(
    runtime: wf.WorkflowRuntime,
    graph: Pregel,
    *,
    name: str,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    input_mapper: InputMapper | None = None,
    output_mapper: OutputMapper | None = None,
    config: RunnableConfig | None = None,
    asynchronous: bool = True,
    role: str | None = None,
    goal: str | None = None,
    workflow_name: str | None = None,
    retry_policy: wf.RetryPolicy | None = DEFAULT_RETRY_POLICY,
) -> AgentHost:
    """Host a compiled graph as the Dapr agent workflow ``dapr.langgraph.{name}.workflow``.

    Each call runs the graph in one durable activity on ``thread_id`` = the workflow's instance
    id, with ``durability="sync"`` (every superstep is stored before the next starts). A retried
    activity (a failure, or the app killed mid-run and the work redelivered) looks at that thread
    first: no checkpoint -> run with the mapped input; pending nodes -> resume with ``None``
    input from the last completed superstep; finished -> answer from the stored state without
    running anything.

    Args:
        runtime: the app's one ``WorkflowRuntime``; call before ``runtime.start()``.
        graph: a compiled graph (``builder.compile()``).
        name: the agent name callers use (``framework="langgraph"``).
        checkpointer: where threads live. Default: the graph's own checkpointer when it was
            compiled with one, else ``DaprCheckpointer()`` (store ``statestore``, prefix
            ``langgraph``).
        input_mapper: ``input_mapper(request: AgentRequest) -> graph input``. Default:
            ``{"messages": [HumanMessage(request.task)]}`` (graphs with a ``messages`` key).
        output_mapper: ``output_mapper(final_state) -> str`` (or ``{"content": str}``), given the
            thread's final state values. Default: the text of the last AI message in ``messages``.
        config: a base ``RunnableConfig`` (``recursion_limit``, ``configurable`` extras...);
            ``thread_id`` is always the instance id.
        asynchronous: run with ``ainvoke`` in an async activity (the default: async and sync
            nodes both work; the checkpointer needs the async API, as ``DaprCheckpointer`` has);
            ``False`` runs ``invoke`` in a worker thread (sync-only checkpointers; async nodes fail).
        role, goal: published with the registry record (``host.record(app_id)``).
        workflow_name: an explicit workflow name instead of the derived one.
        retry_policy: retries of the activity when the graph raises (each retry resumes).

    Raises:
        TypeError: ``graph`` is not compiled.
        GraphMappingError: the graph has no ``messages`` input and no ``input_mapper`` was given.
    """
    if not (hasattr(graph, "invoke") and hasattr(graph, "get_state") and hasattr(graph, "checkpointer")):
        hint = "; call builder.compile() first" if hasattr(graph, "compile") else ""
        raise TypeError(f"host_graph needs a compiled LangGraph graph, got {type(graph).__name__}{hint}")
    if checkpointer is None:
        own = graph.checkpointer
        if isinstance(own, BaseCheckpointSaver):
            checkpointer = own
        else:
            from ._saver import DaprCheckpointer

            checkpointer = DaprCheckpointer()
    if checkpointer is not graph.checkpointer:
        graph = graph.copy(update={"checkpointer": checkpointer})
    if input_mapper is None and "messages" not in _state_keys(graph):
        raise GraphMappingError(
            f"graph {graph.get_name()!r} (agent {name!r}) takes input keys {_state_keys(graph)}, not "
            "'messages'; the default input mapper sends {'messages': [HumanMessage(task)]}: pass "
            "input_mapper=lambda request: {...} built from request.task"
        )
    from dapr_agents.ext.interop import agent_workflow_name

    hosted = _Graph(
        graph=graph,
        name=name,
        workflow_name=agent_workflow_name(name, framework=FRAMEWORK, workflow_name=workflow_name),
        input_mapper=input_mapper,
        output_mapper=output_mapper,
        config=config,
    )
    run: Callable[[AgentCall], AgentResponse | Awaitable[AgentResponse]]
    run = hosted.run_async if asynchronous else hosted.run_sync
    return host_agent(
        runtime,
        name=name,
        framework=FRAMEWORK,
        run=run,
        role=role,
        goal=goal,
        workflow_name=workflow_name,
        retry_policy=retry_policy,
    )
