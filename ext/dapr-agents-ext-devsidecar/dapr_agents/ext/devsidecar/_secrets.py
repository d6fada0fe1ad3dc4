"""The secrets building block: ``secretstores.local.file``, ``secretstores.local.env``, the
``GetSecret``/``GetBulkSecret`` API on gRPC and HTTP, secret scopes from a Configuration file, and
the resolution of ``secretKeyRef`` metadata in other components.

Everything follows daprd 1.18 as probed: the file store flattens nested JSON with the
``nestedSeparator`` and renders non-string JSON values the way Go's ``fmt.Sprintf("%s", v)`` does
(``42`` becomes ``%!s(float64=42)``); ``multiValued`` keeps the first level as secrets with
several keys; the env store reads ``prefix``-ed variables case-sensitively and never
``DAPR_*``/``APP_API_TOKEN``. Self-hosted daprd has no default secret store: a ``secretKeyRef``
in a component without ``auth.secretStore`` is left empty, with a warning. Secret values are
never logged nor put into error messages; only names are.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
from dapr.proto.runtime.v1 import secret_pb2

from ._blocks import BlockError, HttpRequest, HttpResponse, Route, abort_with, json_response, route
from ._components import Component, _placeholders
from ._config_file import read_configuration
from ._errors import ComponentError

_log = logging.getLogger(__name__)

SECRET_STORE_TYPES = ("secretstores.local.file", "secretstores.local.env")

#: daprd's feature string for stores whose secrets hold several keys.
MULTIPLE_KEY_VALUES = "MULTIPLE_KEY_VALUES_PER_SECRET"


class SecretStoreError(Exception):
    """A store could not answer; the text names the secret, never its value."""


# -- Go's rendering of JSON values --------------------------------------------------------------


def _go_float(value: float) -> str:
    # fmt's %v of a float64: the shortest round-trip digits, in exponent form ("1e+06") when the
    # decimal exponent is below -4 or at least 6, as strconv's 'g' with precision -1.
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    negative = math.copysign(1.0, value) < 0
    if value == 0:
        return "-0" if negative else "0"
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    exponent = int(exponent) + (len(digit_tuple) - len(digits))
    point = len(digits) + exponent  # the value is 0.<digits> x 10^point
    sign = "-" if negative else ""
    decimal_exponent = point - 1
    if decimal_exponent < -4 or decimal_exponent >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'+' if decimal_exponent >= 0 else '-'}{abs(decimal_exponent):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def go_sprint_s(value: Any) -> str:
    """``fmt.Sprintf("%s", v)`` of a value decoded by Go's ``encoding/json``."""
    if isinstance(value, str):
        return value
    if value is None:
        return "%!s(<nil>)"
    if isinstance(value, bool):
        return f"%!s(bool={'true' if value else 'false'})"
    return f"%!s(float64={_go_float(float(value))})"


def _go_quote(text: str) -> str:
    # %q of a string; JSON's escaping matches it for the printable text secret names hold.
    return json.dumps(text, ensure_ascii=False)


# -- the stores -------------------------------------------------------------------------------


class SecretStore:
    """A loaded secret store. ``get`` and ``bulk_get`` answer as daprd's component does."""

    capabilities: tuple[str, ...] = ()

    def __init__(self, component: Component) -> None:
        self.name = component.name
        self.type = component.type

    def get(self, key: str, metadata: Mapping[str, str]) -> dict[str, str]:
        raise NotImplementedError

    def bulk_get(self, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        raise NotImplementedError


class LocalFileSecretStore(SecretStore):
    """``secretstores.local.file``: a JSON file read once at start, as daprd does."""

    def __init__(self, component: Component) -> None:
        super().__init__(component)
        where = f"{component.source}: component {component.name!r} ({component.type})"
        path = component.metadata_value("secretsFile") or ""
        if not path:
            raise ComponentError(f"{where}: missing local secrets file in metadata (secretsFile)")
        separator = component.metadata_value("nestedSeparator") or ":"
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ComponentError(f"{where}: cannot read secretsFile {path!r}: {exc.strerror or exc}") from exc
        try:
            # Go decodes every JSON number as float64; keep that so values render as daprd's.
            document = json.loads(text, parse_int=float)
        except ValueError as exc:
            # The decoder's message holds a position, never the file's content.
            raise ComponentError(f"{where}: secretsFile {path!r} is not valid JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise ComponentError(f"{where}: secretsFile {path!r} must hold a JSON object")
        self._secrets: dict[str, str | dict[str, str]] = {}
        if component.flag("multiValued"):
            self.capabilities = (MULTIPLE_KEY_VALUES,)
            for name, value in document.items():
                if isinstance(value, str):
                    self._secrets[name] = value
                elif isinstance(value, dict):
                    self._secrets[name] = self._flatten(value, separator, path)
                # daprd drops other first-level values (numbers, lists, ...) in this mode.
        else:
            self._secrets.update(self._flatten(document, separator, path))

    def _flatten(self, document: Mapping[str, Any], separator: str, path: str) -> dict[str, str]:
        flat: dict[str, str] = {}

        def visit(prefix: list[str], value: Any) -> None:
            if isinstance(value, dict):
                for key, element in value.items():
                    visit([*prefix, key], element)
            elif isinstance(value, list):
                for index, element in enumerate(value):
                    visit([*prefix, str(index)], element)
            else:
                name = separator.join(prefix)
                if name in flat:
                    # daprd gives up flattening at a random point (Go map order); keep the first.
                    _log.warning(
                        "secret store %r: %s yields the secret name %r twice; the first is kept",
                        self.name,
                        path,
                        name,
                    )
                    return
                flat[name] = go_sprint_s(value)

        for key, element in document.items():
            visit([key], element)
        return flat

    def get(self, key: str, metadata: Mapping[str, str]) -> dict[str, str]:
        if key not in self._secrets:
            raise SecretStoreError(f"secret {key} not found")
        value = self._secrets[key]
        return dict(value) if isinstance(value, dict) else {key: value}

    def bulk_get(self, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        return {
            name: dict(value) if isinstance(value, dict) else {name: value}
            for name, value in self._secrets.items()
        }


def _env_key_allowed(name: str) -> bool:
    upper = name.upper()
    return upper != "APP_API_TOKEN" and not upper.startswith("DAPR_")


class LocalEnvSecretStore(SecretStore):
    """``secretstores.local.env``: the sidecar's environment, optionally under a ``prefix``."""

    def __init__(self, component: Component, env: Mapping[str, str]) -> None:
        super().__init__(component)
        self._prefix = component.metadata_value("prefix") or ""
        self._env = env

    def get(self, key: str, metadata: Mapping[str, str]) -> dict[str, str]:
        name = self._prefix + key
        if _env_key_allowed(name):
            return {key: self._env.get(name, "")}
        _log.warning("secret store %r: access to env var %s is forbidden", self.name, key)
        return {key: ""}

    def bulk_get(self, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        prefix = self._prefix
        found: dict[str, dict[str, str]] = {}
        for name, value in self._env.items():
            # Case-sensitive, as daprd on Linux and macOS; the bare prefix itself is skipped.
            if prefix and (len(name) <= len(prefix) or not name.startswith(prefix)):
                continue
            if not _env_key_allowed(name):
                continue
            short = name[len(prefix) :]
            found[short] = {short: value}
        return found


def open_secret_store(component: Component, env: Mapping[str, str]) -> SecretStore:
    if component.type == "secretstores.local.file":
        return LocalFileSecretStore(component)
    if component.type == "secretstores.local.env":
        return LocalEnvSecretStore(component, env)
    raise ComponentError(
        f"{component.source}: component {component.name!r}: no secret store for {component.type}"
    )


# -- secretKeyRef ---------------------------------------------------------------------------------


def resolve_secret_refs(
    component: Component, stores: Mapping[str, SecretStore], app_id: str, env: Mapping[str, str]
) -> Component:
    """``component`` with its ``secretKeyRef`` values read from its ``auth.secretStore``.

    As daprd: a secret that cannot be read, or lacks the key, leaves the value as it was (with
    a warning here; daprd logs only the failed read). A store that is not loaded is an error:
    daprd would keep the component waiting for it forever, so it never loads.
    """
    if not component.secret_refs:
        return component
    where = f"{component.source}: component {component.name!r}"
    names = ", ".join(repr(n) for n in component.secret_refs)
    if not component.secret_store:
        _log.warning(
            "%s: metadata %s use secretKeyRef but the component names no secret store "
            "(auth.secretStore); self-hosted daprd has no default store, so they stay empty",
            where,
            names,
        )
        return component
    store = stores.get(component.secret_store)
    if store is None:
        known = ", ".join(sorted(stores)) or "none"
        raise ComponentError(
            f"{where}: auth.secretStore {component.secret_store!r} is not a secret store of this app "
            f"(secret stores: {known}); daprd would never load {component.name!r}, waiting for it"
        )
    metadata = dict(component.metadata)
    fetched: dict[str, dict[str, str]] = {}
    for meta_name, (secret_name, secret_key) in component.secret_refs.items():
        if secret_name not in fetched:
            try:
                fetched[secret_name] = store.get(secret_name, {"namespace": component.namespace})
            except SecretStoreError as exc:
                _log.warning(
                    "%s: metadata %r: getting secret %r from %r failed (%s); the value stays empty, as in daprd",
                    where,
                    meta_name,
                    secret_name,
                    store.name,
                    exc,
                )
                continue
        key = secret_key or secret_name
        value = fetched[secret_name].get(key, "")
        if not value:
            _log.warning(
                "%s: metadata %r: secret %r in %r has no (non-empty) key %r; the value stays as it was",
                where,
                meta_name,
                secret_name,
                store.name,
                key,
            )
            continue
        metadata[meta_name] = _placeholders(value, app_id, env, f"{where} metadata {meta_name!r}")
    return dataclasses.replace(component, metadata=metadata)


def open_secret_stores(
    components: Sequence[Component], app_id: str, env: Mapping[str, str]
) -> dict[str, SecretStore]:
    """Open every secret store, each after the store its own ``secretKeyRef`` values come from."""
    pending = {c.name: c for c in components if c.category == "secretstores"}
    stores: dict[str, SecretStore] = {}
    while pending:
        ready = [
            c for c in pending.values() if not c.secret_refs or not c.secret_store or c.secret_store in stores
        ]
        if not ready:
            for waiting in pending.values():
                if waiting.secret_store not in pending:
                    resolve_secret_refs(waiting, stores, app_id, env)  # raises, naming the store
            raise ComponentError(
                "secret stores wait for each other's secrets (auth.secretStore): "
                + ", ".join(f"{c.name!r} -> {c.secret_store!r} ({c.source})" for c in pending.values())
                + "; daprd would load none of them"
            )
        for component in ready:
            del pending[component.name]
            stores[component.name] = open_secret_store(
                resolve_secret_refs(component, stores, app_id, env), env
            )
    return stores


# -- secret scopes (the Configuration file's spec.secrets) ------------------------------------------


@dataclasses.dataclass(frozen=True)
class SecretScope:
    """``spec.secrets.scopes[]`` of a Dapr Configuration: which secrets a store may return."""

    store_name: str
    default_access: str = ""
    allowed: frozenset[str] = frozenset()
    denied: frozenset[str] = frozenset()

    def allows(self, key: str) -> bool:
        if self.allowed:
            return key in self.allowed
        if key in self.denied:
            return False
        return self.default_access.lower() != "deny"


def load_secret_scopes(path: str | os.PathLike[str], env: Mapping[str, str]) -> dict[str, SecretScope]:
    """Read the secret scopes of a Configuration file (``--config``), as daprd does: with
    ``$VAR``/``${VAR}`` expanded from the environment first."""
    return secret_scopes(read_configuration(path, env), str(path))


def secret_scopes(spec: Mapping[str, Any], source: str) -> dict[str, SecretScope]:
    """``spec.secrets.scopes`` of a Configuration document's spec."""
    secrets = spec.get("secrets") or {}
    scopes: dict[str, SecretScope] = {}
    for item in secrets.get("scopes") or ():
        item = item or {}
        store = str(item.get("storeName") or "")
        access = str(item.get("defaultAccess") or "")
        if store in scopes:
            raise ComponentError(
                f"configuration file {source!r}: {store} storeName is repeated in secrets configuration"
            )
        if access and access.lower() not in {"allow", "deny"}:
            raise ComponentError(
                f"configuration file {source!r}: defaultAccess {access} can be either allow or deny"
            )
        scopes[store] = SecretScope(
            store_name=store,
            default_access=access,
            allowed=frozenset(str(s) for s in item.get("allowedSecrets") or ()),
            denied=frozenset(str(s) for s in item.get("deniedSecrets") or ()),
        )
    return scopes


# -- the API ----------------------------------------------------------------------------------------


class SecretsBlock:
    """``GetSecret`` and ``GetBulkSecret`` on gRPC, ``/v1.0/secrets/...`` on HTTP."""

    def __init__(
        self, stores: Mapping[str, SecretStore], scopes: Mapping[str, SecretScope] | None = None
    ) -> None:
        self._stores = dict(stores)
        self._scopes = dict(scopes or {})

    # -- one implementation for both transports --

    def _store(self, name: str) -> SecretStore:
        if not self._stores:
            raise BlockError(
                grpc.StatusCode.FAILED_PRECONDITION,
                500,
                "ERR_SECRET_STORES_NOT_CONFIGURED",
                "secret store is not configured",
            )
        store = self._stores.get(name)
        if store is None:
            raise BlockError(
                grpc.StatusCode.INVALID_ARGUMENT,
                401,
                "ERR_SECRET_STORE_NOT_FOUND",
                f"failed finding secret store with key {name}",
            )
        return store

    def _allowed(self, store: str, key: str) -> bool:
        scope = self._scopes.get(store)
        return scope is None or scope.allows(key)

    def get_secret(self, store_name: str, key: str, metadata: Mapping[str, str]) -> dict[str, str]:
        store = self._store(store_name)
        if not self._allowed(store_name, key):
            raise BlockError(
                grpc.StatusCode.PERMISSION_DENIED,
                403,
                "ERR_PERMISSION_DENIED",
                f"access denied by policy to get {_go_quote(key)} from {_go_quote(store_name)}",
            )
        try:
            return store.get(key, metadata)
        except SecretStoreError as exc:
            raise BlockError(
                grpc.StatusCode.INTERNAL,
                500,
                "ERR_SECRET_GET",
                f"failed getting secret with key {key} from secret store {store_name}: {exc}",
            ) from exc

    def get_bulk_secret(self, store_name: str, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        store = self._store(store_name)
        try:
            secrets = store.bulk_get(metadata)
        except SecretStoreError as exc:
            raise BlockError(
                grpc.StatusCode.INTERNAL,
                500,
                "ERR_SECRET_GET",
                f"failed getting secrets from secret store {store_name}: {exc}",
            ) from exc
        return {key: value for key, value in secrets.items() if self._allowed(store_name, key)}

    # -- gRPC --

    async def _grpc_get_secret(
        self, request: secret_pb2.GetSecretRequest, context: grpc.aio.ServicerContext
    ) -> secret_pb2.GetSecretResponse:
        try:
            data = self.get_secret(request.store_name, request.key, dict(request.metadata))
        except BlockError as error:
            await abort_with(context, error)
        return secret_pb2.GetSecretResponse(data=data)

    async def _grpc_get_bulk_secret(
        self, request: secret_pb2.GetBulkSecretRequest, context: grpc.aio.ServicerContext
    ) -> secret_pb2.GetBulkSecretResponse:
        try:
            secrets = self.get_bulk_secret(request.store_name, dict(request.metadata))
        except BlockError as error:
            await abort_with(context, error)
        response = secret_pb2.GetBulkSecretResponse()
        for key, values in secrets.items():
            response.data[key].secrets.update(values)
        return response

    # -- HTTP --

    async def _http_get(self, request: HttpRequest) -> HttpResponse:
        try:
            data = self.get_secret(request.params["store"], request.params["key"], request.metadata())
        except BlockError as error:
            return error.http_response()
        return json_response(data, newline=True)

    async def _http_bulk(self, request: HttpRequest) -> HttpResponse:
        try:
            secrets = self.get_bulk_secret(request.params["store"], request.metadata())
        except BlockError as error:
            return error.http_response()
        return json_response(secrets, newline=True)

    # -- wiring --

    def grpc_methods(self) -> Mapping[str, Callable[..., Any]]:
        return {"GetSecret": self._grpc_get_secret, "GetBulkSecret": self._grpc_get_bulk_secret}

    def http_routes(self) -> Sequence[Route]:
        # The bulk route first: as in daprd, a secret named "bulk" is not reachable over HTTP.
        return [
            route("GET", "/v1.0/secrets/{store}/bulk", self._http_bulk),
            route("GET", "/v1.0/secrets/{store}/{key}", self._http_get),
        ]

    def capabilities(self) -> Mapping[str, Sequence[str]]:
        return {name: store.capabilities for name, store in self._stores.items()}

    async def close(self) -> None:
        return None
