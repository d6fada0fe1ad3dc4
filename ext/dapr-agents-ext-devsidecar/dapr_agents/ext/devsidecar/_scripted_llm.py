"""A scripted, OpenAI-compatible chat-completions server for offline runs.

:class:`ScriptedChatServer` speaks enough of the OpenAI HTTP API
(``POST /v1/chat/completions``, ``GET /v1/models``) for the official
``openai`` client, the OpenAI Agents SDK, LangChain's ``ChatOpenAI``,
CrewAI/LiteLLM and Dapr's ``conversation.openai`` component to use it as
their model backend.  Instead of generating text, it answers every request
with the next matching :class:`ScriptedReply` from a script, so tests and
samples that drive an agent through an LLM are fast and deterministic.

Example::

    with ScriptedChatServer([
        ScriptedReply(tool_calls=[ScriptedToolCall("get_weather", {"city": "Paris"})]),
        ScriptedReply("It is sunny in Paris.", when="sunny"),
        "Anything else?",
    ]) as server:
        client = OpenAI(base_url=server.base_url, api_key="x")
        ...

Matching rule: for every request the server takes the *first* unconsumed
reply, in script order, whose ``when`` substring occurs in the text of the
request's last message (a reply without ``when`` matches anything), and
consumes it unless it has ``repeat=True``.  When nothing matches, the
``fallback`` decides: ``"echo"`` answers ``"echo: <last user text>"``;
``None`` answers HTTP 500 with an OpenAI-style error of type
``scripted_script_exhausted``.

Only the standard library is needed; PyYAML is imported lazily by
:func:`load_script` for ``.yaml``/``.yml`` scripts.  Run it standalone with
``python -m dapr_agents.ext.devsidecar._scripted_llm --script replies.yaml``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Final, TypeAlias

__all__ = [
    "ScriptEntry",
    "ScriptedChatServer",
    "ScriptedReply",
    "ScriptedToolCall",
    "load_script",
    "main",
]

logger = logging.getLogger(__name__)

FALLBACK_ECHO: Final = "echo"
"""The only non-``None`` value accepted for ``ScriptedChatServer(fallback=...)``."""

EXHAUSTED_ERROR_TYPE: Final = "scripted_script_exhausted"
"""OpenAI-style error ``type`` sent when no reply matches and there is no fallback."""

_MAX_BODY_BYTES: Final = 64 * 1024 * 1024
_TOOL_KEYS: Final = frozenset({"name", "arguments", "id"})
_REPLY_KEYS: Final = frozenset({"content", "tool_calls", "when", "finish_reason", "repeat"})


# --------------------------------------------------------------------------
# Script model
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ScriptedToolCall:
    """One function call that a scripted assistant reply asks the client to make.

    Attributes:
        name: The function (tool) name.
        arguments: The call's arguments; a ``dict`` is sent as its JSON
            encoding, a ``str`` is sent verbatim (it need not be valid JSON,
            which lets tests exercise a client's handling of bad arguments).
        id: The tool-call id.  When ``None`` the server assigns a
            deterministic ``call_<n>``, ``n`` counting up from 1 per server
            for each id it generates.
    """

    name: str
    arguments: dict[str, Any] | str
    id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"ScriptedToolCall.name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.arguments, (dict, str)):
            raise TypeError(
                "ScriptedToolCall.arguments must be a dict or a JSON string, "
                f"got {type(self.arguments).__name__}"
            )
        if self.id is not None and (not isinstance(self.id, str) or not self.id):
            raise ValueError(f"ScriptedToolCall.id must be a non-empty string or None, got {self.id!r}")

    @property
    def arguments_json(self) -> str:
        """The arguments as the JSON string sent on the wire."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScriptedToolCall:
        """Build a tool call from ``{"name": ..., "arguments": ..., "id": ...}``.

        ``arguments`` defaults to ``{}`` and ``id`` to ``None``; unknown keys
        are rejected so that typos in a script file do not pass silently.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"a tool call must be a mapping, got {type(data).__name__}")
        unknown = set(data) - _TOOL_KEYS
        if unknown:
            raise ValueError(f"unknown tool call field(s) {sorted(unknown)}; allowed: {sorted(_TOOL_KEYS)}")
        if "name" not in data:
            raise ValueError("a tool call needs a 'name'")
        return cls(name=data["name"], arguments=data.get("arguments", {}), id=data.get("id"))


@dataclass(frozen=True)
class ScriptedReply:
    """One assistant answer in a script.

    Attributes:
        content: The assistant text, or ``None`` for a pure tool-call reply.
        tool_calls: Tool calls the assistant makes (stored as a tuple; lists
            and ``{"name", "arguments", "id"}`` dicts are accepted and converted).
        when: If set, the reply only matches a request whose *last message's*
            text contains this substring; otherwise it matches any request.
        finish_reason: The finish reason to report; when ``None`` it is
            ``"tool_calls"`` if there are tool calls, else ``"stop"`` (see
            :attr:`resolved_finish_reason`).
        repeat: If true, the reply is never consumed and matches again and again.
    """

    content: str | None = None
    tool_calls: Sequence[ScriptedToolCall] = ()
    when: str | None = None
    finish_reason: str | None = None
    repeat: bool = False

    def __post_init__(self) -> None:
        if self.content is not None and not isinstance(self.content, str):
            raise TypeError(
                f"ScriptedReply.content must be a string or None, got {type(self.content).__name__}"
            )
        if isinstance(self.tool_calls, (str, bytes, Mapping)) or not isinstance(self.tool_calls, Iterable):
            raise TypeError("ScriptedReply.tool_calls must be a sequence of ScriptedToolCall")
        calls: list[ScriptedToolCall] = []
        for call in self.tool_calls:
            if isinstance(call, ScriptedToolCall):
                calls.append(call)
            elif isinstance(call, Mapping):
                calls.append(ScriptedToolCall.from_dict(call))
            else:
                raise TypeError(
                    f"ScriptedReply.tool_calls items must be ScriptedToolCall, got {type(call).__name__}"
                )
        object.__setattr__(self, "tool_calls", tuple(calls))
        if self.content is None and not calls:
            raise ValueError("a ScriptedReply needs content, tool_calls, or both")
        if self.when is not None and not isinstance(self.when, str):
            raise TypeError(f"ScriptedReply.when must be a string or None, got {type(self.when).__name__}")
        if self.finish_reason is not None and not isinstance(self.finish_reason, str):
            raise TypeError("ScriptedReply.finish_reason must be a string or None")
        if not isinstance(self.repeat, bool):
            raise TypeError(f"ScriptedReply.repeat must be a bool, got {type(self.repeat).__name__}")

    @property
    def resolved_finish_reason(self) -> str:
        """``finish_reason`` if given, else ``"tool_calls"`` or ``"stop"``."""
        if self.finish_reason is not None:
            return self.finish_reason
        return "tool_calls" if self.tool_calls else "stop"

    def matches(self, last_message_text: str) -> bool:
        """Whether this reply may answer a request whose last message has this text."""
        return self.when is None or self.when in last_message_text

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScriptedReply:
        """Build a reply from a mapping with the same field names as the dataclass.

        ``tool_calls`` is a list of ``{"name", "arguments", "id"}`` mappings.
        Unknown keys raise :class:`ValueError`.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"a scripted reply must be a mapping, got {type(data).__name__}")
        unknown = set(data) - _REPLY_KEYS
        if unknown:
            raise ValueError(f"unknown reply field(s) {sorted(unknown)}; allowed: {sorted(_REPLY_KEYS)}")
        raw_calls = data.get("tool_calls") or ()
        if isinstance(raw_calls, (str, bytes, Mapping)) or not isinstance(raw_calls, Iterable):
            raise TypeError("'tool_calls' must be a list of tool call mappings")
        calls = tuple(
            call if isinstance(call, ScriptedToolCall) else ScriptedToolCall.from_dict(call)
            for call in raw_calls
        )
        return cls(
            content=data.get("content"),
            tool_calls=calls,
            when=data.get("when"),
            finish_reason=data.get("finish_reason"),
            repeat=data.get("repeat", False),
        )


ScriptEntry: TypeAlias = ScriptedReply | str | Mapping[str, Any]
"""What a script may contain: a reply, a plain-text shorthand, or a reply mapping."""


def _coerce_reply(entry: ScriptEntry) -> ScriptedReply:
    if isinstance(entry, ScriptedReply):
        return entry
    if isinstance(entry, str):
        return ScriptedReply(content=entry)
    if isinstance(entry, Mapping):
        return ScriptedReply.from_dict(entry)
    raise TypeError(f"script entries must be ScriptedReply, str or dict, got {type(entry).__name__}")


def load_script(path: str | Path) -> list[ScriptedReply]:
    """Read a script from a JSON or YAML file.

    The document is either a list of entries or a mapping with a ``replies``
    list.  Each entry is a string (a plain content reply) or a mapping with
    the :class:`ScriptedReply` field names.  ``.yaml``/``.yml`` files are read
    with PyYAML (imported lazily); ``.json`` files with :mod:`json`; any other
    suffix is tried as JSON first and then as YAML if PyYAML is importable.
    """
    file = Path(path)
    text = file.read_text(encoding="utf-8")
    suffix = file.suffix.lower()
    data: Any
    if suffix in (".yaml", ".yml"):
        data = _load_yaml(text, file)
    elif suffix == ".json":
        data = json.loads(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = _load_yaml(text, file)
    if isinstance(data, Mapping):
        if set(data) != {"replies"}:
            raise ValueError(f"{file}: a script mapping must have exactly one key, 'replies'")
        data = data["replies"]
    if data is None:
        data = []
    if not isinstance(data, list):
        raise ValueError(f"{file}: a script must be a list of replies, got {type(data).__name__}")
    replies: list[ScriptedReply] = []
    for index, entry in enumerate(data):
        try:
            replies.append(_coerce_reply(entry))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{file}: reply #{index}: {exc}") from exc
    return replies


def _load_yaml(text: str, file: Path) -> Any:
    try:
        import yaml  # type: ignore[import-untyped, unused-ignore]
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(f"{file}: reading a YAML script needs PyYAML (pip install pyyaml)") from exc
    return yaml.safe_load(text)


# --------------------------------------------------------------------------
# Request helpers
# --------------------------------------------------------------------------


class _ApiError(Exception):
    """An error to answer with an OpenAI-style error JSON (raised, or returned for 500s)."""

    def __init__(
        self,
        status: HTTPStatus,
        message: str,
        error_type: str = "invalid_request_error",
        *,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.close = close


def _content_text(content: Any) -> str:
    """Text of a message ``content``: a string, ``None`` or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                texts.append(part["text"])
        return "\n".join(texts)
    if isinstance(content, Mapping) and isinstance(content.get("text"), str):
        return str(content["text"])
    return ""


def _message_text(message: Any) -> str:
    return _content_text(message.get("content")) if isinstance(message, Mapping) else ""


def _word_count(text: str) -> int:
    return len(text.split())


def _error_body(message: str, error_type: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def _split_words(text: str) -> list[str]:
    """Split text into word-sized pieces that join back to exactly ``text``."""
    pieces = re.findall(r"\S+\s*|\s+", text)
    return pieces or [text]


def _split_in_two(text: str) -> list[str]:
    if len(text) < 2:
        return [text]
    middle = len(text) // 2
    return [text[:middle], text[middle:]]


# --------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Request handler; all state lives on :attr:`server`'s ``scripted`` owner."""

    protocol_version = "HTTP/1.1"
    server_version = "scripted-llm/1"
    sys_version = ""
    disable_nagle_algorithm = True  # headers and body are separate writes; avoid 40 ms delayed-ACK stalls
    server: _HTTPServer

    # -- plumbing ---------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - " + format, self.address_string(), *args)

    def _path(self) -> str:
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if len(path) > 1:
            path = path.rstrip("/")
        return path

    def _send_json(self, status: HTTPStatus | int, payload: Any, *, close: bool = False) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_error_json(self, error: _ApiError) -> None:
        self._send_json(error.status, _error_body(error.message, error.error_type), close=error.close)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return b""
        try:
            length = int(raw_length)
        except ValueError:
            raise _ApiError(
                HTTPStatus.BAD_REQUEST, f"invalid Content-Length {raw_length!r}", close=True
            ) from None
        if length < 0 or length > _MAX_BODY_BYTES:
            raise _ApiError(HTTPStatus.BAD_REQUEST, f"unacceptable Content-Length {length}", close=True)
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                size = -1
            if size < 0:
                raise _ApiError(HTTPStatus.BAD_REQUEST, "malformed chunked request body", close=True)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # skip trailers
                return b"".join(chunks)
            total += size
            if total > _MAX_BODY_BYTES:
                raise _ApiError(HTTPStatus.BAD_REQUEST, "request body too large", close=True)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _not_found(self) -> None:
        self._send_error_json(
            _ApiError(
                HTTPStatus.NOT_FOUND,
                f"no route for {self.command} {self._path()}; this scripted server serves "
                "POST /v1/chat/completions, GET /v1/models and GET /health",
                "not_found_error",
            )
        )

    # -- verbs ------------------------------------------------------------

    def do_GET(self) -> None:
        path = self._path()
        owner = self.server.scripted
        if path == "/health":
            self._send_json(HTTPStatus.OK, {"status": "ok"})
        elif path in ("/v1/models", "/models"):
            self._send_json(HTTPStatus.OK, {"object": "list", "data": [owner.model_object()]})
        elif path.startswith(("/v1/models/", "/models/")) and path.rsplit("/", 1)[1] == owner.model:
            self._send_json(HTTPStatus.OK, owner.model_object())
        else:
            self._not_found()

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        path = self._path()
        try:
            raw = self._read_body()
        except _ApiError as error:
            self._send_error_json(error)
            return
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._not_found()
            return
        try:
            request = self._parse_chat_request(raw)
            outcome = self.server.scripted._answer(request)
        except _ApiError as error:
            self._send_error_json(error)
            return
        if isinstance(outcome, _ApiError):
            self._send_error_json(outcome)
        elif request.get("stream") is True:
            self._stream(outcome, request)
        else:
            self._send_json(HTTPStatus.OK, outcome.completion())

    def do_PUT(self) -> None:
        self._read_body_and_404()

    do_DELETE = do_PATCH = do_PUT  # noqa: N815

    def _read_body_and_404(self) -> None:
        try:
            self._read_body()
        except _ApiError as error:
            self._send_error_json(error)
            return
        self._not_found()

    # -- chat ---------------------------------------------------------------

    @staticmethod
    def _parse_chat_request(raw: bytes) -> dict[str, Any]:
        if not raw.strip():
            raise _ApiError(HTTPStatus.BAD_REQUEST, "request body is empty; expected a JSON object")
        try:
            request = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise _ApiError(HTTPStatus.BAD_REQUEST, f"request body is not valid UTF-8: {exc}") from None
        except json.JSONDecodeError as exc:
            raise _ApiError(HTTPStatus.BAD_REQUEST, f"request body is not valid JSON: {exc}") from None
        if not isinstance(request, dict):
            raise _ApiError(
                HTTPStatus.BAD_REQUEST, f"request body must be a JSON object, got {type(request).__name__}"
            )
        messages = request.get("messages")
        if messages is None:
            raise _ApiError(HTTPStatus.BAD_REQUEST, "missing required parameter: 'messages'")
        if not isinstance(messages, list) or not messages:
            raise _ApiError(HTTPStatus.BAD_REQUEST, "'messages' must be a non-empty array")
        if not all(isinstance(message, dict) for message in messages):
            raise _ApiError(HTTPStatus.BAD_REQUEST, "every item of 'messages' must be an object")
        return request

    def _stream(self, answer: _Answer, request: Mapping[str, Any]) -> None:
        options = request.get("stream_options")
        include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in answer.chunks(include_usage=include_usage):
                self._write_chunk(b"data: " + json.dumps(chunk).encode("utf-8") + b"\n\n")
            self._write_chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode("ascii") + data + b"\r\n")
        self.wfile.flush()


class _HTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that remembers open connections so ``stop`` can end them."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the default backlog of 5 stalls bursts of parallel clients by ~1 s

    def __init__(self, address: tuple[str, int], scripted: ScriptedChatServer) -> None:
        self.scripted = scripted
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log handler errors instead of printing tracebacks; peers dropping idle connections is normal."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            logger.debug("connection from %s ended: %r", client_address, exc)
        else:
            logger.exception("scripted LLM: error while handling a request from %s", client_address)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


# --------------------------------------------------------------------------
# Answers
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _WireToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class _Answer:
    """A resolved reply for one request, ready to render as JSON or SSE."""

    completion_id: str
    created: int
    model: str
    content: str | None
    tool_calls: tuple[_WireToolCall, ...]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int = field(init=False)

    def __post_init__(self) -> None:
        words = _word_count(self.content or "") + sum(_word_count(call.arguments) for call in self.tool_calls)
        object.__setattr__(self, "completion_tokens", max(1, words))

    def usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def completion(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in self.tool_calls
            ]
        message["refusal"] = None
        return {
            "id": self.completion_id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish_reason}
            ],
            "usage": self.usage(),
        }

    def chunks(self, *, include_usage: bool) -> Iterator[dict[str, Any]]:
        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            data: dict[str, Any] = {
                "id": self.completion_id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": None,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if include_usage:
                data["usage"] = None
            return data

        first_content = "" if self.content is not None else None
        yield chunk({"role": "assistant", "content": first_content, "refusal": None})
        if self.content:
            for piece in _split_words(self.content):
                yield chunk({"content": piece})
        for index, call in enumerate(self.tool_calls):
            function = {"name": call.name, "arguments": ""}
            opening = {"index": index, "id": call.id, "type": "function", "function": function}
            yield chunk({"tool_calls": [opening]})
            for piece in _split_in_two(call.arguments):
                if piece:
                    yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        yield chunk({}, self.finish_reason)
        if include_usage:
            yield {
                "id": self.completion_id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": None,
                "choices": [],
                "usage": self.usage(),
            }


# --------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------


@dataclass
class _Slot:
    reply: ScriptedReply
    consumed: bool = False


class ScriptedChatServer:
    """An OpenAI-compatible chat-completions server that replays a script.

    Args:
        script: Replies in order.  A ``str`` is shorthand for
            ``ScriptedReply(content=...)``; a ``dict`` is parsed with the
            :class:`ScriptedReply` field names.
        host: Interface to bind (default loopback).
        port: Port to bind; ``0`` picks a free one (read it from :attr:`port`).
        model: Model name reported by ``/v1/models`` and in responses to
            requests that do not name a model.
        fallback: ``"echo"`` answers unmatched requests with
            ``"echo: <last user message text>"``; ``None`` answers them with
            HTTP 500 and an error of type ``scripted_script_exhausted``.

    The server is thread-safe: requests are handled concurrently, and the
    script and request log are guarded by one lock.
    """

    def __init__(
        self,
        script: Iterable[ScriptEntry] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        model: str = "scripted",
        fallback: str | None = FALLBACK_ECHO,
    ) -> None:
        if fallback not in (FALLBACK_ECHO, None):
            raise ValueError(f"fallback must be {FALLBACK_ECHO!r} or None, got {fallback!r}")
        if isinstance(script, (str, bytes, Mapping)):
            raise TypeError("script must be an iterable of replies, not a single string or mapping")
        self._host = host
        self._requested_port = port
        self._model = model
        self._fallback = fallback
        self._lock = threading.Lock()
        self._slots: list[_Slot] = [_Slot(_coerce_reply(entry)) for entry in script]
        self._requests: list[dict[str, Any]] = []
        self._served = 0
        self._completion_counter = 0
        self._call_counter = 0
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> ScriptedChatServer:
        """Create a server whose script is :func:`load_script` of ``path``."""
        return cls(load_script(path), **kwargs)

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> ScriptedChatServer:
        """Bind the socket and serve in a daemon thread; returns ``self``.

        Calling it again while running is a no-op; a stopped server cannot be
        restarted (create a new one).
        """
        with self._lock:
            if self._stopped:
                raise RuntimeError("this ScriptedChatServer was stopped; create a new one")
            if self._httpd is not None:
                return self
            httpd = _HTTPServer((self._host, self._requested_port), self)
            thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"scripted-llm:{httpd.server_address[1]}",
                daemon=True,
            )
            self._httpd, self._thread = httpd, thread
        thread.start()
        logger.debug("scripted LLM listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and join the thread (idempotent)."""
        with self._lock:
            httpd, thread = self._httpd, self._thread
            self._stopped = True
            self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> ScriptedChatServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- properties -------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port; raises :class:`RuntimeError` before :meth:`start`."""
        httpd = self._httpd
        if httpd is None:
            raise RuntimeError("the ScriptedChatServer is not running; call start() first")
        return int(httpd.server_address[1])

    @property
    def host(self) -> str:
        """The host the server binds to."""
        return self._host

    @property
    def base_url(self) -> str:
        """The OpenAI ``base_url``, e.g. ``http://127.0.0.1:54321/v1``."""
        host = self._host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/v1"

    @property
    def model(self) -> str:
        """The server's model name."""
        return self._model

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A copy of every accepted chat request body, in arrival order."""
        with self._lock:
            return copy.deepcopy(self._requests)

    @property
    def remaining(self) -> int:
        """How many non-``repeat`` replies have not been consumed yet."""
        with self._lock:
            return sum(1 for slot in self._slots if not slot.consumed and not slot.reply.repeat)

    def add(self, *replies: ScriptEntry) -> None:
        """Append replies (same forms as the constructor's ``script``) to the script."""
        slots = [_Slot(_coerce_reply(reply)) for reply in replies]
        with self._lock:
            self._slots.extend(slots)

    def model_object(self) -> dict[str, Any]:
        """The ``/v1/models`` entry for this server's model."""
        return {"id": self._model, "object": "model", "created": 0, "owned_by": "scripted"}

    # -- answering ------------------------------------------------------------

    def _answer(self, request: dict[str, Any]) -> _Answer | _ApiError:
        messages: list[dict[str, Any]] = request["messages"]
        last_text = _message_text(messages[-1])
        prompt_tokens = max(1, sum(_word_count(_message_text(message)) for message in messages))
        model = request.get("model")
        model_name = model if isinstance(model, str) and model else self._model
        with self._lock:
            self._requests.append(copy.deepcopy(request))
            reply = self._take(last_text)
            if reply is None and self._fallback == FALLBACK_ECHO:
                reply = ScriptedReply(content="echo: " + self._last_user_text(messages))
            if reply is None:
                pending = sum(1 for slot in self._slots if not slot.consumed)
                snippet = last_text if len(last_text) <= 200 else last_text[:200] + "..."
                reason = (
                    "the script is exhausted"
                    if pending == 0
                    else f"the script is exhausted for this request: none of the {pending} unconsumed "
                    "repl(ies) has a 'when' found in the last message"
                )
                return _ApiError(
                    HTTPStatus.INTERNAL_SERVER_ERROR,
                    f"scripted LLM: {reason} ({self._served} request(s) served, fallback disabled); "
                    f"last message: {snippet!r}",
                    EXHAUSTED_ERROR_TYPE,
                )
            self._served += 1
            self._completion_counter += 1
            completion_id = f"chatcmpl-{self._completion_counter}"
            calls: list[_WireToolCall] = []
            for call in reply.tool_calls:
                call_id = call.id
                if call_id is None:
                    self._call_counter += 1
                    call_id = f"call_{self._call_counter}"
                calls.append(_WireToolCall(call_id, call.name, call.arguments_json))
        return _Answer(
            completion_id=completion_id,
            created=int(time.time()),
            model=model_name,
            content=reply.content,
            tool_calls=tuple(calls),
            finish_reason=reply.resolved_finish_reason,
            prompt_tokens=prompt_tokens,
        )

    def _take(self, last_text: str) -> ScriptedReply | None:
        """Return (and consume unless ``repeat``) the first matching reply; lock held."""
        for slot in self._slots:
            if slot.consumed or not slot.reply.matches(last_text):
                continue
            if not slot.reply.repeat:
                slot.consumed = True
            return slot.reply
        return None

    @staticmethod
    def _last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
        for message in reversed(messages):
            if message.get("role") == "user":
                return _message_text(message)
        return ""

    def __repr__(self) -> str:
        state = (
            f"port={self.port}"
            if self._httpd is not None
            else ("stopped" if self._stopped else "not started")
        )
        return f"<ScriptedChatServer {state} model={self._model!r} remaining={self.remaining}>"


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a script from the command line until SIGINT or SIGTERM.

    Options: ``--script FILE`` (JSON or YAML), ``--host``, ``--port``,
    ``--model`` and ``--no-fallback`` (answer HTTP 500 instead of echoing
    when the script has no matching reply).  Prints
    ``scripted LLM listening on <base_url>`` once ready.
    """
    parser = argparse.ArgumentParser(
        prog="dapr-devsidecar llm", description="Serve a scripted OpenAI-compatible chat-completions API."
    )
    parser.add_argument("--script", type=Path, help="JSON or YAML file with the replies")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    parser.add_argument("--model", default="scripted", help="model name to report (default: %(default)s)")
    parser.add_argument(
        "--no-fallback", action="store_true", help="answer HTTP 500 instead of echoing when no reply matches"
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        script = load_script(args.script) if args.script is not None else []
    except (OSError, ValueError, RuntimeError) as exc:
        parser.error(str(exc))
    server = ScriptedChatServer(
        script,
        host=args.host,
        port=args.port,
        model=args.model,
        fallback=None if args.no_fallback else FALLBACK_ECHO,
    )
    done = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        print(f"scripted LLM listening on {server.base_url}", flush=True)
        while not done.wait(0.5):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
