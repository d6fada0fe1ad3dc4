"""gRPC error statuses with the rich details daprd attaches.

daprd's errors carry ``google.rpc`` details: always an ``ErrorInfo`` (domain ``dapr.io`` and a
reason such as ``DAPR_STATE_NOT_FOUND`` or ``ERR_STATE_SAVE``), and often a ``ResourceInfo``
naming the component and a ``BadRequest`` naming the offending field. The SDK exposes them on
``DaprGrpcError`` (``error_code``, ``status_details``), so clients can branch on reasons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "dapr.io"


class ApiError(Exception):
    """An error to be returned to the client as a gRPC status."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str | None = None,
        resource: tuple[str, str] | None = None,
        field_violations: Sequence[tuple[str, str]] = (),
        help_links: Sequence[tuple[str, str]] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.resource = resource
        self.field_violations = tuple(field_violations)
        self.help_links = tuple(help_links)
        self.metadata = dict(metadata or {})

    def to_status(self) -> grpc.Status:
        details: list[any_pb2.Any] = []

        def pack(message: object) -> None:
            packed = any_pb2.Any()
            packed.Pack(message)  # type: ignore[arg-type]
            details.append(packed)

        if self.field_violations:
            pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                        for f, d in self.field_violations
                    ]
                )
            )
        if self.help_links:
            pack(
                error_details_pb2.Help(
                    links=[error_details_pb2.Help.Link(url=u, description=d) for u, d in self.help_links]
                )
            )
        if self.resource is not None:
            pack(
                error_details_pb2.ResourceInfo(resource_type=self.resource[0], resource_name=self.resource[1])
            )
        if self.reason is not None:
            pack(error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=self.metadata))
        status = status_pb2.Status(code=self.code.value[0], message=self.message, details=details)
        return rpc_status.to_status(status)


async def abort(context: grpc.aio.ServicerContext, error: ApiError) -> NoReturn:
    """End the call with ``error``'s status and details."""
    status = error.to_status()
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("unreachable: context.abort raises")
