"""Service-invocation access control: a Configuration's ``spec.accessControl``, as daprd 1.18 reads
and applies it (``pkg/acl/acl.go``, ``pkg/config/acl_trie.go``).

daprd checks the list on the callee's side, before it hands a call from another sidecar to its app
(``CallLocal``) or proxies a gRPC call to it. The caller is known only by the SPIFFE id of its
mTLS certificate (``spiffe://<trust domain>/ns/<namespace>/<app id>``; self-hosted sentry issues
every app the trust domain ``public``): without mTLS there is no caller identity and only the
global ``defaultAction`` applies. The dev sidecar takes the app id and namespace the calling
sidecar states (sidecars talk over loopback), and trusts them only when mTLS is enabled, so the
same Configuration allows and refuses the same calls on both runtimes.

Operation patterns are matched by a port of daprd's trie, quirks included: segment by segment,
``*`` inside a segment matches any characters, a whole ``/*`` segment matches one segment (or,
as the last pattern segment, a whole remainder of a longer path), ``/**`` any remainder.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import ComponentError

_log = logging.getLogger(__name__)

ALLOW, DENY = "allow", "deny"
#: The trust domain self-hosted sentry puts in every app's certificate.
SELF_HOSTED_TRUST_DOMAIN = "public"

_SINGLE, _MULTI = "/*", "/**"


@dataclass
class OperationAction:
    """One ``operations[]`` entry: its action per HTTP verb, and for gRPC apps."""

    name: str
    verb_action: dict[str, str] = field(default_factory=dict)
    operation_action: str = ""


@dataclass
class _Node:
    char: str
    data: OperationAction | None = None
    children: list[_Node] = field(default_factory=list)


def _wildcard_match(target: str, pattern: str) -> bool:
    """daprd's ``isMatch``: ``*`` matches any run of characters, nothing else is special."""
    tl, pl = len(target), len(pattern)
    table = [[False] * (pl + 1) for _ in range(tl + 1)]
    table[0][0] = True
    for j in range(1, pl + 1):
        if pattern[j - 1] != "*":
            break
        table[0][j] = True
    for i in range(1, tl + 1):
        for j in range(1, pl + 1):
            if pattern[j - 1] == "*":
                table[i][j] = table[i][j - 1] or table[i - 1][j]
            elif target[i - 1] == pattern[j - 1]:
                table[i][j] = table[i - 1][j - 1]
    return table[tl][pl]


def _find_with_wildcard(char: str, nodes: list[_Node], is_end: bool) -> _Node | None:
    # First match in insertion order wins, as in daprd (not the most specific one).
    for node in nodes:
        if node.char == char:
            return node
        if node.char == _SINGLE:
            if is_end:
                return node
            continue
        if node.char == _MULTI:
            return node
        if _wildcard_match(char, node.char):
            return node
    return None


class OperationTrie:
    """daprd's ``config.Trie`` of operation names."""

    def __init__(self) -> None:
        self.root = _Node("/")

    def put(self, operation: str, data: OperationAction) -> None:
        parts = operation.split("/")
        node = self.root
        for index, part in enumerate(parts):
            if index == 0:
                continue
            char = "/" + part
            existing = next((n for n in node.children if n.char == char), None)
            if existing is None:
                new = _Node(char, data if index == len(parts) - 1 else None)
                node.children.append(new)
                node = new
            elif index == len(parts) - 1:
                if existing.data is None:  # the first entry for a name wins
                    existing.data = data
            else:
                node = existing

    def search(self, operation: str) -> OperationAction | None:
        node: _Node | None = self.root
        parts = operation.split("/")
        for index, part in enumerate(parts):
            if index == 0:
                continue
            is_end = index == len(parts) - 1
            assert node is not None
            node = _find_with_wildcard("/" + part, node.children, is_end)
            if node is None:
                return None
            if node.data is not None:
                if not is_end and node.char.endswith(_SINGLE) and not node.char.endswith(_MULTI):
                    continue
                return node.data
            if is_end:
                node = _find_with_wildcard(_SINGLE, node.children, is_end)
                if node is not None and node.data is not None:
                    return node.data
        return None


@dataclass
class AppPolicy:
    app_name: str
    default_action: str
    trust_domain: str
    namespace: str
    operations: OperationTrie


@dataclass(frozen=True)
class Caller:
    """Who is calling, as daprd reads it from the caller's certificate."""

    app_id: str
    namespace: str
    trust_domain: str = SELF_HOSTED_TRUST_DOMAIN

    @property
    def url(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/{self.app_id}"


@dataclass
class AccessControlList:
    default_action: str
    trust_domain: str
    policies: dict[str, AppPolicy]
    is_http: bool

    def denial(self, caller: Caller | None, operation: str, verb: str | None) -> str | None:
        """None if the call may go on, else daprd's message (sent as ``PermissionDenied``).
        ``operation`` is the normalized method; ``verb`` the HTTP verb of a call for an HTTP app
        (None: daprd's ``NONE``, e.g. a gRPC app or a gRPC call without an HTTP extension)."""
        verb_name = verb if self.is_http and verb else "NONE"
        if self._allowed(caller, operation, verb_name):
            return None
        return (
            f"access control policy has denied access to id: {caller.url if caller else ''} "
            f"operation: {operation} verb: {verb_name}"
        )

    def _allowed(self, caller: Caller | None, operation: str, verb: str) -> bool:
        action = self.default_action
        if caller is None:
            return _is_allowed(action)
        policy = self.policies.get(f"{caller.app_id}||{caller.namespace}")
        if (
            policy is None
            or policy.trust_domain != caller.trust_domain
            or policy.namespace != caller.namespace
        ):
            return _is_allowed(action)
        if policy.default_action:
            action = policy.default_action
        if not operation.startswith("/"):
            operation = "/" + operation
        if self.is_http:
            operation = operation.lower()
        found = policy.operations.search(operation)
        if found is not None:
            if not self.is_http:
                action = found.operation_action
            elif verb == "NONE":
                action = policy.default_action
            elif verb in found.verb_action:
                action = found.verb_action[verb]
            elif "*" in found.verb_action:
                action = found.verb_action["*"]
        return _is_allowed(action)


def _is_allowed(action: str) -> bool:
    return action.lower() == ALLOW


def _text(source: str, where: str, value: Any, default: str = "") -> str:
    """A string field as Go's YAML decoder reads it (null keeps the default)."""
    if value is None:
        return default
    if isinstance(value, (dict, list)):
        raise ComponentError(f"configuration file {source!r}: {where} must be a string, not {value!r}")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_access_control(spec: Mapping[str, Any], source: str, *, is_http: bool) -> AccessControlList | None:
    """``spec.accessControl`` of a Configuration document, as daprd 1.18 reads it: the file is
    decoded over daprd's default Configuration, whose ``accessControl`` is ``defaultAction: allow``
    and ``trustDomain: public``, so a field the file leaves out keeps that value (and no
    ``accessControl`` at all allows every call); ``accessControl: null`` removes the list. A policy
    without ``appId``, ``trustDomain`` or ``namespace`` stops the start with daprd's message."""
    if "accessControl" in spec and spec["accessControl"] is None:
        return None
    raw = spec.get("accessControl") or {}
    if not isinstance(raw, Mapping):
        raise ComponentError(f"configuration file {source!r}: spec.accessControl must be a mapping")
    default_action = _text(source, "accessControl.defaultAction", raw.get("defaultAction"), ALLOW)
    trust_domain = _text(
        source, "accessControl.trustDomain", raw.get("trustDomain"), SELF_HOSTED_TRUST_DOMAIN
    )
    policies = raw.get("policies")
    if policies is not None and not isinstance(policies, list):
        raise ComponentError(f"configuration file {source!r}: accessControl.policies must be a list")
    if not trust_domain and not default_action and not policies:
        return None
    if not default_action:
        if policies is None or len(policies) > 0:
            _log.warning("No global default action has been specified. Setting default global action as Deny")
            default_action = DENY
        else:
            default_action = ALLOW
    acl = AccessControlList(
        default_action=default_action.lower(),
        trust_domain=trust_domain or SELF_HOSTED_TRUST_DOMAIN,
        policies={},
        is_http=is_http,
    )
    missing_td: list[str] = []
    missing_ns: list[str] = []
    missing_app = False
    for index, item in enumerate(policies or ()):
        where = f"accessControl.policies[{index}]"
        if not isinstance(item, Mapping):
            raise ComponentError(f"configuration file {source!r}: {where} must be a mapping")
        app = _text(source, f"{where}.appId", item.get("appId"))
        policy_td = _text(source, f"{where}.trustDomain", item.get("trustDomain"))
        namespace = _text(source, f"{where}.namespace", item.get("namespace"))
        invalid = False
        if not app:
            missing_app = True
        if not policy_td:
            missing_td.append(app)
            invalid = True
        if not namespace:
            missing_ns.append(app)
            invalid = True
        if invalid or missing_app:
            continue
        trie = OperationTrie()
        operations = item.get("operations")
        if operations is None:
            operations = []
        if not isinstance(operations, list):
            raise ComponentError(f"configuration file {source!r}: {where}.operations must be a list")
        for number, entry in enumerate(operations):
            entry_where = f"{where}.operations[{number}]"
            if not isinstance(entry, Mapping):
                raise ComponentError(f"configuration file {source!r}: {entry_where} must be a mapping")
            name = _text(source, f"{entry_where}.name", entry.get("name"))
            if not name.startswith("/"):
                name = "/" + name
            if is_http:
                name = name.lower()
            verbs = entry.get("httpVerb") or []
            if not isinstance(verbs, list):
                raise ComponentError(
                    f"configuration file {source!r}: {entry_where}.httpVerb must be a list, e.g. [GET, POST]"
                )
            action = _text(source, f"{entry_where}.action", entry.get("action"))
            found = OperationAction(name=name, operation_action=action)
            for verb in verbs:
                found.verb_action[_text(source, f"{entry_where}.httpVerb", verb)] = action
            trie.put(name, found)
        acl.policies[f"{app}||{namespace}"] = AppPolicy(
            app_name=app,
            default_action=_text(source, f"{where}.defaultAction", item.get("defaultAction")),
            trust_domain=policy_td,
            namespace=namespace,
            operations=trie,
        )
    if missing_td or missing_ns or missing_app:
        raise ComponentError(
            f"configuration file {source!r}: invalid access control spec. missing trustdomain for apps: "
            f"{_go_list(missing_td)}, missing namespace for apps: {_go_list(missing_ns)}, missing app "
            f"name on at least one of the app policies: {'true' if missing_app else 'false'}"
        )
    return acl


def _go_list(items: list[str]) -> str:
    return "[" + " ".join(items) + "]"
