"""A scripted, deterministic CrewAI LLM for offline tests, samples and benchmarks.

:class:`ScriptedLLM` answers each call with the next reply of its script: a string is a final
answer, a list of ``(tool_name, arguments)`` pairs is a native tool call, and a callable gets the
messages and returns either. Every call is counted (and, with ``journal=``, appended to a file,
so a test can count calls across processes that were killed).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import PrivateAttr

from crewai.llms.base_llm import BaseLLM

Reply = str | list[tuple[str, dict[str, Any]]] | Callable[[Any], Any]


class ScriptedLLM(BaseLLM):
    """Replies from a script, in order; the last reply repeats when the script runs out.

    ``usage`` is the (prompt, completion) token count reported for every call, so token usage
    is deterministic too.
    """

    _script: list[Any] = PrivateAttr(default_factory=list)
    _position: int = PrivateAttr(default=0)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)
    _journal: str | None = PrivateAttr(default=None)
    _usage: tuple[int, int] = PrivateAttr(default=(10, 5))
    _calls: int = PrivateAttr(default=0)

    def __init__(
        self,
        replies: Sequence[Reply],
        *,
        model: str = "scripted",
        usage: tuple[int, int] = (10, 5),
        journal: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model=model, **kwargs)
        self._script = list(replies)
        self._usage = usage
        self._journal = os.fspath(journal) if journal is not None else None

    @property
    def calls(self) -> int:
        """How many times this instance was called."""
        return self._calls

    def supports_function_calling(self) -> bool:
        return True

    def supports_stop_words(self) -> bool:
        return False

    def get_context_window_size(self) -> int:
        return 128_000

    def _next(self, messages: Any) -> Any:
        with self._lock:
            if not self._script:
                raise RuntimeError("ScriptedLLM has an empty script")
            index = min(self._position, len(self._script) - 1)
            self._position += 1
            self._calls += 1
            prompt, completion = self._usage
            self._track_token_usage_internal(
                {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                }
            )
            if self._journal:
                with open(self._journal, "a", encoding="utf-8") as file:
                    file.write(f"llm {self.model} {index}\n")
                    file.flush()
                    os.fsync(file.fileno())
        reply = self._script[index]
        if callable(reply):
            reply = reply(messages)
        if isinstance(reply, list):
            return [
                {
                    "id": f"call_{index}_{n}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(arguments, sort_keys=True)},
                }
                for n, (name, arguments) in enumerate(reply)
            ]
        return reply

    def call(  # type: ignore[override]
        self,
        messages: Any,
        tools: Any = None,
        callbacks: Any = None,
        available_functions: Any = None,
        from_task: Any = None,
        from_agent: Any = None,
        response_model: Any = None,
        **kwargs: Any,
    ) -> Any:
        return self._next(messages)

    async def acall(  # type: ignore[override]
        self,
        messages: Any,
        tools: Any = None,
        callbacks: Any = None,
        available_functions: Any = None,
        from_task: Any = None,
        from_agent: Any = None,
        response_model: Any = None,
        **kwargs: Any,
    ) -> Any:
        return self._next(messages)
