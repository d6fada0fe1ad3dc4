"""The messages an agent workflow takes and returns, as dapr-agents sends and expects them.

Input: ``{"task": str, "_message_metadata": {"source": <caller>, ...}}`` (metadata only when
there is some). Output: ``{"role": "assistant", "content": str}``; dapr-agents' orchestrators
read ``content`` and its LLM tool path serialises the whole dict, so a host must return exactly
this shape, never a bare string.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._errors import InvalidAgentInput, InvalidAgentOutput

__all__ = ["AgentRequest", "AgentResponse"]

MESSAGE_METADATA = "_message_metadata"


class AgentRequest(BaseModel):
    """What a caller asks an agent: a task, and metadata about the call."""

    model_config = ConfigDict(populate_by_name=True, extra="allow", frozen=True)

    task: str
    """The instruction for the agent."""
    message_metadata: dict[str, Any] = Field(default_factory=dict, alias="_message_metadata")
    """dapr-agents' ``_message_metadata``: ``source`` (the calling agent), ``_stream_context``."""

    @property
    def source(self) -> str | None:
        """The name of the calling agent, when the caller said."""
        value = self.message_metadata.get("source")
        return value if isinstance(value, str) and value else None

    @classmethod
    def from_input(cls, value: Any) -> AgentRequest:
        """Read a workflow input: the envelope dict, its JSON text, or a bare task string.

        Raises:
            InvalidAgentInput: anything else, naming what arrived.
        """
        if isinstance(value, AgentRequest):
            return value
        if isinstance(value, str):
            stripped = value.strip()
            if stripped.startswith("{"):
                try:
                    decoded = json.loads(stripped)
                except json.JSONDecodeError:
                    decoded = None
                if isinstance(decoded, dict) and "task" in decoded:
                    return cls.from_input(decoded)
            return cls(task=value)
        if isinstance(value, Mapping):
            if "task" not in value:
                raise InvalidAgentInput(
                    f"agent input has no 'task' (keys: {sorted(map(str, value))}); "
                    'send {"task": "<instruction>"} as dapr-agents does'
                )
            try:
                return cls.model_validate(dict(value))
            except ValidationError as error:
                raise InvalidAgentInput(f"agent input is not a valid envelope: {error}") from None
        raise InvalidAgentInput(
            f'agent input must be {{"task": str, ...}} or a string, not {type(value).__name__}'
        )

    def to_input(self) -> dict[str, Any]:
        """The workflow input dapr-agents would send for this request."""
        payload: dict[str, Any] = {"task": self.task}
        if self.message_metadata:
            payload[MESSAGE_METADATA] = dict(self.message_metadata)
        payload.update(self.model_extra or {})
        return payload


class AgentResponse(BaseModel):
    """An agent's answer: ``{"role": "assistant", "content": str}`` (extra keys are kept)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    role: Literal["assistant"] = "assistant"
    content: str

    @classmethod
    def from_result(cls, value: Any) -> AgentResponse:
        """Normalise what a host or a child workflow returned.

        Accepts an :class:`AgentResponse`, a string (the content), a mapping with a string
        ``content`` (dapr-agents' DurableAgent adds ``id`` and ``name``), or JSON text of one.

        Raises:
            InvalidAgentOutput: anything else; a host returning structured data needs an output
                mapper that turns it into text.
        """
        if isinstance(value, AgentResponse):
            return value
        if isinstance(value, str):
            return cls(content=value)
        if isinstance(value, Mapping):
            content = value.get("content")
            if isinstance(content, str):
                extra = {k: v for k, v in value.items() if k not in {"role", "content"}}
                return cls(content=content, **extra)
            raise InvalidAgentOutput(
                f"agent output has no string 'content' (keys: {sorted(map(str, value))}); "
                "return a string or pass an output mapper that makes one"
            )
        raise InvalidAgentOutput(
            f"agent output must be a string or {{'content': str}}, not {type(value).__name__}; "
            "pass an output mapper that turns it into text"
        )

    @classmethod
    def from_workflow_output(cls, serialized: str | None) -> AgentResponse:
        """Decode a finished agent workflow's serialised output."""
        if serialized is None:
            raise InvalidAgentOutput("the agent workflow completed without output")
        try:
            decoded = json.loads(serialized)
        except json.JSONDecodeError:
            decoded = serialized
        return cls.from_result(decoded)

    def to_output(self) -> dict[str, Any]:
        """The workflow output dapr-agents expects."""
        return {"role": self.role, "content": self.content, **(self.model_extra or {})}
