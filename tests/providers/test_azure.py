"""The Azure OpenAI adapter against the scriptable upstream's Azure routes, and the official
``openai`` SDK (``AzureOpenAI``) as the reference for what is sent and what is parsed."""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest
import urllib3

from msgflux import Model
from msgflux.exceptions import (
    APIConnectionError,
    AuthenticationError,
    ContentPolicyError,
    ContextWindowExceededError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
)
from msgflux.models.providers.azure import AzureChatCompletion
from msgflux.models.response import ModelStreamResponse
from msgflux.models.tool_call import ToolCall
from tests.upstream import Reply, ToolCallSpec, Upstream

KEY = "az-test-key-0001"
VERSION = "2024-10-21"
CHAT = "/openai/deployments/my-gpt4o/chat/completions"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture
def up(upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> Upstream:
    monkeypatch.setenv("AZURE_API_KEY", KEY)
    monkeypatch.setenv("AZURE_BASE_URL", upstream.url)
    return upstream


@pytest.fixture
def azure(up: Upstream) -> AzureChatCompletion:
    model = Model.chat_completion("azure/my-gpt4o", max_retries=0)
    assert isinstance(model, AzureChatCompletion)
    return model


@pytest.fixture
def sdk(up: Upstream) -> Any:
    with openai.AzureOpenAI(
        azure_endpoint=up.url, api_key=KEY, api_version=VERSION, max_retries=0
    ) as client:
        yield client


def valid(up: Upstream) -> None:
    assert [r.invalid for r in up.requests] == [None] * len(up.requests)


# -- URLs and auth -----------------------------------------------------------------------------
def test_chat_goes_to_the_deployment_with_api_version_and_api_key(
    azure: AzureChatCompletion, up: Upstream
) -> None:
    response = azure(messages="hi", system_prompt="Be brief")
    valid(up)
    assert response.consume() == "Hello from my-gpt4o"
    last = up.last
    assert (last.route, last.path, last.query) == ("azure_chat", CHAT, {"api-version": VERSION})
    assert last.headers["api-key"] == KEY
    assert "authorization" not in last.headers
    assert last.json == {
        "model": "my-gpt4o",
        "max_tokens": 512,
        "messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "hi"}],
    }
    assert response.raw["prompt_filter_results"][0]["prompt_index"] == 0
    assert response.metadata.request_id == "req_1"


def test_the_v1_api_takes_the_deployment_as_the_model(up: Upstream) -> None:
    Model.chat_completion("azure/my-gpt4o", api_version="v1")(messages="hi")
    Model.chat_completion("azure/my-gpt4o", base_url=up.url + "/openai/v1/")(messages="hi")
    valid(up)
    for rec in up.requests:
        assert (rec.path, rec.query, rec.json["model"]) == (
            "/openai/v1/chat/completions",
            {},
            "my-gpt4o",
        )


def test_resource_names_the_url_and_base_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_API_KEY", KEY)
    monkeypatch.setenv("AZURE_BASE_URL", "http://127.0.0.1:9")
    by_resource = Model.chat_completion(
        "azure/dep", resource="my-res", api_version="2025-04-01-preview"
    )
    assert by_resource._endpoint("/chat/completions").url == (
        "https://my-res.openai.azure.com/openai/deployments/dep/chat/completions"
        "?api-version=2025-04-01-preview"
    )
    pinned = Model.chat_completion(
        "azure/dep", resource="my-res", base_url="https://proxy.example/openai"
    )
    assert pinned._endpoint("/embeddings").url == (
        "https://proxy.example/openai/deployments/dep/embeddings?api-version=2024-10-21"
    )
    from_env = Model.chat_completion("azure/dep")
    assert from_env._endpoint("/chat/completions").url.startswith("http://127.0.0.1:9/openai/")


@pytest.mark.parametrize(
    ("kwargs", "error", "what"),
    [
        ({}, ValueError, "resource="),
        ({"resource": "x", "api_version": "latest-ish"}, ValueError, "api_version"),
        ({"resource": "bad name!"}, ValueError, "resource"),
        ({"resource": "x", "organization": "org"}, TypeError, "organization"),
        ({"resource": "x", "azure_ad_token": 5}, TypeError, "azure_ad_token"),
    ],
)
def test_configuration_mistakes_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any], error: type[Exception], what: str
) -> None:
    monkeypatch.delenv("AZURE_BASE_URL", raising=False)
    with pytest.raises(error, match=what):
        Model.chat_completion("azure/dep", **kwargs)


def test_an_entra_token_is_a_bearer_token_fetched_per_call(
    monkeypatch: pytest.MonkeyPatch, up: Upstream
) -> None:
    monkeypatch.delenv("AZURE_API_KEY")
    tokens = iter(["entra-token-0001", "entra-token-0002"])
    model = Model.chat_completion("azure/dep", azure_ad_token=lambda: next(tokens))
    model(messages="x")
    model(messages="x")
    valid(up)
    assert [r.headers["authorization"] for r in up.requests] == [
        "Bearer entra-token-0001",
        "Bearer entra-token-0002",
    ]
    assert all("api-key" not in r.headers for r in up.requests)
    assert "entra-token" not in str(model.serialize()) + repr(model)
    up.script(Reply(status=401, error="bad token entra-token-0001"))
    fixed = Model.chat_completion("azure/dep", azure_ad_token="entra-token-0001", max_retries=0)
    with pytest.raises(AuthenticationError) as info:
        fixed(messages="x")
    assert "entra-token-0001" not in str(info.value) + repr(info.value.body)


def test_missing_credentials_name_the_key_variable(
    monkeypatch: pytest.MonkeyPatch, up: Upstream
) -> None:
    monkeypatch.delenv("AZURE_API_KEY")
    with pytest.raises(AuthenticationError, match="AZURE_API_KEY"):
        Model.chat_completion("azure/dep")(messages="x")
    assert up.count() == 0


# -- every model type --------------------------------------------------------------------------
def test_every_model_type_azure_serves(up: Upstream) -> None:
    embedding = Model.text_embedder("azure/emb", dimensions=4)("hello")
    assert len(embedding.data) == 4
    assert up.last.path == "/openai/deployments/emb/embeddings"
    speech = Model.text_to_speech("azure/tts")("hello")
    assert speech.data == b"FAKEAUDIO:hello"
    assert up.last.path == "/openai/deployments/tts/audio/speech"
    up.script(Reply(text="heard"))
    transcript = Model.speech_to_text("azure/whisper")(b"RIFF-audio")
    assert transcript.data.text == "heard"
    assert up.last.path == "/openai/deployments/whisper/audio/transcriptions"
    image = Model.text_to_image("azure/dalle")("a cat")
    assert image.data == "https://images.example/0.png"
    assert up.last.path == "/openai/deployments/dalle/images/generations"
    valid(up)
    assert all(r.query == {"api-version": VERSION} for r in up.requests)
    with pytest.raises(ValueError, match="unknown provider 'azure'"):
        Model.moderation("azure/x")


def test_serialization_round_trip(up: Upstream) -> None:
    model = Model.chat_completion("azure/dep", resource="my-res", api_version="v1", temperature=0.1)
    state = model.serialize()
    assert state["state"]["sampling_params"] == {"resource": "my-res", "api_version": "v1"}
    restored = Model.from_serialized(state)
    assert restored.serialize() == state
    assert (
        restored._endpoint("/chat/completions").url
        == "https://my-res.openai.azure.com/openai/v1/chat/completions"
    )


# -- answers, streams, content filter ----------------------------------------------------------
def test_tool_calls_and_structured_output_are_openai_as_usual(
    azure: AzureChatCompletion, up: Upstream
) -> None:
    up.script(Reply(tool_calls=[ToolCallSpec("get_weather", {"city": "Rio"}, id="call_a")]))
    response = azure(messages="x", tool_schemas=[WEATHER])
    assert response.data == [ToolCall("call_a", "get_weather", {"city": "Rio"}, '{"city":"Rio"}')]
    assert up.last.json["tools"] == [WEATHER]


def test_stream_skips_the_filter_only_first_chunk(azure: AzureChatCompletion, up: Upstream) -> None:
    up.script(Reply(text="one two"))
    stream = azure(messages="x", stream=True)
    assert isinstance(stream, ModelStreamResponse)
    chunks = list(stream.chunks())
    valid(up)
    assert chunks[0]["choices"] == [] and "prompt_filter_results" in chunks[0]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "one two"
    assert stream.metadata.finish_reason == "stop"
    assert stream.metadata.usage["completion_tokens"] == 2


async def test_async_stream_yields_text(azure: AzureChatCompletion, up: Upstream) -> None:
    up.script(Reply(text="one two"))
    stream = await azure.acall(messages="x", stream=True)
    assert [c async for c in stream.consume()] == ["one", " two"]


def test_stream_cut_midway_raises_from_the_iterator(
    azure: AzureChatCompletion, up: Upstream
) -> None:
    up.script(Reply(text="a b c", cut_after=1))
    got = []
    with pytest.raises(APIConnectionError):
        for chunk in azure(messages="x", stream=True):
            got.append(chunk)
    assert got == ["a"]


def test_a_filtered_prompt_is_a_content_policy_error(
    azure: AzureChatCompletion, up: Upstream
) -> None:
    up.script([Reply(status=400, error_code="content_filter")] * 2)
    with pytest.raises(ContentPolicyError) as info:
        azure(messages="x")
    assert info.value.body["error"]["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    with pytest.raises(ContentPolicyError):
        azure._call_once(messages="x", stream=True)


def test_a_filtered_answer_is_a_content_policy_error(
    azure: AzureChatCompletion, up: Upstream
) -> None:
    up.script(Reply(text="partial", finish_reason="content_filter"))
    with pytest.raises(ContentPolicyError, match="content filter") as info:
        azure(messages="x")
    assert info.value.body["violence"]["filtered"] is True


def test_a_filtered_stream_raises_after_its_text(azure: AzureChatCompletion, up: Upstream) -> None:
    up.script(Reply(text="partial answer", finish_reason="content_filter"))
    got = []
    with pytest.raises(ContentPolicyError):
        for chunk in azure(messages="x", stream=True):
            got.append(chunk)
    assert got == ["partial", " answer"]


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (
            Reply(
                status=400,
                error_code="context_length_exceeded",
                error="This model's maximum context length is 128000 tokens",
            ),
            ContextWindowExceededError,
        ),
        (Reply(status=401), AuthenticationError),
        (Reply(status=404, error_code="DeploymentNotFound"), NotFoundError),
        (Reply(status=429, retry_after=4), RateLimitError),
        (Reply(status=500, error_code="InternalServerError"), InternalServerError),
        (Reply(status=503, error_code="ServiceUnavailable"), InternalServerError),
    ],
)
def test_error_statuses_map_to_typed_errors(
    azure: AzureChatCompletion, up: Upstream, reply: Reply, error: type[Exception]
) -> None:
    up.script(reply)
    with pytest.raises(error) as info:
        azure(messages="x")
    assert type(info.value) is error
    if reply.retry_after is not None:
        assert info.value.retry_after == 4.0


def test_an_error_event_midstream_raises_the_typed_error(
    azure: AzureChatCompletion, up: Upstream
) -> None:
    up.script(Reply(text="a b", cut_after=1, stream_error="server_error"))
    with pytest.raises(InternalServerError):
        list(azure(messages="x", stream=True))


# -- the test upstream refuses what Azure refuses ----------------------------------------------
@pytest.mark.parametrize(
    ("path", "headers", "status", "what"),
    [
        (CHAT, {"api-key": KEY}, 404, "Resource not found"),
        (CHAT + "?api-version=2024-10-21", {}, 401, "Access denied"),
        (
            "/openai/v1/chat/completions?api-version=2024-10-21",
            {"api-key": KEY},
            400,
            "not allowed",
        ),
    ],
)
def test_the_upstream_refuses_what_azure_refuses(
    up: Upstream, path: str, headers: dict[str, str], status: int, what: str
) -> None:
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    resp = urllib3.request("POST", up.url + path, body=body, headers=headers, retries=False)
    assert resp.status == status
    assert what in orjson.loads(resp.data)["error"]["message"]


# -- the official SDK as the reference ---------------------------------------------------------
def test_sdk_and_adapter_send_the_same_request(
    azure: AzureChatCompletion, sdk: Any, up: Upstream
) -> None:
    sdk.chat.completions.create(
        model="my-gpt4o",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=64,
        tools=[WEATHER],
        tool_choice="auto",
    )
    theirs = up.last
    azure(messages="hi", max_tokens=64, tool_schemas=[WEATHER], tool_choice="auto")
    ours = up.last
    valid(up)
    assert (ours.path, ours.query, ours.json) == (theirs.path, theirs.query, theirs.json)
    assert ours.headers["api-key"] == theirs.headers["api-key"] == KEY


def test_sdk_and_adapter_use_the_v1_api_alike(up: Upstream) -> None:
    with openai.OpenAI(base_url=up.url + "/openai/v1/", api_key=KEY, max_retries=0) as client:
        client.chat.completions.create(
            model="my-gpt4o", messages=[{"role": "user", "content": "hi"}], max_tokens=9
        )
    theirs = up.last
    Model.chat_completion("azure/my-gpt4o", api_version="v1", max_tokens=9)(messages="hi")
    ours = up.last
    valid(up)
    assert (ours.path, ours.query, ours.json) == (theirs.path, theirs.query, theirs.json)
    assert theirs.headers["authorization"] == f"Bearer {KEY}"  # the v1 API takes both
    assert ours.headers["api-key"] == KEY


def test_sdk_and_adapter_send_an_entra_token_alike(up: Upstream) -> None:
    with openai.AzureOpenAI(
        azure_endpoint=up.url, azure_ad_token="entra-tok-1", api_version=VERSION, max_retries=0
    ) as client:
        client.chat.completions.create(model="dep", messages=[{"role": "user", "content": "hi"}])
    theirs = up.last
    Model.chat_completion("azure/dep", azure_ad_token="entra-tok-1")(messages="hi")
    assert (
        up.last.headers["authorization"] == theirs.headers["authorization"] == "Bearer entra-tok-1"
    )
    assert up.last.path == theirs.path


@pytest.mark.parametrize(
    "reply",
    [
        Reply(text="Plain."),
        Reply(tool_calls=[ToolCallSpec("get_weather", {"city": "Rio"}, id="call_w")]),
    ],
    ids=["text", "tools"],
)
def test_sdk_and_adapter_parse_the_same_answer_and_stream(
    azure: AzureChatCompletion, sdk: Any, up: Upstream, reply: Reply
) -> None:
    up.script([reply] * 4)
    theirs = sdk.chat.completions.create(
        model="my-gpt4o", messages=[{"role": "user", "content": "x"}]
    )
    ours = azure(messages="x", tool_schemas=[WEATHER])
    message = theirs.choices[0].message
    assert ours.raw["choices"][0]["message"]["content"] == message.content
    assert [(c.id, c.name, c.raw_arguments) for c in (ours.data if message.tool_calls else [])] == [
        (c.id, c.function.name, c.function.arguments) for c in message.tool_calls or ()
    ]
    assert ours.raw["prompt_filter_results"] == theirs.model_extra["prompt_filter_results"]
    assert ours.metadata.usage["total_tokens"] == theirs.usage.total_tokens
    sdk_chunks = list(
        sdk.chat.completions.create(
            model="my-gpt4o", messages=[{"role": "user", "content": "x"}], stream=True
        )
    )
    stream = azure(messages="x", stream=True, tool_schemas=[WEATHER])
    our_chunks = list(stream.chunks())
    assert (
        len(our_chunks) == len(sdk_chunks) + 1
    )  # we ask for the usage chunk; the SDK call did not
    assert "".join(c.choices[0].delta.content or "" for c in sdk_chunks if c.choices) == "".join(
        c["choices"][0]["delta"].get("content") or "" for c in our_chunks if c["choices"]
    )


def test_sdk_and_adapter_read_embeddings_alike(sdk: Any, up: Upstream) -> None:
    theirs = sdk.embeddings.create(model="emb", input=["a", "b"])  # base64 by default
    assert up.last.json["encoding_format"] == "base64"
    ours = Model.text_embedder("azure/emb")(["a", "b"])
    assert [pytest.approx(v) for v in ours.data] == [d.embedding for d in theirs.data]


@pytest.mark.parametrize(
    ("reply", "theirs", "ours"),
    [
        (
            Reply(status=400, error_code="content_filter"),
            openai.BadRequestError,
            ContentPolicyError,
        ),
        (Reply(status=429, retry_after=1), openai.RateLimitError, RateLimitError),
        (Reply(status=404, error_code="DeploymentNotFound"), openai.NotFoundError, NotFoundError),
    ],
)
def test_sdk_and_adapter_raise_the_same_kind_of_error(
    azure: AzureChatCompletion, sdk: Any, up: Upstream, reply: Reply, theirs: type, ours: type
) -> None:
    up.script([reply, reply])
    with pytest.raises(theirs) as sdk_error:
        sdk.chat.completions.create(model="my-gpt4o", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(ours) as our_error:
        azure(messages="x")
    assert our_error.value.status_code == sdk_error.value.status_code
    assert our_error.value.body["error"]["code"] == sdk_error.value.code


@pytest.mark.parametrize(
    "model_type",
    ["chat_completion", "text_embedder", "text_to_speech", "speech_to_text", "text_to_image"],
)
def test_constructors_show_every_argument_they_take(model_type: str) -> None:
    import inspect

    from msgflux.models.registry import lookup

    params = inspect.signature(lookup(model_type, "azure").__init__).parameters
    assert {"resource", "api_version", "azure_ad_token", "api_key", "base_url", "timeout"} <= set(
        params
    )
    assert not {"organization", "project"} & set(params)
    assert all(p.kind is not p.VAR_KEYWORD for p in params.values())
