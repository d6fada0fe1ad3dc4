"""The app of the crash tests: a DurableAgent with one trigger, hosted until it is killed.

argv: agent name, marker, ready file. The agent has a topic trigger (``agent-pubsub``/``orders``)
and a schedule firing every 2 s (task ``<marker> tick <HH:MM:SS>``). The scripted LLM's URL
comes in ``LLM_URL``; the sidecar's address in the usual Dapr variables. The ready file is
written once the agent is hosted (the trigger is up).
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from dapr_agents import AgentRunner, DurableAgent
from dapr_agents.ext.triggers import Dedupe, schedule_trigger, topic_trigger
from dapr_agents.llm.openai import OpenAIChatClient

name, tag, ready = sys.argv[1], sys.argv[2], Path(sys.argv[3])

agent = DurableAgent(
    name=name,
    role="tester",
    goal="answer",
    llm=OpenAIChatClient(base_url=os.environ["LLM_URL"], api_key="x", model="scripted"),
)
topic_trigger(agent, pubsub="agent-pubsub", topic="orders", dedupe=Dedupe(lease=2))
schedule_trigger(agent, every=2, task=lambda fire: f"{tag} tick {fire.fire_time:%H:%M:%S}", overlap="allow")
runner = AgentRunner()
runner.workflow(agent)
ready.write_text("ready")
threading.Event().wait()
