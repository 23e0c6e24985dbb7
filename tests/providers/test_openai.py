"""OpenAI-wire providers against the scriptable upstream: calls, streams, errors, keys, state."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import msgspec
import pydantic
import pytest

from msgflux import ManualClock, Model, set_envs
from msgflux.exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ContentPolicyError,
    ContextWindowExceededError,
    InternalServerError,
    RateLimitError,
)
from msgflux.models import registry
from msgflux.models.providers.openai import OpenAIChatCompletion
from msgflux.models.request import chat_request
from msgflux.models.response import ModelResponse, ModelStreamResponse
from msgflux.models.tool_call import ToolCall
from tests.conftest import TEST_KEYS
from tests.upstream import Reply, ToolCallSpec, Upstream

OPENAI_KEY = TEST_KEYS["OPENAI"]
HTTP_PROVIDERS = sorted(
    {p for by_provider in registry.providers().values() for p in by_provider} - {"local"}
)
DOCUMENTED_STATE = {
    "model_id": "gpt-4.1-nano",
    "sampling_params": {"organization": None, "project": None},
    "sampling_run_params": {
        "max_tokens": 512,
        "temperature": None,
        "top_p": None,
        "modalities": ["text"],
        "audio": None,
    },
}


class Person(msgspec.Struct):
    name: str
    age: int


class PersonModel(pydantic.BaseModel):
    name: str
    age: int


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture
def chat(upstream_env: Upstream) -> OpenAIChatCompletion:
    model = Model.chat_completion("openai/gpt-4.1-nano")
    assert isinstance(model, OpenAIChatCompletion)
    return model


def point_provider_at(monkeypatch: pytest.MonkeyPatch, provider: str, upstream: Upstream) -> None:
    # Azure's base URL is the resource root (its paths start with /openai/...).
    base = upstream.url if provider == "azure" else upstream.base_url
    monkeypatch.setenv(f"{provider.upper()}_BASE_URL", base)
    monkeypatch.setenv(f"{provider.upper()}_API_KEY", f"sk-test-{provider}")


AUTH_HEADERS = {"anthropic": "x-api-key", "gemini": "x-goog-api-key", "azure": "api-key"}
"""The native providers' key headers (the others send ``Authorization: Bearer``)."""


def sent_key(provider: str, headers: dict[str, str]) -> str:
    name = AUTH_HEADERS.get(provider)
    return f"Bearer {headers[name]}" if name else headers["authorization"]


# -- chat --------------------------------------------------------------------------------------
def test_chat_returns_text_with_usage_and_finish_reason(
    chat: OpenAIChatCompletion, upstream_env: Upstream
) -> None:
    response = chat(messages="Who was Frank Rosenblatt?")
    assert isinstance(response, ModelResponse)
    assert response.response_type == "text_generation"
    assert response.consume() == "Hello from gpt-4.1-nano"
    assert set(response.metadata.usage) >= {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert response.metadata.finish_reason == "stop"
    assert response.metadata.request_id == "req_1"


async def test_chat_acall_returns_text(chat: OpenAIChatCompletion) -> None:
    response = await chat.acall(messages="hi")
    assert isinstance(response, ModelResponse)
    assert response.consume() == "Hello from gpt-4.1-nano"


def test_chat_request_body_follows_the_openai_wire_format(upstream_env: Upstream) -> None:
    model = Model.chat_completion(
        "openai/gpt-4.1-nano", temperature=0.2, top_p=0.9, stop=["\n"], reasoning_effort="low"
    )
    model(
        messages=[{"role": "user", "content": "hi"}],
        system_prompt="be brief",
        prefilling="Sure,",
    )
    body = upstream_env.last.json
    assert body == {
        "model": "gpt-4.1-nano",
        "max_tokens": 512,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n"],
        "reasoning_effort": "low",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Sure,"},
        ],
    }


def test_openai_sends_max_completion_tokens_only_to_openai_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    req = chat_request("hi", max_tokens=10)
    assert Model.chat_completion("openai/o3").wire(req)["max_completion_tokens"] == 10
    elsewhere = Model.chat_completion("openai/o3", base_url="http://127.0.0.1:9/v1")
    assert elsewhere.wire(req)["max_tokens"] == 10  # llama.cpp's server ignores the other name
    forced = Model.chat_completion(
        "openai/o3", base_url="http://127.0.0.1:9/v1", max_tokens_field="max_completion_tokens"
    )
    assert "max_tokens" not in forced.wire(req)
    assert forced.wire(req)["max_completion_tokens"] == 10


def test_per_call_fields_win_over_construction_defaults(upstream_env: Upstream) -> None:
    model = Model.chat_completion("openai/m", temperature=0.9, max_tokens=100)
    model(messages="hi", temperature=0, max_tokens=50, seed=7, logprobs=True, user="u-1")
    body = upstream_env.last.json
    assert (body["temperature"], body["max_tokens"], body["seed"]) == (0, 50, 7)
    assert (body["logprobs"], body["user"]) == (True, "u-1")


def test_vendor_fields_in_extra_body_and_extra_headers_pass_through(
    upstream_env: Upstream,
) -> None:
    model = Model.chat_completion("openai/m")
    model(
        messages="hi",
        service_tier="flex",
        extra_body={"repetition_penalty": 1.1, "vendor_knob": {"a": 1}},
        extra_headers={"X-Trace": "t-1"},
    )
    last = upstream_env.last
    assert last.json["vendor_knob"] == {"a": 1} and last.json["service_tier"] == "flex"
    assert last.json["repetition_penalty"] == 1.1
    assert last.headers["x-trace"] == "t-1"


@pytest.mark.parametrize(
    ("keywords", "named", "suggested"),
    [
        ({"temprature": 0}, "temprature", "temperature"),
        ({"max_token": 5}, "max_token", "max_tokens"),
        ({"mesages": "hi"}, "mesages", "messages"),
        ({"vendor_knob": 1}, "vendor_knob", None),
    ],
)
async def test_an_unknown_keyword_is_a_type_error_naming_it_and_the_closest(
    upstream_env: Upstream, keywords: dict[str, object], named: str, suggested: str | None
) -> None:
    """Sync, async and streamed calls all refuse it before any request is sent."""
    model = Model.chat_completion("openai/m")
    base = {} if "mesages" in keywords else {"messages": "hi"}
    calls = [
        lambda: model(**base, **keywords),
        lambda: model(**base, stream=True, **keywords),
    ]
    for call in calls:
        with pytest.raises(TypeError) as caught:
            call()
        assert repr(named) in str(caught.value) and "extra_body" in str(caught.value)
        if suggested:
            assert f"did you mean {suggested!r}" in str(caught.value)
    with pytest.raises(TypeError, match=named):
        await model.acall(**base, **keywords)
    assert upstream_env.count() == 0


CROSS_VENDOR_HISTORY = [
    {
        "role": "user",
        "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}],
    },
    {
        "role": "assistant",
        "content": "Let me check.",
        "reasoning_content": "The user greets me.",
        "thinking_blocks": [{"type": "thinking", "thinking": "...", "signature": "sig"}],
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "lookup", "arguments": "{}"},
                "extra_content": {"google": {"thought_signature": "ts"}},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "boom", "is_error": True},
]
"""A conversation another vendor answered: its canonical form carries that vendor's fields."""
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


def test_openai_gets_a_conversation_begun_with_another_vendor_without_its_fields(
    upstream_env: Upstream,
) -> None:
    Model.chat_completion("openai/m")(
        messages=CROSS_VENDOR_HISTORY, tool_schemas=[{**TOOL, "cache_control": {"type": "x"}}]
    )
    sent = upstream_env.last.json
    user, assistant, tool = sent["messages"]
    assert user["content"] == [{"type": "text", "text": "hi"}]
    assert set(assistant) == {"role", "content", "tool_calls"}
    assert "extra_content" not in assistant["tool_calls"][0]
    assert tool == {"role": "tool", "tool_call_id": "c1", "content": "boom"}
    assert "cache_control" not in sent["tools"][0]
    assert CROSS_VENDOR_HISTORY[1]["thinking_blocks"]  # the caller's messages are untouched


def test_openai_compatible_servers_get_the_vendor_fields_as_they_are(
    upstream_env: Upstream,
) -> None:
    model = Model.chat_completion("openai_compatible/m", base_url=upstream_env.base_url)
    model(messages=CROSS_VENDOR_HISTORY)
    assert upstream_env.last.json["messages"] == CROSS_VENDOR_HISTORY  # e.g. OpenRouter reads them


def test_structured_output_in_the_json_object_form_llama_cpp_takes(upstream_env: Upstream) -> None:
    model = Model.chat_completion("openai/m", structured_output="json_object")
    upstream_env.script(Reply(structured={"name": "Ada", "age": 36}))
    response = model(messages="who?", generation_schema=Person)
    fmt = upstream_env.last.json["response_format"]
    assert fmt["type"] == "json_object"
    assert fmt["schema"]["properties"].keys() == {"name", "age"}
    assert response.consume() == Person(name="Ada", age=36)


def test_api_key_argument_wins_over_the_environment(upstream_env: Upstream) -> None:
    model = Model.chat_completion("openai/m", api_key="sk-from-argument-123")
    model(messages="hi")
    assert upstream_env.last.headers["authorization"] == "Bearer sk-from-argument-123"
    assert "sk-from-argument-123" not in repr(model) + str(model.serialize())


def test_answer_keeps_the_canonical_upstream_json(upstream_env: Upstream) -> None:
    response = Model.chat_completion("openai/m")(messages="hi")
    assert response.raw["object"] == "chat.completion"
    assert response.raw["choices"][0]["message"]["content"] == "Hello from m"


def test_non_openai_providers_send_max_tokens(upstream_env: Upstream) -> None:
    Model.chat_completion("together/gpt-oss-120B", max_tokens=64)(messages="hi")
    assert upstream_env.last.json["max_tokens"] == 64
    assert upstream_env.last.headers["authorization"] == f"Bearer {TEST_KEYS['TOGETHER']}"


def test_organization_and_project_are_sent_as_headers(upstream_env: Upstream) -> None:
    model = Model.chat_completion("openai/m", organization="org-1", project="proj-1")
    model(messages="hi")
    headers = upstream_env.last.headers
    assert (headers["openai-organization"], headers["openai-project"]) == ("org-1", "proj-1")


def test_tool_calls_are_parsed(chat: OpenAIChatCompletion, upstream_env: Upstream) -> None:
    upstream_env.script(
        Reply(tool_calls=[ToolCallSpec("get_weather", {"city": "Rio"}, id="call_a"), {"name": "f"}])
    )
    response = chat(messages="weather?", tool_schemas=[WEATHER_TOOL], tool_choice="get_weather")
    assert response.response_type == "tool_call"
    assert response.data == [
        ToolCall("call_a", "get_weather", {"city": "Rio"}, '{"city":"Rio"}'),
        ToolCall("call_1", "f", {}, "{}"),
    ]
    assert response.metadata.finish_reason == "tool_calls"
    body = upstream_env.last.json
    assert body["tools"] == [WEATHER_TOOL]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_tool_call_with_broken_json_keeps_the_raw_arguments(
    chat: OpenAIChatCompletion, upstream_env: Upstream
) -> None:
    upstream_env.script(Reply(tool_calls=[ToolCallSpec("f", '{"a": ')]))
    call = chat(messages="x", tool_schemas=[WEATHER_TOOL]).data[0]
    assert call.arguments == '{"a": '
    assert call.raw_arguments == '{"a": '


@pytest.mark.parametrize("schema", [Person, PersonModel])
def test_structured_output_is_parsed_into_the_schema(
    chat: OpenAIChatCompletion, upstream_env: Upstream, schema: type
) -> None:
    upstream_env.script(Reply(structured={"name": "Ada", "age": 36}))
    response = chat(messages="who?", generation_schema=schema)
    assert response.response_type == "structured"
    assert isinstance(response.data, schema)
    assert (response.data.name, response.data.age) == ("Ada", 36)
    fmt = upstream_env.last.json["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["type"] == "object"
    assert fmt["json_schema"]["schema"]["additionalProperties"] is False
    assert fmt["json_schema"]["schema"]["required"] == ["name", "age"]


def test_nested_msgspec_schema_keeps_its_definitions(chat: OpenAIChatCompletion) -> None:
    class Team(msgspec.Struct):
        members: list[Person]

    fmt = chat_request("x", generation_schema=Team).body["response_format"]
    schema = fmt["json_schema"]["schema"]
    assert schema["properties"]["members"]["items"] == {"$ref": "#/$defs/Person"}
    assert schema["$defs"]["Person"]["additionalProperties"] is False


def test_structured_answer_not_matching_schema_is_a_validation_error(
    chat: OpenAIChatCompletion, upstream_env: Upstream
) -> None:
    upstream_env.script(Reply(structured={"name": "Ada"}))
    with pytest.raises(APIResponseValidationError, match="generation_schema"):
        chat(messages="who?", generation_schema=Person)


def test_structured_refusal_is_content_policy_error(
    chat: OpenAIChatCompletion, upstream_env: Upstream
) -> None:
    message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    upstream_env.script(
        Reply(json={"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})
    )
    with pytest.raises(ContentPolicyError, match="refused"):
        chat(messages="x", generation_schema=Person)


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_text_generation_carries_answer_and_think(
    chat: OpenAIChatCompletion, upstream_env: Upstream, field: str
) -> None:
    upstream_env.script(Reply(text="42", reasoning="think think", reasoning_field=field))
    response = chat(messages="x")
    assert response.response_type == "reasoning_text_generation"
    assert (response.data.answer, response.data.think) == ("42", "think think")


def test_reasoning_structured_and_reasoning_tool_call(
    chat: OpenAIChatCompletion, upstream_env: Upstream
) -> None:
    upstream_env.script(
        [
            Reply(structured={"name": "Ada", "age": 36}, reasoning="hmm"),
            Reply(tool_calls=[ToolCallSpec("f", {})], reasoning="hmm"),
        ]
    )
    structured = chat(messages="x", generation_schema=Person)
    assert structured.response_type == "reasoning_structured"
    assert structured.data.answer == Person("Ada", 36)
    tools = chat(messages="x", tool_schemas=[WEATHER_TOOL])
    assert tools.response_type == "reasoning_tool_call"
    assert tools.data.answer[0].name == "f"
    assert tools.data.think == "hmm"


# -- streaming ---------------------------------------------------------------------------------
def test_sync_stream_yields_text_and_fills_metadata_at_the_end(
    chat: OpenAIChatCompletion, upstream_env: Upstream
) -> None:
    upstream_env.script(Reply(text="one two three"))
    stream = chat(messages="x", stream=True)
    assert isinstance(stream, ModelStreamResponse)
    assert stream.first_chunk()
    assert stream.response_type == "text_generation"
    assert list(stream) == ["one", " two", " three"]
    assert stream.metadata.finish_reason == "stop"
    assert stream.metadata.usage == {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}
    assert upstream_env.last.json["stream_options"] == {"include_usage": True}


async def test_async_stream_yields_text_and_fills_metadata_at_the_end(
    chat: OpenAIChatCompletion, upstream_env: Upstream
) -> None:
    upstream_env.script(Reply(text="one two", usage={"prompt_tokens": 5, "completion_tokens": 2}))
    stream = await chat.acall(messages="x", stream=True)
    assert isinstance(stream, ModelStreamResponse)
    assert await stream.afirst_chunk()
    assert stream.response_type == "text_generation"
    assert [chunk async for chunk in stream.consume()] == ["one", " two"]
    assert stream.metadata.usage == {"prompt_tokens": 5, "completion_tokens": 2}
    assert stream.metadata.finish_reason == "stop"


def test_stream_error_status_raises_from_the_call(
    chat: OpenAIChatCompletion, upstream_env: Upstream
) -> None:
    upstream_env.script(Reply(status=400, error="bad"))
    with pytest.raises(BadRequestError):
        chat._call_once(messages="x", stream=True)


async def test_async_stream_error_status_raises_from_the_call(
    chat: OpenAIChatCompletion, upstream_env: Upstream
) -> None:
    upstream_env.script(Reply(status=401))
    with pytest.raises(AuthenticationError):
        await chat._acall_once(messages="x", stream=True)


def test_stream_cut_after_first_chunk_raises_from_the_iterator(
    chat: OpenAIChatCompletion, upstream_env: Upstream
) -> None:
    upstream_env.script(Reply(text="a b c d", cut_after=2))
    stream = chat._call_once(messages="x", stream=True)
    got = []
    with pytest.raises(APIConnectionError):
        for chunk in stream:
            got.append(chunk)
    assert got == ["a", " b"]


async def test_async_stream_cut_raises_from_the_iterator(
    chat: OpenAIChatCompletion, upstream_env: Upstream
) -> None:
    upstream_env.script(Reply(text="a b c d", cut_after=1))
    stream = await chat._acall_once(messages="x", stream=True)
    got = []
    with pytest.raises(APIConnectionError):
        async for chunk in stream.consume():
            got.append(chunk)
    assert got == ["a"]


def test_stream_cut_before_any_chunk_raises_from_first_chunk(
    chat: OpenAIChatCompletion, upstream_env: Upstream
) -> None:
    upstream_env.script(Reply(text="a b", cut_after=0))
    stream = chat._call_once(messages="x", stream=True)
    with pytest.raises(APIConnectionError):
        stream.first_chunk()


def test_stream_without_finish_reason_is_a_connection_error(
    chat: OpenAIChatCompletion, upstream_env: Upstream
) -> None:
    upstream_env.script(
        Reply(
            body=b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n',
            content_type="text/event-stream",
        )
    )
    stream = chat(messages="x", stream=True)
    with pytest.raises(APIConnectionError, match="finish_reason"):
        list(stream)


def test_stream_error_event_raises_typed_error(
    chat: OpenAIChatCompletion, upstream_env: Upstream
) -> None:
    upstream_env.script(
        Reply(
            body=b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n'
            b'data: {"error": {"message": "overloaded", "code": 503}}\n\n',
            content_type="text/event-stream",
        )
    )
    stream = chat(messages="x", stream=True)
    with pytest.raises(InternalServerError, match="overloaded"):
        list(stream)


def test_stream_tool_calls_are_aggregated_into_one_final_chunk(
    chat: OpenAIChatCompletion, upstream_env: Upstream
) -> None:
    upstream_env.script(
        Reply(tool_calls=[ToolCallSpec("get_weather", {"city": "Rio"}), ToolCallSpec("g", [1])])
    )
    stream = chat(messages="x", stream=True, tool_schemas=[WEATHER_TOOL])
    chunks = list(stream)
    assert stream.response_type == "tool_call"
    assert chunks == [stream.data]
    assert [(c.name, c.arguments) for c in stream.data] == [
        ("get_weather", {"city": "Rio"}),
        ("g", [1]),
    ]
    assert stream.metadata.finish_reason == "tool_calls"


def test_stream_with_reasoning_is_reasoning_text_generation(
    chat: OpenAIChatCompletion, upstream_env: Upstream
) -> None:
    upstream_env.script(Reply(text="42", reasoning="let me see"))
    stream = chat(messages="x", stream=True)
    assert list(stream) == ["42"]
    assert stream.response_type == "reasoning_text_generation"
    assert stream.metadata.reasoning == "let me see"


def test_closing_a_stream_closes_the_upstream_connection(
    chat: OpenAIChatCompletion, upstream_env: Upstream
) -> None:
    upstream_env.script(Reply(chunks=["x"] * 100, chunk_delay=0.02))
    stream = chat(messages="x", stream=True)
    assert stream.first_chunk()
    stream.close()
    assert upstream_env.wait_for(lambda up: len(up.closed_early("chat")) == 1)


async def test_closing_an_async_stream_closes_the_upstream_connection(
    chat: OpenAIChatCompletion, upstream_env: Upstream
) -> None:
    upstream_env.script(Reply(chunks=["x"] * 100, chunk_delay=0.02))
    stream = await chat.acall(messages="x", stream=True)
    async for _ in stream.consume():
        break
    assert await upstream_env.await_for(lambda up: len(up.closed_early("chat")) == 1)


def test_stream_cannot_be_combined_with_generation_schema(chat: OpenAIChatCompletion) -> None:
    with pytest.raises(ValueError, match="generation_schema"):
        chat(messages="x", stream=True, generation_schema=Person)


# -- timeouts and retries ----------------------------------------------------------------------
def test_call_once_timeout_raises_api_timeout_error(
    chat: OpenAIChatCompletion, upstream_env: Upstream
) -> None:
    upstream_env.script(Reply(delay=1.0))
    with pytest.raises(APITimeoutError):
        chat._call_once(messages="x", timeout=0.1)
    assert upstream_env.count("chat") == 1


async def test_acall_once_timeout_raises_api_timeout_error(
    chat: OpenAIChatCompletion, upstream_env: Upstream
) -> None:
    upstream_env.script(Reply(delay=1.0))
    with pytest.raises(APITimeoutError):
        await chat._acall_once(messages="x", timeout=0.1)
    assert upstream_env.count("chat") == 1


def test_model_timeout_applies_to_standalone_calls(upstream_env: Upstream) -> None:
    upstream_env.set_default(Reply(delay=1.0))
    model = Model.chat_completion("openai/m", timeout=0.1, max_retries=0)
    with pytest.raises(APITimeoutError):
        model(messages="x")


def test_per_call_timeout_overrides_the_model_timeout(upstream_env: Upstream) -> None:
    upstream_env.set_default(Reply(delay=0.5))
    model = Model.chat_completion("openai/m", timeout=30, max_retries=0)
    began = time.perf_counter()
    with pytest.raises(APITimeoutError):
        model(messages="x", timeout=0.1)
    assert time.perf_counter() - began < 0.45
    assert model(messages="x", timeout=5).consume() == "Hello from m"


async def test_per_call_timeout_on_acall(upstream_env: Upstream) -> None:
    upstream_env.set_default(Reply(delay=0.5))
    model = Model.chat_completion("openai/m", max_retries=0)
    with pytest.raises(APITimeoutError):
        await model.acall(messages="x", timeout=0.1)


def test_call_once_never_retries(chat: OpenAIChatCompletion, upstream_env: Upstream) -> None:
    upstream_env.script([Reply(status=500), Reply()])
    with pytest.raises(InternalServerError):
        chat._call_once(messages="x")
    assert upstream_env.count("chat") == 1
    assert chat.supports_timeout


def test_standalone_call_retries_transient_errors_honouring_retry_after(
    upstream_env: Upstream,
) -> None:
    clock = ManualClock()
    model = Model.chat_completion("openai/m", clock=clock)
    upstream_env.script([Reply(status=429, retry_after=3), Reply(status=503, retry_after_ms=1500)])
    assert model(messages="x").consume() == "Hello from m"
    assert upstream_env.count("chat") == 3
    assert clock.sleeps == [3.0, 1.5]


async def test_async_standalone_call_retries_honouring_retry_after(upstream_env: Upstream) -> None:
    clock = ManualClock()
    model = Model.chat_completion("openai/m", clock=clock)
    upstream_env.script([Reply(status=429, retry_after=2)])
    response = await model.acall(messages="x")
    assert response.consume() == "Hello from m"
    assert clock.sleeps == [2.0]


def test_standalone_call_gives_up_after_max_retries(upstream_env: Upstream) -> None:
    clock = ManualClock()
    model = Model.chat_completion("openai/m", clock=clock, max_retries=1)
    upstream_env.set_default(Reply(status=500))
    with pytest.raises(InternalServerError):
        model(messages="x")
    assert upstream_env.count("chat") == 2
    assert len(clock.sleeps) == 1


def test_non_transient_errors_are_not_retried(upstream_env: Upstream) -> None:
    clock = ManualClock()
    model = Model.chat_completion("openai/m", clock=clock)
    upstream_env.script(Reply(status=400, error_code="context_length_exceeded"))
    with pytest.raises(ContextWindowExceededError):
        model(messages="x")
    assert upstream_env.count("chat") == 1
    assert clock.sleeps == []


def test_connection_errors_are_retried(monkeypatch: pytest.MonkeyPatch, closed_port: str) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    clock = ManualClock()
    model = Model.chat_completion("openai/m", base_url=closed_port, clock=clock)
    with pytest.raises(APIConnectionError):
        model(messages="x")
    assert len(clock.sleeps) == 2


# -- keys --------------------------------------------------------------------------------------
def test_missing_key_raises_authentication_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, upstream: Upstream
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    model = Model.chat_completion("openai/m", base_url=upstream.base_url)
    with pytest.raises(AuthenticationError, match="OPENAI_API_KEY"):
        model(messages="x")
    assert upstream.count() == 0


@pytest.mark.parametrize("provider", HTTP_PROVIDERS)
def test_constructing_needs_neither_key_nor_network(
    monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    for name in list(os.environ):
        if name.endswith(("_API_KEY", "_BASE_URL")):
            monkeypatch.delenv(name)
    needs_url = provider in ("openai_compatible", "azure")
    kwargs = {"base_url": "http://127.0.0.1:9/v1"} if needs_url else {}
    if provider == "bedrock":  # its URL and signatures name the region
        kwargs = {"aws_region_name": "us-east-1"}
    model = Model.chat_completion(f"{provider}/some-model", **kwargs)
    assert model.get_model_info() == {"model_id": "some-model", "provider": provider}


@pytest.mark.parametrize("provider", ["together", "groq", "mistral", "deepseek"])
async def test_each_hosted_provider_names_its_own_key_variable(
    monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    monkeypatch.delenv(f"{provider.upper()}_API_KEY", raising=False)
    model = Model.chat_completion(f"{provider}/m")
    with pytest.raises(AuthenticationError, match=f"{provider.upper()}_API_KEY"):
        await model.acall(messages="x")


@pytest.mark.parametrize("provider", ["vllm", "ollama", "openai_compatible"])
def test_local_servers_need_no_key(
    monkeypatch: pytest.MonkeyPatch, upstream: Upstream, provider: str
) -> None:
    monkeypatch.delenv(f"{provider.upper()}_API_KEY", raising=False)
    model = Model.chat_completion(f"{provider}/m", base_url=upstream.base_url)
    assert model(messages="x").consume() == "Hello from m"
    assert "authorization" not in upstream.last.headers


def test_key_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch, upstream: Upstream) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    model = Model.chat_completion("openai/m", base_url=upstream.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-first")
    model(messages="x")
    set_envs(OPENAI_API_KEY="sk-second")
    model(messages="x")
    auth = [r.headers["authorization"] for r in upstream.requests]
    assert auth == ["Bearer sk-first", "Bearer sk-second"]


def test_base_url_env_is_read_at_call_time_and_argument_wins(
    monkeypatch: pytest.MonkeyPatch, make_upstream: Any
) -> None:
    first, second = make_upstream(), make_upstream()
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", first.base_url)
    from_env = Model.chat_completion("openai/m")
    pinned = Model.chat_completion("openai/m", base_url=second.base_url)
    from_env(messages="x")
    pinned(messages="x")
    monkeypatch.setenv("OPENAI_BASE_URL", second.base_url)
    from_env(messages="x")
    assert (first.count(), second.count()) == (1, 2)


def test_key_never_appears_in_repr_serialization_or_errors(
    chat: OpenAIChatCompletion, upstream_env: Upstream
) -> None:
    chat(messages="warm up")
    assert OPENAI_KEY not in repr(chat)
    assert OPENAI_KEY not in str(chat.serialize())
    upstream_env.script(Reply(status=401, error=f"Incorrect API key provided: {OPENAI_KEY}"))
    with pytest.raises(AuthenticationError) as info:
        chat._call_once(messages="x")
    err = info.value
    assert OPENAI_KEY not in str(err)
    assert OPENAI_KEY not in repr(err)
    assert OPENAI_KEY not in repr(err.body)
    assert OPENAI_KEY not in repr(err.__dict__)


# -- serialization -----------------------------------------------------------------------------
def test_chat_serialization_matches_the_documented_structure() -> None:
    for provider in ("openai", "together"):
        model = Model.chat_completion(f"{provider}/gpt-4.1-nano")
        assert model.serialize() == {
            "msgflux_type": "model",
            "provider": provider,
            "model_type": "chat_completion",
            "state": DOCUMENTED_STATE,
        }


def test_custom_settings_are_serialized_without_secrets() -> None:
    model = Model.chat_completion(
        "openai/m",
        base_url="http://127.0.0.1:9/v1",
        stop="END",
        reasoning_effort="high",
        max_retries=5,
        timeout=3.0,
    )
    state = model.serialize()["state"]
    assert state["sampling_params"]["base_url"] == "http://127.0.0.1:9/v1"
    assert state["sampling_run_params"]["stop"] == "END"
    assert state["sampling_run_params"]["reasoning_effort"] == "high"
    assert (state["max_retries"], state["timeout"]) == (5, 3.0)


CALLS: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    "chat_completion": (("hi",), {}),
    "text_embedder": (("hi",), {}),
    "moderation": (("hi",), {}),
    "text_to_speech": (("hi",), {}),
    "speech_to_text": ((b"RIFF....",), {}),
    "text_to_image": (("a cat",), {}),
}


@pytest.mark.parametrize(
    ("model_type", "provider"),
    [
        (model_type, provider)
        for model_type, providers in registry.providers().items()
        for provider in providers
        # cloud credentials are no API key: tests/providers/test_{bedrock,vertex}.py
        if provider not in ("local", "bedrock", "vertex")
    ],
)
def test_serialization_round_trip_restores_a_working_model(
    monkeypatch: pytest.MonkeyPatch, upstream: Upstream, model_type: str, provider: str
) -> None:
    point_provider_at(monkeypatch, provider, upstream)
    model = getattr(Model, model_type)(f"{provider}/model-x", timeout=30)
    serialized = model.serialize()
    assert serialized["provider"] == provider
    assert serialized["model_type"] == model_type
    restored = Model.from_serialized(provider, model_type, serialized["state"])
    assert type(restored) is type(model)
    assert restored.serialize() == serialized
    args, kwargs = CALLS[model_type]
    response = restored(*args, **kwargs)
    assert isinstance(response, ModelResponse)
    assert response.data is not None
    assert sent_key(provider, upstream.last.headers) == f"Bearer sk-test-{provider}"


def test_from_serialized_validates_the_state() -> None:
    with pytest.raises(ValueError, match="sampling_run_params"):
        Model.from_serialized(
            "openai",
            "chat_completion",
            {**DOCUMENTED_STATE, "sampling_run_params": {"max_tokens": 1, "bogus": 1}},
        )
    with pytest.raises(TypeError, match="model_id"):
        Model.from_serialized("openai", "chat_completion", {"model_id": 3})


# -- validation --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"max_tokens": 0}, ValueError, "max_tokens"),
        ({"max_tokens": "many"}, TypeError, "max_tokens"),
        ({"temperature": 3}, ValueError, "temperature"),
        ({"top_p": "x"}, TypeError, "top_p"),
        ({"stop": 5}, TypeError, "stop"),
        ({"modalities": ["video"]}, ValueError, "modalities"),
        ({"max_retries": -1}, ValueError, "max_retries"),
        ({"max_retries": 1.5}, TypeError, "max_retries"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"base_url": "api.openai.com"}, ValueError, "base_url"),
        ({"organization": 1}, TypeError, "organization"),
    ],
)
def test_invalid_settings_raise_naming_the_field(
    kwargs: dict[str, Any], error: type[Exception], field: str
) -> None:
    with pytest.raises(error, match=field):
        Model.chat_completion("openai/m", **kwargs)


def test_openai_compatible_without_url_raises_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_COMPATIBLE_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="OPENAI_COMPATIBLE_BASE_URL"):
        Model.chat_completion("openai_compatible/m")


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"messages": 42}, TypeError, "messages"),
        ({"messages": ["not a dict"]}, TypeError, "messages"),
        ({"messages": []}, ValueError, "messages"),
        ({"messages": "x", "system_prompt": 1}, TypeError, "system_prompt"),
        ({"messages": "x", "stream": "yes"}, TypeError, "stream"),
        ({"messages": "x", "generation_schema": dict}, TypeError, "generation_schema"),
        ({"messages": "x", "tool_schemas": "f"}, TypeError, "tool_schemas"),
        ({"messages": "x", "tool_schemas": [{"x": 1}]}, ValueError, "tool_schemas"),
        ({"messages": "x", "tool_choice": "auto"}, ValueError, "tool_choice"),
        ({"messages": "x", "tool_schemas": [WEATHER_TOOL], "tool_choice": 3}, TypeError, "tool"),
        ({"messages": "x", "prefilling": "a", "generation_schema": Person}, ValueError, "prefill"),
    ],
)
def test_invalid_call_arguments_raise_naming_the_field(
    chat: OpenAIChatCompletion, kwargs: dict[str, Any], error: type[Exception], field: str
) -> None:
    with pytest.raises(error, match=field):
        chat(**kwargs)


def test_call_once_rejects_a_bad_timeout(chat: OpenAIChatCompletion) -> None:
    with pytest.raises(ValueError, match="timeout"):
        chat._call_once(messages="x", timeout=-1)


# -- the other model types ---------------------------------------------------------------------
def test_embeddings_of_one_text_and_of_many(upstream_env: Upstream) -> None:
    model = Model.text_embedder("openai/text-embedding-3-small", dimensions=4)
    one = model("hello")
    assert one.response_type == "text_embedding"
    assert len(one.data) == 4
    many = model(["hello", "world"])
    assert [len(v) for v in many.data] == [4, 4]
    assert many.data[0] == one.data
    assert upstream_env.last.json["dimensions"] == 4
    assert many.metadata.usage["total_tokens"] == 2


async def test_embeddings_async_single_attempt(upstream_env: Upstream) -> None:
    model = Model.text_embedder("openai/e")
    upstream_env.script(Reply(status=503))
    with pytest.raises(InternalServerError):
        await model._acall_once("x", timeout=5)
    response = await model.acall("x")
    assert len(response.data) == 8


def test_moderation_reports_safety(upstream_env: Upstream) -> None:
    model = Model.moderation("openai/omni-moderation-latest")
    assert model("hello").data.safe is True
    upstream_env.script(Reply(flagged=True))
    flagged = model("bad")
    assert flagged.response_type == "moderation"
    assert flagged.data.safe is False
    assert flagged.data.results["flagged"] is True
    assert len(model(["a", "b"]).data.results) == 2


def test_text_to_speech_returns_audio_bytes(upstream_env: Upstream) -> None:
    model = Model.text_to_speech("openai/gpt-4o-mini-tts", voice="nova")
    response = model("hello there", prompt="cheerful", response_format="wav")
    assert response.response_type == "audio_generation"
    assert response.data == b"FAKEAUDIO:hello there"
    assert upstream_env.last.json == {
        "model": "gpt-4o-mini-tts",
        "input": "hello there",
        "voice": "nova",
        "instructions": "cheerful",
        "response_format": "wav",
    }


async def test_text_to_speech_async(upstream_env: Upstream) -> None:
    response = await Model.text_to_speech("openai/tts-1").acall("hi")
    assert response.data == b"FAKEAUDIO:hi"


def test_speech_to_text_uploads_multipart_and_parses_transcript(
    upstream_env: Upstream, tmp_path: Path
) -> None:
    audio = tmp_path / "clip.wav"
    audio.write_bytes(b"RIFF-fake-audio")
    model = Model.speech_to_text("openai/whisper-1", temperature=0)
    upstream_env.script(Reply(text="hello world"))
    response = model(
        audio, response_format="verbose_json", timestamp_granularities=["word"], language="en"
    )
    assert response.response_type == "transcript"
    assert response.data.text == "hello world"
    assert [w["word"] for w in response.data.words] == ["hello", "world"]
    form = upstream_env.last.json
    assert form["file"] == b"RIFF-fake-audio"
    assert (form["model"], form["language"], form["temperature"]) == ("whisper-1", "en", "0")


async def test_speech_to_text_plain_text_format(upstream_env: Upstream) -> None:
    upstream_env.script(Reply(text="just text"))
    response = await Model.speech_to_text("openai/whisper-1").acall(b"x", response_format="text")
    assert response.data == {"text": "just text"}


def test_speech_to_text_rejects_what_is_not_audio(upstream_env: Upstream) -> None:
    model = Model.speech_to_text("openai/whisper-1")
    with pytest.raises(TypeError, match="data"):
        model(12)
    with pytest.raises(ValueError, match="cannot read"):
        model("/no/such/file.wav")


def test_text_to_image_returns_urls_or_base64(upstream_env: Upstream) -> None:
    model = Model.text_to_image("openai/gpt-image-1", size="1024x1024")
    one = model("a cat")
    assert one.response_type == "image_generation"
    assert one.data == "https://images.example/0.png"
    two = model("a cat", n=2, response_format="base64")
    assert len(two.data) == 2
    assert upstream_env.last.json == {
        "model": "gpt-image-1",
        "prompt": "a cat",
        "n": 2,
        "size": "1024x1024",
        "response_format": "b64_json",
    }


def test_every_model_type_maps_errors_and_timeouts(upstream_env: Upstream) -> None:
    upstream_env.set_default(Reply(status=429, retry_after=1))
    for model_type, (args, kwargs) in CALLS.items():
        model = getattr(Model, model_type)("openai/m")
        with pytest.raises(RateLimitError) as info:
            model._call_once(*args, **kwargs, timeout=5)
        assert info.value.retry_after == 1.0
        assert info.value.model_id == "m"


def test_concurrent_async_calls_share_one_session(
    chat: OpenAIChatCompletion, upstream_env: Upstream
) -> None:
    async def main() -> list[Any]:
        return list(await asyncio.gather(*(chat._acall_once(messages=str(i)) for i in range(20))))

    responses = asyncio.run(main())
    assert [r.data for r in responses] == ["Hello from gpt-4.1-nano"] * 20
