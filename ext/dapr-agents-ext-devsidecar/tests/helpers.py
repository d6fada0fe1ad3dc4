"""Test helpers that read a failed call the same way whichever client raised it.

The sync client raises ``DaprGrpcError``; the aio client raises ``DaprInternalError`` with the
gRPC error as its cause. Both carry the status code, message and ``ErrorInfo`` reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
from dapr.clients.exceptions import DaprGrpcError, DaprInternalError
from google.rpc import error_details_pb2, status_pb2


@dataclass
class RpcFailure:
    code: grpc.StatusCode | None = None
    details: str = ""
    reason: str | None = None


def describe(exc: BaseException) -> RpcFailure:
    if isinstance(exc, DaprGrpcError):
        return RpcFailure(exc.code(), exc.details(), exc.error_code())
    error = exc if isinstance(exc, grpc.RpcError) else exc.__cause__
    if not isinstance(error, grpc.RpcError):
        raise AssertionError(f"not a failed gRPC call: {exc!r}")
    reason = None
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    reason = info.reason
    return RpcFailure(error.code(), error.details(), reason)


@contextlib.contextmanager
def rpc_fails() -> Iterator[RpcFailure]:
    """``with rpc_fails() as failure:`` asserts the block raised a gRPC failure and describes it."""
    failure = RpcFailure()
    try:
        yield failure
    except (DaprGrpcError, DaprInternalError, grpc.RpcError) as exc:
        found = describe(exc)
        failure.code, failure.details, failure.reason = found.code, found.details, found.reason
    else:
        raise AssertionError("the call succeeded but was expected to fail")
