"""Conversation components: ``conversation.echo`` (daprd's test component) and
``conversation.openai`` (forwarding to any OpenAI-compatible chat-completions endpoint).

The echo component reproduces daprd's behaviour exactly, including its habit of calling every
offered tool on every turn, so agents tested against it behave as they would against daprd's.
The OpenAI component translates the Alpha2 request into a chat-completions request and back;
pointing its ``endpoint`` at the scripted chat server makes LLM runs offline and deterministic.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

import grpc
from dapr.proto.runtime.v1 import ai_pb2
from google.protobuf import json_format, struct_pb2

from ._components import Component
from ._errors import ComponentError, DevSidecarError


class ConversationError(DevSidecarError):
    """The conversation failed; ``code`` is the gRPC status daprd would answer with."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.INTERNAL) -> None:
        super().__init__(message)
        self.code = code


def _invalid_params(reason: str, kind: str = "*errors.errorString") -> ConversationError:
    # daprd's message really carries Go's fmt "%!(EXTRA ...)" noise; reproduced verbatim.
    return ConversationError(f"invalid params%!(EXTRA {kind}={reason})", grpc.StatusCode.INVALID_ARGUMENT)


def validate_alpha2(request: ai_pb2.ConversationRequestAlpha2) -> None:
    """Reject what daprd rejects before calling the component."""
    if not request.inputs:
        raise ConversationError("missing inputs in request", grpc.StatusCode.INVALID_ARGUMENT)
    for conversation in request.inputs:
        for message in conversation.messages:
            kind = message.WhichOneof("message_types")
            if kind is None:
                raise _invalid_params("message type cannot be nil")
            if kind == "of_assistant":
                for call in message.of_assistant.tool_calls:
                    if not call.HasField("function"):
                        raise _invalid_params("tool types cannot be nil")
    choice = request.tool_choice if request.HasField("tool_choice") else ""
    names = {tool.function.name for tool in request.tools}
    allowed = "tool choice must be 'auto', 'none', 'required', or a specific tool name matching the tools available to be used"
    if choice == "required" and not request.tools:
        raise _invalid_params(allowed, "string")
    if choice and choice not in {"auto", "none", "required"} and request.tools and choice not in names:
        raise _invalid_params(
            f"tool choice selected was not found. Must be {allowed[len('tool choice must be ') :]}", "string"
        )


def _text(parts: Any) -> str:
    return "\n".join(part.text for part in parts)


def _echo_texts(message: ai_pb2.ConversationMessage) -> list[str]:
    """The text elements daprd's echo component collects from one message, in order."""
    kind = message.WhichOneof("message_types")
    if kind is None:  # rejected earlier by validate_alpha2
        return []
    body = getattr(message, kind)
    if kind == "of_tool":
        return [
            f"Tool Response for tool ID '{body.tool_id}' with name '{body.name}': {part.text}"
            for part in body.content
        ]
    return [part.text for part in body.content]


_NO_PROPERTIES = struct_pb2.Value(struct_value=struct_pb2.Struct())


def _words(text: str) -> int:
    return len(text.split())


class ConversationBackend:
    """Interface of a conversation component."""

    async def converse_alpha2(
        self, request: ai_pb2.ConversationRequestAlpha2
    ) -> ai_pb2.ConversationResponseAlpha2:
        raise NotImplementedError

    async def converse_alpha1(self, request: ai_pb2.ConversationRequest) -> ai_pb2.ConversationResponse:
        raise NotImplementedError


class EchoConversation(ConversationBackend):
    """``conversation.echo``: answers with the text it was sent."""

    def __init__(self, component: Component) -> None:
        self._name = component.name

    async def converse_alpha2(
        self, request: ai_pb2.ConversationRequestAlpha2
    ) -> ai_pb2.ConversationResponseAlpha2:
        messages = [message for conversation in request.inputs for message in conversation.messages]
        content = "\n".join(text for message in messages for text in _echo_texts(message))
        choice = ai_pb2.ConversationResultChoices(index=0)
        choice.message.content = content
        # One call per offered tool on every turn (whatever tool_choice says), arguments being
        # the sorted parameter names; then the calls the request's assistant messages carried.
        for index, tool in enumerate(request.tools):
            fields = sorted(
                tool.function.parameters.fields.get("properties", _NO_PROPERTIES).struct_value.fields
            )
            call = choice.message.tool_calls.add(id=str(index))
            call.function.name = tool.function.name
            call.function.arguments = ",".join(fields)
        for message in messages:
            if message.WhichOneof("message_types") == "of_assistant":
                for existing in message.of_assistant.tool_calls:
                    choice.message.tool_calls.add().CopyFrom(existing)
        choice.finish_reason = "tool_calls" if choice.message.tool_calls else "stop"
        words = _words(content)
        result = ai_pb2.ConversationResultAlpha2(choices=[choice])
        result.usage.prompt_tokens = words
        result.usage.completion_tokens = words
        result.usage.total_tokens = 2 * words
        response = ai_pb2.ConversationResponseAlpha2(outputs=[result])
        if request.HasField("context_id") and request.context_id:
            response.context_id = request.context_id
        return response

    async def converse_alpha1(self, request: ai_pb2.ConversationRequest) -> ai_pb2.ConversationResponse:
        response = ai_pb2.ConversationResponse()
        response.outputs.add(
            result="\n".join(item.content for item in request.inputs), parameters=request.parameters
        )
        if request.HasField("contextID") and request.contextID:
            response.contextID = request.contextID
        return response


class OpenAIConversation(ConversationBackend):
    """``conversation.openai``: forwards to an OpenAI-compatible chat-completions endpoint.

    Mirrors daprd's component: ``key`` is required, the model is ``OPENAI_MODEL`` from the
    environment, else the ``model`` metadata, else ``gpt-5-nano``; requests go to
    ``{endpoint}/chat/completions``. The reported model is the configured one.
    """

    def __init__(self, component: Component, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._name = component.name
        self._key = component.metadata_value("key") or ""
        if not self._key:
            raise ComponentError(
                f"{component.source}: component {component.name!r} (conversation.openai) needs the "
                "'key' metadata (any non-empty string for a local OpenAI-compatible server)"
            )
        self._model = env.get("OPENAI_MODEL") or component.metadata_value("model") or "gpt-5-nano"
        endpoint = component.metadata_value("endpoint") or "https://api.openai.com/v1"
        if not endpoint.startswith(("http://", "https://")):
            raise ComponentError(
                f"{component.source}: component {component.name!r} (conversation.openai): endpoint "
                f"{endpoint!r} must be an http(s) base URL such as https://api.openai.com/v1"
            )
        self._url = endpoint.rstrip("/") + "/chat/completions"
        # daprd's HTTP client has no timeout of its own; a generous one keeps a dead server
        # from pinning a worker thread forever.
        self._timeout = 600.0

    def _reasoning_model(self) -> bool:
        return (
            self._model.startswith(("gpt-5", "o1-")) or self._model == "o3" or self._model.startswith("o3-")
        )

    @staticmethod
    def _messages(request: ai_pb2.ConversationRequestAlpha2) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        for conversation in request.inputs:
            for message in conversation.messages:
                kind = message.WhichOneof("message_types")
                body = getattr(message, kind)
                if kind == "of_tool":
                    if len(body.content) != 1:
                        raise ConversationError(
                            f"expected exactly one part for role tool, got {len(body.content)}"
                        )
                    messages.append(
                        {"role": "tool", "tool_call_id": body.tool_id, "content": body.content[0].text}
                    )
                    continue
                role = {
                    "of_system": "system",
                    "of_user": "user",
                    "of_assistant": "assistant",
                    "of_developer": "user",
                }[kind]
                entry: dict[str, Any] = {"role": role}
                parts = [part.text for part in body.content]
                entry["content"] = (
                    parts[0] if len(parts) == 1 else [{"type": "text", "text": t} for t in parts]
                )
                if kind == "of_assistant" and body.tool_calls:
                    entry["tool_calls"] = [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.function.name, "arguments": call.function.arguments},
                        }
                        for call in body.tool_calls
                    ]
                    if not parts:
                        entry["content"] = None
                messages.append(entry)
        return messages

    def _body(self, request: ai_pb2.ConversationRequestAlpha2) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self._model, "messages": self._messages(request)}
        if not self._reasoning_model():
            body["temperature"] = (
                request.temperature if request.HasField("temperature") and request.temperature > 0 else 0
            )
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": tool.function.name,
                        "description": tool.function.description,
                        "parameters": json_format.MessageToDict(tool.function.parameters),
                    },
                }
                for tool in request.tools
            ]
            body["tool_choice"] = (request.tool_choice if request.HasField("tool_choice") else "") or "auto"
        if request.HasField("response_format"):
            schema = json_format.MessageToDict(request.response_format)
            if isinstance(schema.get("type"), str):
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": schema.get("name", "response"),
                        "strict": bool(schema.get("strict", False)),
                        "schema": schema,
                    },
                }
        if request.metadata:
            body["metadata"] = dict(request.metadata)
        return body

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self._key}"}
        http_request = urllib.request.Request(
            self._url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(http_request, timeout=self._timeout) as answer:
                decoded = json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode("utf-8", errors="replace")
            raise ConversationError(f"{self._url} answered HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise ConversationError(f"cannot reach {self._url}: {exc}") from exc
        except ValueError as exc:
            raise ConversationError(f"{self._url} answered something that is not JSON: {exc}") from exc
        if not isinstance(decoded, dict):
            raise ConversationError(f"{self._url} answered JSON that is not an object")
        return decoded

    async def converse_alpha2(
        self, request: ai_pb2.ConversationRequestAlpha2
    ) -> ai_pb2.ConversationResponseAlpha2:
        answer = await asyncio.to_thread(self._post, self._body(request))
        choices = answer.get("choices") or []
        if (
            request.tool_choice == "required"
            and request.tools
            and not any(
                (c.get("message") or {}).get("content") or (c.get("message") or {}).get("tool_calls")
                for c in choices
            )
        ):
            raise ConversationError(
                f"LLM returned empty response with no tool calls despite {len(request.tools)} tools being available"
            )
        response = ai_pb2.ConversationResponseAlpha2()
        usage = answer.get("usage") or {}
        for position, choice in enumerate(choices):
            message = choice.get("message") or {}
            result = response.outputs.add(model=self._model)
            out = result.choices.add(index=int(choice.get("index", position)))
            out.finish_reason = str(choice.get("finish_reason") or "unknown")
            if message.get("content"):
                out.message.content = str(message["content"])
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                tool_call = out.message.tool_calls.add(id=str(call.get("id", "")))
                tool_call.function.name = str(function.get("name", ""))
                tool_call.function.arguments = str(function.get("arguments", ""))
            totals = [int(usage.get(k) or 0) for k in ("prompt_tokens", "completion_tokens", "total_tokens")]
            if any(totals):
                result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens = totals
        if request.HasField("context_id") and request.context_id:
            response.context_id = request.context_id
        return response

    async def converse_alpha1(self, request: ai_pb2.ConversationRequest) -> ai_pb2.ConversationResponse:
        roles = {
            "user": "user",
            "human": "user",
            "system": "system",
            "assistant": "assistant",
            "ai": "assistant",
            "tool": "tool",
        }
        body: dict[str, Any] = {
            "model": self._model,
            "messages": [
                {"role": roles.get(item.role, "user"), "content": item.content} for item in request.inputs
            ],
        }
        answer = await asyncio.to_thread(self._post, body)
        response = ai_pb2.ConversationResponse()
        choices = answer.get("choices") or []
        content = (choices[0].get("message") or {}).get("content") if choices else ""
        response.outputs.add(result=content or "", parameters=request.parameters)
        if request.HasField("contextID") and request.contextID:
            response.contextID = request.contextID
        return response
