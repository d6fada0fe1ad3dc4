"""What a building block (secrets, configuration, locks, ...) plugs into the sidecar.

A building block owns its components and serves its part of the Dapr API on both transports:
gRPC methods of ``dapr.proto.runtime.v1.Dapr`` by name, and HTTP routes. The servers only
dispatch; each block keeps one implementation of its logic that both transports call, and
raises :class:`BlockError`, which carries what daprd answers on each transport (gRPC code and
message, optionally an ``ErrorInfo`` reason; HTTP status and ``errorCode``).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

import grpc

from ._gojson import encode as encode_go_json
from ._status import ApiError, abort


class BlockError(ApiError):
    """A failed call, with daprd's answer for gRPC and for HTTP.

    daprd has two kinds of API errors: the older ``messages.APIError`` (a bare gRPC status
    without details) and the newer rich errors (an ``ErrorInfo`` with the error code as its
    reason). ``error_info=True`` selects the second.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        http_status: int,
        error_code: str,
        message: str,
        *,
        error_info: bool = False,
    ) -> None:
        super().__init__(code, message, reason=error_code if error_info else None)
        self.http_status = http_status
        self.error_code = error_code

    def http_response(self) -> HttpResponse:
        return json_response({"errorCode": self.error_code, "message": self.message}, self.http_status)


@dataclass
class HttpRequest:
    """One HTTP request as a route handler sees it; ``params`` are the route's named groups."""

    method: str
    path: str
    query: Mapping[str, Sequence[str]]
    headers: Mapping[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def metadata(self) -> dict[str, str]:
        """``metadata.<name>=<value>`` query parameters, as daprd reads request metadata."""
        return {
            name[len("metadata.") :]: values[0]
            for name, values in self.query.items()
            if name.startswith("metadata.") and values
        }


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str = "application/json"


def json_response(document: Any, status: int = 200, *, newline: bool = False) -> HttpResponse:
    """A JSON body encoded as Go's ``encoding/json`` does (sorted keys, HTML-safe escapes).

    ``newline``: daprd writes some bodies with ``json.Encoder``, which ends them with a newline.
    """
    return HttpResponse(status, encode_go_json(document) + (b"\n" if newline else b""))


HttpHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]


@dataclass(frozen=True)
class Route:
    """``method`` on paths matching ``pattern`` (a regex with named groups, matched whole)."""

    method: str
    pattern: re.Pattern[str]
    handler: HttpHandler

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method:
            return None
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        return {name: urllib.parse.unquote(value) for name, value in found.groupdict().items()}


def route(method: str, template: str, handler: HttpHandler) -> Route:
    """A route from a template such as ``/v1.0/secrets/{store}/{key}`` (one segment per name)."""
    pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    return Route(method, re.compile(pattern), handler)


class BuildingBlock(Protocol):
    """What the sidecar wires for each building block."""

    def grpc_methods(self) -> Mapping[str, Callable[..., Any]]:
        """Servicer methods by their ``Dapr`` service name (``GetSecret``, ...)."""
        ...

    def http_routes(self) -> Sequence[Route]: ...

    def capabilities(self) -> Mapping[str, Sequence[str]]:
        """Capabilities by component name, as daprd's metadata lists them."""
        ...

    async def close(self) -> None: ...


async def abort_with(context: grpc.aio.ServicerContext, error: BlockError) -> NoReturn:
    """End a gRPC call with a block error (a typed alias of :func:`._status.abort`)."""
    await abort(context, error)
