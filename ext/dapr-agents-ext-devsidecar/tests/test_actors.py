"""Actors over the wire: the actor API (HTTP, gRPC and the SDK's ``dapr.actor`` client), calls to
an HTTP actor app as daprd makes them, actor state in the actor state store under daprd's keys,
timers, durable reminders (also across a SIGKILL of the sidecar) and calls between sidecars: the
same on the dev sidecar and on real daprd (``DAPR_TEST_SIDECAR=daprd``, with the session's
placement and scheduler).

Every app id and actor type is unique: daprd's placement and scheduler serve the whole session.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from apps import HttpApp, Received, Reply, unique_id, wait_until
from apps import http as app_http
from dapr.proto.runtime.v1 import actors_pb2 as dapr_pb2
from helpers import rpc_fails
from sidecars import endpoint_of, http, raw_stub

from dapr_agents.ext.devsidecar.testing import free_port, write_components

pytestmark = pytest.mark.starts_sidecars


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_components(tmp_path / "components", state_backend="sqlite", pubsub=None)


def actor_type() -> str:
    return "Counter" + uuid.uuid4().hex[:8]


class ActorApp(HttpApp):
    """An HTTP app hosting one actor type: its ``/dapr/config``, 200 with a JSON echo for every
    actor call; ``failing`` methods answer 500."""

    def __init__(
        self,
        hosted: str,
        idle: str = "1h",
        reentrancy: bool = True,
        extra: Callable[[Received], Reply | None] | None = None,
    ) -> None:
        self.hosted = hosted
        config = {
            "entities": [hosted],
            "actorIdleTimeout": idle,
            "drainOngoingCallTimeout": "1s",
            # daprd takes a type's idle timeout and reentrancy from its entry alone.
            "entitiesConfig": [
                {"entities": [hosted], "actorIdleTimeout": idle, "reentrancy": {"enabled": reentrancy}}
            ],
        }

        def answer(request: Received) -> Reply:
            if request.path == "/dapr/config":
                return Reply(200, json.dumps(config).encode(), [("Content-Type", "application/json")])
            if extra is not None and (special := extra(request)) is not None:
                return special
            if request.path.startswith("/actors/"):
                if request.path.endswith("/method/fail"):
                    return Reply(500, b"boom", [("Content-Type", "text/plain")])
                document = {"method": request.method, "path": request.path, "body": request.body.decode()}
                return Reply(200, json.dumps(document).encode(), [("Content-Type", "application/json")])
            return Reply(404)

        super().__init__(answer)

    def calls(self, actor_id: str, suffix: str) -> list[Received]:
        return self.requests_to(f"/actors/{self.hosted}/{actor_id}/{suffix}")


def start(factory: Any, folder: Path, app: ActorApp | None = None, **kwargs: Any) -> Any:
    if app is not None:
        kwargs["app_port"] = app.port
    sidecar = factory.start(folder, app_id=kwargs.pop("app_id", None) or unique_id("actors"), **kwargs)
    if app is not None:
        app.wait_for("/dapr/config")
    return sidecar


def call(endpoint: Any, hosted: str, actor_id: str, method: str, body: str = "{}", verb: str = "POST") -> Any:
    return http(endpoint, verb, f"/v1.0/actors/{hosted}/{actor_id}/method/{method}", body)


def call_until_placed(endpoint: Any, hosted: str, actor_id: str, method: str = "hello") -> Any:
    """daprd learns the app's types from placement a moment after it starts: wait for that."""
    answers: list[Any] = []

    def placed() -> bool:
        answers.append(call(endpoint, hosted, actor_id, method))
        return answers[-1].status == 200

    wait_until(placed, what=f"actor type {hosted} to be placed")
    return answers[-1]


def test_calls_reach_the_app_as_daprd_makes_them(dapr_sidecar_factory, folder):
    hosted = actor_type()
    with ActorApp(hosted) as app:
        endpoint = endpoint_of(start(dapr_sidecar_factory, folder, app))
        answer = call_until_placed(endpoint, hosted, "a1")
        assert json.loads(answer.body)["method"] == "PUT"  # any verb reaches the app as PUT
        answer = call(endpoint, hosted, "a1", "greet", '{"name": "x"}', verb="GET")
        assert answer.status == 200
        assert answer.content_type == "application/json"
        assert json.loads(answer.body) == {
            "method": "PUT",
            "path": f"/actors/{hosted}/a1/method/greet",
            "body": '{"name": "x"}',
        }
        [greet] = app.calls("a1", "method/greet")
        assert greet.header("Dapr-Reentrancy-Id")  # reentrancy is on for this type
        # The app's failure: daprd's ERR_ACTOR_INVOKE_METHOD with the app's status and body.
        failed = call(endpoint, hosted, "a1", "fail")
        assert failed.status == 500
        assert failed.json() == {
            "errorCode": "ERR_ACTOR_INVOKE_METHOD",
            "message": "error invoke actor method: error from actor service: (500) boom",
        }
        # Over gRPC: InvokeActor answers the app's body.
        with raw_stub(endpoint) as stub:
            reply = stub.InvokeActor(
                dapr_pb2.InvokeActorRequest(actor_type=hosted, actor_id="a2", method="rpc", data=b"[1]")
            )
            assert json.loads(reply.data)["body"] == "[1]"
            assert json.loads(reply.data)["path"] == f"/actors/{hosted}/a2/method/rpc"


def test_one_turn_at_a_time_per_actor_and_reentrant_calls(dapr_sidecar_factory, folder):
    hosted = actor_type()
    events: list[str] = []
    lock = threading.Lock()
    sidecar_http: list[str] = []

    def answer(request: Received) -> Reply | None:
        if request.path.endswith("/method/slow"):
            name = request.body.decode()
            with lock:
                events.append("start " + name)
            time.sleep(0.3)
            with lock:
                events.append("end " + name)
            return Reply(200, b"{}", [("Content-Type", "application/json")])
        if request.path.endswith("/method/outer"):
            # The actor calls itself with the chain's id: daprd lets it into its own turn.
            headers = {"Dapr-Reentrancy-Id": request.header("Dapr-Reentrancy-Id") or ""}
            inner = app_http(f"{sidecar_http[0]}/v1.0/actors/{hosted}/r1/method/inner", "PUT", b"{}", headers)
            return Reply(200, inner.body, [("Content-Type", "application/json")])
        return None

    with ActorApp(hosted, extra=answer) as app:
        sidecar = start(dapr_sidecar_factory, folder, app)
        endpoint = endpoint_of(sidecar)
        sidecar_http.append(endpoint.http_endpoint)
        call_until_placed(endpoint, hosted, "r1")
        with futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda n: call(endpoint, hosted, "r1", "slow", str(n)), range(3)))
        assert [a.status for a in answers] == [200, 200, 200]
        # Never two calls in the actor at once: each start is followed by its own end.
        assert len(events) == 6
        for start_event, end_event in zip(events[::2], events[1::2], strict=True):
            assert start_event.startswith("start ") and end_event == "end " + start_event[len("start ") :]
        outer = call(endpoint, hosted, "r1", "outer")
        assert outer.status == 200, outer.body
        assert json.loads(outer.body)["path"] == f"/actors/{hosted}/r1/method/inner"
        [inner] = app.calls("r1", "method/inner")
        [outer_call] = app.calls("r1", "method/outer")
        assert inner.header("Dapr-Reentrancy-Id") == outer_call.header("Dapr-Reentrancy-Id")


def test_an_unknown_actor_type_is_refused(dapr_sidecar_factory, folder):
    hosted = actor_type()
    with ActorApp(hosted) as app:
        endpoint = endpoint_of(start(dapr_sidecar_factory, folder, app))
        call_until_placed(endpoint, hosted, "a1")
        nobody = "Nobody" + uuid.uuid4().hex[:8]
        answer = call(endpoint, nobody, "x", "m")
        assert (answer.status, answer.json()) == (
            500,
            {
                "errorCode": "ERR_ACTOR_INVOKE_METHOD",
                "message": "error invoke actor method: failed to lookup actor: api error: code = "
                f"FailedPrecondition desc = did not find address for actor '{nobody}/x'",
            },
        )


def test_state_in_the_actor_store_under_daprds_keys(dapr_sidecar_factory, folder):
    hosted = actor_type()
    with ActorApp(hosted) as app:
        sidecar = start(dapr_sidecar_factory, folder, app)
        endpoint = endpoint_of(sidecar)
        base = f"/v1.0/actors/{hosted}/s1"
        call_until_placed(endpoint, hosted, "s1")  # active: a transaction needs the actor here
        ops = [
            {"operation": "upsert", "request": {"key": "k1", "value": {"b": 1, "a": [1, "<x>"]}}},
            {"operation": "upsert", "request": {"key": "k2", "value": "text"}},
        ]
        assert http(endpoint, "POST", base + "/state", json.dumps(ops)).status == 204
        got = http(endpoint, "GET", base + "/state/k1")
        assert got.status == 200
        assert got.body == b'{"a":[1,"\\u003cx\\u003e"],"b":1}'  # re-encoded as Go does
        assert http(endpoint, "GET", base + "/state/k2").body == b'"text"'
        assert http(endpoint, "GET", base + "/state/missing").status == 204
        delete = [{"operation": "delete", "request": {"key": "k2"}}]
        assert http(endpoint, "PUT", base + "/state", json.dumps(delete)).status == 204
        assert http(endpoint, "GET", base + "/state/k2").status == 204
        # The store holds <app id>||<type>||<id>||<key>, where daprd on the same store reads it.
        with sqlite3.connect(folder / "state.db") as db:
            keys = {row[0] for row in db.execute("SELECT key FROM state")}
        assert f"{sidecar.app_id}||{hosted}||s1||k1" in keys
        assert f"{sidecar.app_id}||{hosted}||s1||k2" not in keys
        # An actor that is not active here: daprd's ERR_ACTOR_INSTANCE_MISSING.
        missing = http(endpoint, "POST", f"/v1.0/actors/{hosted}/never/state", json.dumps(ops))
        assert (missing.status, missing.json()["errorCode"]) == (400, "ERR_ACTOR_INSTANCE_MISSING")
        # Over gRPC.
        with raw_stub(endpoint) as stub:
            reply = stub.GetActorState(
                dapr_pb2.GetActorStateRequest(actor_type=hosted, actor_id="s1", key="k1")
            )
            assert reply.data == b'{"a":[1,"\\u003cx\\u003e"],"b":1}'


def test_timers_and_reminders_call_the_app(dapr_sidecar_factory, folder):
    hosted = actor_type()
    with ActorApp(hosted) as app:
        endpoint = endpoint_of(start(dapr_sidecar_factory, folder, app))
        base = f"/v1.0/actors/{hosted}/t1"
        call_until_placed(endpoint, hosted, "t1")
        timer = {"dueTime": "0s", "period": "R2/PT1S", "callback": "tick", "data": {"n": 1}}
        assert http(endpoint, "POST", base + "/timers/tm", json.dumps(timer)).status == 204
        first, _second = app.wait_for(f"/actors/{hosted}/t1/method/timer/tm", count=2)
        assert first.method == "PUT"
        assert first.header("Content-Type") == "application/json"
        assert json.loads(first.body) == {
            "data": {"n": 1},
            "callback": "tick",
            "dueTime": "0s",
            "period": "R2/PT1S",
        }
        reminder = {"dueTime": "1s", "period": "R2/PT1S", "data": {"v": "x"}}
        assert http(endpoint, "POST", base + "/reminders/rm", json.dumps(reminder)).status == 204
        got = http(endpoint, "GET", base + "/reminders/rm")
        assert got.status == 200
        assert got.json()["actorType"] == hosted and got.json()["data"] == {"v": "x"}
        first, _second = app.wait_for(f"/actors/{hosted}/t1/method/remind/rm", count=2)
        # The scheduler triggers a reminder with its data only: empty dueTime and period.
        assert json.loads(first.body) == {"data": {"v": "x"}, "dueTime": "", "period": ""}
        wait_until(
            lambda: http(endpoint, "GET", base + "/reminders/rm").status == 404, what="the reminder to end"
        )
        assert http(endpoint, "GET", base + "/reminders/rm").json() == {
            "errorCode": "ERR_ACTOR_REMINDER_NOT_FOUND",
            "message": "actor reminder not found: rm",
        }
        # daprd's refusals.
        bad = http(endpoint, "POST", base + "/reminders/r2", json.dumps({"dueTime": "1s", "period": "P1M"}))
        assert (bad.status, bad.json()) == (
            500,
            {
                "errorCode": "ERR_ACTOR_REMINDER_CREATE",
                "message": "error creating actor reminder: unsupported period format: P1M",
            },
        )
        other = http(endpoint, "POST", "/v1.0/actors/Nobody/x/reminders/r", json.dumps({"dueTime": "1s"}))
        assert (other.status, other.json()["errorCode"]) == (403, "ERR_ACTOR_REMINDER_NON_HOSTED")
        # A deleted reminder does not fire.
        later = {"dueTime": "1h", "data": 1}
        assert http(endpoint, "POST", base + "/reminders/later", json.dumps(later)).status == 204
        assert http(endpoint, "DELETE", base + "/reminders/later").status == 204
        assert http(endpoint, "GET", base + "/reminders/later").status == 404
        # gRPC: a reminder registered there fires too.
        with raw_stub(endpoint) as stub:
            stub.RegisterActorReminder(
                dapr_pb2.RegisterActorReminderRequest(
                    actor_type=hosted, actor_id="t1", name="g", due_time="0s", data=b'"raw"'
                )
            )
            [fired] = app.wait_for(f"/actors/{hosted}/t1/method/remind/g")
            # gRPC data bytes are JSON-encoded (base64) before they are stored.
            assert json.loads(fired.body)["data"] == "InJhdyI="
            with rpc_fails() as failure:
                stub.RegisterActorReminder(
                    dapr_pb2.RegisterActorReminderRequest(actor_type="Nobody", actor_id="x", name="g")
                )
            assert failure.code == grpc.StatusCode.PERMISSION_DENIED


def test_a_failed_reminder_is_retried_as_the_scheduler_does(dapr_sidecar_factory, folder):
    from dapr.proto.common.v1 import common_pb2

    hosted = actor_type()
    failures = {"retried": 2, "dropped": 99}

    def answer(request: Received) -> Reply | None:
        name = request.path.rsplit("/", 1)[-1]
        if "/method/remind/" in request.path and failures.get(name, 0) > 0:
            failures[name] -= 1
            return Reply(500, b"not now")
        return None

    with ActorApp(hosted, extra=answer) as app:
        endpoint = endpoint_of(start(dapr_sidecar_factory, folder, app))
        base = f"/v1.0/actors/{hosted}/f1"
        call_until_placed(endpoint, hosted, "f1")
        # The default failure policy: retried (3 times, a second apart) until the app takes it.
        assert (
            http(endpoint, "POST", base + "/reminders/retried", '{"dueTime": "0s", "data": 1}').status == 204
        )
        wait_until(
            lambda: http(endpoint, "GET", base + "/reminders/retried").status == 404,
            what="the reminder to end",
        )
        assert len(app.calls("f1", "method/remind/retried")) == 3  # two failures, then the success
        # A drop policy (given over gRPC): one failed call and the reminder is gone.
        with raw_stub(endpoint) as stub:
            stub.RegisterActorReminder(
                dapr_pb2.RegisterActorReminderRequest(
                    actor_type=hosted,
                    actor_id="f1",
                    name="dropped",
                    due_time="0s",
                    failure_policy=common_pb2.JobFailurePolicy(drop=common_pb2.JobFailurePolicyDrop()),
                )
            )
        wait_until(lambda: http(endpoint, "GET", base + "/reminders/dropped").status == 404, what="the drop")
        assert len(app.calls("f1", "method/remind/dropped")) == 1


def test_an_idle_actor_is_deactivated(dapr_sidecar_factory, folder):
    hosted = actor_type()
    with ActorApp(hosted, idle="1s") as app:
        endpoint = endpoint_of(start(dapr_sidecar_factory, folder, app))
        call_until_placed(endpoint, hosted, "i1")
        [deactivation] = app.wait_for(f"/actors/{hosted}/i1")
        assert deactivation.method == "DELETE"


def test_the_sdk_actor_client_and_another_sidecar(dapr_sidecar_factory, folder):
    from dapr.actor import ActorId, ActorProxy

    hosted = actor_type()
    with ActorApp(hosted) as app:
        host = endpoint_of(start(dapr_sidecar_factory, folder, app))
        call_until_placed(host, hosted, "c1")
        # A sidecar without an app: the call goes to the sidecar whose app hosts the type.
        caller = endpoint_of(start(dapr_sidecar_factory, folder))
        call_until_placed(caller, hosted, "c1")

        async def through_sdk() -> bytes:
            proxy = ActorProxy.create(hosted, ActorId("c2"))
            return await proxy.invoke_method("viaSdk", b'{"x": 1}')

        with caller.sdk_configured():
            body = asyncio.run(through_sdk())
        assert json.loads(body)["path"] == f"/actors/{hosted}/c2/method/viaSdk"
        assert json.loads(body)["body"] == '{"x": 1}'
        assert app.calls("c2", "method/viaSdk")


def test_a_pending_reminder_fires_after_the_sidecar_is_killed_and_restarted(dapr_sidecar_factory, folder):
    hosted = actor_type()
    with ActorApp(hosted) as app:
        sidecar = dapr_sidecar_factory.start(
            folder,
            app_id=unique_id("actors-crash"),
            subprocess=True,
            app_port=app.port,
            grpc_port=free_port(),
            http_port=free_port(),
        )
        try:
            endpoint = endpoint_of(sidecar)
            call_until_placed(endpoint, hosted, "k1")
            reminder = {"dueTime": "4s", "data": "after"}
            assert (
                http(
                    endpoint, "POST", f"/v1.0/actors/{hosted}/k1/reminders/survivor", json.dumps(reminder)
                ).status
                == 204
            )
            sidecar.kill()  # the reminder is pending; the sidecar dies without a word
            assert app.calls("k1", "method/remind/survivor") == []
            sidecar.start()  # the same ports, the same store (daprd: the same scheduler)
            [fired] = app.wait_for(f"/actors/{hosted}/k1/method/remind/survivor", timeout=60)
            assert json.loads(fired.body) == {"data": "after", "dueTime": "", "period": ""}
        finally:
            sidecar.stop()
