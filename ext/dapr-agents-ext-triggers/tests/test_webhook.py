"""webhook_trigger on the FastAPI app of runner.serve(), with a real agent on the dev sidecar."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from dapr_agents.ext.triggers import (
    TriggerConfigError,
    WebhookHostError,
    WebhookRequest,
    signature,
    webhook_trigger,
)
from tests.conftest import Harness, task_requests

SECRET = "s3cr3t-value-never-logged"


def marker() -> str:
    return f"w{uuid.uuid4().hex[:10]}"


def served(harness: Harness, **kwargs: Any) -> tuple[Any, TestClient]:
    agent = harness.agent()
    trigger = webhook_trigger(agent, path="/hooks/orders", secret=SECRET, **kwargs)
    app = FastAPI()
    harness.runner().serve(agent, app=app)
    return trigger, TestClient(app)


def post(client: TestClient, body: bytes, *, secret: str | None = SECRET, **headers: str) -> Any:
    if secret is not None:
        headers["X-Signature-256"] = signature(secret, body)
    return client.post("/hooks/orders", content=body, headers={"content-type": "application/json", **headers})


def test_a_signed_request_starts_a_run_and_answers_202_with_the_instance_id(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    trigger, client = served(harness)
    tag = marker()
    answer = post(client, json.dumps({"task": f"{tag} ship it"}).encode())
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["duplicate"] is False
    harness.instances.append(body["instance_id"])
    (state,) = harness.wait_finished(harness.instances)
    assert state.runtime_status.name == "COMPLETED"
    assert task_requests(harness.llm, tag) == [f"{tag} ship it"]
    assert SECRET not in caplog.text and SECRET not in repr(trigger)


def test_an_idempotency_key_maps_to_one_instance(harness: Harness) -> None:
    trigger, client = served(harness)
    tag = marker()
    body = json.dumps({"task": f"{tag} once"}).encode()
    first = post(client, body, **{"Idempotency-Key": "order-9"})
    assert first.status_code == 202
    assert first.json() == {"instance_id": trigger.instance_id_for("order-9"), "duplicate": False}
    harness.instances.append(first.json()["instance_id"])
    harness.wait_finished(harness.instances)
    for _ in range(2):  # after the run finished, too
        again = post(client, body, **{"Idempotency-Key": "order-9"})
        assert again.status_code == 202
        assert again.json() == {"instance_id": trigger.instance_id_for("order-9"), "duplicate": True}
    assert task_requests(harness.llm, tag) == [f"{tag} once"]


def test_without_a_key_every_request_is_a_new_run(harness: Harness) -> None:
    agent = harness.agent()
    webhook_trigger(agent, path="/hooks/open")  # unsigned: behind an authenticating proxy
    app = FastAPI()
    harness.runner().serve(agent, app=app)
    client = TestClient(app)
    tag = marker()
    answers = [client.post("/hooks/open", json={"task": f"{tag} open"}) for _ in range(2)]
    assert [a.status_code for a in answers] == [202, 202]
    ids = [a.json()["instance_id"] for a in answers]
    assert ids[0] != ids[1]
    harness.instances += ids
    harness.wait_finished(ids)
    assert task_requests(harness.llm, tag) == [f"{tag} open"] * 2


@pytest.mark.parametrize(
    ("headers", "secret"),
    [({}, None), ({}, "wrong-secret"), ({"X-Signature-256": "sha256=zz"}, None)],
    ids=["missing", "wrong-key", "garbage"],
)
def test_a_bad_or_missing_signature_is_401(
    harness: Harness, headers: dict[str, str], secret: str | None
) -> None:
    trigger, client = served(harness)
    answer = post(client, b'{"task": "x"}', secret=secret, **headers)
    assert answer.status_code == 401
    assert "X-Signature-256" in answer.json()["error"]
    assert trigger.stats.started == 0


def test_a_body_over_the_limit_is_413(harness: Harness) -> None:
    trigger, client = served(harness, max_body_bytes=100)
    answer = post(client, json.dumps({"task": "x" * 200}).encode())
    assert answer.status_code == 413
    assert trigger.stats.started == 0


def test_mapper_errors_are_422_and_none_skips(harness: Harness) -> None:
    def mapper(request: WebhookRequest) -> Any:
        if request.data.get("ping"):
            return None
        raise ValueError("unknown event kind")

    _, client = served(harness, mapper=mapper)
    assert post(client, b'{"ping": true}').json() == {"instance_id": None, "skipped": True}
    answer = post(client, b'{"kind": "zap"}')
    assert answer.status_code == 422
    assert answer.json()["error"] == "mapper raised ValueError: unknown event kind"


def test_without_an_app_hosting_fails_and_names_serve(harness: Harness) -> None:
    agent = harness.agent()
    webhook_trigger(agent, path="/hooks/x")
    with pytest.raises(RuntimeError, match=r"runner\.serve\(agent\)") as info:
        harness.runner().subscribe(agent)
    assert isinstance(info.value.__cause__, WebhookHostError)


def test_registration_after_hosting_fails(harness: Harness) -> None:
    agent = harness.agent()
    harness.runner().serve(agent, app=FastAPI())
    with pytest.raises(RuntimeError):
        webhook_trigger(agent, path="/late")


def test_shutdown_removes_the_route(harness: Harness) -> None:
    agent = harness.agent()
    webhook_trigger(agent, path="/hooks/orders")
    app = FastAPI()
    runner = harness.runner()
    runner.serve(agent, app=app)
    assert "/hooks/orders" in {getattr(r, "path", None) for r in app.router.routes}
    closers = runner._activation_closers[id(agent)]
    runner.shutdown(agent)
    assert "/hooks/orders" not in {getattr(r, "path", None) for r in app.router.routes}
    for close in closers:
        close()  # idempotent


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"path": "hooks"}, "path='hooks'"),
        ({"path": "/h", "secret": ""}, "secret must be a non-empty"),
        ({"path": "/h", "signature_header": "bad header"}, "signature_header='bad header'"),
        ({"path": "/h", "max_body_bytes": 0}, "max_body_bytes=0"),
    ],
)
def test_bad_arguments_name_the_value(harness: Harness, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TriggerConfigError, match=message):
        webhook_trigger(harness.agent(), **kwargs)
