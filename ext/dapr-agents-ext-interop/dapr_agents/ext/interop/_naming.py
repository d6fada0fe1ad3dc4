"""Workflow names and instance ids, computed exactly as dapr-agents computes them.

dapr-agents schedules a foreign agent by the name its ``agent_workflow_id`` derives, so a host
that registers any other spelling is never found; these functions are that rule, written
against the contract (and checked against dapr-agents in the tests) so that no framework
package needs to import dapr-agents.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["agent_workflow_name", "call_instance_id", "is_dapr_agents_framework", "sanitize_agent_name"]

_INVALID_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_SEPARATORS = re.compile(r"[\s\-_.]")
_MAX_NAME_LENGTH = 64
_INSTANCE_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def sanitize_agent_name(name: str) -> str:
    """The agent name as LLM tool names and workflow names carry it: only ``[A-Za-z0-9_-]``.

    Other characters are dropped and casing is kept ("Triage Agent" -> "TriageAgent"); an
    empty result becomes ``"unnamed_tool"``, as in dapr-agents.

    Raises:
        ValueError: the sanitised name is longer than 64 characters (the providers' limit).
    """
    sanitized = _INVALID_NAME_CHARS.sub("", name or "")
    if not sanitized:
        return "unnamed_tool"
    if len(sanitized) > _MAX_NAME_LENGTH:
        raise ValueError(
            f"agent name {name!r} is {len(sanitized)} characters after sanitising "
            f"(at most {_MAX_NAME_LENGTH}); choose a shorter name"
        )
    return sanitized


def is_dapr_agents_framework(framework: str) -> bool:
    """Whether ``framework`` is a spelling of "Dapr Agents" (``dapr-agents``, ``Dapr.Agents``...)."""
    return _SEPARATORS.sub("", framework).lower() == "dapragents"


def agent_workflow_name(name: str, *, framework: str | None = None, workflow_name: str | None = None) -> str:
    """The Dapr workflow an agent is hosted as: ``dapr.{framework}.{name}.workflow``.

    An explicit ``workflow_name`` wins; a ``name`` already shaped ``dapr.*.workflow`` is kept;
    a missing framework or any spelling of "Dapr Agents" means ``agents``. The framework is
    lower-cased with spaces and underscores turned into hyphens.
    """
    if workflow_name:
        return workflow_name
    if name.startswith("dapr.") and name.endswith(".workflow"):
        return name
    sanitized = sanitize_agent_name(name)
    if framework and not is_dapr_agents_framework(framework):
        normalized = framework.replace(" ", "-").replace("_", "-").lower()
        return f"dapr.{normalized}.{sanitized}.workflow"
    return f"dapr.agents.{sanitized}.workflow"


def call_instance_id(workflow_name: str, key: str) -> str:
    """A deterministic workflow instance id for one logical call identified by ``key``.

    The same (workflow, key) always gives the same id, so a retried call finds the run it
    started before instead of starting a second one. Readable prefix, hashed key: keys may hold
    characters Dapr instance ids should not (``||`` separates actor key parts in daprd).
    """
    if not key:
        raise ValueError("an idempotency key must be a non-empty string")
    digest = hashlib.sha256(f"{workflow_name}\x00{key}".encode()).hexdigest()[:32]
    readable = _INSTANCE_ID_UNSAFE.sub("", workflow_name.removeprefix("dapr.").removesuffix(".workflow"))[:48]
    return f"{readable}-{digest}"
