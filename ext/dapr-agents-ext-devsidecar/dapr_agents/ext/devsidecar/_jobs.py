"""The jobs building block: ``ScheduleJob``/``GetJob``/``DeleteJob``/``ListJobs``/
``DeleteJobsByPrefix`` (and their ``Alpha1`` names), ``/v1.0[-alpha1]/jobs/{name}``, and the
delivery of each job to the app at its times.

daprd hands jobs to Dapr's scheduler service (etcd plus go-etcd-cron), which triggers them back
to the sidecar of the app; the dev sidecar has no scheduler process, so it keeps the same records
the way its workflow engine keeps durable timers: in the state store marked ``actorStateStore``
(in memory without one), one key per job plus an index of names, armed in process and re-armed
when the sidecar starts again. What a job is and when it fires is go-etcd-cron's (``counter.go``:
a count of finished ticks, the last tick's scheduled time and the failed attempts of the current
one), so a job killed with its sidecar fires after the restart, at least once, and a tick missed
while the sidecar was down is delivered late rather than lost.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import jobs_pb2
from google.protobuf import any_pb2, duration_pb2, json_format, struct_pb2

from ._app_channel import AppChannel, AppChannelError, GrpcAppChannel, HttpAppChannel
from ._blocks import BlockError, HttpRequest, HttpResponse, Route, abort_with, route
from ._gojson import encode as encode_go_json
from ._jobs_schedule import (
    CronSchedule,
    ScheduleError,
    check_job_name,
    parse_cron,
    parse_point_in_time,
)
from ._state import DeleteOp, SetOp, StateBackend

_log = logging.getLogger(__name__)

_VALUE_TYPE = "type.googleapis.com/google.protobuf.Value"
#: A timer never sleeps longer than this at once, so a changed wall clock is noticed.
_MAX_SLEEP = 30.0


def _default_policy() -> common_pb2.JobFailurePolicy:
    # go-etcd-cron's builder.Parse: a job without a policy is retried every second, 3 times.
    return common_pb2.JobFailurePolicy(
        constant=common_pb2.JobFailurePolicyConstant(interval=duration_pb2.Duration(seconds=1), max_retries=3)
    )


class JobsError(BlockError):
    """A jobs API error: daprd's rich errors (an ``ErrorInfo`` with ``appID``/``namespace``),
    which its HTTP API also writes out as ``details``."""

    def __init__(
        self,
        code: grpc.StatusCode,
        http_status: int,
        error_code: str,
        message: str,
        metadata: Mapping[str, str],
    ) -> None:
        super().__init__(code, http_status, error_code, message, error_info=True)
        self.metadata = dict(metadata)

    def http_response(self) -> HttpResponse:
        detail = {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "domain": "dapr.io",
            "metadata": self.metadata,
            "reason": self.error_code,
        }
        # kit/errors writes errorCode, message, details in that order (a struct, not a map).
        body = (
            b'{"errorCode":'
            + encode_go_json(self.error_code)
            + b',"message":'
            + encode_go_json(self.message)
            + b',"details":['
            + encode_go_json(detail)
            + b"]}"
        )
        return HttpResponse(self.http_status, body)


@dataclass
class JobRecord:
    """One job as persisted: the API's ``Job`` (with the default failure policy filled in, as
    the scheduler stores it) and go-etcd-cron's counter."""

    job: jobs_pb2.Job
    generation: str
    begin: float  # the due time, or the time it was scheduled
    due: bool  # whether ``begin`` is a due time
    expiration: float | None
    count: int = 0
    last: float | None = None
    attempts: int = 0

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "job": base64.b64encode(self.job.SerializeToString()).decode(),
                "generation": self.generation,
                "begin": self.begin,
                "due": self.due,
                "expiration": self.expiration,
                "count": self.count,
                "last": self.last,
                "attempts": self.attempts,
            }
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> JobRecord:
        document = json.loads(data)
        return cls(
            job=jobs_pb2.Job.FromString(base64.b64decode(document["job"])),
            generation=document["generation"],
            begin=float(document["begin"]),
            due=bool(document["due"]),
            expiration=document.get("expiration"),
            count=int(document.get("count", 0)),
            last=document.get("last"),
            attempts=int(document.get("attempts", 0)),
        )


class _Ticker:
    """go-etcd-cron's schedule and counter for one job: when it fires next, and what a success
    or a failure does to the count (``internal/counter/counter.go``, ``internal/scheduler``)."""

    def __init__(self, record: JobRecord) -> None:
        self.record = record
        job = record.job
        self.cron: CronSchedule | None = parse_cron(job.schedule) if job.HasField("schedule") else None
        self.next = 0.0

    def _schedule_next(self) -> float | None:
        record, job = self.record, self.record.job
        if self.cron is None:  # oneshot.go
            return None if record.count >= 1 else record.begin
        if job.HasField("repeats") and record.count >= job.repeats:  # repeats.go
            return None
        if record.last is None:
            return record.begin if record.due else self.cron.next(record.begin)
        upcoming = self.cron.next(record.last)
        if upcoming is None or (record.expiration is not None and upcoming > record.expiration):
            return None
        return upcoming

    def tick_next(self) -> bool:
        """Compute the next trigger time; False when the job is done."""
        record, job = self.record, self.record.job
        if job.HasField("repeats") and record.count >= job.repeats:
            return False
        upcoming = self._schedule_next()
        if upcoming is None or (record.expiration is not None and upcoming > record.expiration):
            return False
        self.next = upcoming
        return True

    def succeeded(self) -> bool:
        record = self.record
        last = self._schedule_next()
        if last is not None:
            record.last = last
        record.count += 1
        record.attempts = 0
        return self.tick_next()

    def failed(self) -> bool:
        record = self.record
        record.attempts += 1
        policy = record.job.failure_policy if record.job.HasField("failure_policy") else None
        if policy is not None and policy.WhichOneof("policy") == "constant":
            constant = policy.constant
            if not constant.HasField("max_retries") or constant.max_retries >= record.attempts:
                self.next += constant.interval.ToTimedelta().total_seconds()
                return True
            last = self._schedule_next()
            if last is not None:
                record.last = last
        else:  # drop (or none): this tick is over
            record.last = self.next
        record.count += 1
        record.attempts = 0
        return self.tick_next()


def _parse_http_body(body: bytes) -> tuple[jobs_pb2.Job, bool, str]:
    """A ``JobHTTPRequest`` body (protojson, unknown fields dropped): the job (its ``data`` a
    ``google.protobuf.Value`` in an ``Any``, as daprd's ``ScheduleJobAlpha1HTTP`` makes it), the
    overwrite flag and the name given in the body."""
    document: dict[str, Any] = {}
    if body.strip():
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise _malformed(f"failed deserializing HTTP body: proto: syntax error: {exc}") from exc
        if not isinstance(document, dict):
            raise _malformed(
                "failed deserializing HTTP body: proto: syntax error (line 1:1): unexpected token "
                + json.dumps(document)[:40]
            )
    document = dict(document)
    data = document.pop("data", None)
    overwrite = document.pop("overwrite", False)
    job = jobs_pb2.Job()
    value = struct_pb2.Value()
    try:
        json_format.ParseDict(document, job, ignore_unknown_fields=True)
        if data is not None:
            json_format.ParseDict(data, value)
    except json_format.ParseError as exc:
        raise _malformed(f"failed deserializing HTTP body: proto: {exc}") from exc
    if not isinstance(overwrite, bool):
        raise _malformed(
            f"failed deserializing HTTP body: proto: invalid value for bool field overwrite: {overwrite}"
        )
    packed = any_pb2.Any(type_url=_VALUE_TYPE, value=value.SerializeToString() if data is not None else b"")
    name = job.name
    job.data.CopyFrom(packed)
    return job, overwrite, name


def _malformed(message: str) -> BlockError:
    return BlockError(grpc.StatusCode.INVALID_ARGUMENT, 400, "ERR_MALFORMED_REQUEST", message)


def _job_json(job: jobs_pb2.Job) -> bytes:
    """protojson of a ``Job`` as daprd writes it: fields in proto order, compact, the data's
    ``google.protobuf.Value`` as Go encodes JSON."""
    parts: list[bytes] = []
    for descriptor, value in job.ListFields():
        name = descriptor.json_name
        if name == "data":
            if value.type_url == _VALUE_TYPE and _is_unset_value(value):
                # An HTTP job without data: daprd fails the GET (500 ERR_INTERNAL, "proto:
                # google.protobuf.Value: none of the oneof fields is set"); this leaves it out.
                continue
            parts.append(b'"data":' + _any_json(value))
        elif name == "failurePolicy":
            parts.append(b'"failurePolicy":' + _policy_json(value))
        else:
            parts.append(encode_go_json(name) + b":" + encode_go_json(value))
    return b"{" + b",".join(parts) + b"}"


def _any_json(data: any_pb2.Any) -> bytes:
    if data.type_url == _VALUE_TYPE:
        value = struct_pb2.Value.FromString(data.value)
        return b'{"@type":' + encode_go_json(_VALUE_TYPE) + b',"value":' + _value_json(value) + b"}"
    try:
        document = json_format.MessageToDict(data)
    except (json_format.Error, TypeError, KeyError):
        document = {"@type": data.type_url, "value": base64.b64encode(data.value).decode()}
    return b"{" + b",".join(encode_go_json(k) + b":" + encode_go_json(v) for k, v in document.items()) + b"}"


def _is_unset_value(data: any_pb2.Any) -> bool:
    return struct_pb2.Value.FromString(data.value).WhichOneof("kind") is None


def _value_json(value: struct_pb2.Value) -> bytes:
    # Go encodes a Value's numbers as float64 (42, 1.5) and sorts object keys.
    return encode_go_json(json_format.MessageToDict(value))


def _policy_json(policy: common_pb2.JobFailurePolicy) -> bytes:
    if policy.WhichOneof("policy") == "drop":
        return b'{"drop":{}}'
    if policy.WhichOneof("policy") == "constant":
        constant = policy.constant
        inner = []
        if constant.HasField("interval"):
            inner.append(
                b'"interval":' + encode_go_json(json_format.MessageToJson(constant.interval).strip('"'))
            )
        if constant.HasField("max_retries"):
            inner.append(b'"maxRetries":' + str(constant.max_retries).encode())
        return b'{"constant":{' + b",".join(inner) + b"}}"
    return b"{}"


def _delivered_body(data: any_pb2.Any) -> bytes:
    """What an HTTP app gets (daprd's ``constructJobRequest``): a ``google.protobuf.Value`` as
    its JSON, anything else as its raw bytes, trimmed."""
    if data.type_url == _VALUE_TYPE:
        if _is_unset_value(data):
            # An HTTP job without data: daprd cannot encode it and fails every delivery; the dev
            # sidecar sends an empty body.
            return b""
        return _value_json(struct_pb2.Value.FromString(data.value))
    return data.value.strip(b" \t\n\r\v\f")


class JobsBlock:
    """The jobs API and its scheduler, for one app id on one state store."""

    def __init__(self, *, app_id: str, namespace: str, backend: StateBackend, durable: bool) -> None:
        self._app_id = app_id
        self._namespace = namespace or "default"
        self._backend = backend
        self._durable = durable
        self._prefix = f"{app_id}||dapr.internal.{self._namespace}.{app_id}.jobs"
        self._records: dict[str, JobRecord] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._lock = asyncio.Lock()
        self._channel: AppChannel | None = None
        self._deliverable = asyncio.Event()

    @property
    def _error_metadata(self) -> dict[str, str]:
        return {"appID": self._app_id, "namespace": self._namespace}

    def _full_name(self, name: str) -> str:
        # The scheduler's key for an app's job (pkg/scheduler/server/internal/serialize).
        return f"app||{self._namespace}||{self._app_id}||{name}"

    def _key(self, name: str) -> str:
        return f"{self._prefix}||job||{name}"

    @property
    def _index_key(self) -> str:
        return f"{self._prefix}||index"

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, channel: AppChannel | None) -> None:
        """Load the persisted jobs and arm them. Jobs are delivered once the app is up (daprd
        connects to the scheduler for app jobs then); without an app channel they fire and
        fail, as daprd's do (``received job, but app channel not initialized``)."""
        self._channel = channel
        if channel is None:
            self._deliverable.set()
        else:
            channel.on_health_change(self._on_health)
        index = await self._backend.get(self._index_key)
        names: list[str] = json.loads(index.value) if index is not None else []
        for name in names:
            item = await self._backend.get(self._key(name))
            if item is None:
                continue
            try:
                record = JobRecord.from_json(item.value)
            except (ValueError, KeyError) as exc:
                _log.error(
                    "job %r: its stored record under %r cannot be read (%s); skipping it",
                    name,
                    self._key(name),
                    exc,
                )
                continue
            self._records[name] = record
            self._arm(name, record)
        if names and not self._durable:
            _log.warning("jobs are kept in memory: add actorStateStore to a state store to keep them")

    def _on_health(self, healthy: bool) -> None:
        if healthy:
            self._deliverable.set()
        else:
            self._deliverable.clear()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- the API logic (both transports) ----------------------------------------------------------

    async def schedule(self, request: jobs_pb2.ScheduleJobRequest) -> None:
        # universal/jobs.go: presence checks, then the scheduler's (its name check first).
        if not request.HasField("job"):
            raise self._empty("Job", "DAPR_SCHEDULER_EMPTY")
        job = jobs_pb2.Job()
        job.CopyFrom(request.job)
        if not job.name:
            raise self._empty("Name", "DAPR_SCHEDULER_JOB_NAME_EMPTY")
        if not job.HasField("schedule") and not job.HasField("due_time"):
            raise self._empty("Schedule", "DAPR_SCHEDULER_SCHEDULE_EMPTY")
        try:
            check_job_name(self._full_name(job.name))
        except ScheduleError as exc:
            raise self._scheduler_error("schedule", str(exc)) from exc
        try:
            record = self._build(job)
        except ScheduleError as exc:
            raise self._scheduler_error("schedule", f"job failed validation: {exc}") from exc
        async with self._lock:
            if not request.overwrite and job.name in self._records:
                raise JobsError(
                    grpc.StatusCode.ALREADY_EXISTS,
                    409,
                    "DAPR_SCHEDULER_SCHEDULE_JOB",
                    "failed to schedule job due to: rpc error: code = AlreadyExists desc = job already "
                    f"exists: '{self._full_name(job.name)}'",
                    self._error_metadata,
                )
            await self._cancel(job.name)
            names = sorted({*self._records, job.name})
            await self._backend.transact(
                [
                    SetOp(key=self._key(job.name), value=record.to_json()),
                    SetOp(key=self._index_key, value=json.dumps(names).encode()),
                ]
            )
            self._records[job.name] = record
            self._arm(job.name, record)

    def _build(self, job: jobs_pb2.Job) -> JobRecord:
        """go-etcd-cron's ``builder.Parse``: its checks in its order, the begin and expiry."""
        schedule = job.HasField("schedule")
        if not schedule and job.HasField("repeats") and job.repeats > 1:
            raise ScheduleError("job must have a schedule to repeat")
        if job.HasField("repeats") and job.repeats < 1:
            raise ScheduleError("defined repeats must be greater than 0")
        if not schedule and job.HasField("ttl"):
            raise ScheduleError("job must have a schedule to have a ttl")
        if schedule:
            parse_cron(job.schedule)
        if not job.HasField("failure_policy"):
            job.failure_policy.CopyFrom(_default_policy())
        now = time.time()
        begin, due = now, False
        if job.HasField("due_time"):
            begin, due = parse_point_in_time(job.due_time, now), True
        expiration = None
        if job.HasField("ttl"):
            try:
                expiration = parse_point_in_time(job.ttl, begin if due else now)
            except ScheduleError:
                raise ScheduleError("ttl format not recognized") from None
            if due and begin > expiration:
                raise ScheduleError("ttl must be greater than due time")
        return JobRecord(job=job, generation=uuid.uuid4().hex, begin=begin, due=due, expiration=expiration)

    async def get(self, name: str) -> jobs_pb2.Job:
        if not name:
            raise self._empty("Name", "DAPR_SCHEDULER_JOB_NAME_EMPTY")
        try:
            check_job_name(self._full_name(name))
        except ScheduleError as exc:
            raise self._scheduler_error("get", str(exc)) from exc
        record = self._records.get(name)
        if record is None:
            raise self._scheduler_error("get", f"job not found: {name}", code="NotFound")
        return record.job

    async def delete(self, name: str) -> None:
        if not name:
            raise self._empty("Name", "DAPR_SCHEDULER_JOB_NAME_EMPTY")
        try:
            check_job_name(self._full_name(name))
        except ScheduleError as exc:
            raise self._scheduler_error("delete", str(exc)) from exc
        async with self._lock:
            await self._remove([name])

    async def delete_by_prefix(self, prefix: str) -> None:
        if prefix:
            try:
                check_job_name(self._full_name(prefix) + "a")
            except ScheduleError as exc:
                raise self._scheduler_error("delete", str(exc)) from exc
        async with self._lock:
            await self._remove([name for name in self._records if name.startswith(prefix)])

    async def list(self) -> list[jobs_pb2.Job]:
        # The scheduler lists by etcd key, so sorted by name.
        return [self._records[name].job for name in sorted(self._records)]

    async def _remove(self, names: Sequence[str]) -> None:
        """Forget ``names`` (under the lock); unknown names are no error, as in daprd."""
        for name in names:
            await self._cancel(name)
        remaining = sorted(set(self._records) - set(names))
        await self._backend.transact(
            [DeleteOp(key=self._key(name)) for name in names]
            + [SetOp(key=self._index_key, value=json.dumps(remaining).encode())]
        )
        for name in names:
            self._records.pop(name, None)

    async def _cancel(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _empty(self, what: str, reason: str) -> JobsError:
        return JobsError(
            grpc.StatusCode.INVALID_ARGUMENT, 400, reason, f"{what} is empty", self._error_metadata
        )

    def _scheduler_error(self, verb: str, message: str, *, code: str = "Unknown") -> JobsError:
        # pkg/api/errors/scheduler.go: the scheduler's gRPC error, wrapped. Scheduling keeps
        # the scheduler's code (Unknown becomes Internal); get and delete are always Internal.
        reason = {"schedule": "DAPR_SCHEDULER_SCHEDULE_JOB", "get": "DAPR_SCHEDULER_GET_JOB"}.get(
            verb, "DAPR_SCHEDULER_DELETE_JOB"
        )
        return JobsError(
            grpc.StatusCode.INTERNAL,
            500,
            reason,
            f"failed to {verb} job due to: rpc error: code = {code} desc = {message}",
            self._error_metadata,
        )

    # -- triggering ----------------------------------------------------------------------------

    def _arm(self, name: str, record: JobRecord) -> None:
        task = asyncio.get_running_loop().create_task(self._run(name, record), name=f"job-{name}")
        self._tasks[name] = task

    async def _run(self, name: str, record: JobRecord) -> None:
        try:
            ticker = _Ticker(record)
        except ScheduleError as exc:  # stored by another version: nothing to fire
            _log.error("job %r cannot be scheduled: %s", name, exc)
            return
        alive = ticker.tick_next()
        while alive:
            while (delay := ticker.next - time.time()) > 0:
                await asyncio.sleep(min(delay, _MAX_SLEEP))
            await self._deliverable.wait()
            ok = await self._trigger(name, record.job.data)
            alive = ticker.succeeded() if ok else ticker.failed()
            if alive:
                async with self._lock:
                    if self._records.get(name) is record:
                        await self._backend.set(SetOp(key=self._key(name), value=record.to_json()))
        async with self._lock:
            if self._records.get(name) is record:
                self._tasks.pop(name, None)
                await self._remove([name])

    async def _trigger(self, name: str, data: any_pb2.Any) -> bool:
        """Send the job to the app: True for SUCCESS (2xx, or 404 / NOT_FOUND, which daprd
        counts as handled), False for FAILED (streamer.go ``invokeApp``)."""
        channel = self._channel
        try:
            if channel is None:
                raise AppChannelError("received job, but app channel not initialized")
            if isinstance(channel, HttpAppChannel):
                headers = [("Content-Type", "application/json")]
                if channel.connection.api_token:
                    headers.append(("Dapr-Api-Token", channel.connection.api_token))
                reply = await channel.request(
                    "POST", "/job/" + name.lstrip("/"), headers, _delivered_body(data)
                )
                status = reply.status
                if 200 <= status < 300:
                    return True
                if status == 404:
                    _log.error(
                        "non-retriable error returned from app while processing triggered job %s. "
                        "status code returned: 5",
                        name,
                    )
                    return True
                raise AppChannelError(
                    f"unexpected status code returned from app while processing triggered job {name}. "
                    f"status code returned: {_http_code(status)}"
                )
            if isinstance(channel, GrpcAppChannel):
                return await self._trigger_grpc(channel, name, data)
            raise AppChannelError("unsupported app channel")
        except AppChannelError as exc:
            _log.error("failed to invoke schedule app job: %s", exc)
            return False

    async def _trigger_grpc(self, channel: GrpcAppChannel, name: str, data: any_pb2.Any) -> bool:
        from dapr.proto.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc

        channel._check_healthy()
        request = appcallback_pb2.JobEventRequest(
            name=name,
            data=data,
            method="job/" + name,
            content_type=data.type_url,
            http_extension=common_pb2.HTTPExtension(verb=common_pb2.HTTPExtension.POST),
        )
        metadata = channel.token_metadata()
        try:
            try:
                await channel.app_callback.OnJobEvent(request, metadata=metadata)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
                if channel.channel is None:
                    raise AppChannelError("the app channel is closed") from None
                alpha = appcallback_pb2_grpc.AppCallbackAlphaStub(channel.channel)
                await alpha.OnJobEventAlpha1(request, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                _log.error(
                    "non-retriable error returned from app while processing triggered job %s. "
                    "status code returned: 5",
                    name,
                )
                return True
            raise AppChannelError(
                f"unexpected status code returned from app while processing triggered job {name}. "
                f"status code returned: {exc.code().value[0]}"
            ) from exc
        return True

    # -- gRPC --

    async def _grpc_schedule(
        self, request: jobs_pb2.ScheduleJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.ScheduleJobResponse:
        try:
            await self.schedule(request)
        except BlockError as error:
            await abort_with(context, error)
        return jobs_pb2.ScheduleJobResponse()

    async def _grpc_get(
        self, request: jobs_pb2.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.GetJobResponse:
        try:
            return jobs_pb2.GetJobResponse(job=await self.get(request.name))
        except BlockError as error:
            await abort_with(context, error)

    async def _grpc_delete(
        self, request: jobs_pb2.DeleteJobRequest, context: grpc.aio.ServicerContext
    ) -> jobs_pb2.DeleteJobResponse:
        try:
            await self.delete(request.name)
        except BlockError as error:
            await abort_with(context, error)
        return jobs_pb2.DeleteJobResponse()

    async def _grpc_list(self, request: Any, context: grpc.aio.ServicerContext) -> jobs_pb2.ListJobsResponse:
        return jobs_pb2.ListJobsResponse(jobs=await self.list())

    async def _grpc_list_alpha1(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return jobs_pb2.ListJobsResponseAlpha1(jobs=await self.list())

    async def _grpc_delete_prefix(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            await self.delete_by_prefix(request.name_prefix)
        except BlockError as error:
            await abort_with(context, error)
        return jobs_pb2.DeleteJobsByPrefixResponse()

    async def _grpc_delete_prefix_alpha1(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            await self.delete_by_prefix(request.name_prefix)
        except BlockError as error:
            await abort_with(context, error)
        return jobs_pb2.DeleteJobsByPrefixResponseAlpha1()

    # -- HTTP --

    async def _http_schedule(self, request: HttpRequest) -> HttpResponse:
        try:
            job, overwrite, body_name = _parse_http_body(request.body)
            # pkg/api/http/jobs.go: the name belongs in the URL only.
            if body_name:
                raise JobsError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    400,
                    "DAPR_SCHEDULER_JOB_NAME",
                    "Set the job name in the url only",
                    {"appID": self._app_id},
                )
            job.name = request.params["name"].strip()
            await self.schedule(jobs_pb2.ScheduleJobRequest(job=job, overwrite=overwrite))
        except BlockError as error:
            return error.http_response()
        return HttpResponse(204, b"", "")

    async def _http_get(self, request: HttpRequest) -> HttpResponse:
        try:
            job = await self.get(request.params["name"])
        except BlockError as error:
            return error.http_response()
        return HttpResponse(200, _job_json(job))

    async def _http_delete(self, request: HttpRequest) -> HttpResponse:
        try:
            await self.delete(request.params["name"])
        except BlockError as error:
            return error.http_response()
        return HttpResponse(204, b"", "")

    # -- wiring --

    def grpc_methods(self) -> Mapping[str, Callable[..., Any]]:
        return {
            "ScheduleJobAlpha1": self._grpc_schedule,
            "ScheduleJob": self._grpc_schedule,
            "GetJobAlpha1": self._grpc_get,
            "GetJob": self._grpc_get,
            "DeleteJobAlpha1": self._grpc_delete,
            "DeleteJob": self._grpc_delete,
            "ListJobsAlpha1": self._grpc_list_alpha1,
            "ListJobs": self._grpc_list,
            "DeleteJobsByPrefixAlpha1": self._grpc_delete_prefix_alpha1,
            "DeleteJobsByPrefix": self._grpc_delete_prefix,
        }

    def http_routes(self) -> Sequence[Route]:
        routes = []
        for version in ("v1.0-alpha1", "v1.0"):
            routes += [
                route("POST", f"/{version}/jobs/{{name}}", self._http_schedule),
                route("GET", f"/{version}/jobs/{{name}}", self._http_get),
                route("DELETE", f"/{version}/jobs/{{name}}", self._http_delete),
            ]
        return routes

    def capabilities(self) -> Mapping[str, Sequence[str]]:
        return {}


def _http_code(status: int) -> int:
    """daprd's ``CodeFromHTTPStatus`` (the gRPC code it logs for an app's HTTP status)."""
    codes = {408: 1, 500: 2, 400: 13, 504: 4, 404: 5, 409: 6, 403: 7, 401: 16, 429: 8, 501: 12, 503: 14}
    return codes.get(status, 2)
