"""OpenAI Agents SDK sessions in a Dapr state store, with dapr-agents-ext-openai-agents' DaprSession.

The session keeps an agent's conversation in the Dapr state store ``statestore``. The sample
shows:

1. two ``Runner.run`` turns on one session: the model receives the first turn with the second;
2. ``pop_item()`` to take back a turn and ask again, ``get_items(limit=...)`` to read the latest;
3. 20 concurrent writers appending to one session: every item lands exactly once;
4. durability across processes: run it again and the stored conversation continues.

The model is a real one when OPENAI_API_KEY is set, an offline scripted one otherwise.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    RunContextWrapper,
    RunHooks,
    Runner,
    set_tracing_disabled,
)
from dapr.aio.clients import DaprClient
from openai import AsyncOpenAI

# The one-line change from the SDK's session: `from agents.extensions.memory import DaprSession`.
from dapr_agents.ext.openai_agents import DaprSession

STORE = "statestore"
WRITERS = 20


def scripted_server() -> Any:
    from dapr_agents.ext.devsidecar import ScriptedChatServer, ScriptedReply

    # Each reply matches the last message only, so the same script serves every run of the app.
    return ScriptedChatServer(
        [
            ScriptedReply(
                "Nice to meet you, Ada. Lisbon is a great choice.", when="My name is Ada", repeat=True
            ),
            ScriptedReply("You are Ada, and you are going to Lisbon.", when="What is my name", repeat=True),
            ScriptedReply("Hotel Tejo has a room for 3 nights.", when="for 3 nights", repeat=True),
            ScriptedReply("Hotel Tejo has a room for 2 nights.", when="for 2 nights", repeat=True),
        ]
    ).start()


def chat_model() -> tuple[OpenAIChatCompletionsModel, Any]:
    """A real model with OPENAI_API_KEY (OPENAI_BASE_URL, OPENAI_MODEL honoured), else the scripted one."""
    if os.environ.get("OPENAI_API_KEY"):
        name = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
        print(f"model: {name} (OPENAI_API_KEY is set)")
        # AsyncOpenAI reads OPENAI_API_KEY and OPENAI_BASE_URL itself.
        return OpenAIChatCompletionsModel(model=name, openai_client=AsyncOpenAI()), None
    server = scripted_server()
    set_tracing_disabled(True)  # offline: no trace upload
    print("model: scripted (offline; set OPENAI_API_KEY for a real one)")
    client = AsyncOpenAI(base_url=server.base_url, api_key="scripted")
    return OpenAIChatCompletionsModel(model="scripted", openai_client=client), server


class InputCounter(RunHooks[Any]):
    """Counts the input items of the last model call: proof of what the session fed the model."""

    def __init__(self) -> None:
        self.items = 0

    async def on_llm_start(
        self,
        context: RunContextWrapper[Any],
        agent: Agent[Any],
        system_prompt: str | None,
        input_items: list[Any],
    ) -> None:
        self.items = len(input_items)


def text(item: Any) -> str:
    """The text of a user or assistant item as the session stores it."""
    content = item.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


async def conversation(agent: Agent[Any]) -> None:
    async with DaprSession.from_address("trip-chat", state_store_name=STORE) as session:
        stored = await session.get_items()
        print(f"session trip-chat: {len(stored)} items stored at start")
        turn = sum(item.get("role") == "user" for item in stored)

        async def ask(question: str) -> None:
            nonlocal turn
            turn += 1
            counter = InputCounter()
            result = await Runner.run(agent, question, session=session, hooks=counter)
            print(f"turn {turn}: {result.final_output} (items sent to the model: {counter.items})")

        if not stored:  # a continued session already knows: its next question relies on it
            await ask("My name is Ada and I am planning a trip to Lisbon.")
        await ask("What is my name, and where am I going?")
        await ask("Suggest a hotel for 3 nights.")

        # Ada meant 2 nights: take back the answer and the question, then ask again.
        answer, question = await session.pop_item(), await session.pop_item()
        print(f"pop_item took back: {text(question)!r} and {text(answer)!r}")
        turn -= 1
        await ask("Suggest a hotel for 2 nights.")

        for item in await session.get_items(limit=2):
            print(f"get_items(limit=2): {item.get('role')}: {text(item)}")


async def concurrent_writers() -> None:
    async with DaprClient() as client:
        # One session object per writer, as separate workers or processes would have.
        writers = [
            DaprSession("trip-notes", state_store_name=STORE, dapr_client=client) for _ in range(WRITERS)
        ]
        await writers[0].clear_session()  # a fresh start on every run keeps the count meaningful
        await asyncio.gather(
            *(
                writer.add_items([{"role": "user", "content": f"note {number:02d}"}])
                for number, writer in enumerate(writers)
            )
        )
        notes = [text(item) for item in await writers[0].get_items()]
        exactly_once = sorted(notes) == [f"note {number:02d}" for number in range(WRITERS)]
        print(f"{WRITERS} concurrent add_items: {len(notes)} items stored, each exactly once: {exactly_once}")


async def main() -> int:
    model, server = chat_model()
    try:
        agent = Agent(name="Travel assistant", instructions="Answer in one short sentence.", model=model)
        await conversation(agent)
        await concurrent_writers()
    finally:
        if server is not None:
            server.stop()
    print("run it again: session trip-chat continues where this run stopped")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
