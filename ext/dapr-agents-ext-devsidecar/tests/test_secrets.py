"""Secret stores over the wire, through the official SDK and HTTP: ``secretstores.local.file``,
``secretstores.local.env``, secret scopes, and ``secretKeyRef`` in other components.

Every test starts its own sidecar with ``dapr_sidecar_factory``, so the same assertions run on
the dev sidecar and, with ``DAPR_TEST_SIDECAR=daprd``, on Dapr's real runtime.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import pytest
from dapr.aio.clients import DaprClient as AioDaprClient
from dapr.clients import DaprClient
from dapr.proto.runtime.v1 import secret_pb2
from helpers import rpc_fails
from sidecars import component, components, endpoint_of, http, raw_stub

# The SDK warns that the lock API is alpha on every call.
pytestmark = pytest.mark.filterwarnings("ignore:The Distributed Lock API")

SECRETS = {
    "secretKey": "secretValue",
    "random": "randomValue",
    "html": "<b>&</b>",
    "nested": {"a": "x", "b": {"c": "y"}, "n": 7},
    "list": ["p", {"q": "r"}],
    # Go decodes JSON numbers as float64 and daprd renders values with %s: these are its words.
    "int": 42,
    "frac": 1.5,
    "negative": -2.5,
    "six_digits": 123456,
    "seven_digits": 1234567,
    "million": 1000000,
    "small": 0.0001,
    "smaller": 0.00001,
    "huge": 12345678901234567890,
    "yes": True,
    "no": False,
    "nothing": None,
}

GO_RENDERED = {
    "int": "%!s(float64=42)",
    "frac": "%!s(float64=1.5)",
    "negative": "%!s(float64=-2.5)",
    "six_digits": "%!s(float64=123456)",
    "seven_digits": "%!s(float64=1.234567e+06)",
    "million": "%!s(float64=1e+06)",
    "small": "%!s(float64=0.0001)",
    "smaller": "%!s(float64=1e-05)",
    "huge": "%!s(float64=1.2345678901234567e+19)",
    "yes": "%!s(bool=true)",
    "no": "%!s(bool=false)",
    "nothing": "%!s(<nil>)",
}


def app_id() -> str:
    return f"secrets-{uuid.uuid4().hex[:8]}"


def secrets_file(tmp_path: Path, content: object = SECRETS) -> Path:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def file_store(name: str, path: Path, **metadata: str) -> str:
    return component(name, "secretstores.local.file", {"secretsFile": str(path), **metadata})


@pytest.fixture
def secret_sidecar(tmp_path, dapr_sidecar_factory):
    """A sidecar with a flat file store, a multi-valued one with '.' nesting, and an env store."""
    path = secrets_file(tmp_path)
    folder = components(
        tmp_path / "components",
        file_store("localsecretstore", path),
        file_store("multi", path, multiValued="true", nestedSeparator="."),
    )
    return endpoint_of(dapr_sidecar_factory.start(folder, app_id=app_id()))


@pytest.mark.parametrize("kind", ["sync", "aio"])
async def test_get_secret_and_bulk_from_a_json_file(secret_sidecar, kind):
    with secret_sidecar.sdk_configured():
        if kind == "sync":
            with DaprClient() as client:
                one = client.get_secret("localsecretstore", "secretKey").secret
                bulk = client.get_bulk_secret("localsecretstore").secrets
        else:
            async with AioDaprClient() as client:
                one = (await client.get_secret("localsecretstore", "secretKey")).secret
                bulk = (await client.get_bulk_secret("localsecretstore")).secrets
    assert one == {"secretKey": "secretValue"}
    assert bulk["secretKey"] == {"secretKey": "secretValue"}
    assert bulk["random"] == {"random": "randomValue"}
    # Nested objects and lists are flattened with the default separator ':'.
    assert bulk["nested:b:c"] == {"nested:b:c": "y"}
    assert bulk["list:0"] == {"list:0": "p"}
    assert bulk["list:1:q"] == {"list:1:q": "r"}
    assert "nested" not in bulk


def test_non_string_values_read_as_daprd_renders_them(secret_sidecar):
    with secret_sidecar.sdk_configured(), DaprClient() as client:
        bulk = client.get_bulk_secret("localsecretstore").secrets
        for key, rendered in GO_RENDERED.items():
            assert client.get_secret("localsecretstore", key).secret == {key: rendered}, key
    assert bulk["nested:n"] == {"nested:n": "%!s(float64=7)"}


def test_multi_valued_secrets_keep_their_first_level_and_nest_below_it(secret_sidecar):
    with secret_sidecar.sdk_configured(), DaprClient() as client:
        nested = client.get_secret("multi", "nested").secret
        bulk = client.get_bulk_secret("multi").secrets
        with rpc_fails() as failure:
            client.get_secret("multi", "int")
    assert nested == {"a": "x", "b.c": "y", "n": "%!s(float64=7)"}
    # Only strings and objects are kept at the first level.
    assert sorted(bulk) == ["html", "nested", "random", "secretKey"]
    assert failure.code == grpc.StatusCode.INTERNAL
    assert (
        failure.details == "failed getting secret with key int from secret store multi: secret int not found"
    )


def test_secret_stores_are_listed_with_their_capabilities(secret_sidecar):
    with secret_sidecar.sdk_configured(), DaprClient() as client:
        registered = {c.name: c for c in client.get_metadata().registered_components}
    assert registered["localsecretstore"].type == "secretstores.local.file"
    assert list(registered["localsecretstore"].capabilities) == []
    assert list(registered["multi"].capabilities) == ["MULTIPLE_KEY_VALUES_PER_SECRET"]
    listed = {c["name"]: c for c in http(secret_sidecar, "GET", "/v1.0/metadata").json()["components"]}
    assert listed["localsecretstore"] == {
        "name": "localsecretstore",
        "type": "secretstores.local.file",
        "version": "v1",
    }
    assert listed["multi"]["capabilities"] == ["MULTIPLE_KEY_VALUES_PER_SECRET"]


def test_errors_are_daprds(secret_sidecar):
    with secret_sidecar.sdk_configured(), DaprClient() as client:
        with rpc_fails() as missing:
            client.get_secret("localsecretstore", "nope")
        with rpc_fails() as unknown_store:
            client.get_secret("vault", "secretKey")
        with rpc_fails() as unknown_bulk:
            client.get_bulk_secret("vault")
    assert missing.code == grpc.StatusCode.INTERNAL
    assert missing.details == (
        "failed getting secret with key nope from secret store localsecretstore: secret nope not found"
    )
    assert unknown_store.code == grpc.StatusCode.INVALID_ARGUMENT
    assert unknown_store.details == "failed finding secret store with key vault"
    assert unknown_bulk.code == grpc.StatusCode.INVALID_ARGUMENT


def test_http_secrets_endpoints(secret_sidecar):
    one = http(secret_sidecar, "GET", "/v1.0/secrets/localsecretstore/secretKey?metadata.any=thing")
    assert (one.status, one.body) == (200, b'{"secretKey":"secretValue"}\n')  # json.Encoder's newline
    assert one.content_type.startswith("application/json")
    # Go's encoding/json: sorted keys, HTML characters escaped.
    assert http(secret_sidecar, "GET", "/v1.0/secrets/localsecretstore/html").body == (
        b'{"html":"\\u003cb\\u003e\\u0026\\u003c/b\\u003e"}\n'
    )
    bulk = http(secret_sidecar, "GET", "/v1.0/secrets/multi/bulk")
    assert bulk.status == 200
    assert bulk.json()["nested"] == {"a": "x", "b.c": "y", "n": "%!s(float64=7)"}
    missing = http(secret_sidecar, "GET", "/v1.0/secrets/localsecretstore/nope")
    assert missing.status == 500
    assert missing.json() == {
        "errorCode": "ERR_SECRET_GET",
        "message": "failed getting secret with key nope from secret store localsecretstore: secret nope not found",
    }
    unknown = http(secret_sidecar, "GET", "/v1.0/secrets/vault/x")
    assert unknown.status == 401
    assert unknown.json() == {
        "errorCode": "ERR_SECRET_STORE_NOT_FOUND",
        "message": "failed finding secret store with key vault",
    }


def test_without_secret_stores_the_api_says_none_is_configured(tmp_path, dapr_sidecar_factory):
    folder = components(tmp_path / "components", component("statestore", "state.in-memory"))
    endpoint = endpoint_of(dapr_sidecar_factory.start(folder, app_id=app_id()))
    with raw_stub(endpoint) as stub:
        with rpc_fails() as failure:
            stub.GetSecret(secret_pb2.GetSecretRequest(store_name="any", key="k"))
        with rpc_fails() as bulk_failure:
            stub.GetBulkSecret(secret_pb2.GetBulkSecretRequest(store_name="any"))
    for found in (failure, bulk_failure):
        assert found.code == grpc.StatusCode.FAILED_PRECONDITION
        assert found.details == "secret store is not configured"
    answer = http(endpoint, "GET", "/v1.0/secrets/any/k")
    assert answer.status == 500
    assert answer.json() == {
        "errorCode": "ERR_SECRET_STORES_NOT_CONFIGURED",
        "message": "secret store is not configured",
    }


def test_env_store_reads_prefixed_variables_case_sensitively(tmp_path, dapr_sidecar_factory, monkeypatch):
    prefix = f"DST{uuid.uuid4().hex[:6].upper()}_"
    monkeypatch.setenv(prefix + "ONE", "one")
    monkeypatch.setenv(prefix + "two", "Two")
    monkeypatch.setenv(prefix, "the bare prefix is no secret")
    folder = components(
        tmp_path / "components", component("envstore", "secretstores.local.env", {"prefix": prefix})
    )
    endpoint = endpoint_of(dapr_sidecar_factory.start(folder, app_id=app_id()))
    with endpoint.sdk_configured(), DaprClient() as client:
        assert client.get_secret("envstore", "ONE").secret == {"ONE": "one"}
        assert client.get_secret("envstore", "one").secret == {"one": ""}  # case-sensitive
        assert client.get_secret("envstore", "missing").secret == {"missing": ""}  # no error
        bulk = client.get_bulk_secret("envstore").secrets
    assert bulk == {"ONE": {"ONE": "one"}, "two": {"two": "Two"}}


def test_env_store_never_returns_dapr_variables(tmp_path, dapr_sidecar_factory, monkeypatch):
    monkeypatch.setenv("DAPR_DST_PROBE", "hidden")
    folder = components(tmp_path / "components", component("envstore", "secretstores.local.env"))
    endpoint = endpoint_of(dapr_sidecar_factory.start(folder, app_id=app_id()))
    with endpoint.sdk_configured(), DaprClient() as client:
        assert client.get_secret("envstore", "DAPR_DST_PROBE").secret == {"DAPR_DST_PROBE": ""}
        bulk = client.get_bulk_secret("envstore").secrets
    assert not [name for name in bulk if name.upper().startswith("DAPR_")]


CONFIG_WITH_SCOPES = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: daprConfig
spec:
  secrets:
    scopes:
      - storeName: localsecretstore
        defaultAccess: deny
        allowedSecrets: ["secretKey", "nested:a"]
      - storeName: open
        deniedSecrets: ["random"]
"""


def test_secret_scopes_from_the_configuration_file(tmp_path, dapr_sidecar_factory):
    path = secrets_file(tmp_path)
    folder = components(
        tmp_path / "components", file_store("localsecretstore", path), file_store("open", path)
    )
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG_WITH_SCOPES, encoding="utf-8")
    endpoint = endpoint_of(dapr_sidecar_factory.start(folder, app_id=app_id(), config=str(config)))
    with endpoint.sdk_configured(), DaprClient() as client:
        assert client.get_secret("localsecretstore", "secretKey").secret == {"secretKey": "secretValue"}
        with rpc_fails() as denied:
            client.get_secret("localsecretstore", "random")
        with rpc_fails() as denied_missing:
            client.get_secret("localsecretstore", "absent")
        assert sorted(client.get_bulk_secret("localsecretstore").secrets) == ["nested:a", "secretKey"]
        assert client.get_secret("open", "secretKey").secret == {"secretKey": "secretValue"}
        with rpc_fails() as denied_open:
            client.get_secret("open", "random")
        assert "random" not in client.get_bulk_secret("open").secrets
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED
    assert denied.details == 'access denied by policy to get "random" from "localsecretstore"'
    assert denied_missing.code == grpc.StatusCode.PERMISSION_DENIED  # the policy is checked first
    assert denied_open.code == grpc.StatusCode.PERMISSION_DENIED
    answer = http(endpoint, "GET", "/v1.0/secrets/localsecretstore/random")
    assert answer.status == 403
    assert answer.json() == {
        "errorCode": "ERR_PERMISSION_DENIED",
        "message": 'access denied by policy to get "random" from "localsecretstore"',
    }


def test_secret_key_ref_is_read_from_the_auth_secret_store(tmp_path, dapr_sidecar_factory, redis_server):
    # The lock store finds its Redis only through the secret: if the reference were not
    # resolved it could not start (daprd: "redisHost is empty").
    path = secrets_file(tmp_path, {"redis": {"host": redis_server.address}, "plain": redis_server.address})
    folder = components(
        tmp_path / "components",
        file_store("vault", path, multiValued="true"),
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
              key: host
        auth:
          secretStore: vault
        """,
        """\
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata:
          name: lockstore2
        spec:
          type: lock.redis
          version: v1
          metadata:
          - name: redisHost
            secretKeyRef:
              name: plain
        auth:
          secretStore: vault
        """,
    )
    endpoint = endpoint_of(dapr_sidecar_factory.start(folder, app_id=app_id()))
    resource = f"r-{uuid.uuid4().hex[:8]}"
    with endpoint.sdk_configured(), DaprClient() as client:
        assert client.try_lock("lockstore", resource, "me", 30).success
        assert not client.try_lock("lockstore2", resource, "you", 30).success  # same Redis, same key


def test_secret_key_ref_without_auth_stays_empty_as_in_self_hosted_daprd(
    tmp_path, dapr_sidecar_factory, redis_server
):
    path = secrets_file(tmp_path, {"password": "not-used"})
    folder = components(
        tmp_path / "components",
        file_store("vault", path),
        f"""\
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata:
          name: lockstore
        spec:
          type: lock.redis
          version: v1
          metadata:
          - name: redisHost
            value: "{redis_server.address}"
          - name: redisPassword
            secretKeyRef:
              name: password
        """,
    )
    # The redis-server has no password: the start succeeds only if the value stayed empty.
    endpoint = endpoint_of(dapr_sidecar_factory.start(folder, app_id=app_id()))
    with endpoint.sdk_configured(), DaprClient() as client:
        assert client.try_lock("lockstore", f"r-{uuid.uuid4().hex[:8]}", "me", 30).success


def test_the_cli_applies_the_secret_scopes_of_its_config_file(tmp_path):
    # dapr/python-sdk examples/secret_store, second run: 'dapr run ... --config config.yaml'.
    path = secrets_file(tmp_path)
    folder = components(tmp_path / "components", file_store("localsecretstore", path))
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG_WITH_SCOPES, encoding="utf-8")
    app = (
        "from dapr.clients import DaprClient\n"
        "with DaprClient() as d:\n"
        "    print(d.get_secret(store_name='localsecretstore', key='secretKey').secret)\n"
        "    print(sorted(d.get_bulk_secret(store_name='localsecretstore').secrets))\n"
        "    try:\n"
        "        d.get_secret(store_name='localsecretstore', key='random')\n"
        "    except Exception:\n"
        "        print('denied')\n"
    )
    cli = [sys.executable, "-m", "dapr_devsidecar", "run", "--app-id", "secretsapp", "--config", str(config)]
    command = [*cli, "--resources-path", str(folder), "--", sys.executable, "-c", app]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "{'secretKey': 'secretValue'}",
        "['nested:a', 'secretKey']",
        "denied",
    ]
