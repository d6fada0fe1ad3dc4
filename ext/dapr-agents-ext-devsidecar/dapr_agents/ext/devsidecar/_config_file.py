"""The Configuration file (``--config``): read once, each section applied by its building block.

daprd expands ``$VAR``/``${VAR}`` in the whole file before decoding it (``os.ExpandEnv``); the dev
sidecar does the same, then hands ``spec`` to the secret scopes (:mod:`._secrets`) and the
service-invocation access control list (:mod:`._acl`), and names the sections it does not apply.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ._errors import ComponentError

_log = logging.getLogger(__name__)

#: The sections of ``spec`` the dev sidecar applies.
APPLIED = ("secrets", "accessControl")

_ENV_REFERENCE = re.compile(r"\$\{([^}]*)\}|\$([A-Za-z0-9_]+)")


def read_configuration(path: str | os.PathLike[str], env: Mapping[str, str]) -> dict[str, Any]:
    """The ``spec`` of a Configuration file, environment references expanded; warns once about the
    sections the dev sidecar does not apply."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ComponentError(f"configuration file {source!r}: {exc.strerror or exc}") from exc
    text = _ENV_REFERENCE.sub(lambda m: env.get(m.group(1) or m.group(2), ""), text)
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ComponentError(f"configuration file {source!r}: not valid YAML: {exc}") from exc
    spec = (document.get("spec") or {}) if isinstance(document, dict) else {}
    if not isinstance(spec, dict):
        raise ComponentError(f"configuration file {source!r}: spec must be a mapping")
    ignored = sorted(name for name in spec if name not in APPLIED)
    if ignored:
        _log.warning(
            "configuration file %s: the dev sidecar applies only spec.secrets and spec.accessControl; "
            "ignored: %s",
            source,
            ", ".join(ignored),
        )
    return spec
