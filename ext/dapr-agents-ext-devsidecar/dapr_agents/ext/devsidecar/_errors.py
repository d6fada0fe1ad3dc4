"""Exceptions of the dev sidecar.

Configuration problems raise :class:`ComponentError` at start-up, naming the file and the
component. Store-level failures are raised by the backends as the small hierarchy below and
turned into the gRPC status daprd would return by the API layer, which owns the message texts.
"""

from __future__ import annotations


class DevSidecarError(Exception):
    """Base class of every error raised by the dev sidecar."""


class ComponentError(DevSidecarError):
    """A component file is malformed, uses an unsupported type, or has bad metadata."""


class StoreError(DevSidecarError):
    """A state store operation failed for a reason other than an etag conflict."""


class EtagMismatchError(StoreError):
    """The etag (or first-write rule) of a write did not match what the store holds."""


class EtagInvalidError(StoreError):
    """The etag given cannot be an etag of this store (for example not a number on Redis)."""


class UnsupportedOperationError(StoreError):
    """The backend does not implement the requested feature (query, transactions, ...)."""
