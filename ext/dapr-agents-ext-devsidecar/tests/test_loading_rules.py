"""What makes a components folder refuse to load, and what is skipped, with daprd 1.18 as the
reference (probed): an unsupported type stops daprd (``couldn't find state store ...``) unless the
component sets ``ignoreErrors``; a document of an unknown kind (``kind: Componnet``) is skipped by
daprd without a word, which the dev sidecar refuses instead, so that a typo cannot silently drop
a component. Each refusal is one line naming the file, the component and what is supported.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from dapr.clients import DaprClient
from sidecars import component, components, endpoint_of, http

from dapr_agents.ext.devsidecar import DevSidecar
from dapr_agents.ext.devsidecar._components import DAPR_KINDS, ComponentError, load_components

TYPO = """\
apiVersion: dapr.io/v1alpha1
kind: Componnet
metadata:
  name: statestore
spec:
  type: state.in-memory
  version: v1
"""


def test_an_unknown_kind_is_an_error_naming_file_document_kind_and_the_kinds(tmp_path):
    folder = components(tmp_path / "components", component("pubsub", "pubsub.in-memory"), TYPO)
    with pytest.raises(ComponentError) as error:
        load_components([folder], app_id="myapp", env={})
    message = str(error.value)
    assert "\n" not in message
    assert str(folder / "components.yaml") in message
    assert "document 1 ('statestore')" in message
    assert "'Componnet'" in message
    for kind in DAPR_KINDS:
        assert kind in message


def test_other_dapr_kinds_and_other_api_groups_still_load(tmp_path):
    folder = components(
        tmp_path / "components",
        component("statestore", "state.in-memory"),
        "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: s\nspec: {}\n",
        "apiVersion: dapr.io/v1alpha1\nkind: HTTPEndpoint\nmetadata:\n  name: h\nspec: {}\n",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n",
    )
    assert [c.name for c in load_components([folder], app_id="myapp", env={})] == ["statestore"]


def test_an_unsupported_type_with_ignore_errors_is_skipped_like_daprd(tmp_path, dapr_sidecar_factory, caplog):
    folder = components(
        tmp_path / "components",
        component("statestore", "state.in-memory"),
        component("mystery", "bindings.nosuch").replace(
            "  version: v1\n", "  version: v1\n  ignoreErrors: true\n"
        ),
    )
    sidecar = dapr_sidecar_factory.start(folder, app_id="ignore-errors")
    names = [c["name"] for c in http(endpoint_of(sidecar), "GET", "/v1.0/metadata").json()["components"]]
    assert "statestore" in names
    assert "mystery" not in names
    if isinstance(sidecar, DevSidecar):
        assert any(
            "bindings.nosuch" in r.getMessage() and "ignoreErrors" in r.getMessage() for r in caplog.records
        )


def test_an_auth_secret_store_that_is_not_loaded_refuses_the_start(tmp_path):
    folder = components(
        tmp_path / "components",
        """\
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata:
          name: lockstore
        spec:
          type: lock.redis
          version: v1
          metadata:
          - name: redisHost
            secretKeyRef:
              name: redis
        auth:
          secretStore: vault
        """,
    )
    # daprd would keep the component waiting for 'vault' and start without it.
    with pytest.raises(ComponentError) as error:
        DevSidecar(app_id="myapp", resources_paths=[folder], api_token="").start()
    message = str(error.value)
    assert "'lockstore'" in message and "'vault'" in message and "secret stores: none" in message


def test_secret_stores_reading_from_each_other_in_a_circle_refuse_the_start(tmp_path):
    secrets = tmp_path / "s.json"
    secrets.write_text(json.dumps({"path": str(secrets)}))
    documents = []
    for name, other in (("first", "second"), ("second", "first")):
        documents.append(
            f"""\
            apiVersion: dapr.io/v1alpha1
            kind: Component
            metadata:
              name: {name}
            spec:
              type: secretstores.local.file
              version: v1
              metadata:
              - name: secretsFile
                secretKeyRef:
                  name: path
            auth:
              secretStore: {other}
            """
        )
    folder = components(tmp_path / "components", *documents)
    with pytest.raises(ComponentError) as error:
        DevSidecar(app_id="myapp", resources_paths=[folder], api_token="").start()
    assert "wait for each other" in str(error.value)


def test_a_secret_store_may_read_its_settings_from_another_one(tmp_path):
    inner = tmp_path / "inner.json"
    inner.write_text(json.dumps({"token": "t0ken"}))
    outer = tmp_path / "outer.json"
    outer.write_text(json.dumps({"path": str(inner)}))
    folder = components(
        tmp_path / "components",
        # Listed first, but opened after the store it reads from.
        """\
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata:
          name: inner
        spec:
          type: secretstores.local.file
          version: v1
          metadata:
          - name: secretsFile
            secretKeyRef:
              name: path
        auth:
          secretStore: outer
        """,
        component("outer", "secretstores.local.file", {"secretsFile": str(outer)}),
    )
    with (
        DevSidecar(app_id="myapp", resources_paths=[folder], api_token="") as sidecar,
        sidecar.endpoint().sdk_configured(),
        DaprClient() as client,
    ):
        assert client.get_secret("inner", "token").secret == {"token": "t0ken"}


def test_secret_values_never_reach_the_log(tmp_path, caplog):
    secrets = tmp_path / "s.json"
    secrets.write_text(
        json.dumps({"db": {"password": "hunter2-very-secret"}, "a:b": "dup-secret", "a": {"b": "x"}})
    )
    folder = components(
        tmp_path / "components",
        component("vault", "secretstores.local.file", {"secretsFile": str(secrets)}),
        """\
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata:
          name: statestore
        spec:
          type: state.in-memory
          version: v1
          metadata:
          - name: password
            secretKeyRef:
              name: db:password
              key: missing-key
          - name: other
            secretKeyRef:
              name: absent
          - name: resolved
            secretKeyRef:
              name: db:password
        auth:
          secretStore: vault
        """,
    )
    caplog.set_level("DEBUG")
    with DevSidecar(app_id="myapp", resources_paths=[folder], api_token="") as sidecar:
        assert "hunter2" not in repr(sidecar.components)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "missing-key" in logged and "absent" in logged  # the problems are reported by name
    assert "hunter2" not in logged and "dup-secret" not in logged


CLI = [sys.executable, "-m", "dapr_devsidecar", "run"]


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (TYPO, ["'Componnet'", "'statestore'"]),
        (component("orders", "state.mongodb"), ["'orders'", "state.mongodb", "state.in-memory"]),
    ],
    ids=["unknown-kind", "unknown-type"],
)
def test_the_cli_refuses_with_one_line_and_no_traceback(tmp_path, document, expected):
    folder = components(tmp_path / "components", document)
    result = subprocess.run(
        [*CLI, "--app-id", "bad", "--resources-path", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert str(folder / "components.yaml") in lines[0]
    for text in expected:
        assert text in lines[0]


def test_a_bad_secrets_file_refuses_the_start_without_showing_its_content(tmp_path):
    secrets = tmp_path / "s.json"
    secrets.write_text('{"password": "hunter2" oops}')
    folder = components(
        tmp_path / "components", component("vault", "secretstores.local.file", {"secretsFile": str(secrets)})
    )
    with pytest.raises(ComponentError) as error:
        DevSidecar(app_id="myapp", resources_paths=[folder], api_token="").start()
    assert "'vault'" in str(error.value) and "not valid JSON" in str(error.value)
    assert "hunter2" not in str(error.value)


def test_the_metadata_api_reports_each_components_version_as_written(tmp_path, dapr_sidecar_factory):
    # daprd lists spec.version untouched (pkg/api/universal/metadata.go), while it loads "", "v0"
    # and "V1" as the first version; the Dapr SDK's metadata example prints "version=" for a
    # component without one.
    folder = components(
        tmp_path / "components",
        component("written", "state.in-memory"),
        component("missing", "state.in-memory").replace("  version: v1\n", ""),
        component("upper", "pubsub.in-memory").replace("  version: v1\n", "  version: V1\n"),
        component("zero", "conversation.echo").replace("  version: v1\n", "  version: v0\n"),
    )
    sidecar = dapr_sidecar_factory.start(folder, app_id="versions-as-written")
    listed = {c["name"]: c for c in http(endpoint_of(sidecar), "GET", "/v1.0/metadata").json()["components"]}
    # The JSON leaves an empty version out (omitempty); the gRPC answer has "".
    assert {name: listed[name].get("version") for name in ("written", "missing", "upper", "zero")} == {
        "written": "v1",
        "missing": None,
        "upper": "V1",
        "zero": "v0",
    }
    with endpoint_of(sidecar).sdk_configured(), DaprClient() as client:
        versions = {c.name: c.version for c in client.get_metadata().registered_components}
    assert versions["missing"] == ""
    assert versions["upper"] == "V1"
