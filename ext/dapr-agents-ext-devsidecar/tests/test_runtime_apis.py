"""Metadata, health, API token, conversation and stream-protocol behaviour, over the wire."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from dapr.clients import DaprClient
from dapr.clients.grpc.conversation import (
    ConversationInputAlpha2,
    ConversationMessage,
    ConversationMessageContent,
    ConversationMessageOfTool,
    ConversationMessageOfUser,
    ConversationTools,
    ConversationToolsFunction,
)
from dapr.proto.runtime.v1 import dapr_pb2_grpc, pubsub_pb2
from helpers import rpc_fails

from dapr_agents.ext.devsidecar import DevSidecar, ScriptedChatServer, ScriptedReply, ScriptedToolCall
from dapr_agents.ext.devsidecar.testing import external_mode, write_components


@pytest.fixture
def dapr_state_backend() -> str:
    return "external" if external_mode() else "in-memory"


def user(text: str) -> ConversationMessage:
    return ConversationMessage(
        of_user=ConversationMessageOfUser(content=[ConversationMessageContent(text=text)])
    )


async def test_metadata_lists_components_with_daprd_type_strings(dapr):
    metadata = await dapr.call("get_metadata")
    components = {c.name: c for c in metadata.registered_components}
    assert components["statestore"].type.startswith("state.")
    assert components["pubsub"].type == "pubsub.in-memory"
    assert components["llm"].type == "conversation.echo"
    assert {"ETAG", "TRANSACTIONAL", "ACTOR"} <= set(components["statestore"].capabilities)
    major, minor = (int(p) for p in metadata.extended_metadata["daprRuntimeVersion"].split(".")[:2])
    assert (major, minor) >= (1, 16)  # dapr-agents' requirement


async def test_metadata_reports_the_app_id(dapr, dapr_sidecar):
    metadata = await dapr.call("get_metadata")
    assert metadata.application_id == dapr_sidecar.app_id


async def test_set_metadata_shows_up_in_extended_metadata(dapr, unique):
    await dapr.call("set_metadata", f"{unique}-key", "value")
    metadata = await dapr.call("get_metadata")
    assert metadata.extended_metadata[f"{unique}-key"] == "value"


def test_health_endpoints_answer_204(dapr_sidecar):
    for path in ("/v1.0/healthz", "/v1.0/healthz/outbound"):
        with urllib.request.urlopen(dapr_sidecar.http_endpoint + path) as answer:
            assert answer.status == 204


async def test_echo_joins_the_text_and_counts_words(dapr):
    answer = await dapr.call(
        "converse_alpha2",
        name="llm",
        inputs=[ConversationInputAlpha2(messages=[user("hello there"), user("general kenobi")])],
    )
    choice = answer.outputs[0].choices[0]
    assert choice.message.content == "hello there\ngeneral kenobi"
    assert choice.finish_reason == "stop"
    assert answer.outputs[0].usage.prompt_tokens == 4
    assert answer.outputs[0].usage.total_tokens == 8


async def test_echo_calls_every_offered_tool(dapr):
    tool = ConversationTools(
        function=ConversationToolsFunction(
            name="get_weather",
            description="weather",
            parameters={
                "type": "object",
                "properties": {"unit": {"type": "string"}, "city": {"type": "string"}},
            },
        )
    )
    tool_result = ConversationMessage(
        of_tool=ConversationMessageOfTool(
            tool_id="0", name="get_weather", content=[ConversationMessageContent(text="sunny")]
        )
    )
    answer = await dapr.call(
        "converse_alpha2",
        name="llm",
        inputs=[ConversationInputAlpha2(messages=[user("weather?"), tool_result])],
        tools=[tool],
    )
    choice = answer.outputs[0].choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "weather?\nTool Response for tool ID '0' with name 'get_weather': sunny"
    call = choice.message.tool_calls[0]
    assert (call.id, call.function.name, call.function.arguments) == ("0", "get_weather", "city,unit")


async def test_unknown_conversation_component_is_named(dapr):
    with rpc_fails() as failure:
        await dapr.call(
            "converse_alpha2", name="nope", inputs=[ConversationInputAlpha2(messages=[user("x")])]
        )
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.details == "failed finding conversation component nope"


def test_client_half_close_ends_the_subscription_like_daprd(dapr_sidecar, unique):
    channel = grpc.insecure_channel(dapr_sidecar.grpc_address)
    stub = dapr_pb2_grpc.DaprStub(channel)
    initial = pubsub_pb2.SubscribeTopicEventsRequestAlpha1(
        initial_request=pubsub_pb2.SubscribeTopicEventsRequestInitialAlpha1(
            pubsub_name="pubsub", topic=f"{unique}-t"
        )
    )
    stream = stub.SubscribeTopicEventsAlpha1(iter([initial]))
    assert next(stream).HasField("initial_response")
    with pytest.raises(grpc.RpcError) as failure:
        next(stream)
    assert failure.value.code() == grpc.StatusCode.UNKNOWN
    assert failure.value.details() == "EOF"
    channel.close()


def test_a_subscription_without_a_topic_is_refused(dapr_sidecar):
    channel = grpc.insecure_channel(dapr_sidecar.grpc_address)
    stub = dapr_pb2_grpc.DaprStub(channel)
    initial = pubsub_pb2.SubscribeTopicEventsRequestAlpha1(
        initial_request=pubsub_pb2.SubscribeTopicEventsRequestInitialAlpha1(pubsub_name="pubsub")
    )
    with pytest.raises(grpc.RpcError) as failure:
        next(stub.SubscribeTopicEventsAlpha1(iter([initial])))
    assert failure.value.code() == grpc.StatusCode.UNKNOWN
    assert failure.value.details() == "topic is required"
    channel.close()


# -- dev sidecar only: its own configuration ---------------------------------------------------


@pytest.mark.starts_sidecars  # a dev sidecar, or a real daprd with DAPR_TEST_SIDECAR=daprd
def test_api_token_is_required_except_for_health(tmp_path: Path, dapr_sidecar_factory):
    folder = write_components(tmp_path / "components")
    started = dapr_sidecar_factory.start(folder, app_id="secured", api_token="s3cret")
    sidecar = started.endpoint() if callable(started.endpoint) else started.endpoint
    with urllib.request.urlopen(f"{sidecar.http_endpoint}/v1.0/healthz/outbound") as answer:
        assert answer.status == 204
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{sidecar.http_endpoint}/v1.0/metadata")
    assert refused.value.code == 401
    channel = grpc.insecure_channel(sidecar.grpc_address)
    stub = dapr_pb2_grpc.DaprStub(channel)
    from dapr.proto.runtime.v1 import state_pb2

    request = state_pb2.GetStateRequest(store_name="statestore", key="k")
    for metadata in ((), (("dapr-api-token", "wrong"),)):
        with pytest.raises(grpc.RpcError) as failure:
            stub.GetState(request, metadata=metadata)
        assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert failure.value.details() == "Unauthorized"
    assert stub.GetState(request, metadata=(("dapr-api-token", "s3cret"),)).data == b""
    channel.close()
    with sidecar.sdk_configured(), DaprClient() as client:  # the SDK sends DAPR_API_TOKEN
        client.save_state("statestore", "k", "v")
        assert client.get_state("statestore", "k").data == b"v"


@pytest.mark.devsidecar_only
def test_it_listens_on_loopback_by_default(tmp_path: Path):
    with DevSidecar(app_id="local", resources_paths=[write_components(tmp_path / "c")]) as sidecar:
        assert sidecar.grpc_address.startswith("127.0.0.1:")
        assert sidecar.http_endpoint.startswith("http://127.0.0.1:")


@pytest.mark.starts_sidecars  # a dev sidecar, or daprd's own conversation.openai with DAPR_TEST_SIDECAR=daprd
def test_conversation_openai_forwards_to_an_openai_compatible_server(tmp_path: Path, dapr_sidecar_factory):
    script = [
        ScriptedReply(tool_calls=[ScriptedToolCall("lookup", {"city": "Paris"}, id="call_1")]),
        ScriptedReply("It is sunny in Paris.", when="sunny"),
    ]
    with ScriptedChatServer(script, fallback=None) as llm:
        folder = write_components(tmp_path / "c", conversation="openai", openai_endpoint=llm.base_url)
        started = dapr_sidecar_factory.start(folder, app_id="llm-app")
        endpoint = started.endpoint() if callable(started.endpoint) else started.endpoint
        with endpoint.sdk_configured(), DaprClient() as client:
            tool = ConversationTools(
                function=ConversationToolsFunction(
                    name="lookup",
                    description="look up",
                    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
                )
            )
            first = client.converse_alpha2(
                name="llm",
                inputs=[ConversationInputAlpha2(messages=[user("weather in Paris?")])],
                tools=[tool],
            )
            call = first.outputs[0].choices[0].message.tool_calls[0]
            assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
                "call_1",
                "lookup",
                {"city": "Paris"},
            )
            assert first.outputs[0].choices[0].finish_reason == "tool_calls"
            tool_result = ConversationMessage(
                of_tool=ConversationMessageOfTool(
                    tool_id="call_1", name="lookup", content=[ConversationMessageContent(text="sunny")]
                )
            )
            second = client.converse_alpha2(
                name="llm",
                inputs=[ConversationInputAlpha2(messages=[user("weather in Paris?"), tool_result])],
                tools=[tool],
            )
            assert second.outputs[0].choices[0].message.content == "It is sunny in Paris."
            assert second.outputs[0].model == "scripted"
        sent = llm.requests
        assert sent[0]["tools"][0]["function"]["name"] == "lookup"
        assert sent[0]["tool_choice"] == "auto"
        assert sent[1]["messages"][-1] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}


@pytest.mark.devsidecar_only
async def test_apis_it_does_not_serve_answer_unimplemented_by_name(dapr):
    with rpc_fails() as failure:
        await dapr.call("invoke_binding", "storage", "create", b"data")
    assert failure.code == grpc.StatusCode.UNIMPLEMENTED
    assert "does not implement InvokeBinding" in failure.details
