"""``serve_a2a``: a Dapr-hosted agent as an A2A server whose tasks are workflow instances.

The HTTP side is a2a-sdk's own: its JSON-RPC dispatcher (A2A 1.0 method names and, on the same
endpoint, 0.3's ``message/send``, ``message/stream``, ``tasks/get``, ``tasks/cancel``,
``tasks/resubscribe``) and its agent-card route. The request handler is ours: a2a-sdk's
``DefaultRequestHandler`` keeps running tasks in process memory (an event queue per task, an
in-process executor), which is exactly what a crash loses. Here every operation is a call on the
Dapr workflow API: a new task schedules an instance, ``tasks/get`` reads it, ``tasks/cancel``
terminates it, a reply to ``input-required`` raises the event it waits for, and streams follow
the instance's state. Any replica of the app, or the same app after a SIGKILL, serves them alike.

A new task's id is derived from the first message's id (and its context id), so a client that
sends the same message again (a retry after a lost answer) gets the task it already created.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import threading
import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import dapr.ext.workflow as wf

from a2a.server.context import ServerCallContext
from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.types import a2a_pb2
from a2a.utils.errors import (
    InvalidParamsError,
    PushNotificationNotSupportedError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from dapr_agents.ext.interop import agent_workflow_name

from ._task import (
    DEFAULT_RETRY_POLICY,
    REPLY_EVENT,
    SETTLED,
    STATE_NAMES,
    TERMINAL,
    A2AAgentRunner,
    ChildAgent,
    TaskView,
    register_task_workflow,
    skills_from,
    to_json,
)

__all__ = ["AGENT_CARD_PATH", "DEFAULT_RPC_PATH", "A2AServer", "DaprTaskRequestHandler", "serve_a2a"]

logger = logging.getLogger(__name__)

AGENT_CARD_PATH = "/.well-known/agent-card.json"
DEFAULT_RPC_PATH = "/a2a"
# Waiting reads the instance's state 10 ms after a change, then twice as late each time up to
# poll_interval: quick agents answer in tens of milliseconds, slow ones cost few reads.
_FIRST_POLL = 0.01
_TASK_NAMESPACE = uuid.UUID("5f0c1a52-8a3e-4d7e-9f0e-a2a0da9ba2a0")


def task_id_for(message_id: str, context_id: str) -> str:
    """The task a first message creates: the same message (id, context) always makes the same task."""
    return str(uuid.uuid5(_TASK_NAMESPACE, f"{context_id}\x00{message_id}"))


class DaprTaskRequestHandler(RequestHandler):
    """a2a-sdk's ``RequestHandler`` over Dapr workflows: the task store *is* the workflow engine.

    ``poll_interval`` is the longest pause between two reads of the instance's state by a
    waiting call or a stream (the first comes after 10 ms, each next twice as late);
    ``blocking_timeout`` bounds how long a blocking ``message/send`` waits before it answers
    with the task still ``working`` (the caller then polls ``tasks/get`` or resubscribes).
    """

    def __init__(
        self,
        workflow_name: str,
        *,
        workflow_client: Any = None,
        poll_interval: float = 0.1,
        blocking_timeout: float = 300.0,
    ) -> None:
        self.workflow_name = workflow_name
        self._client = workflow_client
        self._clients: dict[int, Any] = {}
        self.poll_interval = poll_interval
        self.blocking_timeout = blocking_timeout

    # -- the workflow API ----------------------------------------------------------------------

    def _workflow_client(self) -> Any:
        if self._client is not None:
            return self._client
        # aio gRPC channels belong to the loop that made them: one client per loop.
        loop = asyncio.get_running_loop()
        client = self._clients.get(id(loop))
        if client is None:
            from dapr.ext.workflow.aio import DaprWorkflowClient

            client = self._clients[id(loop)] = DaprWorkflowClient()
        return client

    async def _view(self, task_id: str) -> TaskView | None:
        if not task_id:
            return None
        state = await self._workflow_client().get_workflow_state(task_id, fetch_payloads=True)
        if state is None or getattr(state, "name", self.workflow_name) != self.workflow_name:
            return None
        return TaskView.from_workflow_state(state)

    async def _require(self, task_id: str) -> TaskView:
        view = await self._view(task_id)
        if view is None:
            raise TaskNotFoundError(message=f"no task {task_id!r} on this agent")
        return view

    async def _wait(self, task_id: str, message_id: str, *, settle: bool) -> TaskView:
        """Wait until the task took ``message_id`` and, with ``settle``, until it settled
        (terminal or waiting for input again); answer as it is after ``blocking_timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.blocking_timeout
        delay = _FIRST_POLL
        while True:
            view = await self._require(task_id)
            taken = message_id in view.seen
            if view.state in TERMINAL or (taken and (view.state in SETTLED or not settle)):
                return view
            if loop.time() >= deadline:
                return view
            await asyncio.sleep(delay)
            delay = min(self.poll_interval, delay * 2)

    async def _submit(self, params: a2a_pb2.SendMessageRequest) -> tuple[str, str]:
        """Create the task or hand the message to its waiting task; returns (task id, message id)."""
        message = params.message
        if not message.message_id:
            raise InvalidParamsError(message="message.messageId is required")
        document = to_json(message)
        client = self._workflow_client()
        if message.task_id:
            view = await self._require(message.task_id)
            if message.message_id in view.seen:
                return view.task_id, message.message_id  # a retry of a reply already taken
            if view.state in TERMINAL:
                raise InvalidParamsError(
                    message=f"task {view.task_id!r} is {view.state}; send a new message without taskId"
                )
            if view.state != "input-required":
                raise UnsupportedOperationError(
                    message=f"task {view.task_id!r} is {view.state} and takes no message until it asks for input"
                )
            document["contextId"] = view.context_id
            await client.raise_workflow_event(view.task_id, REPLY_EVENT, data=document)
            return view.task_id, message.message_id
        context_id = message.context_id or str(uuid.uuid4())
        task_id = task_id_for(message.message_id, message.context_id)
        if await self._view(task_id) is None:
            document.update({"taskId": task_id, "contextId": context_id})
            try:
                await client.schedule_new_workflow(
                    self.workflow_name,
                    input={"taskId": task_id, "contextId": context_id, "message": document},
                    instance_id=task_id,
                )
            except Exception as error:  # a concurrent retry of the same message started it first
                if "already exists" not in str(error).lower():
                    raise
                logger.debug(
                    "task %s was started by a concurrent copy of message %s", task_id, message.message_id
                )
        return task_id, message.message_id

    # -- the A2A methods -----------------------------------------------------------------------

    async def on_message_send(
        self, params: a2a_pb2.SendMessageRequest, context: ServerCallContext
    ) -> a2a_pb2.Task | a2a_pb2.Message:
        task_id, message_id = await self._submit(params)
        configuration = params.configuration
        # Even a non-blocking send answers once the task has taken the message: a reply to a
        # question must not come back as the question still pending.
        view = await self._wait(task_id, message_id, settle=not configuration.return_immediately)
        history_length = configuration.history_length if configuration.HasField("history_length") else None
        return view.to_task(history_length)

    async def on_message_send_stream(
        self, params: a2a_pb2.SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Any, None]:
        task_id, message_id = await self._submit(params)
        async for event in self._follow(task_id, message_id):
            yield event

    async def on_subscribe_to_task(
        self, params: a2a_pb2.SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Any, None]:
        view = await self._require(params.id)
        if view.state in TERMINAL:
            raise UnsupportedOperationError(
                message=f"task {view.task_id!r} is {view.state}: nothing to follow"
            )
        async for event in self._follow(view.task_id, view.seen[-1] if view.seen else ""):
            yield event

    async def _follow(self, task_id: str, message_id: str) -> AsyncGenerator[Any, None]:
        """The task, then a status event per change, until it settles (with the answer's artifacts)."""
        view = await self._require(task_id)
        yield view.to_task()
        last = (view.state, len(view.history))
        delay = _FIRST_POLL
        while not (view.state in TERMINAL or (view.state in SETTLED and message_id in view.seen)):
            await asyncio.sleep(delay)
            delay = min(self.poll_interval, delay * 2)
            view = await self._require(task_id)
            if (view.state, len(view.history)) == last:
                continue
            last = (view.state, len(view.history))
            delay = _FIRST_POLL
            if view.state == "completed":
                for artifact in view.to_task().artifacts:
                    yield a2a_pb2.TaskArtifactUpdateEvent(
                        task_id=task_id, context_id=view.context_id, artifact=artifact, last_chunk=True
                    )
            yield view.status_event()

    async def on_get_task(
        self, params: a2a_pb2.GetTaskRequest, context: ServerCallContext
    ) -> a2a_pb2.Task | None:
        view = await self._require(params.id)
        return view.to_task(params.history_length if params.HasField("history_length") else None)

    async def on_cancel_task(
        self, params: a2a_pb2.CancelTaskRequest, context: ServerCallContext
    ) -> a2a_pb2.Task | None:
        view = await self._require(params.id)
        if view.state in TERMINAL:
            raise TaskNotCancelableError(message=f"task {view.task_id!r} is already {view.state}")
        client = self._workflow_client()
        await client.terminate_workflow(view.task_id, output="canceled by the A2A client")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while view.state not in TERMINAL and loop.time() < deadline:
            await asyncio.sleep(self.poll_interval)
            view = await self._require(params.id)
        return view.to_task()

    async def on_list_tasks(
        self, params: a2a_pb2.ListTasksRequest, context: ServerCallContext
    ) -> a2a_pb2.ListTasksResponse:
        raise UnsupportedOperationError(
            message="tasks/list is not supported: Dapr workflows cannot be listed"
        )

    async def on_create_task_push_notification_config(self, params: Any, context: ServerCallContext) -> Any:
        raise PushNotificationNotSupportedError()

    async def on_get_task_push_notification_config(self, params: Any, context: ServerCallContext) -> Any:
        raise PushNotificationNotSupportedError()

    async def on_list_task_push_notification_configs(self, params: Any, context: ServerCallContext) -> Any:
        raise PushNotificationNotSupportedError()

    async def on_delete_task_push_notification_config(self, params: Any, context: ServerCallContext) -> None:
        raise PushNotificationNotSupportedError()

    async def on_get_extended_agent_card(self, params: Any, context: ServerCallContext) -> Any:
        raise UnsupportedOperationError(message="this agent has no extended card")


def state_name(state: Any) -> str:
    """``TASK_STATE_INPUT_REQUIRED`` -> ``input-required``."""
    return STATE_NAMES.get(state, "unknown")


class _AppTokenMiddleware:
    """Dapr's app API token: with ``APP_API_TOKEN`` set, the sidecar sends it as ``dapr-api-token``
    on every call to the app, and anything else is refused (401)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            sent = dict(scope.get("headers") or []).get(b"dapr-api-token", b"")
            if not hmac.compare_digest(sent, self.token):
                from starlette.responses import JSONResponse

                response = JSONResponse({"error": "missing or wrong dapr-api-token (APP_API_TOKEN)"}, 401)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# The standard asyncio loop: the handler's Dapr client is grpc.aio, which supports only it, and
# uvicorn before 0.36 installs uvloop's policy process-wide when it picks uvloop ("auto"), which
# breaks every asyncio gRPC server and client started in the process after it.
_LOOP = "asyncio"


class A2AServer:
    """What :func:`serve_a2a` built: the ASGI ``app``, its agent ``card``, and a way to run it."""

    def __init__(self, app: Any, card: a2a_pb2.AgentCard, handler: DaprTaskRequestHandler, port: int) -> None:
        self.app = app
        self.card = card
        self.handler = handler
        self.port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def run(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        """Serve until interrupted (uvicorn), on the app port the sidecar was given."""
        import uvicorn

        uvicorn.run(self.app, host=host, port=port or self.port, log_level="warning", loop=_LOOP)

    def start(self, host: str = "127.0.0.1", port: int | None = None, timeout: float = 30.0) -> A2AServer:
        """Serve from a background thread; returns once it listens. :meth:`stop` ends it."""
        import uvicorn

        config = uvicorn.Config(self.app, host=host, port=port or self.port, log_level="warning", loop=_LOOP)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="a2a-server", daemon=True)
        self._thread.start()
        started = threading.Event()

        def check() -> bool:
            return bool(self._server.started)

        for _ in range(int(timeout / 0.05)):
            if check() or not self._thread.is_alive():
                break
            started.wait(0.05)
        if not self._server.started:
            raise RuntimeError(f"the A2A server did not start listening on {host}:{port or self.port}")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(15)
        self._server = self._thread = None


def _describe(agent: Any) -> tuple[str, str]:
    """Name and description of an agent object (a dapr-agents DurableAgent, read without importing it)."""
    name = getattr(agent, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"agent must be an agent name or an object with a name, got {type(agent).__name__}")
    parts = [getattr(agent, attribute, None) for attribute in ("goal", "role")]
    description = next((str(part) for part in parts if isinstance(part, str) and part), name)
    return name, description


def serve_a2a(
    runtime: wf.WorkflowRuntime,
    *,
    name: str | None = None,
    description: str | None = None,
    run: A2AAgentRunner | None = None,
    agent: Any = None,
    framework: str | None = None,
    agent_app_id: str | None = None,
    skills: Sequence[Any] | None = None,
    port: int | None = None,
    url: str | None = None,
    rpc_path: str = DEFAULT_RPC_PATH,
    version: str = "1.0.0",
    app_api_token: str | None = None,
    retry_policy: wf.RetryPolicy | None = DEFAULT_RETRY_POLICY,
    poll_interval: float = 0.1,
    blocking_timeout: float = 300.0,
    card_extras: Mapping[str, Any] | None = None,
) -> A2AServer:
    """Expose an agent as an A2A server whose tasks are workflow instances on ``runtime``.

    The agent is either ``run(call: A2ACall)`` (plain or ``async def``; runs in a durable
    activity, returns its answer text, or :class:`InputRequired`), or ``agent``: the name of an
    agent hosted through ``dapr_agents.ext.interop`` (with its ``framework``), or a dapr-agents
    ``DurableAgent`` object (its workflow is called as a child workflow, in ``agent_app_id`` if it
    lives in another app). Register before ``runtime.start()``; then ``server.run()`` serves on
    ``port`` (default ``APP_PORT``), the port given to the sidecar as ``--app-port``.

    Args:
        name, description: the agent card's (default: the agent's name and goal).
        skills: card skills: a2a ``AgentSkill`` protos, mappings or plain strings.
        url: the URL the card advertises (default ``http://127.0.0.1:<port>``); clients going
            through Dapr replace it with their sidecar's invoke URL.
        rpc_path: where the JSON-RPC endpoint listens (``/a2a``).
        app_api_token: the app token the sidecar must present (default ``APP_API_TOKEN``).
        retry_policy: retries of the agent activity.
        blocking_timeout: seconds a blocking ``message/send`` waits before answering ``working``.
    """
    if (run is None) == (agent is None):
        raise ValueError(
            "serve_a2a needs exactly one of run=<callable> or agent=<hosted agent name or object>"
        )
    child: ChildAgent | None = None
    if agent is not None:
        if isinstance(agent, str):
            agent_name, agent_description = agent, agent
        else:
            agent_name, agent_description = _describe(agent)
        child = ChildAgent(agent_workflow_name(agent_name, framework=framework), agent_app_id)
        name = name or agent_name
        description = description or agent_description
    elif not callable(run):
        raise TypeError(f"run must be a callable taking an A2ACall, got {type(run).__name__}")
    if not name:
        raise ValueError("serve_a2a needs the agent's name (name=...)")
    description = description or name
    if port is None:
        port = int(os.environ.get("APP_PORT") or 0) or None
    if port is None:
        raise ValueError("serve_a2a needs the app port: pass port=... or set APP_PORT (dapr run sets it)")
    if not rpc_path.startswith("/"):
        raise ValueError(f"rpc_path must start with '/', got {rpc_path!r}")

    workflow_name = register_task_workflow(
        runtime, agent_name=name, run=run, child=child, retry_policy=retry_policy
    )
    base = (url or f"http://127.0.0.1:{port}").rstrip("/")
    card = a2a_pb2.AgentCard(
        name=name,
        description=description,
        version=version,
        supported_interfaces=[
            a2a_pb2.AgentInterface(url=base + rpc_path, protocol_binding="JSONRPC", protocol_version="1.0"),
            a2a_pb2.AgentInterface(url=base + rpc_path, protocol_binding="JSONRPC", protocol_version="0.3"),
        ],
        capabilities=a2a_pb2.AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=skills_from(skills, name, description),
    )
    if card_extras:
        from google.protobuf import json_format

        json_format.ParseDict(dict(card_extras), card)
    handler = DaprTaskRequestHandler(
        workflow_name, poll_interval=poll_interval, blocking_timeout=blocking_timeout
    )

    from starlette.applications import Starlette

    routes = create_agent_card_routes(card, card_url=AGENT_CARD_PATH)
    routes += create_jsonrpc_routes(handler, rpc_path, enable_v0_3_compat=True)
    app: Any = Starlette(routes=routes)
    token = app_api_token if app_api_token is not None else os.environ.get("APP_API_TOKEN", "")
    if token:
        app = _AppTokenMiddleware(app, token)
    logger.debug("A2A server %r: tasks run as workflow %r", name, workflow_name)
    return A2AServer(app, card, handler, port)
