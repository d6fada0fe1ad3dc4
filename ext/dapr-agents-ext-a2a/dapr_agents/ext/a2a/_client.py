"""``a2a_agent_tool``: a remote A2A agent as a tool, reached through Dapr service invocation.

By app id, the card is read through the caller's own sidecar
(``GET /v1.0/invoke/<app-id>/method/.well-known/agent-card.json``) and the JSON-RPC calls take the
same route, so Dapr's mTLS, access control, resiliency and tracing apply to every agent-to-agent
call; the card's own URL (the remote app's address) is only used for its path. By URL, the agent
is called directly. The calls are made with the official a2a-sdk client.

A call sends one message (``return_immediately``), then polls ``tasks/get`` until the task
settles or the timeout passes (the task is then asked to cancel). Polling rather than streaming
because a poll survives what a stream does not: the server app restarting, a sidecar that buffers,
a resiliency retry. The message id is the caller's to choose: the same id is the same task on a
``serve_a2a`` server (it derives the task id from it), which is how a retried call stays one call;
:func:`register_a2a_activity` derives it from the workflow instance and the activity's task
execution id, which Dapr keeps across retries of that activity.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import uuid
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from a2a.types import a2a_pb2
from dapr_agents.ext.interop import sanitize_agent_name

from ._errors import A2ACallError, A2ACallTimeout, A2AInputRequired, A2ATaskFailed, AgentCardError
from ._task import SETTLED, STATE_NAMES, TERMINAL, message_text

__all__ = ["A2AAgentTool", "A2AResult", "a2a_agent_tool", "message_id_for"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TIMEOUT = 300.0
_MESSAGE_NAMESPACE = uuid.UUID("0b6f5e0e-4b1a-4f43-9d55-a2a0da9ba2a1")


def message_id_for(*parts: str) -> str:
    """A message id derived from ``parts`` (the same parts, the same id): for idempotent retries."""
    return str(uuid.uuid5(_MESSAGE_NAMESPACE, "\x00".join(parts)))


@dataclass(frozen=True)
class A2AResult:
    """A completed remote task (or a direct message answer, when ``task_id`` is empty)."""

    text: str
    task_id: str
    context_id: str
    state: str = "completed"


def _run(awaitable: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wrapper())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:  # called from a loop's thread
        return pool.submit(asyncio.run, wrapper()).result()


def _dapr_http_endpoint() -> str:
    from dapr.conf import settings

    endpoint = getattr(settings, "DAPR_HTTP_ENDPOINT", None) or os.environ.get("DAPR_HTTP_ENDPOINT")
    if endpoint:
        return str(endpoint).rstrip("/")
    host = getattr(settings, "DAPR_RUNTIME_HOST", None) or "127.0.0.1"
    return f"http://{host}:{getattr(settings, 'DAPR_HTTP_PORT', None) or 3500}"


def _dapr_api_token() -> str | None:
    from dapr.conf import settings

    return getattr(settings, "DAPR_API_TOKEN", None) or os.environ.get("DAPR_API_TOKEN") or None


class A2AAgentTool:
    """A remote A2A agent, callable as a tool: :meth:`call` (blocking) or :meth:`acall`.

    Build it with :func:`a2a_agent_tool`. ``name`` and ``description`` are what a model reads;
    by default they come from the agent's card (read on first use, or with :meth:`card`).
    """

    def __init__(
        self,
        *,
        app_id: str | None,
        url: str | None,
        name: str | None,
        description: str | None,
        timeout: float,
        poll_interval: float,
        dapr_http_endpoint: str | None,
        dapr_api_token: str | None,
        headers: Mapping[str, str] | None,
    ) -> None:
        self.app_id = app_id
        self.url = url
        self._name = name
        self._description = description
        self.timeout = timeout
        self.poll_interval = poll_interval
        self._dapr_http_endpoint = dapr_http_endpoint
        self._dapr_api_token = dapr_api_token
        self.headers = dict(headers or {})
        self._card: a2a_pb2.AgentCard | None = None

    # -- identity ------------------------------------------------------------------------------

    @property
    def target(self) -> str:
        """``app:<app-id>`` or the URL: how errors name the agent."""
        return f"app:{self.app_id}" if self.app_id else str(self.url)

    @property
    def base_url(self) -> str:
        if self.app_id:
            endpoint = (self._dapr_http_endpoint or _dapr_http_endpoint()).rstrip("/")
            return f"{endpoint}/v1.0/invoke/{self.app_id}/method"
        return str(self.url).rstrip("/")

    @property
    def name(self) -> str:
        """The tool name: given, else the card's agent name, sanitised for LLM tool names."""
        if self._name:
            return self._name
        return sanitize_agent_name(self.card().name)

    @property
    def description(self) -> str:
        if self._description:
            return self._description
        card = self.card()
        skills = "; ".join(f"{skill.name}: {skill.description}" for skill in card.skills)
        return f"{card.description} ({skills})" if skills else card.description

    def _http_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.app_id:
            token = self._dapr_api_token or _dapr_api_token()
            if token:
                headers.setdefault("dapr-api-token", token)
        return headers

    # -- the card ------------------------------------------------------------------------------

    async def acard(self) -> a2a_pb2.AgentCard:
        """The agent's card (read once, then kept)."""
        if self._card is None:
            import httpx

            async with httpx.AsyncClient(timeout=60, headers=self._http_headers()) as http:
                self._card = await self._read_card(http)
        return self._card

    def card(self) -> a2a_pb2.AgentCard:
        return self._card if self._card is not None else _run(self.acard())

    async def _read_card(self, http: Any) -> a2a_pb2.AgentCard:
        from a2a.client import A2ACardResolver

        try:
            card = await A2ACardResolver(http, self.base_url).get_agent_card()
        except Exception as error:
            raise AgentCardError(
                f"could not read the agent card of {self.target} at {self.base_url}/.well-known/agent-card.json: "
                f"{error}"
                + (
                    " (is the app running with a sidecar, and does its access policy allow this app?)"
                    if self.app_id
                    else ""
                )
            ) from error
        if self.app_id:
            # The card names the remote app's own address; through Dapr only its path is useful.
            import urllib.parse

            for interface in card.supported_interfaces:
                path = urllib.parse.urlsplit(interface.url).path or "/"
                interface.url = self.base_url + path
        return card

    # -- calls ---------------------------------------------------------------------------------

    def call(
        self,
        task: str,
        *,
        message_id: str | None = None,
        context_id: str | None = None,
        task_id: str | None = None,
        timeout: float | None = None,
    ) -> A2AResult:
        """Blocking :meth:`acall`."""
        return _run(
            self.acall(task, message_id=message_id, context_id=context_id, task_id=task_id, timeout=timeout)
        )

    async def acall(
        self,
        task: str,
        *,
        message_id: str | None = None,
        context_id: str | None = None,
        task_id: str | None = None,
        timeout: float | None = None,
    ) -> A2AResult:
        """Send ``task`` to the agent and wait until its task completes.

        Args:
            message_id: the A2A message id (default: a random one). Sending the same id again is
                a retry: a ``serve_a2a`` server answers with the task it already made.
            context_id: the conversation to continue (the remote agent's memory key).
            task_id: the task to continue: the answer to an :class:`A2AInputRequired`.
            timeout: seconds to wait (default the tool's); the task is then asked to cancel.

        Raises:
            A2AInputRequired: the agent asks a question; answer with ``task_id=error.task_id``.
            A2ATaskFailed: the task failed, was canceled or rejected.
            A2ACallTimeout: no answer in time.
            AgentCardError: the card could not be read.
            A2ACallError: the call itself failed (the server's JSON-RPC error, a transport error).
        """
        import httpx

        from a2a.client import ClientConfig, ClientFactory

        seconds = self.timeout if timeout is None else timeout
        if seconds <= 0:
            raise ValueError(f"timeout must be positive seconds, got {seconds!r}")
        message = a2a_pb2.Message(
            message_id=message_id or uuid.uuid4().hex,
            role=a2a_pb2.ROLE_USER,
            parts=[a2a_pb2.Part(text=task)],
            context_id=context_id or "",
            task_id=task_id or "",
        )
        request = a2a_pb2.SendMessageRequest(
            message=message, configuration=a2a_pb2.SendMessageConfiguration(return_immediately=True)
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        async with httpx.AsyncClient(timeout=max(30.0, seconds), headers=self._http_headers()) as http:
            card = self._card if self._card is not None else await self._read_card(http)
            self._card = card
            client = ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(card)
            try:
                try:
                    responses = [event async for event in client.send_message(request)]
                except Exception as error:
                    raise A2ACallError(
                        f"sending a message to {self.target} failed: {error}", agent=self.target
                    ) from error
                if not responses:
                    raise A2ACallError(f"{self.target} answered the message with nothing", agent=self.target)
                answer = responses[-1]
                if answer.HasField("message"):
                    return A2AResult(message_text(answer.message), "", answer.message.context_id, "completed")
                current = answer.task
                while STATE_NAMES.get(current.status.state, "working") not in SETTLED:
                    if loop.time() >= deadline:
                        await self._cancel(client, current.id)
                        raise A2ACallTimeout(
                            f"task {current.id!r} of {self.target} did not finish within {seconds:g} s; "
                            "it was asked to cancel",
                            agent=self.target,
                            task_id=current.id,
                            context_id=current.context_id,
                            state=STATE_NAMES.get(current.status.state, "working"),
                        )
                    await asyncio.sleep(self.poll_interval)
                    try:
                        current = await client.get_task(
                            a2a_pb2.GetTaskRequest(id=current.id, history_length=0)
                        )
                    except Exception as error:
                        # A restarting server app, a sidecar retry: keep polling until the deadline.
                        logger.debug("polling task %s of %s: %s", current.id, self.target, error)
                return self._outcome(current)
            finally:
                await client.close()

    async def _cancel(self, client: Any, task_id: str) -> None:
        try:
            await client.cancel_task(a2a_pb2.CancelTaskRequest(id=task_id))
        except Exception as error:  # finished meanwhile, or the server cannot cancel: never mask the timeout
            logger.warning("could not cancel task %s of %s: %s", task_id, self.target, error)

    def _outcome(self, task: a2a_pb2.Task) -> A2AResult:
        state = STATE_NAMES.get(task.status.state, "unknown")
        status_text = message_text(task.status.message) if task.status.HasField("message") else ""
        if state == "completed":
            text = (
                "\n".join(message_text(artifact) for artifact in task.artifacts)
                if task.artifacts
                else status_text
            )
            return A2AResult(text, task.id, task.context_id, state)
        if state in ("input-required", "auth-required"):
            raise A2AInputRequired(
                f"{self.target} needs more input for task {task.id!r}: {status_text or state}",
                agent=self.target,
                question=status_text,
                task_id=task.id,
                context_id=task.context_id,
            )
        assert state in TERMINAL, state
        raise A2ATaskFailed(
            f"task {task.id!r} of {self.target} ended {state}" + (f": {status_text}" if status_text else ""),
            agent=self.target,
            task_id=task.id,
            context_id=task.context_id,
            state=state,
        )


def a2a_agent_tool(
    app_id: str | None = None,
    *,
    url: str | None = None,
    name: str | None = None,
    description: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    poll_interval: float = 0.5,
    dapr_http_endpoint: str | None = None,
    dapr_api_token: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> A2AAgentTool:
    """A remote A2A agent as a tool: by Dapr ``app_id`` (through this app's sidecar) or by ``url``.

    Args:
        app_id: the Dapr app id of the A2A server; the card and every call go through the
            caller's own sidecar (``DAPR_HTTP_ENDPOINT`` / ``DAPR_HTTP_PORT``, ``DAPR_API_TOKEN``).
        url: the agent's base URL instead (the card at ``<url>/.well-known/agent-card.json``).
        name, description: what a model sees (default: from the agent's card).
        timeout: seconds a call waits for the task (default 300); the task is then canceled.
        poll_interval: seconds between ``tasks/get`` polls.
        headers: extra HTTP headers on every request (an ``Authorization`` for a URL agent).
    """
    if (app_id is None) == (url is None):
        raise ValueError("a2a_agent_tool needs exactly one of app_id=<Dapr app id> or url=<agent base URL>")
    if timeout <= 0:
        raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
    if url is not None and not url.startswith(("http://", "https://")):
        raise ValueError(f"url must be an http(s) URL, got {url!r}")
    return A2AAgentTool(
        app_id=app_id,
        url=url,
        name=name,
        description=description,
        timeout=timeout,
        poll_interval=poll_interval,
        dapr_http_endpoint=dapr_http_endpoint,
        dapr_api_token=dapr_api_token,
        headers=headers,
    )
