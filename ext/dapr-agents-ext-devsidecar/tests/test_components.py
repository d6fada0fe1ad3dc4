"""Component and resiliency YAML loading, checked against daprd 1.18's loader, plus the key
layouts the state stores leave behind (SQLite rows, Redis hashes), read back directly.

The loader tests call ``_components`` on YAML written to ``tmp_path``; the layout tests run
in-process sidecars and talk to them with the official ``DaprClient`` over gRPC.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from dapr.clients import DaprClient
from dapr.clients.grpc._state import Concurrency, StateOptions
from helpers import rpc_fails

from dapr_agents.ext.devsidecar._components import (
    ComponentError,
    load_components,
    load_resources,
    parse_documents,
)
from dapr_agents.ext.devsidecar._sidecar import DevSidecar

EXPECTED_SUPPORTED_TYPES = (
    "state.in-memory",
    "state.sqlite",
    "state.redis",
    "pubsub.in-memory",
    "conversation.echo",
    "conversation.openai",
    "secretstores.local.file",
    "secretstores.local.env",
    "configuration.redis",
    "lock.redis",
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def component(
    name: str,
    type_: str = "state.in-memory",
    *,
    version: str | None = "v1",
    metadata: str = "[]",
    scopes: list[str] | None = None,
    api_version: str = "dapr.io/v1alpha1",
    kind: str = "Component",
) -> str:
    """One component document; ``metadata`` is the YAML of ``spec.metadata`` (4-space indented)."""
    lines = [
        f"apiVersion: {api_version}",
        f"kind: {kind}",
        "metadata:",
        f"  name: {name}",
        "spec:",
        f"  type: {type_}",
    ]
    if version is not None:
        lines.append(f"  version: {version}")
    if metadata.strip().startswith("["):
        lines.append(f"  metadata: {metadata.strip()}")
    else:
        lines.append("  metadata:")
        lines.extend("  " + line for line in textwrap.dedent(metadata).strip("\n").splitlines())
    if scopes:
        lines.append("scopes:")
        lines.extend(f"  - {scope}" for scope in scopes)
    return "\n".join(lines) + "\n"


def metadata_of(
    tmp_path: Path, items: str, *, app_id: str = "myapp", env: dict[str, str] | None = None
) -> dict[str, str]:
    """Load one component with the given ``spec.metadata`` items and return its metadata."""
    write(tmp_path / "c.yaml", component("store", metadata=items))
    (loaded,) = load_components([tmp_path], app_id=app_id, env=env if env is not None else {})
    return dict(loaded.metadata)


# -- documents, kinds, files ------------------------------------------------------------------


def test_a_file_with_several_documents_yields_every_component_in_file_order(tmp_path):
    path = write(
        tmp_path / "all.yaml",
        component("first", "state.sqlite", metadata="- name: connectionString\n  value: a.db")
        + "---\n"
        + "# an empty document between two separators is skipped\n"
        + "---\n"
        + component("second", "pubsub.in-memory")
        + "---\n"
        + component("third", "conversation.echo"),
    )
    loaded = load_components([tmp_path], app_id="myapp", env={})
    assert [(c.name, c.type, c.version) for c in loaded] == [
        ("first", "state.sqlite", "v1"),
        ("second", "pubsub.in-memory", "v1"),
        ("third", "conversation.echo", "v1"),
    ]
    assert {c.source for c in loaded} == {str(path)}
    assert loaded[0].metadata == {"connectionString": "a.db"}
    assert loaded[0].category == "state"


def test_documents_of_other_kinds_are_skipped_even_when_they_would_be_invalid_components(tmp_path):
    write(
        tmp_path / "mixed.yaml",
        """
        apiVersion: dapr.io/v1alpha1
        kind: Subscription
        metadata:
          name: orders-sub
        spec:
          topic: orders
          route: /orders
          pubsubname: pubsub
        ---
        apiVersion: dapr.io/v1alpha1
        kind: Configuration
        metadata:
          name: appconfig
        spec:
          tracing:
            samplingRate: "1"
        ---
        apiVersion: dapr.io/v1alpha1
        kind: HTTPEndpoint
        metadata:
          name: external
        spec:
          type: bindings.not-a-thing
        ---
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata:
          name: statestore
        spec:
          type: state.in-memory
          version: v1
        """,
    )
    resources = load_resources([tmp_path], app_id="myapp", env={})
    assert [c.name for c in resources.components] == ["statestore"]
    assert resources.inbound == {} and resources.outbound == {}


def test_documents_of_another_api_version_are_skipped(tmp_path):
    write(
        tmp_path / "versions.yaml",
        component("future", "state.mongodb", api_version="dapr.io/v2alpha1")
        + "---\n"
        + component("k8s", "state.cassandra", api_version="apps/v1")
        + "---\n"
        + component("kept", "state.in-memory"),
    )
    assert [c.name for c in load_components([tmp_path], app_id="myapp", env={})] == ["kept"]


def test_only_yaml_files_directly_inside_a_folder_are_read(tmp_path):
    write(tmp_path / "a.yaml", component("from-yaml"))
    write(tmp_path / "b.yml", component("from-yml", "pubsub.in-memory"))
    write(tmp_path / "notes.txt", component("from-txt", "state.mongodb"))
    write(tmp_path / "nested" / "deep.yaml", component("from-subfolder", "state.mongodb"))
    names = [c.name for c in load_components([tmp_path], app_id="myapp", env={})]
    assert names == ["from-yaml", "from-yml"]


def test_several_paths_and_a_single_file_can_be_given(tmp_path):
    write(tmp_path / "one" / "a.yaml", component("alpha"))
    single = write(tmp_path / "two" / "b.yaml", component("beta", "pubsub.in-memory"))
    write(tmp_path / "two" / "c.yaml", component("gamma", "conversation.echo"))
    names = [c.name for c in load_components([tmp_path / "one", single], app_id="myapp", env={})]
    assert names == ["alpha", "beta"]


def test_parse_documents_reads_already_parsed_documents(tmp_path):
    documents = [
        None,
        {
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": "cache", "namespace": "team-a"},
            "spec": {
                "type": "state.in-memory",
                "version": "v1",
                "initTimeout": "10s",
                "ignoreErrors": True,
                "metadata": [{"name": "owner", "value": "{appID}"}],
            },
        },
        {"apiVersion": "dapr.io/v1alpha1", "kind": "Subscription", "metadata": {"name": "s"}},
    ]
    resources = parse_documents(documents, source="inline.yaml", app_id="billing", env={})
    (cache,) = resources.components
    assert cache.name == "cache"
    assert cache.source == "inline.yaml"
    assert cache.namespace == "team-a"
    assert cache.init_timeout == "10s"
    assert cache.ignore_errors is True
    assert cache.metadata == {"owner": "billing"}


def test_a_document_that_is_not_a_mapping_is_an_error_naming_the_file(tmp_path):
    path = write(tmp_path / "list.yaml", "- just\n- a list\n")
    with pytest.raises(ComponentError) as error:
        load_components([tmp_path], app_id="myapp", env={})
    assert str(path) in str(error.value)
    assert "not a mapping" in str(error.value)


# -- scopes and duplicate names ---------------------------------------------------------------


def test_scopes_keep_a_component_only_for_the_listed_apps(tmp_path):
    write(tmp_path / "a.yaml", component("for-both", scopes=["myapp", "other"]))
    write(tmp_path / "b.yaml", component("for-other", "pubsub.in-memory", scopes=["other"]))
    write(tmp_path / "c.yaml", component("for-everyone", "conversation.echo"))
    mine = load_components([tmp_path], app_id="myapp", env={})
    assert [c.name for c in mine] == ["for-both", "for-everyone"]
    assert mine[0].scopes == ("myapp", "other")
    assert mine[1].scopes == ()
    theirs = load_components([tmp_path], app_id="other", env={})
    assert [c.name for c in theirs] == ["for-both", "for-other", "for-everyone"]
    nobody = load_components([tmp_path], app_id="third", env={})
    assert [c.name for c in nobody] == ["for-everyone"]


def test_a_scoped_out_component_is_not_validated_for_this_app(tmp_path):
    # daprd only creates the components it loads; an unknown type scoped to another app is fine.
    write(tmp_path / "a.yaml", component("theirs", "state.mongodb", scopes=["other"]))
    assert load_components([tmp_path], app_id="myapp", env={}) == []


def test_duplicate_names_in_two_files_are_an_error_naming_both_files(tmp_path):
    first = write(tmp_path / "a-state.yaml", component("statestore", "state.in-memory"))
    second = write(
        tmp_path / "b-state.yaml",
        component("statestore", "state.sqlite", metadata="- name: connectionString\n  value: x.db"),
    )
    with pytest.raises(ComponentError) as error:
        load_components([tmp_path], app_id="myapp", env={})
    message = str(error.value)
    assert str(first) in message
    assert str(second) in message
    assert "'statestore'" in message


def test_duplicate_names_in_one_file_are_an_error(tmp_path):
    path = write(tmp_path / "twice.yaml", component("dup") + "---\n" + component("dup", "pubsub.in-memory"))
    with pytest.raises(ComponentError) as error:
        load_components([tmp_path], app_id="myapp", env={})
    assert str(error.value).count(str(path)) == 2
    assert "'dup'" in str(error.value)


def test_a_scoped_out_twin_after_the_visible_component_still_clashes(tmp_path):
    visible = write(tmp_path / "a.yaml", component("statestore"))
    twin = write(tmp_path / "b.yaml", component("statestore", "state.sqlite", scopes=["someone-else"]))
    with pytest.raises(ComponentError) as error:
        load_components([tmp_path], app_id="myapp", env={})
    assert str(visible) in str(error.value)
    assert str(twin) in str(error.value)


def test_duplicates_across_resources_paths_are_detected(tmp_path):
    first = write(tmp_path / "one" / "s.yaml", component("shared"))
    second = write(tmp_path / "two" / "s.yaml", component("shared"))
    with pytest.raises(ComponentError) as error:
        load_components([tmp_path / "one", tmp_path / "two"], app_id="myapp", env={})
    assert str(first) in str(error.value) and str(second) in str(error.value)


def test_a_component_of_another_namespace_is_skipped_like_daprd(tmp_path):
    # daprd's disk loader skips a manifest whose metadata.namespace differs from NAMESPACE when
    # both are set (before the duplicate check), and ignores metadata.namespace otherwise.
    write(
        tmp_path / "a.yaml",
        component("statestore").replace("  name: statestore\n", "  name: statestore\n  namespace: staging\n"),
    )
    write(
        tmp_path / "b.yaml",
        component("statestore", "pubsub.in-memory").replace(
            "  name: statestore\n", "  name: statestore\n  namespace: prod\n"
        ),
    )
    loaded = load_components([tmp_path], app_id="myapp", env={"NAMESPACE": "prod"})
    assert [(c.name, c.type, c.namespace) for c in loaded] == [("statestore", "pubsub.in-memory", "prod")]


def test_a_scoped_out_definition_before_the_visible_one_does_not_clash_like_daprd(tmp_path):
    # daprd's disk loader (pkg/internal/loader/disk, filterManifests) checks a name against the
    # names it has *kept*, and only keeps in-scope manifests: a scoped-out first definition is
    # never recorded, so an in-scope definition after it loads without error. Only a scoped-out
    # definition *after* a kept one is reported as a duplicate.
    write(tmp_path / "a.yaml", component("statestore", "state.sqlite", scopes=["someone-else"]))
    write(tmp_path / "b.yaml", component("statestore", "state.in-memory"))
    loaded = load_components([tmp_path], app_id="myapp", env={})
    assert [(c.name, c.type) for c in loaded] == [("statestore", "state.in-memory")]


# -- unsupported types and versions, malformed files -------------------------------------------


def test_an_unsupported_type_is_an_error_naming_file_component_and_supported_types(tmp_path):
    path = write(tmp_path / "mongo.yaml", component("orders-db", "state.mongodb"))
    with pytest.raises(ComponentError) as error:
        load_components([tmp_path], app_id="myapp", env={})
    message = str(error.value)
    assert str(path) in message
    assert "'orders-db'" in message
    assert "state.mongodb" in message
    for supported in EXPECTED_SUPPORTED_TYPES:
        assert supported in message


def test_an_unsupported_version_is_an_error_naming_the_version(tmp_path):
    path = write(tmp_path / "v2.yaml", component("statestore", "state.sqlite", version="v2"))
    with pytest.raises(ComponentError) as error:
        load_components([tmp_path], app_id="myapp", env={})
    message = str(error.value)
    assert str(path) in message
    assert "'statestore'" in message
    assert "'v2'" in message
    assert "state.sqlite" in message


@pytest.mark.parametrize("version", [None, "v0", "V1"], ids=["missing", "v0", "upper-case-V1"])
def test_an_initial_version_is_accepted_like_daprd(tmp_path, version):
    # daprd's registries (pkg/components/state/registry.go) lower-case the version and, for a
    # store registered without versions, accept any "initial version" (components.IsInitialVersion:
    # "", "v0" or "v1"), so a component without spec.version starts under daprd 1.18.3.
    write(tmp_path / "c.yaml", component("statestore", "state.in-memory", version=version))
    (loaded,) = load_components([tmp_path], app_id="myapp", env={})
    assert loaded.type == "state.in-memory"


def test_malformed_yaml_is_an_error_naming_the_file(tmp_path):
    write(tmp_path / "good.yaml", component("fine"))
    broken = write(
        tmp_path / "broken.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: [unclosed\n",
    )
    with pytest.raises(ComponentError) as error:
        load_components([tmp_path], app_id="myapp", env={})
    assert str(broken) in str(error.value)
    assert "not valid YAML" in str(error.value)


def test_a_component_without_a_type_is_an_error(tmp_path):
    path = write(
        tmp_path / "c.yaml",
        """
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata:
          name: typeless
        spec:
          version: v1
        """,
    )
    with pytest.raises(ComponentError) as error:
        load_components([tmp_path], app_id="myapp", env={})
    assert str(path) in str(error.value) and "'typeless'" in str(error.value)


def test_a_missing_resources_path_is_an_error(tmp_path):
    missing = tmp_path / "does-not-exist"
    with pytest.raises(ComponentError) as error:
        load_components([missing], app_id="myapp", env={})
    assert str(missing) in str(error.value)
    with pytest.raises(ComponentError):
        DevSidecar(app_id="myapp", resources_paths=[missing], api_token="", env={})


# -- metadata values ----------------------------------------------------------------------------


def test_scalar_metadata_values_become_daprd_strings(tmp_path):
    metadata = metadata_of(
        tmp_path,
        """
        - name: enabled
          value: true
        - name: disabled
          value: false
        - name: yamlYes
          value: yes
        - name: count
          value: 42
        - name: negative
          value: -7
        - name: quotedNumber
          value: "007"
        - name: empty
          value: ""
        - name: nothing
          value:
        - name: text
          value: plain text
        """,
    )
    assert metadata == {
        "enabled": "true",
        "disabled": "false",
        "yamlYes": "true",  # YAML 1.1, which daprd's yaml decoder also speaks
        "count": "42",
        "negative": "-7",
        "quotedNumber": "007",
        "empty": "",
        "nothing": "",
        "text": "plain text",
    }


def test_object_and_list_metadata_values_become_compact_json(tmp_path):
    metadata = metadata_of(
        tmp_path,
        """
        - name: single
          value: {a: 1}
        - name: list
          value: [1, "two", true]
        - name: nested
          value:
            a: [1, 2]
        """,
    )
    assert json.loads(metadata["single"]) == {"a": 1}
    assert metadata["single"] == '{"a":1}'
    assert metadata["list"] == '[1,"two",true]'
    assert metadata["nested"] == '{"a":[1,2]}'


def test_object_metadata_values_are_encoded_as_go_json_like_daprd(tmp_path):
    # daprd decodes component YAML with sigs.k8s.io/yaml (YAML -> map -> encoding/json), so an
    # object value's text is Go's json.Marshal output: keys sorted, '<' '>' '&' escaped,
    # non-ASCII left as UTF-8.
    metadata = metadata_of(
        tmp_path,
        """
        - name: headers
          value:
            zeta: 1
            alpha: "<b>&é"
        """,
    )
    assert metadata["headers"] == '{"alpha":"\\u003cb\\u003e\\u0026é","zeta":1}'


def test_metadata_names_are_matched_case_insensitively(tmp_path):
    write(
        tmp_path / "c.yaml",
        component("s", metadata="- name: ConnectionString\n  value: data.db\n- name: Flag\n  value: 'on'"),
    )
    (loaded,) = load_components([tmp_path], app_id="myapp", env={})
    assert loaded.metadata_value("connectionstring") == "data.db"
    assert loaded.metadata_value("CONNECTIONSTRING") == "data.db"
    assert loaded.metadata_value("absent", "fallback") == "fallback"
    assert loaded.flag("flag") is True
    assert loaded.flag("absent") is False


def test_env_ref_reads_the_environment(tmp_path):
    metadata = metadata_of(
        tmp_path,
        """
        - name: password
          envRef: REDIS_PASSWORD
        - name: unset
          envRef: NOT_IN_ENV
        - name: literal
          value: given
          envRef: REDIS_PASSWORD
        """,
        env={"REDIS_PASSWORD": "hunter2"},
    )
    assert metadata == {"password": "hunter2", "unset": "", "literal": "given"}


def test_env_ref_to_dapr_and_token_variables_is_refused_and_left_empty(tmp_path):
    env = {"DAPR_API_TOKEN": "secret-token", "APP_API_TOKEN": "app-token", "DAPR_HTTP_PORT": "3500"}
    metadata = metadata_of(
        tmp_path,
        """
        - name: token
          envRef: DAPR_API_TOKEN
        - name: appToken
          envRef: APP_API_TOKEN
        - name: port
          envRef: DAPR_HTTP_PORT
        - name: spaced
          envRef: "HAS SPACE"
        """,
        env={**env, "HAS SPACE": "x"},
    )
    assert metadata == {"token": "", "appToken": "", "port": "", "spaced": ""}


def test_env_ref_deny_rules_ignore_case_like_daprd(tmp_path):
    # daprd's isEnvVarAllowed upper-cases the name before its deny rules, so "dapr_..." and
    # "app_api_token" are refused too (the variable is still read by its own name when allowed).
    metadata = metadata_of(
        tmp_path,
        """
        - name: lower
          envRef: dapr_api_token
        - name: mixed
          envRef: App_Api_Token
        """,
        env={"dapr_api_token": "lower-secret", "App_Api_Token": "mixed-secret"},
    )
    assert metadata == {"lower": "", "mixed": ""}


def test_env_keys_allowlist_limits_env_ref(tmp_path):
    metadata = metadata_of(
        tmp_path,
        """
        - name: allowed
          envRef: ALLOWED_VAR
        - name: other
          envRef: OTHER_VAR
        - name: prefixOfAllowed
          envRef: ALLOWED
        """,
        env={"DAPR_ENV_KEYS": "ALLOWED_VAR SECOND", "ALLOWED_VAR": "yes", "OTHER_VAR": "no", "ALLOWED": "no"},
    )
    assert metadata == {"allowed": "yes", "other": "", "prefixOfAllowed": ""}


def test_an_empty_env_keys_allowlist_allows_every_variable_like_daprd(tmp_path):
    # daprd (pkg/runtime/processor/secret, isEnvVarAllowed) treats an empty DAPR_ENV_KEYS like an
    # unset one: no allowlist, every variable that passes the deny rules is readable.
    metadata = metadata_of(
        tmp_path,
        "- name: host\n  envRef: REDIS_HOST",
        env={"DAPR_ENV_KEYS": "", "REDIS_HOST": "redis:6379"},
    )
    assert metadata == {"host": "redis:6379"}


def test_template_references_stay_literal_because_daprd_has_no_such_expansion(tmp_path):
    metadata = metadata_of(
        tmp_path,
        """
        - name: mustache
          value: "{{REDIS_HOST}}"
        - name: shell
          value: "${REDIS_HOST}:6379"
        """,
        env={"REDIS_HOST": "should-not-appear"},
    )
    assert metadata == {"mustache": "{{REDIS_HOST}}", "shell": "${REDIS_HOST}:6379"}


def test_app_id_and_namespace_placeholders_are_replaced(tmp_path):
    items = """
        - name: table
          value: "state_{appID}"
        - name: group
          value: "{namespace}-consumers"
        - name: both
          value: "{appID}/{appID}"
        """
    with_namespace = metadata_of(tmp_path, items, app_id="billing", env={"NAMESPACE": "prod"})
    assert with_namespace == {
        "table": "state_billing",
        "group": "prod.billing-consumers",
        "both": "billing/billing",
    }
    # Without NAMESPACE daprd's security.CurrentNamespace() answers "default".
    without = metadata_of(tmp_path, items, app_id="billing", env={})
    assert without["group"] == "default.billing-consumers"


def test_placeholders_apply_to_env_ref_values(tmp_path):
    metadata = metadata_of(
        tmp_path,
        "- name: prefix\n  envRef: PREFIX_TEMPLATE",
        app_id="billing",
        env={"PREFIX_TEMPLATE": "p-{appID}"},
    )
    assert metadata == {"prefix": "p-billing"}


def test_the_uuid_placeholder_becomes_a_uuid(tmp_path):
    metadata = metadata_of(tmp_path, '- name: consumerID\n  value: "worker-{uuid}"')
    match = re.fullmatch(r"worker-([0-9a-f-]{36})", metadata["consumerID"])
    assert match is not None
    assert uuid.UUID(match.group(1)).version == 4


def test_each_uuid_placeholder_gets_its_own_uuid_like_daprd(tmp_path):
    # daprd (pkg/runtime/meta) replaces "{uuid}" one occurrence at a time, each with a new UUID.
    metadata = metadata_of(tmp_path, '- name: ids\n  value: "{uuid}/{uuid}"')
    first, second = metadata["ids"].split("/")
    uuid.UUID(first), uuid.UUID(second)
    assert first != second


def test_the_pod_name_placeholder_needs_pod_name(tmp_path):
    assert metadata_of(tmp_path, '- name: id\n  value: "{podName}-x"', env={"POD_NAME": "pod-7"}) == {
        "id": "pod-7-x"
    }
    with pytest.raises(ComponentError) as error:
        metadata_of(tmp_path, '- name: id\n  value: "{podName}-x"', env={})
    assert "POD_NAME" in str(error.value)
    assert str(tmp_path / "c.yaml") in str(error.value)


def test_secret_key_refs_are_kept_for_the_start_with_their_auth_secret_store(tmp_path):
    write(
        tmp_path / "c.yaml",
        component(
            "secured",
            "state.redis",
            metadata="""\
            - name: redisHost
              value: localhost:6379
            - name: redisPassword
              secretKeyRef:
                name: redis
                key: password
            - name: redisUsername
              secretKeyRef:
                name: user
            - name: fromEnv
              envRef: SOME_VAR
              secretKeyRef:
                name: ignored
            """,
        )
        + "auth:\n  secretStore: vault\n",
    )
    (loaded,) = load_components([tmp_path], app_id="myapp", env={"SOME_VAR": "x"})
    assert loaded.secret_store == "vault"
    # daprd: an envRef without a value wins; the secret is read at start, the value stays "" until then.
    assert loaded.secret_refs == {"redisPassword": ("redis", "password"), "redisUsername": ("user", "")}
    assert loaded.metadata["redisPassword"] == ""
    assert loaded.metadata["fromEnv"] == "x"


# -- resiliency -----------------------------------------------------------------------------------

RESILIENCY = """
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: policies
spec:
  policies:
    timeouts:
      quick: 500ms
      patient: 1m30s
    retries:
      steady:
        policy: constant
        duration: 20ms
        maxRetries: 3
      backoff:
        policy: exponential
        initialInterval: 100ms
        maxInterval: 1s
      defaults: {}
  targets:
    components:
      pubsub:
        inbound:
          retry: steady
          timeout: quick
        outbound:
          retry: backoff
      statestore:
        outbound:
          timeout: patient
"""


def test_resiliency_retry_and_timeout_policies_attach_to_their_component_targets(tmp_path):
    write(tmp_path / "resiliency.yaml", RESILIENCY)
    write(tmp_path / "pubsub.yaml", component("pubsub", "pubsub.in-memory"))
    resources = load_resources([tmp_path], app_id="myapp", env={})
    assert [c.name for c in resources.components] == ["pubsub"]

    inbound = resources.inbound["pubsub"]
    assert inbound.timeout == pytest.approx(0.5)
    assert inbound.retry is not None
    assert inbound.retry.name == "steady"
    assert inbound.retry.policy == "constant"
    assert inbound.retry.max_retries == 3
    assert [inbound.retry.delay(n) for n in (1, 2, 5)] == pytest.approx([0.02, 0.02, 0.02])
    assert inbound.retry.allows(3) and not inbound.retry.allows(4)

    outbound = resources.outbound["pubsub"]
    assert outbound.timeout is None
    assert outbound.retry is not None and outbound.retry.policy == "exponential"
    assert outbound.retry.initial_interval == pytest.approx(0.1)
    assert outbound.retry.max_interval == pytest.approx(1.0)
    assert outbound.retry.max_retries == -1  # unlimited, as in daprd
    assert outbound.retry.allows(10_000)
    assert outbound.retry.delay(1) == pytest.approx(0.1)
    assert outbound.retry.delay(2) > outbound.retry.delay(1)
    assert outbound.retry.delay(50) == pytest.approx(1.0)  # capped by maxInterval

    state = resources.outbound["statestore"]
    assert state.retry is None
    assert state.timeout == pytest.approx(90.0)
    assert "statestore" not in resources.inbound


def test_a_resiliency_counts_only_as_the_first_document_of_its_file(tmp_path, caplog):
    """daprd decodes a resources file as a single document when it looks for a Resiliency, so
    one that follows a component in the same file is never applied (components are still read
    document by document)."""
    later = write(tmp_path / "a.yaml", component("pubsub", "pubsub.in-memory") + "---\n" + RESILIENCY)
    write(
        tmp_path / "b.yaml",
        RESILIENCY.replace("name: policies", "name: first")
        + "---\n"
        + component("other", "pubsub.in-memory"),
    )
    with caplog.at_level("WARNING"):
        resources = load_resources([tmp_path], app_id="myapp", env={})
    assert [c.name for c in resources.components] == ["pubsub", "other"]
    assert resources.inbound["pubsub"].retry is not None  # from b.yaml, where it comes first
    assert any(str(later) in r.getMessage() and "'policies'" in r.getMessage() for r in caplog.records)

    (tmp_path / "b.yaml").unlink()
    resources = load_resources([tmp_path], app_id="myapp", env={})
    assert resources.inbound == {} and resources.outbound == {}


def test_a_resiliency_naming_an_unknown_policy_is_an_error(tmp_path):
    path = write(
        tmp_path / "r.yaml",
        """
        apiVersion: dapr.io/v1alpha1
        kind: Resiliency
        metadata:
          name: broken
        spec:
          policies:
            retries: {}
          targets:
            components:
              pubsub:
                inbound:
                  retry: nowhere
        """,
    )
    with pytest.raises(ComponentError) as error:
        load_resources([tmp_path], app_id="myapp", env={})
    assert str(path) in str(error.value)
    assert "'nowhere'" in str(error.value)


def test_a_resiliency_with_a_bad_duration_is_an_error(tmp_path):
    write(
        tmp_path / "r.yaml",
        """
        apiVersion: dapr.io/v1alpha1
        kind: Resiliency
        metadata:
          name: bad
        spec:
          policies:
            timeouts:
              odd: soon
        """,
    )
    with pytest.raises(ComponentError) as error:
        load_resources([tmp_path], app_id="myapp", env={})
    assert "'soon'" in str(error.value)


def test_a_resiliency_scoped_to_another_app_or_of_another_api_version_is_ignored(tmp_path):
    write(tmp_path / "scoped.yaml", RESILIENCY + "scopes:\n  - someone-else\n")
    write(tmp_path / "other-version.yaml", RESILIENCY.replace("dapr.io/v1alpha1", "dapr.io/v2alpha1"))
    resources = load_resources([tmp_path], app_id="myapp", env={})
    assert resources.inbound == {} and resources.outbound == {}
    assert "pubsub" in load_resources([tmp_path], app_id="someone-else", env={}).inbound


# -- key prefixes, end to end through the SDK, read back from the SQLite file ------------------


def sqlite_store(db: Path, *, key_prefix: str | None = None, name: str = "statestore") -> str:
    items = f"- name: connectionString\n  value: {json.dumps(str(db))}"
    if key_prefix is not None:
        items += f"\n- name: keyPrefix\n  value: {json.dumps(key_prefix)}"
    return component(name, "state.sqlite", metadata=items)


@contextlib.contextmanager
def sidecar_client(app_id: str, folder: Path) -> Iterator[DaprClient]:
    """An in-process sidecar for ``app_id`` and an official sync client connected to it."""
    sidecar = DevSidecar(app_id=app_id, resources_paths=[folder], api_token="", env={}).start()
    try:
        with sidecar.endpoint().sdk_configured():
            client = DaprClient()
        try:
            yield client
        finally:
            client.close()
    finally:
        sidecar.stop()


def stored_keys(db: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return sorted(row[0] for row in conn.execute("SELECT key FROM state"))


def test_two_apps_on_one_sqlite_file_do_not_see_each_others_keys(tmp_path):
    db = tmp_path / "shared.db"
    write(tmp_path / "components" / "state.yaml", sqlite_store(db))
    folder = tmp_path / "components"
    with sidecar_client("app-a", folder) as a, sidecar_client("App-B", folder) as b:
        a.save_state("statestore", "order", "from a")
        assert b.get_state("statestore", "order").data == b""
        b.save_state("statestore", "order", "from b")
        assert a.get_state("statestore", "order").data == b"from a"
        assert b.get_state("statestore", "order").data == b"from b"
        a.delete_state("statestore", "order")
        assert b.get_state("statestore", "order").data == b"from b"
    # The app id is used as given (daprd does not lower-case it).
    assert stored_keys(db) == ["App-B||order"]


def test_key_prefix_none_stores_the_raw_key_and_shares_it_between_apps(tmp_path):
    db = tmp_path / "raw.db"
    folder = tmp_path / "components"
    write(folder / "state.yaml", sqlite_store(db, key_prefix="none"))
    with sidecar_client("app-a", folder) as a, sidecar_client("app-b", folder) as b:
        a.save_state("statestore", "greeting", "hello")
        assert b.get_state("statestore", "greeting").data == b"hello"
    assert stored_keys(db) == ["greeting"]


def test_key_prefix_name_uses_the_store_name(tmp_path):
    db = tmp_path / "named.db"
    folder = tmp_path / "components"
    write(folder / "state.yaml", sqlite_store(db, key_prefix="name", name="orders-store"))
    with sidecar_client("app-a", folder) as a, sidecar_client("app-b", folder) as b:
        a.save_state("orders-store", "k", "v")
        assert b.get_state("orders-store", "k").data == b"v"
    assert stored_keys(db) == ["orders-store||k"]


def test_a_literal_key_prefix_is_lower_cased_like_daprd(tmp_path):
    db = tmp_path / "literal.db"
    folder = tmp_path / "components"
    write(folder / "state.yaml", sqlite_store(db, key_prefix="MyTeam"))
    with sidecar_client("app-a", folder) as a:
        a.save_state("statestore", "Key", "v")
        assert a.get_state("statestore", "Key").data == b"v"
        bulk = a.get_bulk_state("statestore", ["Key"])
        assert [(item.key, item.data) for item in bulk.items] == [("Key", b"v")]
    assert stored_keys(db) == ["myteam||Key"]


def test_a_key_prefix_containing_the_separator_is_refused(tmp_path):
    folder = tmp_path / "components"
    write(folder / "state.yaml", sqlite_store(tmp_path / "x.db", key_prefix="a||b"))
    with pytest.raises(ComponentError) as error:
        DevSidecar(app_id="app-a", resources_paths=[folder], api_token="", env={}).start()
    assert "'statestore'" in str(error.value)
    assert "||" in str(error.value)


# -- Redis layout -------------------------------------------------------------------------------


@pytest.fixture
def redis_folder(tmp_path, redis_server) -> Path:
    redis_server.flushall()
    folder = tmp_path / "components"
    write(
        folder / "state.yaml",
        component(
            "statestore", "state.redis", metadata=f"- name: redisHost\n  value: {redis_server.address}"
        ),
    )
    return folder


@pytest.fixture
def raw_redis(redis_server) -> Iterator[redis.Redis]:
    client = redis.Redis(host="127.0.0.1", port=redis_server.port)
    yield client
    client.close()


def test_redis_state_is_a_hash_with_the_raw_bytes_and_the_etag_as_version(redis_folder, raw_redis):
    payload = b"\x00\xffbinary\r\n"
    with sidecar_client("redis-app", redis_folder) as client:
        client.save_state("statestore", "doc", payload)
        first_etag = client.get_state("statestore", "doc").etag
        assert raw_redis.type("redis-app||doc") == b"hash"
        assert raw_redis.hgetall("redis-app||doc") == {b"data": payload, b"version": first_etag.encode()}

        client.save_state("statestore", "doc", b"second", etag=first_etag)
        second_etag = client.get_state("statestore", "doc").etag
        assert second_etag != first_etag
        assert raw_redis.hget("redis-app||doc", "version") == second_etag.encode()
        assert raw_redis.hget("redis-app||doc", "data") == b"second"
    assert raw_redis.keys("*") == [b"redis-app||doc"]


def test_a_first_write_save_sets_the_first_write_field(redis_folder, raw_redis):
    with sidecar_client("redis-app", redis_folder) as client:
        client.save_state("statestore", "plain", "p")
        client.save_state(
            "statestore", "guarded", "g", options=StateOptions(concurrency=Concurrency.first_write)
        )
        guarded = raw_redis.hgetall("redis-app||guarded")
        assert b"first-write" in guarded
        assert guarded[b"data"] == b"g"
        assert guarded[b"version"] == client.get_state("statestore", "guarded").etag.encode()
        assert b"first-write" not in raw_redis.hgetall("redis-app||plain")
        # With the marker set, daprd's script refuses a write without an etag.
        with rpc_fails():
            client.save_state("statestore", "guarded", "no etag")
        assert raw_redis.hget("redis-app||guarded", "data") == b"g"


def test_the_first_write_marker_survives_later_writes_like_daprd(redis_folder, raw_redis):
    # components-contrib v1.18.4 state/redis setDefaultQuery only ever HSETs "first-write"; no
    # later write removes it, so etag-less writes to that key stay refused for good.
    with sidecar_client("redis-app", redis_folder) as client:
        client.save_state(
            "statestore", "guarded", "g1", options=StateOptions(concurrency=Concurrency.first_write)
        )
        etag = client.get_state("statestore", "guarded").etag
        client.save_state("statestore", "guarded", "g2", etag=etag)
        assert raw_redis.hget("redis-app||guarded", "data") == b"g2"
        assert raw_redis.hexists("redis-app||guarded", "first-write")
        with rpc_fails():
            client.save_state("statestore", "guarded", "g3")
        assert raw_redis.hget("redis-app||guarded", "data") == b"g2"


def test_the_external_components_folder_loads_and_matches_the_fixture_names() -> None:
    folder = Path(__file__).parent / "external-components"
    resources = load_resources([folder], app_id="test-app", env={})
    assert {c.name: c.type for c in resources.components} == {
        "statestore": "state.in-memory",
        "pubsub": "pubsub.in-memory",
        "pubsub-retry": "pubsub.in-memory",
        "llm": "conversation.echo",
        "pubsub-late-policy": "pubsub.in-memory",
    }
    assert resources.inbound["pubsub-retry"].retry is not None
    assert resources.inbound["pubsub-retry"].retry.max_retries == 2
    assert "pubsub-late-policy" not in resources.inbound  # its policy is not a file's first document
