"""Calling any Dapr-hosted agent (a DurableAgent or a hosted foreign agent) and waiting for it.

A call is one workflow instance. With an idempotency key the instance id is derived from it, so
a caller that retries (after a crash, a timeout of its own, a replayed tool call) finds the run
it started instead of starting another: a running instance with the same input is joined, a
completed one returns its answer again, a failed or terminated one is started afresh (Dapr lets a
finished instance id be reused). A running instance holding the id for a *different* input is a
conflict, never silently joined. A call that times out or is cancelled terminates its instance.

Agents in another app: Dapr's workflow client starts instances only in the caller's own app, so a
call to ``app_id=<other app>`` runs a small local proxy workflow that calls the agent as a child
workflow on that app (daprd routes it). The proxy must be registered on the caller's runtime
with :func:`enable_remote_calls`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

import dapr.ext.workflow as wf

from ._envelope import AgentRequest, AgentResponse
from ._errors import AgentCallConflict, AgentCallError, AgentCallTimeout
from ._naming import agent_workflow_name, call_instance_id
from ._ops import Op, Plan, grpc_code, run_async, run_sync

__all__ = ["REMOTE_CALL_WORKFLOW", "AgentClient", "AsyncAgentClient", "enable_remote_calls"]

logger = logging.getLogger(__name__)

REMOTE_CALL_WORKFLOW = "dapr.interop.remote-call.workflow"
"""The local proxy workflow that calls an agent hosted by another app."""

DEFAULT_TIMEOUT = 300.0
_ACTIVE = frozenset({"RUNNING", "PENDING", "SUSPENDED", "STALLED"})


def enable_remote_calls(runtime: wf.WorkflowRuntime) -> None:
    """Register the proxy workflow that lets this app's clients call agents in other apps.

    Register it before ``runtime.start()``, on the app's only runtime.
    """

    def remote_call(ctx: wf.DaprWorkflowContext, data: Mapping[str, Any]) -> Generator[Any, Any, Any]:
        result = yield ctx.call_child_workflow(
            data["workflow"],
            input=data["input"],
            app_id=data["app_id"],
            instance_id=data["child_instance_id"],
        )
        return result

    runtime.register_workflow(remote_call, name=REMOTE_CALL_WORKFLOW)


@dataclass(frozen=True)
class _Target:
    agent: str
    workflow_name: str
    instance_id: str
    scheduled_name: str
    scheduled_input: dict[str, Any]


def _decode(serialized: str | None) -> Any:
    if serialized is None:
        return None
    try:
        return json.loads(serialized)
    except json.JSONDecodeError:
        return serialized


def _status(state: Any) -> str:
    return str(getattr(state.runtime_status, "name", state.runtime_status))


def _options(
    framework: str | None,
    app_id: str | None,
    workflow_name: str | None,
    idempotency_key: str | None,
    instance_id: str | None,
    source: str | None,
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The keyword arguments of a call, as :meth:`_ClientPlans.target` takes them."""
    return {
        "framework": framework,
        "app_id": app_id,
        "workflow_name": workflow_name,
        "idempotency_key": idempotency_key,
        "instance_id": instance_id,
        "source": source,
        "metadata": metadata,
    }


class _ClientPlans:
    """The call logic shared by :class:`AgentClient` and :class:`AsyncAgentClient`."""

    def __init__(self, default_timeout: float) -> None:
        if default_timeout <= 0:
            raise ValueError(f"default_timeout must be positive seconds, got {default_timeout!r}")
        self.default_timeout = default_timeout
        self.own_app_id: str | None = None

    def target(
        self,
        agent: str,
        task: str,
        *,
        framework: str | None,
        app_id: str | None,
        workflow_name: str | None,
        idempotency_key: str | None,
        instance_id: str | None,
        source: str | None,
        metadata: Mapping[str, Any] | None,
    ) -> Plan[_Target]:
        if not isinstance(task, str):
            raise TypeError(f"task must be a string, got {type(task).__name__}")
        if instance_id is not None and idempotency_key is not None:
            raise ValueError("pass either instance_id or idempotency_key, not both")
        workflow = agent_workflow_name(agent, framework=framework, workflow_name=workflow_name)
        message_metadata = dict(metadata or {})
        if source:
            message_metadata["source"] = source
        envelope = AgentRequest.model_validate(
            {"task": task, "_message_metadata": message_metadata}
        ).to_input()
        if instance_id is None:
            instance_id = (
                call_instance_id(workflow, idempotency_key) if idempotency_key else f"call-{uuid.uuid4().hex}"
            )
        remote = False
        if app_id:
            if self.own_app_id is None:
                metadata_response = yield Op("dapr", "get_metadata")
                self.own_app_id = metadata_response.application_id
            remote = app_id != self.own_app_id
        if not remote:
            return _Target(agent, workflow, instance_id, workflow, envelope)
        proxy_input = {
            "workflow": workflow,
            "app_id": app_id,
            "child_instance_id": f"{instance_id}:agent",
            "input": envelope,
        }
        return _Target(agent, workflow, instance_id, REMOTE_CALL_WORKFLOW, proxy_input)

    def start(self, target: _Target) -> Plan[str]:
        for _ in range(5):
            state = yield Op(
                "workflow", "get_workflow_state", (target.instance_id,), {"fetch_payloads": True}
            )
            if state is not None:
                same = (
                    state.name == target.scheduled_name
                    and _decode(state.serialized_input) == target.scheduled_input
                )
                status = _status(state)
                if status in _ACTIVE:
                    if same:
                        logger.debug("joining running call %s of agent %r", target.instance_id, target.agent)
                        return target.instance_id
                    raise AgentCallConflict(
                        f"instance {target.instance_id!r} is running a different call ({state.name!r} with "
                        f"another input); use a different idempotency key for agent {target.agent!r}"
                    )
                if status == "COMPLETED" and same:
                    logger.debug("call %s of agent %r already completed", target.instance_id, target.agent)
                    return target.instance_id
            try:
                yield Op(
                    "workflow",
                    "schedule_new_workflow",
                    (target.scheduled_name,),
                    {"input": target.scheduled_input, "instance_id": target.instance_id},
                )
                return target.instance_id
            except Exception as error:
                if grpc_code(error) != "ALREADY_EXISTS" and "already exists" not in str(error):
                    raise
                # Someone (a concurrent retry of this call) started it between our read and write.
        raise AgentCallConflict(
            f"instance {target.instance_id!r} kept changing while starting agent {target.agent!r}"
        )

    def wait(self, target: _Target, timeout: float | None) -> Plan[AgentResponse]:
        seconds = self.default_timeout if timeout is None else timeout
        if seconds <= 0:
            raise ValueError(f"timeout must be positive seconds, got {seconds!r}")
        try:
            state = yield Op(
                "workflow",
                "wait_for_workflow_completion",
                (target.instance_id,),
                {"fetch_payloads": True, "timeout_in_seconds": max(1, math.ceil(seconds))},
            )
        except TimeoutError:
            yield from self.terminate(target, f"timed out after {seconds:g} s")
            raise AgentCallTimeout(
                f"agent {target.agent!r} ({target.workflow_name}) did not answer within {seconds:g} s; "
                f"instance {target.instance_id!r} was terminated",
                agent=target.agent,
                workflow_name=target.workflow_name,
                instance_id=target.instance_id,
                status="TIMED_OUT",
            ) from None
        return self.outcome(target, state)

    def outcome(self, target: _Target, state: Any) -> AgentResponse:
        if state is None:
            raise AgentCallError(
                f"instance {target.instance_id!r} of agent {target.agent!r} vanished (purged?)",
                agent=target.agent,
                workflow_name=target.workflow_name,
                instance_id=target.instance_id,
                status="UNKNOWN",
            )
        status = _status(state)
        if status == "COMPLETED":
            return AgentResponse.from_workflow_output(state.serialized_output)
        details = state.failure_details
        error_type = str(getattr(details, "error_type", "") or "")
        error_message = str(getattr(details, "message", "") or "")
        hint = ""
        if "OrchestratorNotRegistered" in error_type or "not registered" in error_message:
            hint = f"; is an app hosting workflow {target.workflow_name!r} running" + (
                " (and enable_remote_calls registered here)?"
                if target.scheduled_name == REMOTE_CALL_WORKFLOW
                else "?"
            )
        reason = f"{error_type}: {error_message}" if error_type or error_message else status.lower()
        raise AgentCallError(
            f"agent {target.agent!r} ({target.workflow_name}, instance {target.instance_id!r}) "
            f"ended {status}: {reason}{hint}",
            agent=target.agent,
            workflow_name=target.workflow_name,
            instance_id=target.instance_id,
            status=status,
            error_type=error_type,
            error_message=error_message,
            stack_trace=str(getattr(details, "stack_trace", "") or ""),
        )

    def terminate(self, target: _Target, reason: str) -> Plan[None]:
        try:
            yield Op("workflow", "terminate_workflow", (target.instance_id,), {"output": reason})
        except Exception as error:  # the instance may have finished meanwhile; never mask the cause
            logger.warning(
                "could not terminate instance %s of agent %r: %s", target.instance_id, target.agent, error
            )


class AgentClient:
    """Call Dapr-hosted agents by name and wait for their answers (blocking).

    >>> client = AgentClient()
    >>> answer = client.call("triage", "Classify: printer on fire", framework="openai", timeout=60)
    >>> answer.content
    """

    def __init__(
        self,
        *,
        workflow_client: wf.DaprWorkflowClient | None = None,
        dapr_client: Any = None,
        default_timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._plans = _ClientPlans(default_timeout)
        self._workflow_client = workflow_client
        self._dapr_client = dapr_client

    def _targets(self) -> dict[str, Any]:
        if self._workflow_client is None:
            self._workflow_client = wf.DaprWorkflowClient()
        targets: dict[str, Any] = {"workflow": self._workflow_client}
        if self._dapr_client is None and self._plans.own_app_id is None:
            from dapr.clients import DaprClient

            self._dapr_client = DaprClient()
        targets["dapr"] = self._dapr_client
        return targets

    def start(
        self,
        agent: str,
        task: str,
        *,
        framework: str | None = None,
        app_id: str | None = None,
        workflow_name: str | None = None,
        idempotency_key: str | None = None,
        instance_id: str | None = None,
        source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Start (or re-attach to) a call; returns its instance id. See :meth:`call`."""
        targets = self._targets()
        options = _options(framework, app_id, workflow_name, idempotency_key, instance_id, source, metadata)
        target = run_sync(self._plans.target(agent, task, **options), targets)
        return run_sync(self._plans.start(target), targets)

    def call(
        self,
        agent: str,
        task: str,
        *,
        framework: str | None = None,
        app_id: str | None = None,
        workflow_name: str | None = None,
        idempotency_key: str | None = None,
        instance_id: str | None = None,
        source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> AgentResponse:
        """Ask ``agent`` to do ``task`` and wait for its answer.

        Args:
            agent: the agent's name (as hosted / registered), or a full ``dapr.*.workflow`` name.
            framework: ``openai``, ``langgraph``, ``crewai``; omitted for a dapr-agents DurableAgent.
            app_id: the app hosting the agent when it is not this one (needs
                :func:`enable_remote_calls` on this app's runtime).
            workflow_name: an explicit workflow name, overriding the derived one.
            idempotency_key: makes the instance id deterministic: retrying with the same key
                joins or returns the earlier run instead of starting a second one.
            instance_id: an explicit instance id instead (not with ``idempotency_key``).
            source: the caller's name, sent as ``_message_metadata.source`` as dapr-agents does.
            timeout: seconds to wait (default ``default_timeout``); the run is terminated after.

        Raises:
            AgentCallTimeout: no answer in time (the instance was terminated).
            AgentCallError: the agent's workflow failed or was terminated; carries the details.
            AgentCallConflict: the derived instance id is busy with a different call.
        """
        targets = self._targets()
        options = _options(framework, app_id, workflow_name, idempotency_key, instance_id, source, metadata)
        target = run_sync(self._plans.target(agent, task, **options), targets)
        run_sync(self._plans.start(target), targets)
        try:
            return run_sync(self._plans.wait(target, timeout), targets)
        except (AgentCallError, AgentCallConflict):
            raise
        except BaseException:  # interrupted (KeyboardInterrupt, a failing transport): do not leak the run
            run_sync(self._plans.terminate(target, "the caller gave up"), targets)
            raise

    def terminate(self, instance_id: str, reason: str = "terminated by the caller") -> None:
        """Terminate a call's instance (and, recursively, what it started)."""
        target = _Target("?", "?", instance_id, "?", {})
        run_sync(self._plans.terminate(target, reason), self._targets())


class AsyncAgentClient:
    """:class:`AgentClient` for asyncio code; cancelling :meth:`call` terminates the run."""

    def __init__(
        self,
        *,
        workflow_client: Any = None,
        dapr_client: Any = None,
        default_timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._plans = _ClientPlans(default_timeout)
        self._workflow_client = workflow_client
        self._dapr_client = dapr_client

    def _targets(self) -> dict[str, Any]:
        if self._workflow_client is None:
            from dapr.ext.workflow.aio import DaprWorkflowClient

            self._workflow_client = DaprWorkflowClient()
        targets: dict[str, Any] = {"workflow": self._workflow_client}
        if self._dapr_client is None and self._plans.own_app_id is None:
            from dapr.aio.clients import DaprClient

            self._dapr_client = DaprClient()
        targets["dapr"] = self._dapr_client
        return targets

    async def start(
        self,
        agent: str,
        task: str,
        *,
        framework: str | None = None,
        app_id: str | None = None,
        workflow_name: str | None = None,
        idempotency_key: str | None = None,
        instance_id: str | None = None,
        source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Start (or re-attach to) a call; returns its instance id. See :meth:`AgentClient.call`."""
        targets = self._targets()
        options = _options(framework, app_id, workflow_name, idempotency_key, instance_id, source, metadata)
        target = await run_async(self._plans.target(agent, task, **options), targets)
        return await run_async(self._plans.start(target), targets)

    async def call(
        self,
        agent: str,
        task: str,
        *,
        framework: str | None = None,
        app_id: str | None = None,
        workflow_name: str | None = None,
        idempotency_key: str | None = None,
        instance_id: str | None = None,
        source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> AgentResponse:
        """Ask ``agent`` to do ``task`` and wait; see :meth:`AgentClient.call`."""
        targets = self._targets()
        options = _options(framework, app_id, workflow_name, idempotency_key, instance_id, source, metadata)
        target = await run_async(self._plans.target(agent, task, **options), targets)
        await run_async(self._plans.start(target), targets)
        try:
            return await run_async(self._plans.wait(target, timeout), targets)
        except (AgentCallError, AgentCallConflict):
            raise
        except BaseException:  # cancelled or interrupted: terminate, even while being cancelled
            await asyncio.shield(run_async(self._plans.terminate(target, "the caller gave up"), targets))
            raise

    async def terminate(self, instance_id: str, reason: str = "terminated by the caller") -> None:
        target = _Target("?", "?", instance_id, "?", {})
        await run_async(self._plans.terminate(target, reason), self._targets())

    async def close(self) -> None:
        """Close the clients this object created."""
        for client in (self._dapr_client, self._workflow_client):
            closer = getattr(client, "close", None)
            if closer is not None:
                result = closer()
                if asyncio.iscoroutine(result):
                    await result
