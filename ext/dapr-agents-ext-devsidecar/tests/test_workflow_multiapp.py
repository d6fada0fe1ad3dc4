"""Two apps, each with its own sidecar, sharing one durable actor state store: activities and
child workflows routed with ``app_id=`` run on the other app's worker (dapr-agents' agent teams
call each other this way). With ``DAPR_TEST_SIDECAR=daprd`` the two sidecars are real daprds
sharing a SQLite actor store, where the routing goes through placement and actor calls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf
import pytest

from dapr_agents.ext.devsidecar import DevSidecar
from dapr_agents.ext.devsidecar.testing import write_components

pytestmark = pytest.mark.starts_sidecars


@pytest.fixture
def two_apps(
    tmp_path: Path, dapr_state_backend: str, request: pytest.FixtureRequest, dapr_sidecar_factory: Any
) -> Iterator[tuple[DevSidecar, DevSidecar]]:
    if dapr_state_backend == "in-memory":
        pytest.skip("apps can only share a durable store (SQLite or Redis)")
    backend = "sqlite" if dapr_state_backend == "external" else dapr_state_backend
    redis_address = request.getfixturevalue("redis_server").address if backend == "redis" else None
    folder = write_components(
        tmp_path / "components",
        state_backend=backend,
        sqlite_path=tmp_path / "shared.db",
        redis_address=redis_address,
    )
    yield (
        dapr_sidecar_factory.start(folder, app_id="orchestrator"),
        dapr_sidecar_factory.start(folder, app_id="specialist"),
    )


def test_activities_and_child_workflows_cross_apps(two_apps: tuple[DevSidecar, DevSidecar]) -> None:
    orchestrator_sidecar, specialist_sidecar = two_apps
    seen: list[str] = []

    orchestrator = wf.WorkflowRuntime(host="127.0.0.1", port=str(orchestrator_sidecar.grpc_port))
    specialist = wf.WorkflowRuntime(host="127.0.0.1", port=str(specialist_sidecar.grpc_port))

    def translate(ctx: Any, text: str) -> str:
        seen.append(f"translate:{text}")
        return text.upper()

    def review(ctx: wf.DaprWorkflowContext, text: str) -> Any:
        translated = yield ctx.call_activity("translate", input=text)
        return f"reviewed {translated}"

    def lead(ctx: wf.DaprWorkflowContext, text: str) -> Any:
        direct = yield ctx.call_activity("translate", input=text, app_id="specialist")
        nested = yield ctx.call_child_workflow("review", input=text, app_id="specialist")
        return [direct, nested]

    specialist.register_activity(translate, name="translate")
    specialist.register_workflow(review, name="review")
    orchestrator.register_workflow(lead, name="lead")
    specialist.start()
    orchestrator.start()
    try:
        client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(orchestrator_sidecar.grpc_port))
        instance = client.schedule_new_workflow("lead", input="hola", instance_id="team-1")
        state = client.wait_for_workflow_completion(instance, timeout_in_seconds=60)
        assert state is not None
        assert state.runtime_status == wf.WorkflowStatus.COMPLETED, state.failure_details
        assert state.serialized_output == '["HOLA", "reviewed HOLA"]'
        assert seen == ["translate:hola", "translate:hola"]
        specialist_client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(specialist_sidecar.grpc_port))
        child = specialist_client.get_workflow_state(f"{instance}:0002")
        assert child is not None and child.runtime_status == wf.WorkflowStatus.COMPLETED
    finally:
        orchestrator.shutdown()
        specialist.shutdown()


def test_recursive_terminate_reaches_a_child_in_another_app(two_apps: tuple[DevSidecar, DevSidecar]) -> None:
    import threading
    import time

    orchestrator_sidecar, specialist_sidecar = two_apps
    orchestrator = wf.WorkflowRuntime(host="127.0.0.1", port=str(orchestrator_sidecar.grpc_port))
    specialist = wf.WorkflowRuntime(host="127.0.0.1", port=str(specialist_sidecar.grpc_port))
    started = threading.Event()

    def note_start(ctx: Any, _: Any) -> None:
        started.set()

    def waits_forever(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
        yield ctx.call_activity("note_start")
        yield ctx.wait_for_external_event("never")

    def lead(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
        yield ctx.call_child_workflow("waits_forever", app_id="specialist", instance_id="remote-child")

    specialist.register_activity(note_start, name="note_start")
    specialist.register_workflow(waits_forever, name="waits_forever")
    orchestrator.register_workflow(lead, name="lead")
    specialist.start()
    orchestrator.start()
    try:
        client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(orchestrator_sidecar.grpc_port))
        remote = wf.DaprWorkflowClient(host="127.0.0.1", port=str(specialist_sidecar.grpc_port))
        client.schedule_new_workflow("lead", instance_id="parent-1")
        assert started.wait(30)
        client.terminate_workflow("parent-1", output="stop", recursive=True)
        deadline = time.monotonic() + 30
        state = remote.get_workflow_state("remote-child")
        while time.monotonic() < deadline and (
            state is None or state.runtime_status != wf.WorkflowStatus.TERMINATED
        ):
            time.sleep(0.1)
            state = remote.get_workflow_state("remote-child")
        assert state is not None and state.runtime_status == wf.WorkflowStatus.TERMINATED
    finally:
        orchestrator.shutdown()
        specialist.shutdown()
