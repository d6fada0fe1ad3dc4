"""The seed docs' three CrewAI tasks, run durably with dapr-agents-ext-crewai.

Unlike the recipe it replaces, this keeps the crew as one crew: the policy task receives the two
earlier outputs as context, and each task is one durable activity. The LLM is scripted so the
sample runs offline; swap ``ScriptedLLM`` for ``LLM(model=...)`` to use a real model.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
os.environ.setdefault("CREWAI_STORAGE_DIR", tempfile.mkdtemp(prefix="crewai-"))

from crewai import Agent, Crew, Task

from dapr_agents.ext.crewai import kickoff_durable
from dapr_agents.ext.crewai.testing import ScriptedLLM


def analyst(role: str, answer: str) -> Agent:
    return Agent(
        role=role,
        goal="Research and summarize impactful technology updates.",
        backstory="A skilled analyst who specializes in researching and summarizing technology topics.",
        llm=ScriptedLLM([answer]),
        max_retry_limit=0,
    )


def answer_from_context(messages: object) -> str:
    # The scripted editor proves that context flowed: it quotes what the earlier tasks produced.
    text = str(messages)
    seen = [name for name in ("Story A", "Startup X") if name in text]
    return f"Brief covering {' and '.join(seen)}: AI policy moves with the market."


news = analyst("News Analyst", "Top AI stories: Story A, Story B, Story C.")
startups = analyst("Startup Analyst", "Startups: Startup X (x.ai), Startup Y (y.ai).")
editor = Agent(
    role="Policy Editor",
    goal="Relate AI policy to the news and the startups.",
    backstory="An editor who connects technology and regulation.",
    llm=ScriptedLLM([answer_from_context]),
    max_retry_limit=0,
)

latest_ai_news = Task(
    name="latest_ai_news",
    description="Find the latest news about {topic}.",
    expected_output="A 3-paragraph summary of the top 3 stories.",
    agent=news,
)
ai_startup_launches = Task(
    name="ai_startup_launches",
    description="Summarize the most impactful {topic} startup launches in the last 6 months.",
    expected_output="A list summarizing 2 startups with links.",
    agent=startups,
)
ai_policy_updates = Task(
    name="ai_policy_updates",
    description="Summarize the newest {topic} policy updates in the light of the news and the startups.",
    expected_output="A bullet-point list summarizing the latest policy changes.",
    agent=editor,
    context=[latest_ai_news, ai_startup_launches],
)

crew = Crew(
    name="tech-brief",
    agents=[news, startups, editor],
    tasks=[latest_ai_news, ai_startup_launches, ai_policy_updates],
)

if __name__ == "__main__":
    # Rerun with the same instance id after a crash: finished tasks are not run again.
    result = kickoff_durable(crew, inputs={"topic": "AI"}, instance_id="crewai-multi-01")
    for task_output in result.tasks_output:
        print(f"{task_output.name}: {task_output.raw}")
    print(f"final: {result.raw}")
    print(f"llm calls: {result.token_usage.successful_requests}")
