"""``webhook_trigger``: a ``POST`` route on the runner's FastAPI app that starts one agent run per
request (or per idempotency key), after checking an HMAC-SHA256 signature and a size limit."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

# Imported at run time: FastAPI reads the endpoint's annotations to inject the Request.
from fastapi import Request
from fastapi.responses import JSONResponse

from ._errors import TriggerConfigError, WebhookHostError
from ._events import MapperResult, WebhookRequest, decode_data, default_payload, normalize_payload
from ._ledger import Dedupe, Ledger, ledger_namespace
from ._runs import RunStarter, TriggerStats

if TYPE_CHECKING:
    from dapr_agents.agents.durable import DurableAgent
    from dapr_agents.types.activation import ActivationContext

logger = logging.getLogger(__name__)

_MAX_KEY_LENGTH = 256
_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@/{}-]*")


def signature(secret: str | bytes, body: bytes) -> str:
    """The signature header value a sender computes: ``sha256=<hex HMAC-SHA256 of the body>``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def _verify(secret: bytes, body: bytes, header: str | None) -> bool:
    if not header:
        return False
    given = header.strip()
    if given.lower().startswith("sha256="):
        given = given[len("sha256=") :]
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    # Constant time, so response timing reveals nothing about the expected value.
    return hmac.compare_digest(expected.encode("ascii"), given.lower().encode("ascii", errors="replace"))


class WebhookTrigger:
    """The activation callback ``webhook_trigger`` registers; call it only through the runner."""

    def __init__(
        self,
        agent: DurableAgent,
        *,
        path: str,
        secret: bytes | None,
        signature_header: str,
        idempotency_header: str,
        mapper: Callable[[WebhookRequest], MapperResult] | None,
        max_body_bytes: int,
        dedupe: Dedupe | None,
    ) -> None:
        self.agent_name = str(agent.name)
        self.path = path
        self._secret = secret  # never logged, never in repr
        self.signature_header = signature_header
        self.idempotency_header = idempotency_header
        self.mapper = mapper
        self.max_body_bytes = max_body_bytes
        self.dedupe = dedupe
        self.stats = TriggerStats()
        self.__qualname__ = f"webhook_trigger(path={path!r})"

    def __repr__(self) -> str:
        return f"<{self.__qualname__} agent={self.agent_name!r} signed={self._secret is not None}>"

    def instance_id_for(self, idempotency_key: str) -> str:
        """The workflow instance id of the run for requests carrying ``idempotency_key``."""
        from ._ids import instance_id

        return instance_id(self.agent_name, "webhook", self.path, idempotency_key)

    def __call__(self, ctx: ActivationContext) -> Callable[[], None]:
        if ctx.app is None:
            raise WebhookHostError(
                f"webhook_trigger(path={self.path!r}) needs an HTTP app, but agent {self.agent_name!r} is hosted "
                "without one (subscribe(), workflow() and run() give none). Host it with runner.serve(agent) "
                "or runner.register_routes(agent, fastapi_app=app); for events without HTTP use topic_trigger."
            )
        from fastapi.routing import APIRoute

        app = ctx.app
        for route in app.router.routes:
            if isinstance(route, APIRoute) and route.path == self.path and "POST" in (route.methods or ()):
                raise TriggerConfigError(
                    f"webhook_trigger(path={self.path!r}): the app already has a POST route there; choose another path"
                )
        ledger = (
            Ledger(ctx.dapr_client, self.dedupe, ledger_namespace(self.agent_name, "webhook", self.path))
            if self.dedupe is not None
            else None
        )
        keyed = RunStarter(ctx, ledger, "webhook", self.path)
        unkeyed = RunStarter(ctx, None, "webhook", self.path)
        stop = threading.Event()

        async def endpoint(request: Request) -> JSONResponse:
            return await self._handle(request, keyed, unkeyed, stop)

        app.add_api_route(self.path, endpoint, methods=["POST"], status_code=202, include_in_schema=True)
        added = app.router.routes[-1]
        done = [False]
        lock = threading.Lock()

        def close() -> None:
            try:
                with lock:
                    if done[0]:
                        return
                    done[0] = True
                stop.set()
                if added in app.router.routes:
                    app.router.routes.remove(added)
            except Exception:  # a closer must never raise
                logger.exception("%r: error while closing", self)

        return close

    async def _handle(
        self, request: Request, keyed: RunStarter, unkeyed: RunStarter, stop: threading.Event
    ) -> JSONResponse:
        def error(status: int, message: str, **headers: str) -> JSONResponse:
            return JSONResponse({"error": message}, status_code=status, headers=headers or None)

        if stop.is_set():
            return error(503, "the trigger is shutting down", **{"Retry-After": "5"})
        self.stats.add("received")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return error(413, f"body larger than {self.max_body_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_body_bytes:
                return error(413, f"body larger than {self.max_body_bytes} bytes")
        raw = bytes(body)
        if self._secret is not None and not _verify(
            self._secret, raw, request.headers.get(self.signature_header)
        ):
            return error(401, f"missing or invalid {self.signature_header} signature")
        try:
            data = decode_data(raw, request.headers.get("content-type", ""))
        except ValueError as exc:
            return error(400, f"body is not valid JSON: {exc}")
        key = request.headers.get(self.idempotency_header)
        if key is not None and (not key.strip() or len(key) > _MAX_KEY_LENGTH):
            return error(400, f"{self.idempotency_header} must be 1-{_MAX_KEY_LENGTH} characters")
        incoming = WebhookRequest(
            path=self.path, headers=dict(request.headers), body=raw, data=data, idempotency_key=key
        )
        try:
            result = self.mapper(incoming) if self.mapper is not None else default_payload(data)
            payload = normalize_payload(result, "the mapper" if self.mapper else "the default mapper")
        except Exception as exc:
            return error(422, f"mapper raised {type(exc).__name__}: {exc}")
        if payload is None:
            self.stats.add("skipped")
            return JSONResponse({"instance_id": None, "skipped": True}, status_code=200)
        starter = keyed if key is not None else unkeyed
        try:
            started = await asyncio.to_thread(
                starter.start, key or uuid.uuid4().hex, payload, should_stop=stop.is_set, wait=stop.wait
            )
        except Exception:
            logger.warning("%r: could not start a run", self, exc_info=True)
            return error(
                503,
                "could not schedule the agent run; retry with the same idempotency key",
                **{"Retry-After": "1"},
            )
        self.stats.add("duplicates" if started.duplicate else "started")
        return JSONResponse(
            {"instance_id": started.instance_id, "duplicate": started.duplicate}, status_code=202
        )


def webhook_trigger(
    agent: DurableAgent,
    *,
    path: str,
    secret: str | bytes | None = None,
    signature_header: str = "X-Signature-256",
    idempotency_header: str = "Idempotency-Key",
    mapper: Callable[[WebhookRequest], MapperResult] | None = None,
    max_body_bytes: int = 1024 * 1024,
    dedupe: Dedupe | bool = True,
) -> WebhookTrigger:
    """Start one run of ``agent`` per ``POST`` to ``path`` on the app of ``runner.serve()``.

    Args:
        path: the route, e.g. ``"/hooks/github"``.
        secret: HMAC-SHA256 key; requests must carry ``signature_header: sha256=<hex digest of
            the body>`` (GitHub's format; bare hex is accepted too) or get 401. ``None`` accepts
            unsigned requests: only behind something that authenticates callers.
        idempotency_header: requests with the same value map to the same run (the instance id is
            derived from it, the ledger remembers it for ``dedupe.ttl``); without it every
            request starts a new run.
        mapper: ``WebhookRequest -> {"task": ...} | str | None`` (``None``: 200, no run). A raising
            mapper gives 422 with the reason. Default as for topics, applied to the decoded body.
        max_body_bytes: larger bodies get 413 before anything else is read.
        dedupe: :class:`Dedupe` for idempotency keys (its ``key`` function is not used here).

    Responds 202 ``{"instance_id": ..., "duplicate": bool}``.
    """
    if not isinstance(path, str) or not _PATH.fullmatch(path):
        raise TriggerConfigError(f"path={path!r}: use an absolute URL path such as '/hooks/orders'")
    if secret is not None and (not isinstance(secret, (str, bytes)) or not secret):
        raise TriggerConfigError("secret must be a non-empty str or bytes, or None for unsigned requests")
    for value, what in ((signature_header, "signature_header"), (idempotency_header, "idempotency_header")):
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9-]+", value):
            raise TriggerConfigError(f"{what}={value!r}: use an HTTP header name such as 'X-Signature-256'")
    if mapper is not None and not callable(mapper):
        raise TriggerConfigError(f"mapper={mapper!r} is not callable; pass a function of the WebhookRequest")
    if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes < 1:
        raise TriggerConfigError(f"max_body_bytes={max_body_bytes!r}: use a positive int")
    if dedupe is True:
        settings: Dedupe | None = Dedupe()
    elif dedupe is False:
        settings = None
    elif isinstance(dedupe, Dedupe):
        settings = dedupe
    else:
        raise TriggerConfigError(f"dedupe={dedupe!r}: pass Dedupe(...), True or False")
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    trigger = WebhookTrigger(
        agent,
        path=path,
        secret=key,
        signature_header=signature_header,
        idempotency_header=idempotency_header,
        mapper=mapper,
        max_body_bytes=max_body_bytes,
        dedupe=settings,
    )
    agent.add_activation(trigger)
    return trigger
