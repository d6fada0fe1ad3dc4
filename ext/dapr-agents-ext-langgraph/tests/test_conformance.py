"""LangGraph's own conformance suite (langgraph-checkpoint-conformance 0.0.2, 81 tests) on
every state backend of the dev sidecar, through the async methods and through the sync ones.

Each of the suite's test functions is one pytest case, so a failure names the capability and
the test; ``test_validate_reports_full_conformance`` runs the suite's own entry point
(``validate``) once per backend and checks the report it prints.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.spec.test_copy_thread import ALL_COPY_THREAD_TESTS
from langgraph.checkpoint.conformance.spec.test_delete_for_runs import ALL_DELETE_FOR_RUNS_TESTS
from langgraph.checkpoint.conformance.spec.test_delete_thread import ALL_DELETE_THREAD_TESTS
from langgraph.checkpoint.conformance.spec.test_get_tuple import ALL_GET_TUPLE_TESTS
from langgraph.checkpoint.conformance.spec.test_list import ALL_LIST_TESTS
from langgraph.checkpoint.conformance.spec.test_prune import ALL_PRUNE_TESTS
from langgraph.checkpoint.conformance.spec.test_put import ALL_PUT_TESTS
from langgraph.checkpoint.conformance.spec.test_put_writes import ALL_PUT_WRITES_TESTS

from dapr_agents.ext.devsidecar.testing import SidecarEndpoint
from dapr_agents.ext.langgraph import DaprCheckpointer

SUITE = {
    "put": ALL_PUT_TESTS,
    "put_writes": ALL_PUT_WRITES_TESTS,
    "get_tuple": ALL_GET_TUPLE_TESTS,
    "list": ALL_LIST_TESTS,
    "delete_thread": ALL_DELETE_THREAD_TESTS,
    "delete_for_runs": ALL_DELETE_FOR_RUNS_TESTS,
    "copy_thread": ALL_COPY_THREAD_TESTS,
    "prune": ALL_PRUNE_TESTS,
}
CASES = [(capability, test) for capability, tests in SUITE.items() for test in tests]


def test_the_suite_has_81_tests() -> None:
    assert len(CASES) == 81


@pytest.mark.parametrize(("capability", "test"), CASES, ids=[f"{c}::{t.__name__}" for c, t in CASES])
async def test_conformance(capability: str, test: Any, any_saver: Any) -> None:
    await test(any_saver)


async def test_validate_reports_full_conformance(sdk: SidecarEndpoint, prefix: str, capsys: Any) -> None:
    @checkpointer_test(name=f"DaprCheckpointer[{prefix}]")
    async def factory() -> AsyncIterator[DaprCheckpointer]:
        saver = DaprCheckpointer("statestore", prefix)
        yield saver
        await saver.aclose()

    report = await validate(factory)
    report.print_report()
    passed = sum(r.tests_passed for r in report.results.values())
    failures = [f for r in report.results.values() for f in r.failures]
    assert failures == []
    assert passed == 81
    assert report.conformance_level() == "FULL"
