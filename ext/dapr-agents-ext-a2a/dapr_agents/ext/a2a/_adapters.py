"""A remote A2A agent as a LangChain, OpenAI Agents or CrewAI tool (each behind its extra).

Every adapter takes ``task`` and, to answer a question the agent asked, ``task_id`` and
``context_id``. An answer is the tool's result; a question (``input-required``) is a result too,
saying so and naming the ids to answer with, because the model is the one who can answer it;
a failed or timed-out task raises, as each framework expects tool failures. A model's tool-call
id, where the framework gives one, becomes the A2A message id (with the run's scope), so a
framework that replays the same tool call (LangGraph resuming a thread) reaches the same task.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ._client import A2AAgentTool, message_id_for
from ._errors import A2AInputRequired, MissingExtraError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["crewai_tool", "langchain_tool", "openai_tool", "question_text"]

_TASK_DESCRIPTION = "The complete, self-contained task for the agent."
_TASK_ID_DESCRIPTION = "Only to answer a question the agent asked: the task_id it gave."
_CONTEXT_ID_DESCRIPTION = "Only to continue a conversation: the context_id the agent gave."


def _missing(extra: str, package: str, error: ImportError) -> MissingExtraError:
    return MissingExtraError(
        f'this adapter needs {package}: pip install "dapr-agents-ext-a2a[{extra}]" ({error})'
    )


def question_text(question: A2AInputRequired) -> str:
    """What a model reads when the agent asks a question instead of answering."""
    return (
        f"The agent needs more input before it can answer: {question.question} "
        f"(answer by calling this tool again with task_id={question.task_id!r} and "
        f"context_id={question.context_id!r})"
    )


async def _ask(
    tool: A2AAgentTool, task: str, task_id: str | None, context_id: str | None, message_id: str | None
) -> str:
    try:
        result = await tool.acall(
            task, task_id=task_id or None, context_id=context_id or None, message_id=message_id
        )
    except A2AInputRequired as question:
        return question_text(question)
    return result.text


def _ask_blocking(
    tool: A2AAgentTool, task: str, task_id: str | None, context_id: str | None, message_id: str | None
) -> str:
    try:
        result = tool.call(
            task, task_id=task_id or None, context_id=context_id or None, message_id=message_id
        )
    except A2AInputRequired as question:
        return question_text(question)
    return result.text


# -- LangChain / LangGraph ---------------------------------------------------------------------


def langchain_tool(
    tool: A2AAgentTool,
    *,
    name: str | None = None,
    description: str | None = None,
    handle_tool_error: bool | str | None = False,
) -> Any:
    """A LangChain ``BaseTool`` calling ``tool``'s agent (``pip install "dapr-agents-ext-a2a[langchain]"``)."""
    try:
        from langchain_core.runnables import RunnableConfig
        from langchain_core.tools import BaseTool, ToolException
        from pydantic import BaseModel, Field
    except ImportError as error:
        raise _missing("langchain", "langchain-core", error) from error

    class A2AToolInput(BaseModel):
        task: str = Field(description=_TASK_DESCRIPTION)
        task_id: str | None = Field(default=None, description=_TASK_ID_DESCRIPTION)
        context_id: str | None = Field(default=None, description=_CONTEXT_ID_DESCRIPTION)

    def message_id(tool_call_id: str | None, config: RunnableConfig | None) -> str | None:
        if not tool_call_id:
            return None
        configurable = (config or {}).get("configurable") or {}
        scope = [str(configurable.get("thread_id")), str(configurable.get("checkpoint_ns")), tool_call_id]
        return message_id_for("langchain", tool.target, *scope)

    class A2ALangChainTool(BaseTool):
        args_schema: type[BaseModel] = A2AToolInput

        def _to_args_and_kwargs(self, tool_input: Any, tool_call_id: str | None) -> tuple[Any, Any]:
            # Only here does BaseTool know the tool-call id: pass it on.
            args, kwargs = super()._to_args_and_kwargs(tool_input, tool_call_id)
            return args, {**kwargs, "tool_call_id": tool_call_id}

        def _run(
            self,
            task: str,
            task_id: str | None = None,
            context_id: str | None = None,
            *,
            config: RunnableConfig,
            tool_call_id: str | None = None,
            run_manager: Any = None,
        ) -> str:
            try:
                return _ask_blocking(tool, task, task_id, context_id, message_id(tool_call_id, config))
            except Exception as error:
                raise ToolException(f"A2A agent {tool.target} failed: {error}") from error

        async def _arun(
            self,
            task: str,
            task_id: str | None = None,
            context_id: str | None = None,
            *,
            config: RunnableConfig,
            tool_call_id: str | None = None,
            run_manager: Any = None,
        ) -> str:
            try:
                return await _ask(tool, task, task_id, context_id, message_id(tool_call_id, config))
            except Exception as error:
                raise ToolException(f"A2A agent {tool.target} failed: {error}") from error

    # LangChain finds the config parameter by its annotation; postponed annotations of a class
    # made in a function are strings it cannot resolve, so give it the type itself.
    for method in (A2ALangChainTool._run, A2ALangChainTool._arun):
        method.__annotations__["config"] = RunnableConfig
    return A2ALangChainTool(
        name=name or tool.name,
        description=description or tool.description,
        handle_tool_error=handle_tool_error,
    )


# -- OpenAI Agents -----------------------------------------------------------------------------

_OPENAI_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "task": {"type": "string", "description": _TASK_DESCRIPTION},
        "task_id": {"type": ["string", "null"], "description": _TASK_ID_DESCRIPTION},
        "context_id": {"type": ["string", "null"], "description": _CONTEXT_ID_DESCRIPTION},
    },
    "required": ["task", "task_id", "context_id"],
    "additionalProperties": False,
}


def openai_tool(
    tool: A2AAgentTool,
    *,
    name: str | None = None,
    description: str | None = None,
    scope: str | Callable[[Any], str] | None = None,
    failure_error_function: Any = "default",
) -> Any:
    """An OpenAI Agents ``FunctionTool`` (``pip install "dapr-agents-ext-a2a[openai-agents]"``).

    ``scope`` names the run for the message ids (a string or ``scope(ctx)``); tool-call ids are
    only unique within one conversation, so without it each tool call gets a random message id.
    ``failure_error_function`` is the SDK's (default: its ``default_tool_error_function``;
    ``None`` raises).
    """
    try:
        from agents import FunctionTool, ModelBehaviorError
        from agents.tool import default_tool_error_function
    except ImportError as error:
        raise _missing("openai-agents", "openai-agents", error) from error
    on_failure = (
        default_tool_error_function if failure_error_function == "default" else failure_error_function
    )
    tool_name = name or tool.name

    async def invoke(ctx: Any, args_json: str) -> Any:
        try:
            args = json.loads(args_json or "{}")
        except json.JSONDecodeError as error:
            raise ModelBehaviorError(f"Invalid JSON input for tool {tool_name}: {args_json}") from error
        task = args.get("task") if isinstance(args, dict) else None
        if not isinstance(task, str):
            raise ModelBehaviorError(f'tool {tool_name} needs {{"task": "<text>"}}, got {args_json}')
        run_scope = scope(ctx) if callable(scope) else scope
        call_id = getattr(ctx, "tool_call_id", None)
        message_id = (
            message_id_for("openai-agents", tool.target, run_scope, call_id)
            if run_scope and call_id
            else None
        )
        try:
            return await _ask(tool, task, args.get("task_id"), args.get("context_id"), message_id)
        except Exception as error:
            if on_failure is None:
                raise
            message = on_failure(ctx, error)
            if hasattr(message, "__await__"):
                message = await message
            return message

    return FunctionTool(
        name=tool_name,
        description=description or tool.description,
        params_json_schema=dict(_OPENAI_SCHEMA),
        on_invoke_tool=invoke,
        strict_json_schema=True,
    )


# -- CrewAI ------------------------------------------------------------------------------------


def crewai_tool(tool: A2AAgentTool, *, name: str | None = None, description: str | None = None) -> Any:
    """A CrewAI ``BaseTool`` (``pip install "dapr-agents-ext-a2a[crewai]"``). CrewAI gives tool
    calls no id: each call is a new message."""
    try:
        from crewai.tools import BaseTool
        from pydantic import BaseModel, Field
    except ImportError as error:
        raise _missing("crewai", "crewai", error) from error

    class A2ACrewInput(BaseModel):
        task: str = Field(description=_TASK_DESCRIPTION)
        task_id: str | None = Field(default=None, description=_TASK_ID_DESCRIPTION)
        context_id: str | None = Field(default=None, description=_CONTEXT_ID_DESCRIPTION)

    class A2ACrewTool(BaseTool):
        args_schema: type[BaseModel] = A2ACrewInput

        def _run(self, task: str, task_id: str | None = None, context_id: str | None = None, **_: Any) -> str:
            return _ask_blocking(tool, task, task_id, context_id, None)

        async def _arun(
            self, task: str, task_id: str | None = None, context_id: str | None = None, **_: Any
        ) -> str:
            return await _ask(tool, task, task_id, context_id, None)

    return A2ACrewTool(name=name or tool.name, description=description or tool.description)
