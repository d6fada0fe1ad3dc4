"""The exceptions this package raises; every one derives from :class:`DaprSessionError`.

Messages name the state store and the key involved and say what to do, because a session error
is usually read in a log far away from the code that created the session.
"""

from __future__ import annotations


class DaprSessionError(Exception):
    """Base class of every error raised by :class:`~dapr_agents.ext.openai_agents.DaprSession`."""


class ItemNotSerializableError(DaprSessionError, TypeError):
    """An item passed to ``add_items`` cannot be stored as JSON; nothing was written.

    It is also a ``TypeError``, which is what ``json.dumps`` (and so the upstream session)
    raises for the same input.
    """


class SessionCorruptedError(DaprSessionError):
    """A stored record of the session is missing or unreadable.

    Raised instead of returning a silently shortened history. ``key`` is the state key as the
    application sees it (daprd adds its ``<app-id>||`` prefix in the store).
    """

    def __init__(self, message: str, *, store: str, key: str) -> None:
        super().__init__(message)
        self.store = store
        self.key = key


class SessionConflictError(DaprSessionError):
    """An operation kept losing to concurrent writers until its retry budget ran out.

    Nothing was changed by the failed call, so retrying it is safe.
    """


class SessionClosedError(DaprSessionError, RuntimeError):
    """The session was closed (it owned its Dapr client and released it)."""
