"""Agents as tools across frameworks: three frameworks call one dapr-agents DurableAgent, and a
hosted OpenAI Agents agent is called from LangGraph and discovered through the registry.

    OpenAI Agents "Editor"      --dapr_agent_tool-->  "Fact Checker" (dapr-agents DurableAgent)
    LangGraph "Trip Planner"    --dapr_agent_tool-->  "Geographer"   (OpenAI Agents, hosted)
                                --dapr_agent_tool-->  "Fact Checker" --registry--> "Geographer"
    CrewAI "Science Writer"     --DaprAgentTool---->  "Fact Checker"

Everything runs in this one app on its one WorkflowRuntime: each call to an agent is a Dapr
workflow instance, so it survives a crash of the app, and a retried tool call re-attaches to the
run it started instead of starting a second one.

Offline by default (a scripted, OpenAI-compatible model server in this process); set
``OPENAI_API_KEY`` (and optionally ``OPENAI_BASE_URL``, ``OPENAI_MODEL``) to use a real model.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Any

# CrewAI reads these when it is imported: no telemetry, no tracing prompt, no writes to your home.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
os.environ.setdefault("CREWAI_STORAGE_DIR", tempfile.mkdtemp(prefix="crewai-"))

import dapr.ext.workflow as wf
from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled
from agents.items import ToolCallItem, ToolCallOutputItem
from crewai import LLM, Crew, Task
from crewai import Agent as CrewAgent
from crewai.hooks import ToolCallHookContext, register_after_tool_call_hook
from langchain_core.messages import AIMessage, SystemMessage
from langchain_openai import ChatOpenAI
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from openai import AsyncOpenAI

from dapr_agents import AgentRunner, DurableAgent, Hooks
from dapr_agents.agents.utils.text_printer import ColorTextFormatter
from dapr_agents.ext.crewai import DaprAgentTool, DaprCrew
from dapr_agents.ext.devsidecar import ScriptedChatServer, ScriptedReply, ScriptedToolCall
from dapr_agents.ext.interop import AgentRegistry
from dapr_agents.ext.langgraph import DaprCheckpointer
from dapr_agents.ext.langgraph import dapr_agent_tool as langgraph_agent_tool
from dapr_agents.ext.openai_agents import dapr_agent_tool as openai_agent_tool
from dapr_agents.ext.openai_agents import host_openai_agent
from dapr_agents.llm.openai import OpenAIChatClient

APP_ID = os.environ.get("APP_ID", "agents-as-tools")  # dapr run / dapr-devsidecar run set it
STATE_STORE = "statestore"  # LangGraph checkpoints, OpenAI Agents sessions, CrewAI tool journal
FACT_CHECKER, GEOGRAPHER = "Fact Checker", "Geographer"

EDITOR_TASK = "Edit this sentence for the travel guide: The Eiffel Tower is in Paris."
PLANNER_TASK = "Plan a day in Lyon."
WRITER_TASK = "Write one line for the science page: water boils at 100 C at sea level."


def log(text: str) -> None:
    # One write per line: the agents report from several threads at once.
    sys.stdout.write(f"{text}\n")
    sys.stdout.flush()


def agent_named(tool_name: str) -> str:
    """The agent behind a tool name: models see "FactChecker" (CrewAI: "fact_checker")."""
    names = {name.replace(" ", "").lower(): name for name in (FACT_CHECKER, GEOGRAPHER)}
    return names.get(tool_name.replace("_", "").lower(), tool_name)


# --- the model: a real one when configured, else a script ------------------------------------------

# Each reply is picked by a phrase that only the message it answers contains (a task, or the
# answer a tool returned), so every agent gets its own turn of the script.
SCRIPT = [
    # dapr-agents summarises each finished run for the agent's memory.
    ScriptedReply('{"summary": "done"}', when="Summarize the following conversation", repeat=True),
    # 1. OpenAI Agents "Editor" -> Fact Checker
    ScriptedReply(
        tool_calls=[
            ScriptedToolCall("FactChecker", {"task": "Check the claim: the Eiffel Tower is in Paris."})
        ],
        when="Edit this sentence",
    ),
    ScriptedReply("TRUE: the Eiffel Tower stands in Paris.", when="Check the claim: the Eiffel Tower"),
    ScriptedReply("The Eiffel Tower is in Paris (fact-checked).", when="TRUE: the Eiffel Tower"),
    # 2. LangGraph "Trip Planner" -> Geographer, then -> Fact Checker, which finds Geographer itself
    ScriptedReply(
        tool_calls=[ScriptedToolCall("Geographer", {"task": "Which rivers meet in Lyon?"})],
        when=PLANNER_TASK,
    ),
    ScriptedReply("The Rhone and the Saone meet in Lyon.", when="Which rivers meet in Lyon?"),
    ScriptedReply(
        tool_calls=[ScriptedToolCall("FactChecker", {"task": "Check the claim: two rivers meet in Lyon."})],
        when="The Rhone and the Saone meet",
    ),
    ScriptedReply(
        tool_calls=[ScriptedToolCall("Geographer", {"task": "How many rivers flow through Lyon?"})],
        when="Check the claim: two rivers",
    ),
    ScriptedReply("Two: the Rhone and the Saone.", when="How many rivers flow through Lyon?"),
    ScriptedReply("TRUE: two rivers, the Rhone and the Saone, meet in Lyon.", when="Two: the Rhone"),
    ScriptedReply("Walk along the Rhone and the Saone, then dine in Vieux Lyon.", when="TRUE: two rivers"),
    # 3. CrewAI "Science Writer" -> Fact Checker
    ScriptedReply(
        tool_calls=[ScriptedToolCall("FactChecker", {"task": "Check the claim: water boils at 100 C."})],
        when="Write one line for the science page",
    ),
    ScriptedReply("TRUE: at sea level water boils at 100 C.", when="Check the claim: water"),
    ScriptedReply("At sea level, water boils at 100 C (fact-checked).", when="TRUE: at sea level"),
]


@dataclass(frozen=True)
class Model:
    base_url: str | None  # None: the provider's default endpoint
    api_key: str
    name: str


def choose_model() -> tuple[Model, ScriptedChatServer | None]:
    if key := os.environ.get("OPENAI_API_KEY"):
        model = Model(os.environ.get("OPENAI_BASE_URL"), key, os.environ.get("OPENAI_MODEL", "gpt-4o-mini"))
        log(f"model: {model.name} at {model.base_url or 'api.openai.com'}")
        return model, None
    server = ScriptedChatServer(SCRIPT).start()
    log("model: scripted (offline); set OPENAI_API_KEY to use a real model")
    return Model(server.base_url, "scripted", "scripted"), server


# --- the agents that are called: a DurableAgent and a hosted OpenAI Agents agent --------------------


class Quiet(ColorTextFormatter):
    """dapr-agents prints every message in colour; this sample prints one line per call instead."""

    def print_message(self, *args: Any, **kwargs: Any) -> None:
        pass

    def print_colored_text(self, *args: Any, **kwargs: Any) -> None:
        pass


def report_delegation(context: Any, message: dict[str, Any]) -> None:
    # Runs inside the call_llm activity: once per model turn, never again on a workflow replay.
    for call in message.get("tool_calls") or []:
        name = call["function"]["name"]
        log(f"{FACT_CHECKER} (dapr-agents) -> {agent_named(name)}, found in the registry")


def fact_checker(model: Model, runtime: wf.WorkflowRuntime) -> DurableAgent:
    agent = DurableAgent(
        name=FACT_CHECKER,
        role="Fact checker",
        goal="Say whether a claim is true, in one line starting with TRUE or FALSE",
        instructions=["Ask the team's other agents when you need facts you do not know."],
        llm=OpenAIChatClient(base_url=model.base_url, api_key=model.api_key, model=model.name),
        hooks=Hooks(after_llm_call=[report_delegation]),
        runtime=runtime,
    )
    agent.text_formatter = Quiet()
    return agent


def openai_model(model: Model) -> OpenAIChatCompletionsModel:
    client = AsyncOpenAI(base_url=model.base_url, api_key=model.api_key)
    return OpenAIChatCompletionsModel(model=model.name, openai_client=client)


def geographer(model: Model) -> Agent[Any]:
    return Agent(
        name=GEOGRAPHER, instructions="Answer geography questions in one sentence.", model=openai_model(model)
    )


# --- the callers: one agent per framework -----------------------------------------------------------


def run_openai_editor(model: Model) -> None:
    editor = Agent(
        name="Editor",
        instructions="Check every claim with FactChecker before you return the edited sentence.",
        model=openai_model(model),
        tools=[openai_agent_tool(FACT_CHECKER, description="Checks whether a claim is true.", timeout=120)],
    )
    result = asyncio.run(Runner.run(editor, EDITOR_TASK))
    calls = {
        item.raw_item.call_id: item.raw_item.name
        for item in result.new_items
        if isinstance(item, ToolCallItem)
    }
    for item in result.new_items:
        if isinstance(item, ToolCallOutputItem):
            callee = calls.get(item.raw_item["call_id"], "?")
            log(f"Editor (OpenAI Agents) -> {agent_named(callee)}: {item.output}")
    log(f"Editor (OpenAI Agents) answered: {result.final_output}")


def run_langgraph_planner(model: Model) -> None:
    tools = [
        langgraph_agent_tool(GEOGRAPHER, description="Answers geography questions.", framework="openai"),
        langgraph_agent_tool(FACT_CHECKER, description="Checks whether a claim is true."),
    ]
    llm = ChatOpenAI(model=model.name, base_url=model.base_url, api_key=model.api_key).bind_tools(tools)
    system = SystemMessage("Ask Geographer for facts, have FactChecker check them, then plan the day.")

    def think(state: MessagesState) -> dict[str, list[AIMessage]]:
        return {"messages": [llm.invoke([system, *state["messages"]])]}

    builder = StateGraph(MessagesState)
    builder.add_node("think", think)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "think")
    builder.add_conditional_edges("think", tools_condition)
    builder.add_edge("tools", "think")
    graph = builder.compile(checkpointer=DaprCheckpointer(STATE_STORE))
    # A thread resumed after a crash re-runs its pending tool calls; they re-attach to their agent runs.
    config = {"configurable": {"thread_id": f"trip-{uuid.uuid4().hex[:8]}"}}
    answer = ""
    # Streamed, so each agent's answer is printed when it arrives.
    for update in graph.stream({"messages": [("user", PLANNER_TASK)]}, config, stream_mode="updates"):
        for message in update.get("tools", {}).get("messages", []):
            log(f"Trip Planner (LangGraph) -> {agent_named(str(message.name))}: {message.content}")
        for message in update.get("think", {}).get("messages", []):
            answer = message.text
    log(f"Trip Planner (LangGraph) answered: {answer}")


def report_crewai_call(context: ToolCallHookContext) -> None:
    callee = agent_named(context.tool_name)
    log(f"Science Writer (CrewAI) -> {callee}: {context.tool_result}")


def science_crew(model: Model) -> Crew:
    writer = CrewAgent(
        role="Science Writer",
        goal="Write correct one-liners",
        backstory="You check every fact with FactChecker before you write it.",
        llm=LLM(model=f"openai/{model.name}", base_url=model.base_url, api_key=model.api_key),
        tools=[
            DaprAgentTool(agent_name=FACT_CHECKER, description="Checks whether a claim is true.", timeout=120)
        ],
        max_retry_limit=0,
    )
    task = Task(
        name="science_line", description=WRITER_TASK, expected_output="One checked sentence.", agent=writer
    )
    return Crew(name="science", agents=[writer], tasks=[task])


def run_crewai_writer(crew: DaprCrew) -> None:
    # A durable crew: its task is an activity, and its tool calls are journaled, so a task retried
    # after a crash re-attaches to the Fact Checker run it started.
    client = wf.DaprWorkflowClient()
    output = crew.wait(
        client, crew.schedule(client, instance_id=f"science-{uuid.uuid4().hex[:8]}"), timeout=120
    )
    log(f"Science Writer (CrewAI) answered: {output.raw}")


def print_registry(registry: AgentRegistry) -> None:
    """What every DurableAgent of the team sees: itself, and the hosted Geographer."""
    for record in sorted(registry.list_agents(), key=lambda r: r.name):
        where = f"{record.framework}, app {record.app_id}"
        log(f"registry: {record.name} ({where}) -> {record.resolved_workflow_name}")


# --- the app -----------------------------------------------------------------------------------------


def main() -> int:
    logging.basicConfig(level=logging.WARNING)  # progress goes to stdout; warnings to stderr
    # dapr-agents warns on every run that the tool name "FactChecker" differs from "Fact Checker";
    # CrewAI that the scripted model has no token counter. Both are expected here.
    logging.getLogger("dapr_agents.tool.utils.function_calling").setLevel(logging.ERROR)
    logging.getLogger("crewai.llms.base_llm").setLevel(logging.ERROR)
    set_tracing_disabled(True)  # traces would go to OpenAI's dashboard; keep the sample self-contained
    model, scripted = choose_model()

    runtime = wf.WorkflowRuntime()  # one per app: the sidecar hands work to any worker of the app
    # Everything is registered on the runtime before it starts.
    geographer_host = host_openai_agent(
        runtime, geographer(model), session_store=STATE_STORE, role="Geographer"
    )
    crew = DaprCrew(science_crew(model), journal_store=STATE_STORE).register(runtime)
    register_after_tool_call_hook(report_crewai_call)
    checker = fact_checker(model, runtime)
    # DurableAgents of the team find the hosted Geographer here and may call it as a tool.
    registry = AgentRegistry()
    registry.register(geographer_host.record(APP_ID))

    runner = AgentRunner()
    runner.workflow(checker)  # hosts dapr.agents.FactChecker.workflow and starts the runtime
    try:
        run_openai_editor(model)
        run_langgraph_planner(model)
        run_crewai_writer(crew)
        print_registry(registry)
        return 0
    finally:
        crew.wait_idle(30)
        time.sleep(0.5)  # let the last activity results reach the sidecar before the worker stops
        runner.shutdown()
        runtime.shutdown()
        if scripted:
            scripted.stop()


if __name__ == "__main__":
    sys.exit(main())
