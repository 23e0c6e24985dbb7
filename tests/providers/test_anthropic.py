"""The Anthropic adapter against the scriptable upstream's Messages API, and the official
``anthropic`` SDK as the reference for what is sent and what is parsed."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import msgspec
import orjson
import pytest
import urllib3

from msgflux import ManualClock, Model
from msgflux.exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ContentPolicyError,
    ContextWindowExceededError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnsupportedFeatureError,
)
from msgflux.models.providers.anthropic import AnthropicChatCompletion
from msgflux.models.response import ModelResponse, ModelStreamResponse
from msgflux.models.tool_call import ToolCall
from tests.upstream import Reply, ToolCallSpec, Upstream

KEY = "sk-ant-test-key-0001"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
PNG = "iVBORw0KGgo="


class Person(msgspec.Struct):
    name: str
    age: int


@pytest.fixture
def up(upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> Upstream:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", upstream.url)
    return upstream


@pytest.fixture
def claude(up: Upstream) -> AnthropicChatCompletion:
    model = Model.chat_completion("anthropic/claude-sonnet-4-5", max_retries=0)
    assert isinstance(model, AnthropicChatCompletion)
    return model


@pytest.fixture
def sdk(up: Upstream) -> Any:
    with anthropic.Anthropic(base_url=up.url, api_key=KEY, max_retries=0) as client:
        yield client


def valid(up: Upstream) -> None:
    """Every request so far is one the Messages API accepts."""
    assert [r.invalid for r in up.requests] == [None] * len(up.requests)


# -- requests ----------------------------------------------------------------------------------
def test_text_answer_with_headers_usage_and_request_id(
    claude: AnthropicChatCompletion, up: Upstream
) -> None:
    response = claude(messages="Who was Frank Rosenblatt?", system_prompt="Be brief")
    assert response.response_type == "text_generation"
    assert response.consume() == "Hello from claude-sonnet-4-5"
    assert response.metadata.finish_reason == "stop"
    assert response.metadata.request_id == "req_1"
    assert response.metadata.usage["prompt_tokens"] == 6
    last = up.last
    assert (last.route, last.path, last.invalid) == ("messages", "/v1/messages", None)
    assert last.headers["x-api-key"] == KEY
    assert last.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in last.headers
    assert last.json == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 512,
        "system": "Be brief",
        "messages": [{"role": "user", "content": "Who was Frank Rosenblatt?"}],
    }
    raw = response.raw
    assert raw["object"] == "chat.completion"
    assert raw["id"] == "msg_0001"
    assert raw["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Hello from claude-sonnet-4-5",
    }


async def test_acall_answers_text(claude: AnthropicChatCompletion) -> None:
    response = await claude.acall(messages="hi")
    assert isinstance(response, ModelResponse)
    assert response.consume() == "Hello from claude-sonnet-4-5"


def test_multi_turn_with_images_parallel_tool_results_and_cache_control(
    claude: AnthropicChatCompletion, up: Upstream
) -> None:
    messages = [
        {
            "role": "system",
            "content": [{"type": "text", "text": "Rules.", "cache_control": {"type": "ephemeral"}}],
        },
        {"role": "developer", "content": "Be terse."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is here, and the weather?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Let me check.",
            "thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "s1"}],
            "tool_calls": [
                {
                    "id": "toolu_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rio"}'},
                },
                {
                    "id": "toolu_b",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": ""},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_b", "content": [{"type": "text", "text": "noon"}]},
        {"role": "user", "content": "Thanks!", "cache_control": {"type": "ephemeral"}},
    ]
    tools = [{**WEATHER, "cache_control": {"type": "ephemeral"}}, TIME]
    claude(messages=messages, tool_schemas=tools, tool_choice="auto", parallel_tool_calls=False)
    valid(up)
    body = up.last.json
    assert body["system"] == [
        {"type": "text", "text": "Rules.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Be terse."},
    ]
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is here, and the weather?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "t", "signature": "s1"},
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_a",
                    "name": "get_weather",
                    "input": {"city": "Rio"},
                },
                {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_b",
                    "content": [{"type": "text", "text": "noon"}],
                },
                {"type": "text", "text": "Thanks!", "cache_control": {"type": "ephemeral"}},
            ],
        },
    ]
    assert body["tools"] == [
        {
            "name": "get_weather",
            "input_schema": WEATHER["function"]["parameters"],
            "description": "Weather in a city",
            "cache_control": {"type": "ephemeral"},
        },
        {"name": "get_time", "input_schema": {"type": "object"}},
    ]
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ("get_weather", {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice_maps_to_anthropic_forms(
    claude: AnthropicChatCompletion, up: Upstream, choice: str, expected: dict[str, Any]
) -> None:
    claude(messages="x", tool_schemas=[WEATHER], tool_choice=choice)
    valid(up)
    assert up.last.json["tool_choice"] == expected


def test_sampling_fields_stop_user_and_vendor_fields(up: Upstream) -> None:
    model = Model.chat_completion("anthropic/c", temperature=0.3, top_p=0.9, top_k=5, stop="END")
    model(
        messages="x",
        max_tokens=64,
        user="u-1",
        seed=7,
        store=True,
        extra_body={"cache_control": {"type": "ephemeral"}},
    )
    valid(up)
    body = up.last.json
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["top_k"]) == (
        64,
        0.3,
        0.9,
        5,
    )
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "u-1"}
    assert body["cache_control"] == {"type": "ephemeral"}
    assert "seed" not in body and "store" not in body


def test_prefill_is_the_final_assistant_turn_without_trailing_space(
    claude: AnthropicChatCompletion, up: Upstream
) -> None:
    claude(messages="Write a haiku", prefilling="Autumn moon ")
    valid(up)
    assert up.last.json["messages"][-1] == {"role": "assistant", "content": "Autumn moon"}


def test_anthropic_version_is_configurable(up: Upstream) -> None:
    model = Model.chat_completion("anthropic/c", anthropic_version="2026-10-21")
    model(messages="x")
    valid(up)
    assert up.last.headers["anthropic-version"] == "2026-10-21"
    assert model.serialize()["state"]["sampling_params"]["anthropic_version"] == "2026-10-21"


# -- answers -----------------------------------------------------------------------------------
def test_parallel_tool_calls_with_text_are_parsed(
    claude: AnthropicChatCompletion, up: Upstream
) -> None:
    up.script(
        Reply(
            text="Checking both.",
            tool_calls=[
                ToolCallSpec("get_weather", {"city": "Rio"}, id="toolu_x"),
                {"name": "get_time"},
            ],
        )
    )
    response = claude(messages="x", tool_schemas=[WEATHER, TIME])
    assert response.response_type == "tool_call"
    assert response.data == [
        ToolCall("toolu_x", "get_weather", {"city": "Rio"}, '{"city":"Rio"}'),
        ToolCall("toolu_1_1", "get_time", {}, "{}"),
    ]
    assert response.metadata.finish_reason == "tool_calls"
    assert response.raw["choices"][0]["message"]["content"] == "Checking both."


@pytest.mark.parametrize("mode", [None, "native"])
def test_structured_output_through_native_json_output(up: Upstream, mode: str | None) -> None:
    model = Model.chat_completion("anthropic/c", structured_output=mode)
    up.script(Reply(structured={"name": "Ada", "age": 36}))
    response = model(messages="who?", generation_schema=Person)
    valid(up)
    assert response.response_type == "structured"
    assert response.data == Person("Ada", 36)
    fmt = up.last.json["output_config"]["format"]
    assert fmt["type"] == "json_schema"
    assert fmt["schema"]["required"] == ["name", "age"]
    assert fmt["schema"]["additionalProperties"] is False
    assert "tools" not in up.last.json


def test_structured_output_through_a_forced_tool(up: Upstream) -> None:
    model = Model.chat_completion("anthropic/c", structured_output="tool")
    up.script(Reply(structured={"name": "Ada", "age": 36}))
    response = model(messages="who?", generation_schema=Person)
    valid(up)
    assert response.data == Person("Ada", 36)
    assert response.metadata.finish_reason == "stop"
    body = up.last.json
    assert body["tool_choice"] == {"type": "tool", "name": "json_answer"}
    assert body["tools"][0]["input_schema"]["properties"].keys() == {"name", "age"}


def test_json_object_is_carried_by_a_forced_tool(
    claude: AnthropicChatCompletion, up: Upstream
) -> None:
    up.script(Reply(structured={"a": 1}))
    response = claude(messages="json please", response_format={"type": "json_object"})
    valid(up)
    assert orjson.loads(response.consume()) == {"a": 1}
    assert up.last.json["tools"][0]["input_schema"] == {"type": "object"}


def test_extended_thinking_from_reasoning_effort(up: Upstream) -> None:
    model = Model.chat_completion("anthropic/c", reasoning_effort="low", max_tokens=300)
    up.script(Reply(text="391", reasoning="17 times 23"))
    response = model(messages="17*23?")
    valid(up)
    assert up.last.json["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert up.last.json["max_tokens"] == 1324
    assert response.response_type == "reasoning_text_generation"
    assert (response.data.answer, response.data.think) == ("391", "17 times 23")
    blocks = response.raw["choices"][0]["message"]["thinking_blocks"]
    assert blocks == [{"type": "thinking", "thinking": "17 times 23", "signature": "sig-1"}]


def test_thinking_passed_per_call_is_sent_as_given(
    claude: AnthropicChatCompletion, up: Upstream
) -> None:
    claude(
        messages="x",
        max_tokens=4000,
        extra_body={"thinking": {"type": "enabled", "budget_tokens": 2000}},
    )
    valid(up)
    assert up.last.json["thinking"] == {"type": "enabled", "budget_tokens": 2000}


def test_usage_counts_cache_tokens(claude: AnthropicChatCompletion, up: Upstream) -> None:
    up.script(
        Reply(
            usage={
                "input_tokens": 10,
                "cache_creation_input_tokens": 5,
                "cache_read_input_tokens": 20,
                "output_tokens": 7,
            }
        )
    )
    usage = claude(messages="x").metadata.usage
    assert usage == {
        "prompt_tokens": 35,
        "completion_tokens": 7,
        "total_tokens": 42,
        "prompt_tokens_details": {"cached_tokens": 20},
        "cache_creation_input_tokens": 5,
        "cache_read_input_tokens": 20,
    }


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("a_reason_from_the_future", "stop"),
    ],
)
def test_stop_reasons_map_to_finish_reasons(
    claude: AnthropicChatCompletion, up: Upstream, stop: str, finish: str
) -> None:
    up.script(Reply(finish_reason=stop))
    assert claude(messages="x").metadata.finish_reason == finish


def test_refusal_is_a_content_policy_error(claude: AnthropicChatCompletion, up: Upstream) -> None:
    up.script(Reply(finish_reason="refusal"))
    with pytest.raises(ContentPolicyError, match="refusal"):
        claude(messages="x")


# -- streams -----------------------------------------------------------------------------------
def test_stream_yields_text_and_canonical_chunks_with_usage(
    claude: AnthropicChatCompletion, up: Upstream
) -> None:
    up.script(Reply(text="one two three", usage={"cache_read_input_tokens": 4}))
    stream = claude(messages="x", stream=True)
    assert isinstance(stream, ModelStreamResponse)
    chunks = list(stream.chunks())
    valid(up)
    assert up.last.json["stream"] is True
    assert {c["id"] for c in chunks} == {"msg_0001"}
    assert {c["model"] for c in chunks} == {"claude-sonnet-4-5"}
    texts = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert "".join(t or "" for t in texts) == "one two three"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["cache_read_input_tokens"] == 4
    assert stream.metadata.finish_reason == "stop"
    assert stream.metadata.usage["completion_tokens"] == 3
    assert stream.metadata.request_id == "req_1"


async def test_async_stream_of_parallel_tool_calls(
    claude: AnthropicChatCompletion, up: Upstream
) -> None:
    up.script(
        Reply(
            tool_calls=[
                ToolCallSpec("get_weather", {"city": "Rio"}, id="toolu_w"),
                {"name": "get_time"},
            ]
        )
    )
    stream = await claude.acall(messages="x", stream=True, tool_schemas=[WEATHER, TIME])
    items = [item async for item in stream.consume()]
    assert items == [stream.data]
    assert [(c.id, c.name, c.arguments) for c in stream.data] == [
        ("toolu_w", "get_weather", {"city": "Rio"}),
        ("toolu_1_1", "get_time", {}),
    ]
    assert stream.response_type == "tool_call"
    assert stream.metadata.finish_reason == "tool_calls"


def test_stream_with_thinking_deltas(claude: AnthropicChatCompletion, up: Upstream) -> None:
    up.script(Reply(text="42", reasoning="let me see"))
    stream = claude(messages="x", stream=True)
    pairs = list(stream.chunks())
    assert stream.response_type == "reasoning_text_generation"
    assert stream.metadata.reasoning == "let me see"
    blocks = [
        c["choices"][0]["delta"]["thinking_blocks"]
        for c in pairs
        if c["choices"] and "thinking_blocks" in c["choices"][0]["delta"]
    ]
    assert blocks == [[{"type": "thinking", "thinking": "let me see", "signature": "sig-1"}]]


def test_stream_cut_midway_raises_from_the_iterator(
    claude: AnthropicChatCompletion, up: Upstream
) -> None:
    up.script(Reply(text="a b c d", cut_after=2))
    stream = claude(messages="x", stream=True)
    got = []
    with pytest.raises(APIConnectionError):
        for chunk in stream:
            got.append(chunk)
    assert got == ["a", " b"]


async def test_async_stream_cut_before_content_raises_from_first_chunk(
    claude: AnthropicChatCompletion, up: Upstream
) -> None:
    up.script(Reply(text="a b", cut_after=0))
    stream = await claude.acall(messages="x", stream=True)
    with pytest.raises(APIConnectionError):
        await stream.afirst_chunk()


@pytest.mark.parametrize(
    ("event", "error", "status"),
    [
        ("overloaded_error", InternalServerError, 529),
        ("rate_limit_error", RateLimitError, 429),
        ("api_error", InternalServerError, 500),
        ("invalid_request_error", BadRequestError, 400),
    ],
)
def test_error_event_midstream_raises_the_typed_error(
    claude: AnthropicChatCompletion, up: Upstream, event: str, error: type[Exception], status: int
) -> None:
    up.script(Reply(text="a b c", cut_after=1, stream_error=event))
    stream = claude(messages="x", stream=True)
    got = []
    with pytest.raises(error) as info:
        for chunk in stream:
            got.append(chunk)
    assert got == ["a"]
    assert isinstance(info.value, APIStatusError)
    assert info.value.status_code == status


def test_refusal_midstream_raises_content_policy_error(
    claude: AnthropicChatCompletion, up: Upstream
) -> None:
    up.script(Reply(text="I will not", finish_reason="refusal"))
    with pytest.raises(ContentPolicyError):
        list(claude(messages="x", stream=True))


def test_stream_without_usage_when_the_caller_says_so(
    claude: AnthropicChatCompletion, up: Upstream
) -> None:
    stream = claude(messages="x", stream=True, stream_options={"include_usage": False})
    chunks = list(stream.chunks())
    assert all(c["choices"] for c in chunks)
    assert "stream_options" not in up.last.json


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(status=400), BadRequestError),
        (
            Reply(status=400, error="prompt is too long: 210000 tokens > 200000 maximum"),
            ContextWindowExceededError,
        ),
        (Reply(status=400, error="Output blocked by content filtering policy"), ContentPolicyError),
        (Reply(status=401), AuthenticationError),
        (Reply(status=402), APIStatusError),
        (Reply(status=403), PermissionDeniedError),
        (Reply(status=404), NotFoundError),
        (Reply(status=413), BadRequestError),
        (Reply(status=429), RateLimitError),
        (Reply(status=500), InternalServerError),
        (Reply(status=504), InternalServerError),
        (Reply(status=529), InternalServerError),
        (Reply(status=500, error_type="rate_limit_error"), RateLimitError),
    ],
)
def test_error_statuses_map_to_typed_errors(
    claude: AnthropicChatCompletion, up: Upstream, reply: Reply, error: type[Exception]
) -> None:
    up.script(reply)
    with pytest.raises(error) as info:
        claude(messages="x")
    assert type(info.value) is error
    assert info.value.status_code == reply.status
    assert info.value.request_id == "req_1"


@pytest.mark.parametrize(("status", "error"), [(429, RateLimitError), (529, InternalServerError)])
def test_rate_limit_and_overloaded_honour_retry_after(
    up: Upstream, status: int, error: type[Exception]
) -> None:
    clock = ManualClock()
    model = Model.chat_completion("anthropic/c", clock=clock)
    up.script([Reply(status=status, retry_after=3), Reply(status=status, retry_after_ms=1500)])
    assert model(messages="x").consume() == "Hello from c"
    assert clock.sleeps == [3.0, 1.5]
    up.script(Reply(status=status, retry_after=7))
    with pytest.raises(error) as info:
        model._call_once(messages="x")
    assert info.value.retry_after == 7.0


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b"not json", "not valid JSON"),
        (b'["a list"]', "must be an object"),
        (b'{"content": "text"}', "content list"),
        (b'{"content": [{"type": "tool_use", "id": "t", "name": "f", "input": [1]}]}', "input"),
        (b'{"content": [{"type": "text", "text": 5}]}', "text"),
        (b'{"content": [], "usage": {"input_tokens": "many"}}', "input_tokens"),
        (b'{"content": [], "stop_reason": 7}', "stop_reason"),
    ],
)
def test_malformed_answers_are_validation_errors(
    claude: AnthropicChatCompletion, up: Upstream, body: bytes, what: str
) -> None:
    up.script(Reply(body=body, content_type="application/json"))
    with pytest.raises(APIResponseValidationError, match=what):
        claude(messages="x")


@pytest.mark.parametrize(
    "sse",
    [
        b"event: message_start\ndata: not json\n\n",
        b'event: message_start\ndata: {"type": "message_start", "message": 3}\n\n',
        b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, '
        b'"delta": {"type": "input_json_delta", "partial_json": "{}"}}\n\n',
    ],
)
def test_malformed_stream_events_are_validation_errors(
    claude: AnthropicChatCompletion, up: Upstream, sse: bytes
) -> None:
    up.script(Reply(body=sse, content_type="text/event-stream"))
    with pytest.raises(APIResponseValidationError):
        list(claude(messages="x", stream=True))


# -- what Anthropic cannot express -------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"n": 2}, "n=2"),
        ({"logprobs": True}, "logprobs"),
        ({"temperature": 1.5}, "temperature"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}
                ]
            },
            "input_audio",
        ),
        (
            {"reasoning_effort": "high", "tool_schemas": [WEATHER], "tool_choice": "required"},
            "thinking",
        ),
        ({"response_format": {"type": "json_object"}, "tool_schemas": [WEATHER]}, "tools"),
        ({"reasoning_effort": "low", "temperature": 0.5}, "thinking"),
    ],
)
def test_what_anthropic_cannot_express_fails_before_sending(
    claude: AnthropicChatCompletion, up: Upstream, kwargs: dict[str, Any], what: str
) -> None:
    kwargs.setdefault("messages", "x")
    with pytest.raises(UnsupportedFeatureError, match=what):
        claude(**kwargs)
    assert up.count() == 0


def test_sampling_fields_on_the_2026_version_fail_before_sending(up: Upstream) -> None:
    model = Model.chat_completion("anthropic/c", anthropic_version="2026-10-21")
    with pytest.raises(UnsupportedFeatureError, match="2023-06-01"):
        model(messages="x", temperature=0.2)
    assert up.count() == 0


def test_impossible_sampling_settings_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="temperature"):
        Model.chat_completion("anthropic/c", temperature=1.5)
    with pytest.raises(ValueError, match="top_k"):
        Model.chat_completion("anthropic/c", top_k=3, anthropic_version="2026-10-21")


def test_a_tool_message_without_its_id_is_the_callers_mistake(
    claude: AnthropicChatCompletion,
) -> None:
    with pytest.raises(ValueError, match="tool_call_id"):
        claude(messages=[{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}])


# -- keys and URLs -----------------------------------------------------------------------------
def test_missing_key_names_the_variable_and_sends_nothing(
    monkeypatch: pytest.MonkeyPatch, upstream: Upstream
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    model = Model.chat_completion("anthropic/c", base_url=upstream.url)
    with pytest.raises(AuthenticationError, match="ANTHROPIC_API_KEY"):
        model(messages="x")
    assert upstream.count() == 0


def test_key_never_appears_in_repr_serialization_or_errors(
    claude: AnthropicChatCompletion, up: Upstream
) -> None:
    up.script(Reply(status=401, error=f"invalid x-api-key: {KEY}"))
    with pytest.raises(AuthenticationError) as info:
        claude(messages="x")
    for text in (repr(claude), str(claude.serialize()), str(info.value), repr(info.value.body)):
        assert KEY not in text


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_base_url_is_the_api_root_with_or_without_v1(
    monkeypatch: pytest.MonkeyPatch, up: Upstream, suffix: str
) -> None:
    model = Model.chat_completion("anthropic/c", base_url=up.url + suffix)
    model(messages="x")
    assert up.last.path == "/v1/messages"


def test_serialization_round_trip_keeps_the_settings(up: Upstream) -> None:
    model = Model.chat_completion(
        "anthropic/c", anthropic_version="2026-10-21", structured_output="tool", timeout=9
    )
    state = model.serialize()
    restored = Model.from_serialized(state)
    assert restored.serialize() == state
    assert isinstance(restored, AnthropicChatCompletion)
    restored(messages="x")
    assert up.last.headers["anthropic-version"] == "2026-10-21"


# -- the test upstream refuses what Anthropic refuses ------------------------------------------
@pytest.mark.parametrize(
    ("headers", "body", "status", "what"),
    [
        (
            {"x-api-key": KEY},
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
            400,
            "anthropic-version",
        ),
        (
            {"anthropic-version": "2023-06-01"},
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
            401,
            "x-api-key",
        ),
        (None, {"model": "m", "messages": [{"role": "user", "content": "x"}]}, 400, "max_tokens"),
        (
            None,
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "n": 1},
            400,
            "Extra inputs",
        ),
        (
            None,
            {"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
            400,
            "role",
        ),
        (
            None,
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]}
                ],
            },
            400,
            "tool_use_id",
        ),
    ],
)
def test_the_upstream_refuses_what_the_messages_api_refuses(
    up: Upstream, headers: dict[str, str] | None, body: dict[str, Any], status: int, what: str
) -> None:
    sent = headers if headers is not None else {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    resp = urllib3.request(
        "POST", up.url + "/v1/messages", body=orjson.dumps(body), headers=sent, retries=False
    )
    assert resp.status == status
    error = orjson.loads(resp.data)
    assert error["type"] == "error"
    assert what in error["error"]["message"]
    assert what in (up.last.invalid or "")


# -- the official SDK as the reference ---------------------------------------------------------
def test_sdk_and_adapter_send_the_same_body_for_the_same_conversation(
    claude: AnthropicChatCompletion, sdk: Any, up: Upstream
) -> None:
    sdk.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=256,
        system="Be brief",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Rio"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}],
            },
        ],
        tools=[
            {
                "name": "get_weather",
                "description": "Weather in a city",
                "input_schema": WEATHER["function"]["parameters"],
            }
        ],
        tool_choice={"type": "any"},
        stop_sequences=["END"],
        metadata={"user_id": "u-1"},
    )
    theirs = up.last
    claude(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rio"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        ],
        system_prompt="Be brief",
        tool_schemas=[WEATHER],
        tool_choice="required",
        max_tokens=256,
        stop=["END"],
        user="u-1",
    )
    ours = up.last
    valid(up)
    assert ours.json == theirs.json
    assert (ours.path, theirs.path) == ("/v1/messages", "/v1/messages")
    # The SDK (2.x) authenticates with a bearer token on API version 2026-10-21; we send
    # x-api-key on 2023-06-01. The upstream accepts both, as the API does.
    assert theirs.headers["authorization"] == f"Bearer {KEY}"
    assert theirs.headers["anthropic-version"] == "2026-10-21"
    assert ours.headers["x-api-key"] == KEY


@pytest.mark.parametrize(
    "reply",
    [
        Reply(text="Plain answer."),
        Reply(
            text="Let me look.",
            tool_calls=[
                ToolCallSpec("get_weather", {"city": "Rio"}, id="toolu_w"),
                {"name": "get_time", "id": "toolu_t"},
            ],
        ),
        Reply(text="391", reasoning="17 times 23", usage={"cache_read_input_tokens": 9}),
        Reply(finish_reason="max_tokens", text="cut"),
    ],
    ids=["text", "tools", "thinking", "max_tokens"],
)
def test_sdk_and_adapter_parse_the_same_answer(
    claude: AnthropicChatCompletion, sdk: Any, up: Upstream, reply: Reply
) -> None:
    up.script([reply, reply])
    message = sdk.messages.create(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "x"}]
    )
    ours = claude(messages="x").raw
    _agree(message, ours)


def test_sdk_stream_and_adapter_stream_agree(
    claude: AnthropicChatCompletion, sdk: Any, up: Upstream
) -> None:
    reply = Reply(
        text="Sure.",
        reasoning="think",
        tool_calls=[ToolCallSpec("get_weather", {"city": "Rio"}, id="toolu_w")],
    )
    up.script([reply, reply])
    with sdk.messages.stream(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "x"}]
    ) as events:
        message = events.get_final_message()
    stream = claude(messages="x", stream=True, tool_schemas=[WEATHER])
    chunks = list(stream.chunks())
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "".join(b.text for b in message.content if b.type == "text")
    assert [(c.id, c.name, c.arguments) for c in stream.data] == [
        (b.id, b.name, b.input) for b in message.content if b.type == "tool_use"
    ]
    assert stream.metadata.reasoning == "".join(
        b.thinking for b in message.content if b.type == "thinking"
    )
    assert stream.metadata.usage["completion_tokens"] == message.usage.output_tokens
    assert stream.metadata.usage["prompt_tokens"] == message.usage.input_tokens
    assert stream.metadata.finish_reason == "tool_calls" and message.stop_reason == "tool_use"


def test_sdk_and_adapter_agree_on_a_stream_cut_midway(
    claude: AnthropicChatCompletion, sdk: Any, up: Upstream
) -> None:
    reply = Reply(text="a b c d", cut_after=2)
    up.script([reply, reply])
    theirs: list[str] = []
    # What matters: both stop at the same text with a connection error (the SDK's own class
    # for it, or, in releases before 2.17, the HTTP library's error let through).
    with (
        pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)),
        sdk.messages.stream(
            model="m", max_tokens=9, messages=[{"role": "user", "content": "x"}]
        ) as events,
    ):
        theirs.extend(events.text_stream)
    ours: list[str] = []
    with pytest.raises(APIConnectionError):
        for chunk in claude(messages="x", stream=True):
            ours.append(chunk)
    assert ours == theirs == ["a", " b"]


def _agree(message: Any, ours: dict[str, Any]) -> None:
    answer = ours["choices"][0]["message"]
    texts = "".join(b.text for b in message.content if b.type == "text")
    assert (answer["content"] or "") == texts
    calls = [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"]
    assert [
        (c["id"], c["function"]["name"], orjson.loads(c["function"]["arguments"]))
        for c in answer.get("tool_calls", ())
    ] == calls
    thinking = "".join(b.thinking for b in message.content if b.type == "thinking")
    assert answer.get("reasoning_content", "") == thinking
    usage = message.usage
    cached = (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)
    assert ours["usage"]["prompt_tokens"] == usage.input_tokens + cached
    assert ours["usage"]["completion_tokens"] == usage.output_tokens
    assert ours["usage"]["cache_read_input_tokens"] == (usage.cache_read_input_tokens or 0)
    expected = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length"}
    assert ours["choices"][0]["finish_reason"] == expected[message.stop_reason]
    assert ours["model"] == message.model
    assert (message.id, ours["id"]) == ("msg_0001", "msg_0002")  # one request each


@pytest.mark.parametrize(
    ("status", "theirs", "ours"),
    [
        (400, anthropic.BadRequestError, BadRequestError),
        (401, anthropic.AuthenticationError, AuthenticationError),
        (403, anthropic.PermissionDeniedError, PermissionDeniedError),
        (404, anthropic.NotFoundError, NotFoundError),
        (429, anthropic.RateLimitError, RateLimitError),
        (500, anthropic.InternalServerError, InternalServerError),
        (529, anthropic.InternalServerError, InternalServerError),  # the SDK's OverloadedError
    ],
)
def test_sdk_and_adapter_raise_the_same_kind_of_error(
    claude: AnthropicChatCompletion, sdk: Any, up: Upstream, status: int, theirs: type, ours: type
) -> None:
    reply = Reply(status=status, retry_after=2)
    up.script([reply, reply])
    with pytest.raises(theirs) as sdk_error:
        sdk.messages.create(model="m", max_tokens=9, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(ours) as our_error:
        claude(messages="x")
    assert our_error.value.status_code == sdk_error.value.status_code == status
    assert (sdk_error.value.request_id, our_error.value.request_id) == ("req_1", "req_2")
    assert our_error.value.message.endswith(sdk_error.value.body["error"]["message"])
    assert our_error.value.retry_after == 2.0


def test_sdk_counts_tokens_on_the_upstream(sdk: Any, up: Upstream) -> None:
    count = sdk.messages.count_tokens(
        model="m", messages=[{"role": "user", "content": "two words"}]
    )
    assert count.input_tokens == 2
    valid(up)


def test_a_tool_changed_in_place_is_sent_as_changed(
    claude: AnthropicChatCompletion, up: Upstream
) -> None:
    tool = {"type": "function", "function": {"name": "f", "description": "one"}}
    claude(messages="x", tool_schemas=[tool])
    tool["function"]["description"] = "two"
    claude(messages="x", tool_schemas=[tool])
    assert [r.json["tools"][0]["description"] for r in up.requests] == ["one", "two"]
