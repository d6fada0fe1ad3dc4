"""Deterministic workflow instance ids and state keys.

Dapr workflow instance ids are safest when they use only ``[A-Za-z0-9_-]`` (daprd validates
them on some paths), so every id built here is made of such characters. Readable parts are kept
as they are when they are safe and short; anything else is replaced by a digest, so two
different inputs never share an id by accident of sanitising.
"""

from __future__ import annotations

import hashlib
import re

_SAFE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def digest(text: str, length: int = 32) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def part(text: str) -> str:
    """``text`` when it is a safe id part; otherwise a readable stem plus a digest of the original
    (so ``a.b`` and ``a_b`` still differ)."""
    if _SAFE.fullmatch(text):
        return text
    stem = _UNSAFE.sub("_", text)[:40]
    return f"{stem}-{digest(text, 10)}"


def instance_id(agent: str, kind: str, scope: str, key: str) -> str:
    """The workflow instance id of the run one trigger starts for one key.

    ``scope`` names the trigger (a topic, a webhook path, a schedule name) so the same event id on
    two triggers of one agent gives two runs.
    """
    return f"{part(agent)}-{kind}-{part(scope)}-{part(key)}"
