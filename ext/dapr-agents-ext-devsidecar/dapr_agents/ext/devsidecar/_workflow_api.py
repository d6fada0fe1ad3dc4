"""``TaskHubSidecarService`` (Dapr's fork of the Durable Task sidecar protocol) over the engine.

Registered on the same gRPC server and port as the Dapr API, as daprd does. Method paths have no
package prefix (``/TaskHubSidecarService/<Rpc>``); messages are the SDK's own generated classes,
so nothing here can drift from what ``dapr-ext-workflow`` sends.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import dapr.ext.workflow._durabletask.internal.protos as pb
import grpc
from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
from google.protobuf import empty_pb2

from ._status import ApiError, abort
from ._workflow import PENDING, TERMINAL, WorkflowEngine, WorkflowError

_log = logging.getLogger(__name__)


class TaskHubApi(pb_grpc.TaskHubSidecarServiceServicer):
    """The workflow API; ``engine`` is ``None`` when no state store has ``actorStateStore``."""

    def __init__(self, engine: WorkflowEngine | None) -> None:
        self._engine = engine

    async def _require(self, context: grpc.aio.ServicerContext) -> WorkflowEngine:
        if self._engine is None:
            await abort(
                context,
                ApiError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    'workflows need a state store with the metadata actorStateStore: "true"; '
                    "add it to one state store component",
                ),
            )
        return self._engine

    @staticmethod
    async def _fail(context: grpc.aio.ServicerContext, error: WorkflowError) -> None:
        await abort(context, ApiError(getattr(grpc.StatusCode, error.code), str(error)))

    async def Hello(self, request: empty_pb2.Empty, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        return empty_pb2.Empty()

    async def GetWorkItems(
        self, request: pb.GetWorkItemsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WorkItem]:
        engine = await self._require(context)
        worker = engine.connect()
        try:
            while True:
                item = await worker.queue.get()
                if item is None:
                    return
                yield item
        finally:
            engine.disconnect(worker)

    async def CompleteOrchestratorTask(
        self, request: pb.WorkflowResponse, context: grpc.aio.ServicerContext
    ) -> pb.CompleteTaskResponse:
        engine = await self._require(context)
        try:
            await engine.complete_turn(request)
        except WorkflowError as error:
            await self._fail(context, error)
        return pb.CompleteTaskResponse()

    async def CompleteWorkflowTask(
        self, request: pb.WorkflowResponse, context: grpc.aio.ServicerContext
    ) -> pb.CompleteTaskResponse:
        return await self.CompleteOrchestratorTask(request, context)

    async def CompleteActivityTask(
        self, request: pb.ActivityResponse, context: grpc.aio.ServicerContext
    ) -> pb.CompleteTaskResponse:
        engine = await self._require(context)
        try:
            await engine.complete_activity(request)
        except WorkflowError as error:
            await self._fail(context, error)
        return pb.CompleteTaskResponse()

    async def StartInstance(
        self, request: pb.CreateInstanceRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateInstanceResponse:
        engine = await self._require(context)
        try:
            instance_id = await engine.create(request)
            if not request.HasField("scheduledStartTimestamp"):
                await engine.wait(instance_id, lambda i: i.status != PENDING)
        except WorkflowError as error:
            await self._fail(context, error)
        return pb.CreateInstanceResponse(instanceId=instance_id)

    async def _state(
        self, engine: WorkflowEngine, instance_id: str, with_payloads: bool
    ) -> pb.GetInstanceResponse:
        instance = await engine.get(instance_id)
        if instance is None:
            return pb.GetInstanceResponse(exists=False)
        return pb.GetInstanceResponse(
            exists=True, workflowState=engine.workflow_state(instance, with_payloads)
        )

    async def GetInstance(
        self, request: pb.GetInstanceRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetInstanceResponse:
        engine = await self._require(context)
        try:
            return await self._state(engine, request.instanceId, request.getInputsAndOutputs)
        except WorkflowError as error:
            await self._fail(context, error)
            raise

    async def WaitForInstanceStart(
        self, request: pb.GetInstanceRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetInstanceResponse:
        engine = await self._require(context)
        try:
            await engine.wait(request.instanceId, lambda i: i.status != PENDING)
            return await self._state(engine, request.instanceId, request.getInputsAndOutputs)
        except WorkflowError as error:
            await self._fail(context, error)
            raise

    async def WaitForInstanceCompletion(
        self, request: pb.GetInstanceRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetInstanceResponse:
        engine = await self._require(context)
        try:
            await engine.wait(request.instanceId, lambda i: i.status in TERMINAL)
            return await self._state(engine, request.instanceId, request.getInputsAndOutputs)
        except WorkflowError as error:
            await self._fail(context, error)
            raise

    async def RaiseEvent(
        self, request: pb.RaiseEventRequest, context: grpc.aio.ServicerContext
    ) -> pb.RaiseEventResponse:
        engine = await self._require(context)
        try:
            await engine.raise_event(
                request.instanceId, request.name, request.input if request.HasField("input") else None
            )
        except WorkflowError as error:
            await self._fail(context, error)
        return pb.RaiseEventResponse()

    async def TerminateInstance(
        self, request: pb.TerminateRequest, context: grpc.aio.ServicerContext
    ) -> pb.TerminateResponse:
        engine = await self._require(context)
        try:
            await engine.terminate(
                request.instanceId, request.output if request.HasField("output") else None, request.recursive
            )
            await engine.wait(request.instanceId, lambda i: i.status in TERMINAL)
        except WorkflowError as error:
            await self._fail(context, error)
        return pb.TerminateResponse()

    async def SuspendInstance(
        self, request: pb.SuspendRequest, context: grpc.aio.ServicerContext
    ) -> pb.SuspendResponse:
        engine = await self._require(context)
        try:
            await engine.suspend(
                request.instanceId, request.reason if request.HasField("reason") else None, resume=False
            )
            await engine.wait(
                request.instanceId,
                lambda i: i.status in TERMINAL or i.status == pb.ORCHESTRATION_STATUS_SUSPENDED,
            )
        except WorkflowError as error:
            await self._fail(context, error)
        return pb.SuspendResponse()

    async def ResumeInstance(
        self, request: pb.ResumeRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResumeResponse:
        engine = await self._require(context)
        try:
            await engine.suspend(
                request.instanceId, request.reason if request.HasField("reason") else None, resume=True
            )
            await engine.wait(
                request.instanceId,
                lambda i: i.status in TERMINAL or i.status == pb.ORCHESTRATION_STATUS_RUNNING,
            )
        except WorkflowError as error:
            await self._fail(context, error)
        return pb.ResumeResponse()

    async def PurgeInstances(
        self, request: pb.PurgeInstancesRequest, context: grpc.aio.ServicerContext
    ) -> pb.PurgeInstancesResponse:
        engine = await self._require(context)
        if request.HasField("purgeInstanceFilter"):
            await abort(
                context,
                ApiError(
                    grpc.StatusCode.UNIMPLEMENTED,
                    "purging by filter is not supported; purge one instance id at a time",
                ),
            )
        try:
            count = await engine.purge(request.instanceId, request.recursive)
        except WorkflowError as error:
            await self._fail(context, error)
        return pb.PurgeInstancesResponse(deletedInstanceCount=count)


def _unimplemented(method: str) -> Any:
    async def handler(self: TaskHubApi, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await abort(
            context, ApiError(grpc.StatusCode.UNIMPLEMENTED, f"the dev sidecar does not implement {method}")
        )

    handler.__name__ = method
    return handler


for _method in dir(pb_grpc.TaskHubSidecarServiceServicer):
    if _method[0].isupper() and _method not in TaskHubApi.__dict__:
        setattr(TaskHubApi, _method, _unimplemented(_method))
