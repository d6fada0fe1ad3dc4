"""The package's exceptions: one base class, so callers can catch every trigger error at once."""

from __future__ import annotations


class TriggerError(Exception):
    """Base class of every error raised by ``dapr_agents.ext.triggers``."""


class TriggerConfigError(TriggerError, ValueError):
    """A trigger factory got a value it cannot work with (the message names it and the fix)."""


class CronError(TriggerConfigError):
    """A cron expression could not be parsed."""


class WebhookHostError(TriggerError, RuntimeError):
    """A webhook trigger was activated without an HTTP app to mount its route on."""
