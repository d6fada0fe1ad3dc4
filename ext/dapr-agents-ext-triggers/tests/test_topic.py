"""topic_trigger end to end: a real DurableAgent hosted by an AgentRunner on the dev sidecar,
events published over the wire, runs counted at the scripted LLM."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import pytest
from dapr.clients.grpc._state import Concurrency, StateOptions

from dapr_agents.ext.triggers import Dedupe, TopicEvent, TriggerConfigError, topic_trigger
from dapr_agents.ext.triggers._ids import digest
from dapr_agents.ext.triggers._ledger import Ledger
from tests.conftest import Harness, run, task_requests, wait_until


def marker() -> str:
    return f"m{uuid.uuid4().hex[:10]}"


def test_each_event_starts_one_run_with_a_deterministic_instance_id(harness: Harness) -> None:
    agent = harness.agent()
    trigger = topic_trigger(agent, pubsub="agent-pubsub", topic="orders")
    runner = harness.runner()
    runner.subscribe(agent)
    tag = marker()
    harness.publish("orders", {"task": f"{tag} first"}, event_id="evt-1")
    harness.publish("orders", f"{tag} second", event_id="evt-2")
    harness.instances += [trigger.instance_id_for("evt-1"), trigger.instance_id_for("evt-2")]
    states = harness.wait_finished(harness.instances)
    assert [s.runtime_status.name for s in states] == ["COMPLETED", "COMPLETED"]
    assert sorted(task_requests(harness.llm, tag)) == [f"{tag} first", f"{tag} second"]
    assert json.loads(states[0].serialized_output)["content"] == f"echo: {tag} first"
    assert trigger.stats.started == 2


def test_the_same_event_published_three_times_runs_once(harness: Harness) -> None:
    agent = harness.agent()
    trigger = topic_trigger(agent, pubsub="agent-pubsub", topic="orders")
    runner = harness.runner()
    runner.subscribe(agent)
    tag = marker()
    harness.publish("orders", {"task": f"{tag} once"}, event_id="order-42")
    iid = trigger.instance_id_for("order-42")
    harness.wait_finished([iid])
    # After the run finished Dapr would accept the same instance id again: only the ledger stops it.
    harness.publish("orders", {"task": f"{tag} once"}, event_id="order-42")
    harness.publish("orders", {"task": f"{tag} once"}, event_id="order-42")
    wait_until(lambda: trigger.stats.started + trigger.stats.duplicates == 3, what="three deliveries handled")
    time.sleep(0.5)  # a second run, had one been started, would have reached the LLM by now
    assert task_requests(harness.llm, tag) == [f"{tag} once"]
    assert (trigger.stats.started, trigger.stats.duplicates) == (1, 2)


def test_a_key_function_dedupes_different_event_ids(harness: Harness) -> None:
    agent = harness.agent()
    trigger = topic_trigger(
        agent,
        pubsub="agent-pubsub",
        topic="orders",
        dedupe=Dedupe(key=lambda event: str(event.data["order"])),
        mapper=lambda event: f"{event.data['tag']} order {event.data['order']}",
    )
    harness.runner().subscribe(agent)
    tag = marker()
    for _ in range(3):  # three publishes, three CloudEvent ids, one order
        harness.publish("orders", {"tag": tag, "order": 7})
    wait_until(lambda: trigger.stats.received == 3, what="three deliveries")
    harness.instances.append(trigger.instance_id_for("7"))
    harness.wait_finished(harness.instances)
    assert task_requests(harness.llm, tag) == [f"{tag} order 7"]


def test_a_retry_redelivery_does_not_start_a_second_run(harness: Harness) -> None:
    """The sidecar's inbound timeout (400 ms, see conftest) expires while a slow mapper works, so
    it redelivers (RETRY) the event whose run the first attempt then schedules."""
    calls: list[str] = []

    def slow_mapper(event: TopicEvent) -> str:
        calls.append(event.id)
        time.sleep(0.8)
        return str(event.data)

    agent = harness.agent()
    trigger = topic_trigger(agent, pubsub="retry-pubsub", topic="jobs", mapper=slow_mapper)
    harness.runner().subscribe(agent)
    tag = marker()
    harness.publish("jobs", f"{tag} slow", event_id="job-1", pubsub="retry-pubsub")
    wait_until(lambda: len(calls) >= 2, what="a redelivery")
    harness.instances.append(trigger.instance_id_for("job-1"))
    harness.wait_finished(harness.instances)
    wait_until(lambda: trigger.stats.received == len(calls) and trigger.stats.duplicates >= 1, what="dedupe")
    assert set(calls) == {"job-1"}
    assert task_requests(harness.llm, tag) == [f"{tag} slow"]
    assert trigger.stats.started == 1


def test_two_consumers_of_one_ledger_claim_each_key_once(harness: Harness) -> None:
    """Replicas of an app (each with its own sidecar) may both get an event; they share the ledger,
    and its first-write claim lets exactly one of them schedule the run."""
    namespace = f"ledger-test:{marker()}"
    keys = [f"job-{i}" for i in range(5)]
    outcomes: dict[tuple[int, str], Any] = {}
    with harness.client() as client:
        consumers = [Ledger(client, Dedupe(), namespace) for _ in range(2)]

        def claim_all(n: int) -> None:
            for key in keys:
                outcomes[(n, key)] = consumers[n].claim(key, f"instance-{key}")

        threads = [threading.Thread(target=claim_all, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        for key in keys:
            claims = [outcomes[(n, key)] for n in range(2)]
            assert sorted(c.outcome for c in claims) == ["busy", "claimed"], key
            winner = next(n for n in range(2) if claims[n].outcome == "claimed")
            consumers[winner].mark_started(key, claims[winner])
            # A later delivery to the other replica finds the run started.
            assert consumers[1 - winner].claim(key, f"instance-{key}").outcome == "started"


def test_a_second_trigger_on_one_topic_is_refused_with_the_fix(harness: Harness) -> None:
    """daprd accepts any number of streams to one topic, each a consumer of its own: two triggers
    would both get every event (pubsub.in-memory) or split the events between them (pubsub.redis,
    whose consumer group is the app id). So hosting refuses the second trigger on a topic in one
    app, before it subscribes, and says what to do; once the first is shut down the topic is free."""
    agent = harness.agent()
    topic_trigger(agent, pubsub="agent-pubsub", topic="shared")
    topic_trigger(agent, pubsub="agent-pubsub", topic="shared")
    with pytest.raises(RuntimeError, match="one topic_trigger per topic") as refused:
        harness.runner().workflow(agent)
    assert "already consumes topic 'shared' of 'agent-pubsub'" in str(refused.value)
    wait_until(lambda: harness.subscribers("shared") == 0, what="the first trigger rolled back")

    # Two agents of one app: the second agent's trigger is refused while the first is hosted.
    first, second = harness.agent(), harness.agent()
    topic_trigger(first, pubsub="agent-pubsub", topic="shared")
    topic_trigger(second, pubsub="agent-pubsub", topic="shared")
    runner = harness.runner()
    runner.workflow(first)
    with pytest.raises(RuntimeError, match="one topic_trigger per topic"):
        harness.runner().workflow(second)
    assert harness.subscribers("shared") == 1
    runner.shutdown(first)
    wait_until(lambda: harness.subscribers("shared") == 0, what="the first agent's trigger closed")
    harness.runner().workflow(second)
    assert harness.subscribers("shared") == 1


def test_an_abandoned_claim_is_taken_over_after_its_lease(harness: Harness) -> None:
    """A consumer that crashed between claim and schedule leaves a claim; the next delivery
    waits for its lease to run out, takes it over and starts the run once."""
    agent = harness.agent()
    trigger = topic_trigger(agent, pubsub="agent-pubsub", topic="orders", dedupe=Dedupe(lease=1.0))
    iid = trigger.instance_id_for("evt-crashed")
    key = f"dapr-agents-triggers:{agent.name}:topic:agent-pubsub_orders-{digest('agent-pubsub.orders', 10)}:evt-crashed"
    record = {
        "status": "claimed",
        "instance_id": iid,
        "owner": "dead",
        "claimed_at": time.time(),
        "lease_until": time.time() + 1.0,
    }
    with harness.client() as client:
        client.save_state(
            "agent-workflow",
            key,
            json.dumps(record),
            options=StateOptions(concurrency=Concurrency.first_write),
        )
    harness.runner().subscribe(agent)
    tag = marker()
    started = time.monotonic()
    harness.publish("orders", f"{tag} orphan", event_id="evt-crashed")
    harness.instances.append(iid)
    harness.wait_finished(harness.instances)
    assert time.monotonic() - started >= 0.5  # it waited for the lease
    assert task_requests(harness.llm, tag) == [f"{tag} orphan"]
    with harness.client() as client:
        stored = json.loads(client.get_state("agent-workflow", key).data)
    assert stored["status"] == "started" and stored["instance_id"] == iid


def test_filter_and_mapper_errors_go_to_the_dead_letter_topic_with_the_reason(harness: Harness) -> None:
    from dapr.clients.grpc.subscription import Subscription

    def mapper(event: TopicEvent) -> Any:
        if event.data.get("bad"):
            raise ValueError("no customer id")
        if event.data.get("skip"):
            return None
        return {"task": event.data["task"]}

    def keep(event: TopicEvent) -> bool:
        if event.data.get("explode"):
            raise KeyError("region")
        return event.data.get("region") != "test"

    agent = harness.agent()
    trigger = topic_trigger(
        agent, pubsub="agent-pubsub", topic="in", mapper=mapper, filter=keep, dead_letter_topic="in-dead"
    )
    letters: list[dict[str, Any]] = []
    with harness.client() as client:
        # The SDK's subscription start race (1.18.3): mark the stream active before it starts.
        dead = Subscription(client._stub, "agent-pubsub", "in-dead")
        dead._set_stream_active()
        dead.start()

        def read_dead_letters() -> None:
            # In a thread: pubsub.in-memory hands over the next event only after an ack.
            for _ in range(2):
                message = dead.next_message()
                dead.respond_success(message)
                data = message.data()  # the SDK decodes JSON data already
                letters.append(json.loads(data) if isinstance(data, (str, bytes)) else data)

        reader = threading.Thread(target=read_dead_letters, daemon=True)
        reader.start()
        try:
            harness.runner().subscribe(agent)
            tag = marker()
            harness.publish("in", {"bad": True}, event_id="e-bad")
            harness.publish("in", {"explode": True}, event_id="e-explode")
            harness.publish("in", {"region": "test", "task": "x"}, event_id="e-filtered")
            harness.publish("in", {"skip": True}, event_id="e-skip")
            harness.publish("in", {"task": f"{tag} good"}, event_id="e-good")
            reader.join(20)
        finally:
            dead.close()
    harness.instances.append(trigger.instance_id_for("e-good"))
    harness.wait_finished(harness.instances)
    by_id = {letter["event"]["id"]: letter for letter in letters}
    assert by_id["e-bad"]["stage"] == "mapper"
    assert by_id["e-bad"]["reason"] == "mapper raised ValueError: no customer id"
    assert by_id["e-bad"]["event"]["data"] == {"bad": True}
    assert by_id["e-explode"]["stage"] == "filter"
    assert "KeyError" in by_id["e-explode"]["reason"]
    assert task_requests(harness.llm, tag) == [f"{tag} good"]
    assert (trigger.stats.dead_lettered, trigger.stats.skipped, trigger.stats.started) == (2, 2, 1)


def test_max_concurrency_holds_back_acknowledgements(harness: Harness) -> None:
    """With max_concurrency=2 and runs that block in a tool, the third event is delivered but
    neither scheduled nor acknowledged until a run ends, so the fourth stays at the sidecar."""
    from dapr_agents import tool
    from dapr_agents.ext.devsidecar import ScriptedReply, ScriptedToolCall

    gate = threading.Event()

    @tool
    def hold() -> str:
        """Wait for the test."""
        gate.wait(30)
        return "released"

    tag = marker()
    harness.llm.add(ScriptedReply(tool_calls=[ScriptedToolCall("Hold", {})], when=f"{tag} ", repeat=True))
    agent = harness.agent(tools=[hold])
    trigger = topic_trigger(agent, pubsub="agent-pubsub", topic="work", max_concurrency=2)
    harness.runner().subscribe(agent)

    def publish_all() -> None:
        # pubsub.in-memory hands an event over only when the subscriber is free, so the
        # publisher itself feels the back-pressure: publish from a thread.
        for i in range(4):
            harness.publish("work", f"{tag} job {i}", event_id=f"w-{i}")

    publisher = threading.Thread(target=publish_all, daemon=True)
    publisher.start()
    try:
        wait_until(
            lambda: trigger.stats.started == 2 and trigger.stats.received == 3, what="two runs, one held"
        )
        time.sleep(1.0)
        assert (trigger.stats.started, trigger.stats.received) == (2, 3)
        assert publisher.is_alive()  # the fourth publish waits for the third acknowledgement
    finally:
        gate.set()
    wait_until(lambda: trigger.stats.started == 4, what="all four runs")
    publisher.join(10)
    harness.instances += [trigger.instance_id_for(f"w-{i}") for i in range(4)]
    states = harness.wait_finished(harness.instances)
    assert {s.runtime_status.name for s in states} == {"COMPLETED"}


def test_shutdown_closes_the_subscription_and_its_threads(harness: Harness) -> None:
    agent = harness.agent()
    topic_trigger(agent, pubsub="agent-pubsub", topic="t1")
    topic_trigger(agent, pubsub="agent-pubsub", topic="t2")
    runner = harness.runner()
    before = set(threading.enumerate())
    runner.workflow(agent)
    started = set(threading.enumerate()) - before
    assert {t.name for t in started} >= {"topic-trigger-agent-pubsub-t1", "topic-trigger-agent-pubsub-t2"}
    # Each stream also has a gRPC request-writer thread ("Thread-N (_run)").
    assert len([t for t in started if t.name.endswith("(_run)")]) >= 3  # the runtime's + ours
    assert harness.subscribers("t1") == 1 and harness.subscribers("t2") == 1
    closers = runner._activation_closers[id(agent)]
    assert len(closers) == 2
    runner.shutdown(agent)
    wait_until(lambda: harness.subscribers("t1") == 0 and harness.subscribers("t2") == 0, what="unsubscribed")
    for close in closers:  # idempotent, never raises
        close()
        close()
    # Every thread hosting started has ended (dapr-agents' own asyncio helper thread aside),
    # including the gRPC writer threads that the SDK's Subscription would leave behind.
    wait_until(
        lambda: not [t for t in started if t.is_alive() and not t.name.startswith("asyncio_")],
        what="the threads started by hosting to end",
    )


def test_a_failing_later_activation_rolls_the_subscription_back(harness: Harness) -> None:
    agent = harness.agent()
    topic_trigger(agent, pubsub="agent-pubsub", topic="rollback")

    def broken(ctx: Any) -> None:
        raise RuntimeError("cannot reach the queue")

    agent.add_activation(broken)
    runner = harness.runner()
    with pytest.raises(RuntimeError, match=r"broken.*cannot reach the queue"):
        runner.workflow(agent)
    wait_until(lambda: harness.subscribers("rollback") == 0, what="the first trigger's subscription closed")
    assert not [t for t in threading.enumerate() if t.name.startswith("topic-trigger-agent-pubsub-rollback")]


def test_an_unknown_pubsub_fails_hosting_with_the_name(harness: Harness) -> None:
    agent = harness.agent()
    topic_trigger(agent, pubsub="no-such-pubsub", topic="x")
    with pytest.raises(RuntimeError, match="no-such-pubsub"):
        harness.runner().workflow(agent)


def test_registration_after_hosting_fails_as_dapr_agents_does(harness: Harness) -> None:
    agent = harness.agent()
    harness.runner().workflow(agent)
    with pytest.raises(RuntimeError):
        topic_trigger(agent, pubsub="agent-pubsub", topic="late")
    assert harness.subscribers("late") == 0


def test_the_factory_does_no_io(harness: Harness) -> None:
    agent = harness.agent()
    topic_trigger(agent, pubsub="agent-pubsub", topic="lazy")
    assert harness.subscribers("lazy") == 0  # nothing until the agent is hosted


def test_run_hosts_the_trigger_too(harness: Harness) -> None:
    agent = harness.agent()
    topic_trigger(agent, pubsub="agent-pubsub", topic="viarun")
    runner = harness.runner()
    tag = marker()
    out = run(runner.run(agent, payload={"task": f"{tag} direct"}, wait=True, timeout_in_seconds=30))
    assert f"{tag} direct" in out
    assert harness.subscribers("viarun") == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pubsub": "", "topic": "t"}, "pubsub=''"),
        ({"pubsub": "p", "topic": "t", "max_concurrency": 0}, "max_concurrency=0"),
        ({"pubsub": "p", "topic": "t", "mapper": "upper"}, "mapper='upper' is not callable"),
        (
            {"pubsub": "p", "topic": "t", "dead_letter_topic": "t"},
            "dead_letter_topic='t' is the trigger's own topic",
        ),
        ({"pubsub": "p", "topic": "t", "dedupe": "yes"}, "dedupe='yes'"),
    ],
)
def test_bad_arguments_name_the_value(harness: Harness, kwargs: dict[str, Any], message: str) -> None:
    agent = harness.agent()
    with pytest.raises(TriggerConfigError, match=message.replace("(", r"\(")):
        topic_trigger(agent, **kwargs)
    assert agent.activations == [] or list(agent.activations) == []
