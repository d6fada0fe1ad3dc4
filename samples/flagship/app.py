"""The flagship: a question arrives on a topic and a team of agents from four frameworks answers it.

    topic "questions" --topic_trigger--> coordinator (dapr-agents DurableAgent, a Dapr workflow)
        1. researcher  LangGraph graph, checkpoints in Dapr state (DaprCheckpointer)
        2. writer      OpenAI Agents SDK agent, history in a Dapr session (DaprSession)
        3. reviewers   CrewAI crew, each task a durable activity
        4. publish_answer -> topic "answers"

Each of the three is hosted as a Dapr agent workflow on this app's one WorkflowRuntime and called by
the coordinator as a tool. Every step is recorded in the state store before the next starts, so the
app can be killed at any point (``--crash`` does it for you, in the middle of the crew's second
task) and started again: the run continues where it stopped and no finished step runs twice. The
question's event id decides the run: publishing it again, or starting the app again, finds the same
run (the trigger's dedupe ledger) instead of starting a second one.

Offline by default (a scripted, OpenAI-compatible model server in this process); set
``OPENAI_API_KEY`` (and optionally ``OPENAI_BASE_URL`` for any OpenAI-compatible endpoint such as
Ollama, and ``OPENAI_MODEL``) to use a real model for all four frameworks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

# CrewAI reads these when it is imported: no telemetry, no tracing prompt, no writes to your home.
os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
os.environ.setdefault("CREWAI_STORAGE_DIR", tempfile.mkdtemp(prefix="crewai-"))

import dapr.ext.workflow as wf
from agents import Agent, AgentHooks, OpenAIChatCompletionsModel, set_tracing_disabled
from crewai import LLM, Crew, Task
from crewai import Agent as CrewAgent
from crewai.hooks import after_llm_call
from dapr.clients import DaprClient
from langchain_core.messages import AIMessage, SystemMessage
from langchain_core.tools import tool as langchain_tool
from langchain_openai import ChatOpenAI
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from openai import AsyncOpenAI

from dapr_agents import AgentRunner, DurableAgent, Hooks, tool
from dapr_agents.agents.utils.text_printer import ColorTextFormatter
from dapr_agents.ext.crewai import host_crew
from dapr_agents.ext.devsidecar import ScriptedChatServer, ScriptedReply, ScriptedToolCall
from dapr_agents.ext.langgraph import DaprCheckpointer, host_graph
from dapr_agents.ext.openai_agents import host_openai_agent
from dapr_agents.ext.triggers import topic_trigger
from dapr_agents.llm.openai import OpenAIChatClient
from dapr_agents.tool.workflow.agent_tool import agent_to_tool

PUBSUB, QUESTIONS, ANSWERS = "pubsub", "questions", "answers"
STATE_STORE = "statestore"  # LangGraph checkpoints, OpenAI Agents sessions, CrewAI tool journal
QUESTION = "How do Dapr workflows make AI agents durable?"


def log(who: str, text: str) -> None:
    # One write per line: the agents report from several threads at once.
    sys.stdout.write(f"[{who}] {text}\n")
    sys.stdout.flush()


# --- the model: a real one when configured, else a script ------------------------------------------

# What a model would answer at each step. Each reply is picked by a phrase that only the message it
# answers contains, so the script works in any order and again after a restart. Tool calls carry
# their own ids: a restarted server would count from call_1 again, and ids must stay unique within
# a conversation, as a real model's are.
FACTS = (
    "FACTS: (1) a workflow records each step in the state store before the next starts; "
    "(2) after a crash it replays that record and continues after the last recorded step; "
    "(3) a recorded step is never run again."
)
DRAFT = (
    "Dapr workflows record every step of an agent in a state store. After a crash, the workflow "
    "replays that record and continues where it stopped. Steps that already finished never run again."
)
FINAL = (
    "Dapr workflows make agents durable by recording every step in a state store: after a crash "
    "the run replays that record and resumes after the last finished step, which never runs twice."
)


def call(tool_name: str, **arguments: str) -> list[ScriptedToolCall]:
    return [ScriptedToolCall(tool_name, arguments, id=f"call-{tool_name}")]


SCRIPT = [
    # dapr-agents summarises each finished run for the agent's memory.
    ScriptedReply('{"summary": "answered"}', when="Summarize the following conversation", repeat=True),
    ScriptedReply(
        tool_calls=call("researcher", task="Research: what makes Dapr workflows durable?"), when=QUESTION
    ),
    ScriptedReply(tool_calls=call("search_notes", query="durable workflows"), when="Research:"),
    ScriptedReply(FACTS, when="NOTES:"),
    ScriptedReply(
        tool_calls=call("writer", task="Write: a three-sentence answer for developers."), when="FACTS:"
    ),
    ScriptedReply(f"DRAFT: {DRAFT}", when="Write: a three-sentence answer"),
    ScriptedReply(tool_calls=call("reviewers", task=f"Review: {DRAFT}"), when="DRAFT:"),
    ScriptedReply("CHECKED: all three statements match the notes.", when="Fact-check this draft"),
    ScriptedReply(f"FINAL: {FINAL}", when="Polish the checked draft"),
    ScriptedReply(tool_calls=call("publish_answer", answer=FINAL), when="FINAL:"),
    ScriptedReply(FINAL, when="Published on topic"),
]


@dataclass(frozen=True)
class Model:
    base_url: str | None  # None: the provider's default endpoint
    api_key: str
    name: str


def choose_model() -> tuple[Model, ScriptedChatServer | None]:
    if api_key := os.environ.get("OPENAI_API_KEY"):
        model = Model(
            os.environ.get("OPENAI_BASE_URL"), api_key, os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
        )
        log("app", f"model: {model.name} at {model.base_url or 'api.openai.com'}")
        return model, None
    server = ScriptedChatServer(SCRIPT).start()
    log("app", "model: scripted (offline); set OPENAI_API_KEY to use a real model")
    return Model(server.base_url, "scripted", "scripted"), server


# --- 1. the researcher: a LangGraph graph ------------------------------------------------------------

NOTES = [
    "Dapr Workflow persists every activity result and timer in the configured state store.",
    "A workflow that crashed is replayed from its history; completed activities return their recorded result.",
    "Dapr delivers workflow work items again until a worker reports them done.",
]


@langchain_tool
def search_notes(query: str) -> str:
    """Search the team's engineering notes."""
    log("researcher", f"LangGraph tool search_notes({query!r}): {len(NOTES)} notes")
    return "NOTES: " + " | ".join(NOTES)


def researcher_graph(model: Model) -> Any:
    llm = ChatOpenAI(model=model.name, base_url=model.base_url, api_key=model.api_key).bind_tools(
        [search_notes]
    )
    system = SystemMessage("Research the question with search_notes, then answer with the facts, numbered.")

    def think(state: MessagesState) -> dict[str, list[AIMessage]]:
        reply = llm.invoke([system, *state["messages"]])
        log(
            "researcher",
            "LangGraph node 'think': " + ("searching the notes" if reply.tool_calls else "facts ready"),
        )
        return {"messages": [reply]}

    builder = StateGraph(MessagesState)
    builder.add_node("think", think)
    builder.add_node("tools", ToolNode([search_notes]))
    builder.add_edge(START, "think")
    builder.add_conditional_edges("think", tools_condition)
    builder.add_edge("tools", "think")
    return builder.compile()


# --- 2. the writer: an OpenAI Agents SDK agent -------------------------------------------------------


class WriterProgress(AgentHooks[Any]):
    async def on_end(self, context: Any, agent: Agent[Any], output: Any) -> None:
        log("writer", "OpenAI Agents run finished: draft ready")


def writer_agent(model: Model) -> Agent[Any]:
    set_tracing_disabled(True)  # traces would go to OpenAI's dashboard; keep the sample self-contained
    client = AsyncOpenAI(base_url=model.base_url, api_key=model.api_key)
    return Agent(
        name="writer",
        instructions="Write a clear answer of at most three sentences for developers from the facts given.",
        model=OpenAIChatCompletionsModel(model=model.name, openai_client=client),
        hooks=WriterProgress(),
    )


# --- 3. the reviewers: a CrewAI crew -----------------------------------------------------------------


def report_task_done(output: Any) -> None:
    log("reviewers", f"CrewAI task '{output.name}' done")


def reviewers_crew(model: Model) -> Crew:
    llm = LLM(model=f"openai/{model.name}", base_url=model.base_url, api_key=model.api_key)
    checker = CrewAgent(
        role="Fact checker",
        goal="Catch wrong statements",
        backstory="You know Dapr well.",
        llm=llm,
        max_retry_limit=0,
    )
    editor = CrewAgent(
        role="Editor",
        goal="Make answers short and clear",
        backstory="You edit developer docs.",
        llm=llm,
        max_retry_limit=0,
    )
    fact_check = Task(
        name="fact_check",
        description="Fact-check this draft against what you know about Dapr: {task}",
        expected_output="A verdict naming any wrong statement.",
        agent=checker,
        callback=report_task_done,
    )
    polish = Task(
        name="polish",
        description="Polish the checked draft for readers, keeping only correct statements: {task}",
        expected_output="The final answer, at most three sentences.",
        agent=editor,
        context=[fact_check],
        callback=report_task_done,
    )
    return Crew(name="reviewers", agents=[checker, editor], tasks=[fact_check, polish])


def crash_while_polishing() -> None:
    """``--crash``: SIGKILL this process once the editor's model has answered, before the task ends."""

    @after_llm_call(agents=["Editor"])
    def crash(context: Any) -> None:
        log("app", "--crash: killing the app (SIGKILL) in the middle of CrewAI task 'polish'")
        os.kill(os.getpid(), signal.SIGKILL)


# --- the coordinator: a dapr-agents DurableAgent -----------------------------------------------------


@tool
def publish_answer(answer: str) -> str:
    """Publish the final answer for the asker on the 'answers' topic."""
    with DaprClient() as client:
        client.publish_event(
            PUBSUB, ANSWERS, json.dumps({"answer": answer}), data_content_type="application/json"
        )
    log("coordinator", f"answer published on topic '{ANSWERS}'")
    return f"Published on topic '{ANSWERS}'."


def report_model_turn(context: Any, message: dict[str, Any]) -> None:
    # after_llm_call runs inside the call_llm activity: once per model turn, never on replay.
    calls = [call["function"]["name"] for call in message.get("tool_calls") or []]
    log("coordinator", f"model turn: calls {', '.join(calls)}" if calls else "model turn: final answer")


class Quiet(ColorTextFormatter):
    """dapr-agents prints every message in colour; the progress log above says what happens."""

    def print_message(self, *args: Any, **kwargs: Any) -> None:
        pass

    def print_colored_text(self, *args: Any, **kwargs: Any) -> None:
        pass


def coordinator_agent(model: Model, runtime: wf.WorkflowRuntime) -> DurableAgent:
    agent = DurableAgent(
        name="coordinator",
        role="Coordinator",
        goal="Answer developer questions with the help of the team",
        instructions=[
            "1. Call researcher with the question to get the facts.",
            "2. Call writer with the facts to draft the answer.",
            "3. Call reviewers with the draft to check and polish it.",
            "4. Call publish_answer with the polished answer, then reply with that answer only.",
        ],
        llm=OpenAIChatClient(base_url=model.base_url, api_key=model.api_key, model=model.name),
        tools=[
            agent_to_tool("researcher", "Researches a question in the team's notes.", framework="langgraph"),
            agent_to_tool("writer", "Writes a short answer from facts.", framework="openai"),
            agent_to_tool("reviewers", "Fact-checks and polishes a draft answer.", framework="crewai"),
            publish_answer,
        ],
        hooks=Hooks(after_llm_call=[report_model_turn]),
        runtime=runtime,
    )
    agent.text_formatter = Quiet()
    return agent


# --- the app -----------------------------------------------------------------------------------------


def receive_answers(stop: threading.Event) -> None:
    """A stand-in for whoever asked: prints what arrives on the answers topic."""
    with DaprClient() as client:
        subscription = client.subscribe(PUBSUB, ANSWERS)
        try:
            while not stop.is_set():
                message = subscription.next_message()
                if message is None:
                    continue
                log("asker", f"answer received on topic '{ANSWERS}'")
                subscription.respond_success(message)
        finally:
            subscription.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crash", action="store_true", help="SIGKILL the app in the middle of the crew")
    parser.add_argument("--question-id", default="question-1", help="the event id (one run per id)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)  # the progress log is on stdout; warnings go to stderr
    # dapr 1.18.3's Subscription can half-close its stream as it starts; it then reconnects at once
    # and loses nothing, but warns each time.
    logging.getLogger("dapr.clients.grpc.subscription").setLevel(logging.ERROR)

    model, scripted = choose_model()
    runtime = wf.WorkflowRuntime()  # one per app: the sidecar hands work to any worker of the app
    checkpointer = DaprCheckpointer(STATE_STORE)
    host_graph(runtime, researcher_graph(model), name="researcher", checkpointer=checkpointer)
    host_openai_agent(runtime, writer_agent(model), session_store=STATE_STORE)
    host_crew(runtime, reviewers_crew(model), name="reviewers", journal_store=STATE_STORE)
    if args.crash:
        crash_while_polishing()
    coordinator = coordinator_agent(model, runtime)
    questions = topic_trigger(coordinator, pubsub=PUBSUB, topic=QUESTIONS)  # one run per event id

    runner = AgentRunner()
    runner.workflow(coordinator)  # starts the runtime and the trigger's subscription
    stop = threading.Event()
    asker = threading.Thread(target=receive_answers, args=(stop,), daemon=True)
    asker.start()
    try:
        with DaprClient() as client:
            client.publish_event(
                PUBSUB,
                QUESTIONS,
                json.dumps({"task": QUESTION}),
                data_content_type="application/json",
                publish_metadata={"cloudevent.id": args.question_id},
            )
        log("app", f"question {args.question_id!r} published on topic '{QUESTIONS}': {QUESTION}")
        instance_id = questions.instance_id_for(args.question_id)
        state = wait_for_run(instance_id, timeout=600)
        if state.runtime_status != wf.WorkflowStatus.COMPLETED:
            log("app", f"run {instance_id} ended {state.runtime_status.name}: {state.failure_details}")
            return 1
        log("app", f"final answer: {json.loads(state.serialized_output)['content']}")
        time.sleep(1)  # let the asker print the published answer (a resumed run published it earlier)
        return 0
    finally:
        stop.set()
        runner.shutdown()
        runtime.shutdown()
        if scripted:
            scripted.stop()


def wait_for_run(instance_id: str, timeout: float) -> wf.WorkflowState:
    workflows = wf.DaprWorkflowClient()
    deadline = time.monotonic() + timeout
    while (state := workflows.get_workflow_state(instance_id)) is None:  # the trigger schedules it
        if time.monotonic() > deadline:
            raise TimeoutError(f"no run {instance_id} after {timeout} s: is the trigger subscribed?")
        time.sleep(0.2)
    if state.runtime_status == wf.WorkflowStatus.RUNNING:  # or resumed, after a restart
        log("app", f"run {instance_id} is running")
    else:  # the question was answered before: its event id finds the same run
        log("app", f"run {instance_id} found: {state.runtime_status.name}")
    done = workflows.wait_for_workflow_completion(instance_id, timeout_in_seconds=int(timeout))
    if done is None:
        raise TimeoutError(f"run {instance_id} did not finish in {timeout} s")
    return done


if __name__ == "__main__":
    sys.exit(main())
