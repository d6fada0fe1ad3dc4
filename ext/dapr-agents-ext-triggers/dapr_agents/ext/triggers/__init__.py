"""Activation-hook triggers for dapr-agents' ``DurableAgent``: pub/sub topics, durable schedules
and webhooks, each starting one agent run per event with a deterministic workflow instance id.

``topic_trigger(agent, pubsub=..., topic=...)``, ``schedule_trigger(agent, every=..., task=...)``
and ``webhook_trigger(agent, path=...)`` register on the agent; the triggers come up when an
``AgentRunner`` hosts it and go away on ``runner.shutdown()``.
"""

from ._cron import Cron
from ._errors import CronError, TriggerConfigError, TriggerError, WebhookHostError
from ._events import Fire, TopicEvent, WebhookRequest
from ._ledger import Dedupe
from ._runs import TriggerStats
from ._schedule import ScheduleTrigger, schedule_trigger
from ._topic import TopicTrigger, topic_trigger
from ._webhook import WebhookTrigger, signature, webhook_trigger
from .version import __version__

__all__ = [
    "Cron",
    "CronError",
    "Dedupe",
    "Fire",
    "ScheduleTrigger",
    "TopicEvent",
    "TopicTrigger",
    "TriggerConfigError",
    "TriggerError",
    "TriggerStats",
    "WebhookHostError",
    "WebhookRequest",
    "WebhookTrigger",
    "__version__",
    "schedule_trigger",
    "signature",
    "topic_trigger",
    "webhook_trigger",
]
