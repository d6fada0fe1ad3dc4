"""serve_a2a against the official a2a-sdk client, through Dapr service invocation: on the dev
sidecar and on real daprd (``DAPR_TEST_SIDECAR=daprd``)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Callable

import httpx
import pytest
from a2a.types import a2a_pb2
from a2a_official import official_client, request, send, text_of, user_message
from conftest import Apps, wait_until

pytestmark = pytest.mark.starts_sidecars


async def test_card_and_a_task_through_the_sidecar(make_apps: Callable[..., Apps]) -> None:
    apps = make_apps()
    async with official_client(apps.base_url) as (client, card):
        assert card.name == "Logistics Agent"
        assert card.description == "Finds shipments and ships orders."
        assert [skill.id for skill in card.skills] == ["shipments"]
        assert card.capabilities.streaming
        [event] = await send(client, user_message("echo parcel 42"))
        task = event.task
        assert task.status.state == a2a_pb2.TASK_STATE_COMPLETED
        assert text_of(task.artifacts[0].parts) == "echo: parcel 42"
        assert task.context_id
        assert [m.role for m in task.history] == [a2a_pb2.ROLE_USER, a2a_pb2.ROLE_AGENT]
        # tasks/get reads the same task back from its workflow instance.
        again = await client.get_task(a2a_pb2.GetTaskRequest(id=task.id))
        assert again.status.state == a2a_pb2.TASK_STATE_COMPLETED
        assert text_of(again.artifacts[0].parts) == "echo: parcel 42"
        # A message in the same context keeps it (the context is the agent's memory key).
        [second] = await send(client, user_message("echo more", context_id=task.context_id))
        assert second.task.context_id == task.context_id and second.task.id != task.id
    contexts = {run["context"] for run in apps.server.runs()}
    assert contexts == {task.context_id}


async def test_a2a_0_3_method_names(make_apps: Callable[..., Apps]) -> None:
    """The 0.3 JSON-RPC names (message/send, tasks/get) on the same endpoint, through the sidecar."""
    apps = make_apps()
    async with httpx.AsyncClient(timeout=60) as http:
        message = {
            "role": "user",
            "messageId": "m-03",
            "kind": "message",
            "parts": [{"kind": "text", "text": "echo old"}],
        }
        sent = await http.post(
            apps.base_url + "/a2a",
            json={"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": message}},
        )
        result = sent.json()["result"]
        assert result["status"]["state"] == "completed", sent.text
        assert result["artifacts"][0]["parts"][0]["text"] == "echo: old"
        got = await http.post(
            apps.base_url + "/a2a",
            json={"jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": {"id": result["id"]}},
        )
        assert got.json()["result"]["status"]["state"] == "completed"


async def test_a_retried_message_is_one_task(make_apps: Callable[..., Apps]) -> None:
    apps = make_apps()
    async with official_client(apps.base_url) as (client, _):
        message = user_message("echo once", message_id="retry-me", context_id="ctx-retry")
        [first] = await send(client, message)
        [second] = await send(client, message)
        assert first.task.id == second.task.id
        assert second.task.status.state == a2a_pb2.TASK_STATE_COMPLETED
    assert [run["text"] for run in apps.server.runs()] == ["echo once"]


async def test_input_required_then_the_reply(make_apps: Callable[..., Apps]) -> None:
    apps = make_apps()
    async with official_client(apps.base_url) as (client, _):
        [event] = await send(client, user_message("ask"))
        task = event.task
        assert task.status.state == a2a_pb2.TASK_STATE_INPUT_REQUIRED
        assert text_of(task.status.message.parts) == "Which city should it ship to?"
        reply = user_message("Lisbon", message_id="reply-1", task_id=task.id, context_id=task.context_id)
        [answered] = await send(client, reply)
        assert answered.task.id == task.id
        assert answered.task.status.state == a2a_pb2.TASK_STATE_COMPLETED
        assert text_of(answered.task.artifacts[0].parts) == "shipping to Lisbon"
        # The same reply again (a client retry): the task does not run a third time.
        [again] = await send(client, reply)
        assert again.task.status.state == a2a_pb2.TASK_STATE_COMPLETED
    assert [run["turn"] for run in apps.server.runs()] == [0, 1]


async def test_streaming(make_apps: Callable[..., Apps]) -> None:
    apps = make_apps()
    async with official_client(apps.base_url, streaming=True) as (client, _):
        events = [event async for event in client.send_message(request(user_message("echo streamed")))]
        assert events[0].HasField("task")
        [artifact] = [e.artifact_update for e in events if e.HasField("artifact_update")]
        assert artifact.task_id == events[0].task.id
        assert text_of(artifact.artifact.parts) == "echo: streamed"
        assert events[-1].status_update.status.state == a2a_pb2.TASK_STATE_COMPLETED


async def test_stream_events_arrive_while_the_task_works_and_resubscribe(
    make_apps: Callable[..., Apps],
) -> None:
    apps = make_apps()
    # A bound for the failure on a sidecar that buffers, not a timing assertion.
    async with official_client(apps.base_url, streaming=True, timeout=30) as (client, _):
        events = client.send_message(request(user_message("wait stream")))
        first = await anext(events)
        # The first event arrives while the agent is still working: it waits for the release file.
        assert first.task.status.state in (a2a_pb2.TASK_STATE_SUBMITTED, a2a_pb2.TASK_STATE_WORKING)
        task_id = first.task.id
        wait_until(lambda: list(apps.server.workdir.glob("started-*")), what="the agent started")
        resubscribed = client.subscribe(a2a_pb2.SubscribeToTaskRequest(id=task_id))
        snapshot = await anext(resubscribed)
        assert snapshot.task.id == task_id
        (apps.server.workdir / "release").touch()
        rest = [event async for event in events]
        [artifact] = [e.artifact_update for e in rest if e.HasField("artifact_update")]
        assert text_of(artifact.artifact.parts) == "done: stream"
        assert rest[-1].status_update.status.state == a2a_pb2.TASK_STATE_COMPLETED
        followed = [event async for event in resubscribed]
        assert followed[-1].status_update.status.state == a2a_pb2.TASK_STATE_COMPLETED


async def test_cancel(make_apps: Callable[..., Apps]) -> None:
    apps = make_apps()
    async with official_client(apps.base_url) as (client, _):
        [event] = await send(client, user_message("wait forever"), return_immediately=True)
        task_id = event.task.id
        wait_until(lambda: list(apps.server.workdir.glob("started-*")), what="the agent started")
        canceled = await client.cancel_task(a2a_pb2.CancelTaskRequest(id=task_id))
        assert canceled.status.state == a2a_pb2.TASK_STATE_CANCELED
        got = await client.get_task(a2a_pb2.GetTaskRequest(id=task_id))
        assert got.status.state == a2a_pb2.TASK_STATE_CANCELED
        (apps.server.workdir / "release").touch()  # the activity finishes; the task stays canceled
        await asyncio.sleep(0)
        with pytest.raises(Exception, match=r"(?i)cancel"):
            await client.cancel_task(a2a_pb2.CancelTaskRequest(id=task_id))


async def test_a_failing_agent_fails_the_task(make_apps: Callable[..., Apps]) -> None:
    apps = make_apps()
    async with official_client(apps.base_url) as (client, _):
        [event] = await send(client, user_message("fail"))
        assert event.task.status.state == a2a_pb2.TASK_STATE_FAILED
        assert "the warehouse is on fire" in text_of(event.task.status.message.parts)


async def test_the_task_survives_a_sigkill_of_the_server_app(make_apps: Callable[..., Apps]) -> None:
    apps = make_apps()
    async with official_client(apps.base_url) as (client, _):
        [event] = await send(client, user_message("wait crash"), return_immediately=True)
        task_id = event.task.id
        wait_until(lambda: list(apps.server.workdir.glob("started-*")), what="the agent started")
        apps.server.kill()
        (apps.server.workdir / "release").touch()
        apps.server.start()

        def finished() -> a2a_pb2.Task | None:
            task = asyncio.run_coroutine_threadsafe(
                client.get_task(a2a_pb2.GetTaskRequest(id=task_id)), loop
            ).result()
            return task if task.status.state == a2a_pb2.TASK_STATE_COMPLETED else None

        loop = asyncio.get_running_loop()
        task = await asyncio.to_thread(wait_until, finished, 180, "the task completing after the restart")
        assert text_of(task.artifacts[0].parts) == "done: crash"
        assert task.history[0].parts[0].text == "wait crash"


def test_app_api_token(make_apps: Callable[..., Apps]) -> None:
    """With APP_API_TOKEN the app refuses callers that bypass the sidecar; the sidecar gets in."""
    apps = make_apps(app_token="app-secret")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{apps.server.port}/.well-known/agent-card.json", timeout=10)
    assert refused.value.code == 401
    with urllib.request.urlopen(apps.base_url + "/.well-known/agent-card.json", timeout=30) as answer:
        assert json.loads(answer.read())["name"] == "Logistics Agent"
