"""API token enforcement for the gRPC server, as daprd does when ``DAPR_API_TOKEN`` is set.

Every call must carry the ``dapr-api-token`` metadata with the exact token; the comparison is
constant-time. Nothing about the token is logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from ._status import ApiError, abort

TOKEN_METADATA_KEY = "dapr-api-token"


def tokens_match(given: str | bytes | None, expected: str) -> bool:
    """Compare a presented token with the configured one in constant time."""
    if given is None:
        return False
    if isinstance(given, str):
        given = given.encode("utf-8")
    return hmac.compare_digest(given, expected.encode("utf-8"))


def _deny(detail: str) -> grpc.RpcMethodHandler:
    # daprd answers UNAUTHENTICATED "Unauthorized" with the reason in an ErrorInfo detail.
    error = ApiError(
        grpc.StatusCode.UNAUTHENTICATED,
        "Unauthorized",
        reason="Unauthorized",
        metadata={"http.code": "401", "http.error_message": detail},
    )

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await abort(context, error)

    # The handler kind must match the method's; a unary-unary denial aborts before any
    # message is read, which also ends streaming calls with the same status.
    return grpc.unary_unary_rpc_method_handler(unary)


class ApiTokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls whose ``dapr-api-token`` metadata is missing or wrong."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        presented = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == TOKEN_METADATA_KEY:
                presented = value
                break
        if presented is None:
            return _deny("missing api token in request metadata")
        if not tokens_match(presented, self._token):
            return _deny("authentication error: api token mismatch")
        return await continuation(handler_call_details)
