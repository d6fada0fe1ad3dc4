"""Loading Dapr resource YAML (components and resiliency policies) the way daprd does.

daprd reads every ``*.yaml``/``*.yml`` file directly inside each ``--resources-path`` folder
(not recursively), each file possibly holding several documents, and keeps the documents with
``apiVersion: dapr.io/v1alpha1`` of the kinds it handles (Subscription documents, v1alpha1 and
v2alpha1, are kept raw for ``_subscriptions``); other kinds (Configuration, ...) are skipped so the
same folder works with ``dapr run``. A Resiliency counts
only as the first document of its file: daprd decodes the whole file as one document when it
looks for one. Components whose ``scopes`` exclude the app id are skipped. Metadata values
support daprd's ``envRef`` and its placeholders ``{uuid}``, ``{podName}``, ``{namespace}`` and
``{appID}``; like daprd, there is no ``{{ENV}}``/``${ENV}`` expansion (use ``envRef``). Where
daprd would fail to start (a duplicate name, an unsupported type) the dev sidecar raises
:class:`~._errors.ComponentError` naming the file and the component; it is also strict about
malformed documents, which daprd skips with a warning, because a silently missing component is
harder to debug than a refusal to start.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ._errors import ComponentError
from ._gojson import encode as encode_go_json

_log = logging.getLogger(__name__)

API_VERSION = "dapr.io/v1alpha1"

#: Component types the dev sidecar implements, with the versions it accepts for them.
SUPPORTED_TYPES: Mapping[str, tuple[str, ...]] = {
    "state.in-memory": ("v1",),
    "state.sqlite": ("v1",),
    "state.redis": ("v1",),
    "pubsub.in-memory": ("v1",),
    "pubsub.redis": ("v1",),
    "conversation.echo": ("v1",),
    "conversation.openai": ("v1",),
    "secretstores.local.file": ("v1",),
    "secretstores.local.env": ("v1",),
    "configuration.redis": ("v1",),
    "lock.redis": ("v1",),
}

#: The kinds daprd reads from resources folders (group ``dapr.io``); only some matter here.
DAPR_KINDS = (
    "Component",
    "Configuration",
    "HTTPEndpoint",
    "MCPServer",
    "Resiliency",
    "Subscription",
    "WorkflowAccessPolicy",
)

_TEMPLATE_REFERENCE = re.compile(r"\{\{\s*[A-Za-z_][A-Za-z0-9_]*\s*\}\}|\$\{[A-Za-z_][A-Za-z0-9_]*\}")


@dataclass(frozen=True)
class Component:
    """One ``kind: Component`` document, after scope filtering and metadata resolution."""

    name: str
    type: str
    #: ``spec.version`` as written ("" when missing), as daprd's metadata API reports it; daprd
    #: loads "", "v0" and any case of "v1" as the first version.
    version: str
    #: Left out of the repr: after start it may hold values read from secret stores.
    metadata: Mapping[str, str] = field(repr=False)
    scopes: tuple[str, ...] = ()
    source: str = "<memory>"
    namespace: str = ""
    init_timeout: str = ""
    ignore_errors: bool = False
    #: ``secretKeyRef`` metadata: name -> (secret name, key in the secret; "" = the name).
    secret_refs: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    #: ``auth.secretStore``: where ``secret_refs`` are read from ("" = none named).
    secret_store: str = ""

    @property
    def category(self) -> str:
        """The building block, the part of ``type`` before the first dot (``state``, ``pubsub``)."""
        return self.type.split(".", 1)[0]

    def metadata_value(self, name: str, default: str | None = None) -> str | None:
        """Read a metadata field; names match case-insensitively, as daprd's decoder does."""
        if name in self.metadata:
            return self.metadata[name]
        lowered = name.lower()
        for key, value in self.metadata.items():
            if key.lower() == lowered:
                return value
        return default

    def flag(self, name: str, default: bool = False) -> bool:
        """Read a boolean metadata field as daprd's ``utils.IsTruthy`` does."""
        value = self.metadata_value(name)
        if value is None or value == "":
            return default
        return value.strip().lower() in {"y", "yes", "true", "t", "on", "1"}


@dataclass(frozen=True)
class RetryPolicy:
    """A resiliency retry policy (``constant`` or ``exponential``)."""

    name: str
    policy: str = "constant"
    duration: float = 5.0
    initial_interval: float = 0.5
    max_interval: float = 60.0
    max_retries: int = -1  # -1: retry forever, as in daprd

    def delay(self, retry_number: int) -> float:
        """Seconds to wait before retry number ``retry_number`` (1-based)."""
        if self.policy == "constant":
            return self.duration
        return min(self.initial_interval * (1.5 ** (retry_number - 1)), self.max_interval)

    def allows(self, retry_number: int) -> bool:
        return self.max_retries < 0 or retry_number <= self.max_retries


@dataclass(frozen=True)
class ComponentPolicy:
    """The resiliency policies targeting one component in one direction."""

    retry: RetryPolicy | None = None
    timeout: float | None = None


@dataclass
class Resources:
    """Everything loaded from the resources paths for one app."""

    components: list[Component] = field(default_factory=list)
    inbound: dict[str, ComponentPolicy] = field(default_factory=dict)
    outbound: dict[str, ComponentPolicy] = field(default_factory=dict)
    #: ``kind: Subscription`` documents (v1alpha1, v2alpha1) with their file, for ``_subscriptions``.
    subscription_documents: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def parse_duration(text: Any, what: str) -> float:
    """Parse a Go duration ("5s", "1m30s", "500ms") or a number of seconds."""
    raw = str(text).strip()
    try:
        return float(raw)
    except ValueError:
        pass
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", raw)
    if not parts or "".join(n + u for n, u in parts) != raw:
        raise ComponentError(f"{what}: {raw!r} is not a duration such as '5s', '500ms' or '1m'")
    return sum(float(number) * units[unit] for number, unit in parts)


def _stringify(value: Any) -> str:
    # daprd's DynamicValue: scalars keep their text (true -> "true"); objects become JSON.
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return encode_go_json(value).decode("utf-8")
    return str(value)


def _placeholders(value: str, app_id: str, env: Mapping[str, str], where: str) -> str:
    while "{uuid}" in value:  # daprd draws a new UUID for every occurrence
        value = value.replace("{uuid}", str(uuid.uuid4()), 1)
    if "{podName}" in value:
        if not env.get("POD_NAME"):
            raise ComponentError(
                f"{where}: uses {{podName}} but the POD_NAME environment variable is not set"
            )
        value = value.replace("{podName}", env["POD_NAME"])
    if "{namespace}" in value:
        value = value.replace("{namespace}", f"{env.get('NAMESPACE') or 'default'}.{app_id}")
    if "{appID}" in value:
        value = value.replace("{appID}", app_id)
    return value


def _env_ref_allowed(name: str, env: Mapping[str, str]) -> bool:
    upper = name.upper()  # daprd applies its deny rules to the upper-cased name
    if not name or " " in name or upper == "APP_API_TOKEN" or upper.startswith("DAPR_"):
        return False
    allow = env.get("DAPR_ENV_KEYS", "")
    return not allow.strip() or name in allow.split()


def _parse_metadata(
    items: Any,
    app_id: str,
    env: Mapping[str, str],
    where: str,
    secret_refs: dict[str, tuple[str, str]] | None = None,
) -> dict[str, str]:
    if items is None:
        return {}
    if not isinstance(items, list):
        raise ComponentError(f"{where}: spec.metadata must be a list of {{name, value}} items")
    metadata: dict[str, str] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ComponentError(f"{where}: spec.metadata[{index}] must be a mapping with a 'name'")
        name = item["name"]
        value = _stringify(item.get("value"))
        reference = item.get("secretKeyRef")
        if reference is not None and not isinstance(reference, dict):
            raise ComponentError(f"{where}: metadata {name!r}: secretKeyRef must be a mapping with a 'name'")
        # daprd: an envRef applies only without a value; otherwise a named secretKeyRef is read
        # (at start, from auth.secretStore) and replaces the value when it is not empty.
        if (
            secret_refs is not None
            and reference
            and reference.get("name")
            and (value or not item.get("envRef"))
        ):
            secret_refs[name] = (_stringify(reference["name"]), _stringify(reference.get("key")))
        if not value and item.get("envRef"):
            env_name = str(item["envRef"])
            if not _env_ref_allowed(env_name, env):
                _log.warning(
                    "%s: metadata %r: envRef %r is not allowed; value left empty", where, name, env_name
                )
            else:
                value = env.get(env_name, "")
        if _TEMPLATE_REFERENCE.search(value):
            _log.warning(
                "%s: metadata %r contains %r; daprd does not expand environment references in "
                "components, so neither does the dev sidecar: use envRef",
                where,
                name,
                _TEMPLATE_REFERENCE.search(value).group(0),  # type: ignore[union-attr]
            )
        metadata[name] = _placeholders(value, app_id, env, f"{where} metadata {name!r}")
    return metadata


def _parse_component(
    doc: dict[str, Any], index: int, source: str, app_id: str, env: Mapping[str, str]
) -> tuple[str, Component | None]:
    meta = doc.get("metadata") or {}
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        raise ComponentError(f"{source}: document {index} (kind Component) has no metadata.name")
    where = f"{source}: component {name!r}"
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        raise ComponentError(f"{where} has no spec")
    comp_type = spec.get("type")
    if not isinstance(comp_type, str) or not comp_type:
        raise ComponentError(f"{where} has no spec.type")
    scopes = doc.get("scopes") or ()
    if not isinstance(scopes, (list, tuple)):
        raise ComponentError(f"{where}: scopes must be a list of app ids")
    scopes = tuple(str(s) for s in scopes)
    if scopes and app_id not in scopes:
        _log.debug("%s is scoped to %s; skipped for app %r", where, scopes, app_id)
        return name, None
    # daprd lower-cases type and version, and takes "", "v0" and "v1" as a component's first version.
    comp_type = comp_type.lower()
    declared_version = _stringify(spec.get("version") or "")
    version = declared_version.lower()
    if version in {"", "v0"}:
        version = "v1"
    ignore_errors = bool(spec.get("ignoreErrors", False))
    if comp_type not in SUPPORTED_TYPES:
        if ignore_errors:
            # daprd logs the failure and starts without the component.
            _log.warning(
                "%s has type %r, which the dev sidecar does not support; skipped (ignoreErrors)",
                where,
                comp_type,
            )
            return name, None
        raise ComponentError(
            f"{where} has type {comp_type!r}, which the dev sidecar does not support; "
            f"supported types: {', '.join(sorted(SUPPORTED_TYPES))}"
        )
    if version not in SUPPORTED_TYPES[comp_type]:
        raise ComponentError(
            f"{where}: version {version or '(none)'!r} of {comp_type} is not supported; use "
            + " or ".join(SUPPORTED_TYPES[comp_type])
        )
    auth = doc.get("auth") or {}
    if not isinstance(auth, dict):
        raise ComponentError(f"{where}: auth must be a mapping such as {{secretStore: <name>}}")
    secret_refs: dict[str, tuple[str, str]] = {}
    return name, Component(
        name=name,
        type=comp_type,
        version=declared_version,
        metadata=_parse_metadata(spec.get("metadata"), app_id, env, where, secret_refs),
        scopes=scopes,
        source=source,
        namespace=str(meta.get("namespace") or ""),
        init_timeout=_stringify(spec.get("initTimeout") or ""),
        ignore_errors=ignore_errors,
        secret_refs=secret_refs,
        secret_store=_stringify(auth.get("secretStore") or ""),
    )


def _parse_resiliency(doc: dict[str, Any], source: str, app_id: str, resources: Resources) -> None:
    name = (doc.get("metadata") or {}).get("name", "?")
    where = f"{source}: resiliency {name!r}"
    scopes = doc.get("scopes") or ()
    if scopes and app_id not in scopes:
        return
    spec = doc.get("spec") or {}
    policies = spec.get("policies") or {}
    retries: dict[str, RetryPolicy] = {}
    for retry_name, body in (policies.get("retries") or {}).items():
        body = body or {}
        kind = str(body.get("policy", "constant"))
        if kind not in {"constant", "exponential"}:
            raise ComponentError(
                f"{where}: retry policy {retry_name!r} has policy {kind!r}; use constant or exponential"
            )
        retries[retry_name] = RetryPolicy(
            name=retry_name,
            policy=kind,
            duration=parse_duration(body.get("duration", "5s"), f"{where} retry {retry_name!r} duration"),
            initial_interval=parse_duration(
                body.get("initialInterval", "500ms"), f"{where} retry {retry_name!r} initialInterval"
            ),
            max_interval=parse_duration(
                body.get("maxInterval", "60s"), f"{where} retry {retry_name!r} maxInterval"
            ),
            max_retries=int(body.get("maxRetries", -1)),
        )
    timeouts = {
        timeout_name: parse_duration(value, f"{where} timeout {timeout_name!r}")
        for timeout_name, value in (policies.get("timeouts") or {}).items()
    }
    for component_name, directions in ((spec.get("targets") or {}).get("components") or {}).items():
        for direction in ("inbound", "outbound"):
            target = (directions or {}).get(direction)
            if not target:
                continue
            retry_name = target.get("retry")
            timeout_name = target.get("timeout")
            if retry_name and retry_name not in retries:
                raise ComponentError(
                    f"{where}: component {component_name!r} {direction} names unknown retry policy {retry_name!r}"
                )
            if timeout_name and timeout_name not in timeouts:
                raise ComponentError(
                    f"{where}: component {component_name!r} {direction} names unknown timeout {timeout_name!r}"
                )
            getattr(resources, direction)[component_name] = ComponentPolicy(
                retry=retries.get(retry_name) if retry_name else None,
                timeout=timeouts.get(timeout_name) if timeout_name else None,
            )


def parse_documents(
    documents: Iterable[Any],
    *,
    source: str,
    app_id: str,
    env: Mapping[str, str] | None = None,
    into: Resources | None = None,
    seen: dict[str, str] | None = None,
) -> Resources:
    """Add the components and resiliency policies in already-parsed YAML documents to ``into``."""
    env = os.environ if env is None else env
    resources = into if into is not None else Resources()
    seen = {} if seen is None else seen
    for index, doc in enumerate(documents):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ComponentError(f"{source}: document {index} is not a mapping")
        api_version, kind = doc.get("apiVersion"), doc.get("kind")
        if isinstance(api_version, str) and api_version.startswith("dapr.io/") and kind not in DAPR_KINDS:
            # daprd skips such a document without a word; a typo ("Componnet") then silently
            # drops a component, so refuse it.
            meta = doc.get("metadata")
            name = meta.get("name") if isinstance(meta, dict) else None
            raise ComponentError(
                f"{source}: document {index}{f' ({name!r})' if name else ''} has kind {kind!r}, which "
                f"is not a Dapr resource kind; use one of {', '.join(DAPR_KINDS)}"
            )
        if kind == "Subscription" and api_version in {"dapr.io/v1alpha1", "dapr.io/v2alpha1"}:
            resources.subscription_documents.append((source, doc))
            continue
        if api_version != API_VERSION:
            continue
        if kind == "Component":
            manifest_namespace = str((doc.get("metadata") or {}).get("namespace") or "")
            namespace = env.get("NAMESPACE", "")
            if namespace and manifest_namespace and manifest_namespace != namespace:
                continue  # daprd only loads the components of its own namespace
            name = str((doc.get("metadata") or {}).get("name") or "")
            # daprd compares each document with the components kept so far, before the scope
            # filter: an out-of-scope twin of a kept component clashes, the reverse does not.
            if name and name in seen:
                raise ComponentError(
                    f"component name {name!r} is defined twice: in {seen[name]} and in {source}; "
                    "names must be unique"
                )
            _, component = _parse_component(doc, index, source, app_id, env)
            if component is not None:
                seen[name] = source
                resources.components.append(component)
        elif kind == "Resiliency":
            if index > 0:
                # daprd decodes a resources file as one document when it looks for a Resiliency
                # (only components are read document by document): a later one is never applied.
                _log.warning(
                    "%s: resiliency %r is document %d of the file and daprd reads a Resiliency only "
                    "as the first document of its file, so it is ignored; move it to a file of its own",
                    source,
                    (doc.get("metadata") or {}).get("name", "?"),
                    index,
                )
                continue
            _parse_resiliency(doc, source, app_id, resources)
    return resources


def load_resources(
    resources_paths: Iterable[str | os.PathLike[str]],
    *,
    app_id: str,
    env: Mapping[str, str] | None = None,
) -> Resources:
    """Read the components and resiliency policies visible to ``app_id``."""
    resources = Resources()
    seen: dict[str, str] = {}
    for raw in resources_paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in {".yaml", ".yml"} and p.is_file())
        elif path.is_file():
            files = [path]
        else:
            raise ComponentError(f"resources path {str(path)!r} does not exist")
        for file in files:
            try:
                documents = list(yaml.safe_load_all(file.read_text(encoding="utf-8")))
            except yaml.YAMLError as exc:
                raise ComponentError(f"{file}: not valid YAML: {exc}") from exc
            parse_documents(documents, source=str(file), app_id=app_id, env=env, into=resources, seen=seen)
    return resources


def load_components(
    resources_paths: Iterable[str | os.PathLike[str]],
    *,
    app_id: str,
    env: Mapping[str, str] | None = None,
) -> list[Component]:
    """Read every component visible to ``app_id`` from the given folders (or single files).

    Raises :class:`ComponentError` for a missing folder, malformed YAML, an unsupported type or
    two components with the same name.
    """
    return load_resources(resources_paths, app_id=app_id, env=env).components
