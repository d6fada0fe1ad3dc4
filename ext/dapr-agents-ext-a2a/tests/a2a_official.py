"""The official a2a-sdk client, pointed at an agent through a Dapr sidecar (test helper).

The card is read through ``/v1.0/invoke/<app-id>/method/.well-known/agent-card.json``; its
interfaces advertise the app's own address, which a caller outside the app cannot use, so the
JSON-RPC URL is replaced by the same invoke route, which is the one change the Dapr A2A blog makes
to a client.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import httpx
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory
from a2a.types import a2a_pb2


@contextlib.asynccontextmanager
async def official_client(
    base_url: str, *, streaming: bool = False, token: str | None = None, timeout: float = 120
) -> AsyncIterator[tuple[Client, a2a_pb2.AgentCard]]:
    headers = {"dapr-api-token": token} if token else {}
    async with httpx.AsyncClient(timeout=timeout, headers=headers) as http:
        card = await A2ACardResolver(http, base_url).get_agent_card()
        for interface in card.supported_interfaces:
            interface.url = base_url + "/a2a"
        client = ClientFactory(ClientConfig(httpx_client=http, streaming=streaming)).create(card)
        try:
            yield client, card
        finally:
            await client.close()


def user_message(
    text: str, *, message_id: str | None = None, task_id: str = "", context_id: str = ""
) -> a2a_pb2.Message:
    return a2a_pb2.Message(
        message_id=message_id or uuid.uuid4().hex,
        role=a2a_pb2.ROLE_USER,
        parts=[a2a_pb2.Part(text=text)],
        task_id=task_id,
        context_id=context_id,
    )


def request(message: a2a_pb2.Message, *, return_immediately: bool = False) -> a2a_pb2.SendMessageRequest:
    return a2a_pb2.SendMessageRequest(
        message=message, configuration=a2a_pb2.SendMessageConfiguration(return_immediately=return_immediately)
    )


async def send(client: Client, message: a2a_pb2.Message, **options: bool) -> list[a2a_pb2.StreamResponse]:
    return [event async for event in client.send_message(request(message, **options))]


def text_of(parts: object) -> str:
    return "".join(part.text for part in parts)  # type: ignore[attr-defined]
