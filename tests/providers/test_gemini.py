"""The Gemini adapter against the scriptable upstream's Gemini API, and the official
``google-genai`` SDK as the reference for what is sent and what is parsed."""

from __future__ import annotations

import base64
from typing import Any

import msgspec
import orjson
import pytest
import urllib3
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from msgflux import ManualClock, Model
from msgflux.exceptions import (
    APIConnectionError,
    APIResponseValidationError,
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
from msgflux.models.providers.gemini import (
    GeminiChatCompletion,
    GeminiTextEmbedder,
    gemini_schema,
    retry_delay,
)
from msgflux.models.response import ModelStreamResponse
from msgflux.models.tool_call import ToolCall
from tests.upstream import Reply, ToolCallSpec, Upstream

KEY = "AIza-test-key-0001"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
PNG = "iVBORw0KGgo="
PATH = "/v1beta/models/gemini-2.5-flash"


class Person(msgspec.Struct):
    name: str
    age: int


class Team(msgspec.Struct):
    lead: Person
    motto: str | None
    size: int = 1


@pytest.fixture
def up(upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> Upstream:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("GEMINI_BASE_URL", upstream.url)
    return upstream


@pytest.fixture
def gemini(up: Upstream) -> GeminiChatCompletion:
    model = Model.chat_completion("gemini/gemini-2.5-flash", max_retries=0)
    assert isinstance(model, GeminiChatCompletion)
    return model


@pytest.fixture
def sdk(up: Upstream) -> Any:
    options = types.HttpOptions(base_url=up.url, api_version="v1beta")
    client = genai.Client(api_key=KEY, http_options=options)
    yield client
    client.close()


def valid(up: Upstream) -> None:
    assert [r.invalid for r in up.requests] == [None] * len(up.requests)


# -- requests ----------------------------------------------------------------------------------
def test_text_answer_path_key_body_and_usage(gemini: GeminiChatCompletion, up: Upstream) -> None:
    response = gemini(messages="Who was Frank Rosenblatt?", system_prompt="Be brief")
    assert response.response_type == "text_generation"
    assert response.consume() == "Hello from gemini-2.5-flash"
    assert response.metadata.finish_reason == "stop"
    assert response.metadata.usage == {
        "prompt_tokens": 6,
        "completion_tokens": 3,
        "total_tokens": 9,
    }
    last = up.last
    valid(up)
    assert (last.route, last.path) == ("generate_content", f"{PATH}:generateContent")
    assert last.headers["x-goog-api-key"] == KEY
    assert "authorization" not in last.headers
    assert last.json == {
        "contents": [{"role": "user", "parts": [{"text": "Who was Frank Rosenblatt?"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief"}]},
        "generationConfig": {"maxOutputTokens": 512},
    }
    assert response.raw["id"] == "resp-1"
    assert response.raw["model"] == "gemini-2.5-flash"


async def test_acall_answers_text(gemini: GeminiChatCompletion) -> None:
    response = await gemini.acall(messages="hi")
    assert response.consume() == "Hello from gemini-2.5-flash"


def test_multi_turn_with_images_parallel_function_responses_and_signatures(
    gemini: GeminiChatCompletion, up: Upstream
) -> None:
    signature = {"google": {"thought_signature": "c2lnLTE="}}
    messages = [
        {"role": "system", "content": "Rules."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather and time?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rio"}'},
                    "extra_content": signature,
                },
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"sky": "clear"}'},
        {"role": "tool", "tool_call_id": "c2", "content": "noon"},
        {"role": "user", "content": "Thanks"},
    ]
    gemini(messages=messages, tool_schemas=[WEATHER, TIME])
    valid(up)
    body = up.last.json
    assert body["systemInstruction"] == {"parts": [{"text": "Rules."}]}
    assert body["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "Weather and time?"},
                {"inlineData": {"mimeType": "image/png", "data": PNG}},
                {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/a.png"}},
            ],
        },
        {
            "role": "model",
            "parts": [
                {"text": "Checking."},
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Rio"}},
                    "thoughtSignature": "c2lnLTE=",
                },
                {"functionCall": {"name": "get_time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"sky": "clear"}}},
                {"functionResponse": {"name": "get_time", "response": {"result": "noon"}}},
                {"text": "Thanks"},
            ],
        },
    ]
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather in a city",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {"city": {"type": "STRING"}},
                        "propertyOrdering": ["city"],
                        "required": ["city"],
                    },
                },
                {"name": "get_time"},
            ]
        }
    ]


def test_generation_config_fields(up: Upstream) -> None:
    model = Model.chat_completion("gemini/gemini-2.5-flash", temperature=0.3, top_k=5, stop="END")
    model(
        messages="x",
        max_tokens=64,
        top_p=0.9,
        seed=7,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        user="u",
    )
    valid(up)
    assert up.last.json["generationConfig"] == {
        "maxOutputTokens": 64,
        "temperature": 0.3,
        "topP": 0.9,
        "topK": 5,
        "seed": 7,
        "presencePenalty": 0.1,
        "frequencyPenalty": 0.2,
        "stopSequences": ["END"],
    }


def test_vendor_fields_pass_through_and_generation_config_merges(
    gemini: GeminiChatCompletion, up: Upstream
) -> None:
    safety = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}]
    gemini(
        messages="x",
        extra_body={"safetySettings": safety, "generationConfig": {"temperature": 0.0, "topK": 2}},
    )
    valid(up)
    assert up.last.json["safetySettings"] == safety
    assert up.last.json["generationConfig"] == {
        "maxOutputTokens": 512,
        "temperature": 0.0,
        "topK": 2,
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        ("none", {"mode": "NONE"}),
        ("get_weather", {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
    ],
)
def test_tool_choice_maps_to_function_calling_config(
    gemini: GeminiChatCompletion, up: Upstream, choice: str, expected: dict[str, Any]
) -> None:
    gemini(messages="x", tool_schemas=[WEATHER], tool_choice=choice)
    valid(up)
    assert up.last.json["toolConfig"] == {"functionCallingConfig": expected}


@pytest.mark.parametrize(
    ("model_id", "effort", "config"),
    [
        ("gemini-2.5-flash", "low", {"thinkingBudget": 1024, "includeThoughts": True}),
        ("gemini-2.5-flash", "none", {"thinkingBudget": 0}),
        ("gemini-3-pro-preview", "low", {"thinkingLevel": "LOW", "includeThoughts": True}),
        ("gemini-3-pro-preview", "high", {"thinkingLevel": "HIGH", "includeThoughts": True}),
    ],
)
def test_reasoning_effort_maps_to_thinking_config(
    up: Upstream, model_id: str, effort: str, config: dict[str, Any]
) -> None:
    Model.chat_completion(f"gemini/{model_id}")(messages="x", reasoning_effort=effort)
    valid(up)
    assert up.last.json["generationConfig"]["thinkingConfig"] == config


def test_api_version_and_a_base_url_that_names_it(up: Upstream) -> None:
    Model.chat_completion("gemini/m", api_version="v1")(messages="x")
    assert up.last.path == "/v1/models/m:generateContent"
    Model.chat_completion("gemini/models/m", base_url=up.url + "/v1beta/")(messages="x")
    assert up.last.path == "/v1beta/models/m:generateContent"
    valid(up)


# -- answers -----------------------------------------------------------------------------------
def test_function_calls_are_tool_calls_with_their_signature(
    gemini: GeminiChatCompletion, up: Upstream
) -> None:
    up.script(
        Reply(
            tool_calls=[ToolCallSpec("get_weather", {"city": "Rio"}), {"name": "get_time"}],
            thought_signature="c2ln",
        )
    )
    response = gemini(messages="x", tool_schemas=[WEATHER, TIME])
    assert response.response_type == "tool_call"
    assert response.data == [
        ToolCall("call_0", "get_weather", {"city": "Rio"}, '{"city":"Rio"}'),
        ToolCall("call_1", "get_time", {}, "{}"),
    ]
    assert response.metadata.finish_reason == "tool_calls"
    calls = response.raw["choices"][0]["message"]["tool_calls"]
    assert calls[0]["extra_content"] == {"google": {"thought_signature": "c2ln"}}


def test_thought_parts_are_reasoning(gemini: GeminiChatCompletion, up: Upstream) -> None:
    up.script(Reply(text="391", reasoning="17 times 23", usage={"cachedContentTokenCount": 2}))
    response = gemini(messages="17*23?", reasoning_effort="low")
    assert response.response_type == "reasoning_text_generation"
    assert (response.data.answer, response.data.think) == ("391", "17 times 23")
    usage = response.metadata.usage
    assert usage["completion_tokens"] == 1 + 3
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 3}
    assert usage["prompt_tokens_details"] == {"cached_tokens": 2}


def test_several_candidates_are_several_choices(gemini: GeminiChatCompletion, up: Upstream) -> None:
    candidates = [
        {"content": {"role": "model", "parts": [{"text": t}]}, "finishReason": "STOP", "index": i}
        for i, t in enumerate(["one", "two"])
    ]
    up.script(Reply(json={"candidates": candidates}))
    response = gemini(messages="x", n=2)
    assert up.last.json["generationConfig"]["candidateCount"] == 2
    assert [c["message"]["content"] for c in response.raw["choices"]] == ["one", "two"]
    assert response.consume() == "one"


@pytest.mark.parametrize("schema", [Person, Team])
def test_structured_output_through_response_schema(
    gemini: GeminiChatCompletion, up: Upstream, schema: type
) -> None:
    value = (
        {"name": "Ada", "age": 36}
        if schema is Person
        else {"lead": {"name": "Ada", "age": 36}, "motto": None, "size": 2}
    )
    up.script(Reply(structured=value))
    response = gemini(messages="who?", generation_schema=schema)
    valid(up)
    assert response.response_type == "structured"
    assert msgspec.to_builtins(response.data) == value
    config = up.last.json["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    if schema is Team:
        assert config["responseSchema"]["properties"]["lead"]["properties"]["age"] == {
            "type": "INTEGER"
        }
        assert config["responseSchema"]["properties"]["motto"] == {
            "type": "STRING",
            "nullable": True,
        }


def test_structured_output_as_json_schema(up: Upstream) -> None:
    model = Model.chat_completion("gemini/gemini-2.5-flash", structured_output="json_schema")
    up.script(Reply(structured={"name": "Ada", "age": 36}))
    response = model(messages="who?", generation_schema=Person, tool_schemas=[WEATHER])
    valid(up)
    assert response.data == Person("Ada", 36)
    body = up.last.json
    assert body["generationConfig"]["responseJsonSchema"]["additionalProperties"] is False
    declaration = body["tools"][0]["functionDeclarations"][0]
    assert declaration["parametersJsonSchema"] == WEATHER["function"]["parameters"]


def test_json_object_asks_for_json(gemini: GeminiChatCompletion, up: Upstream) -> None:
    up.script(Reply(structured={"a": 1}))
    assert orjson.loads(
        gemini(messages="x", response_format={"type": "json_object"}).consume()
    ) == {"a": 1}
    assert up.last.json["generationConfig"]["responseMimeType"] == "application/json"
    assert "responseSchema" not in up.last.json["generationConfig"]


def test_gemini_schema_inlines_refs_and_makes_nullable() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"$ref": "#/$defs/A"},
            "b": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
            "c": {"type": ["string", "null"], "format": "email"},
            "d": {"enum": ["x", "y"]},
            "e": {"type": "array", "items": {"type": "number"}, "minItems": 1},
            "f": {"const": "k"},
        },
        "required": ["a"],
        "additionalProperties": False,
        "$defs": {"A": {"type": "object", "title": "A", "properties": {"z": {"type": "boolean"}}}},
    }
    assert gemini_schema(schema) == {
        "type": "OBJECT",
        "properties": {
            "a": {
                "type": "OBJECT",
                "title": "A",
                "properties": {"z": {"type": "BOOLEAN"}},
                "propertyOrdering": ["z"],
            },
            "b": {"type": "INTEGER", "nullable": True},
            "c": {"type": "STRING", "nullable": True},
            "d": {"enum": ["x", "y"], "type": "STRING"},
            "e": {"type": "ARRAY", "minItems": 1, "items": {"type": "NUMBER"}},
            "f": {"enum": ["k"], "type": "STRING"},
        },
        "propertyOrdering": ["a", "b", "c", "d", "e", "f"],
        "required": ["a"],
    }


@pytest.mark.parametrize(
    ("schema", "what"),
    [
        (
            {
                "$ref": "#/$defs/N",
                "$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}},
            },
            "recursive",
        ),
        ({"type": "object", "properties": {"level": {"enum": [1, 2]}}}, "non-string enum"),
    ],
)
def test_schemas_response_schema_cannot_express_fail_before_sending(
    gemini: GeminiChatCompletion, up: Upstream, schema: dict[str, Any], what: str
) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
    with pytest.raises(UnsupportedFeatureError, match=what):
        gemini(messages="x", response_format=fmt)
    assert up.count() == 0


@pytest.mark.parametrize(
    ("reason", "finish"), [("STOP", "stop"), ("MAX_TOKENS", "length"), ("OTHER", "stop")]
)
def test_finish_reasons_map(
    gemini: GeminiChatCompletion, up: Upstream, reason: str, finish: str
) -> None:
    up.script(Reply(finish_reason=reason))
    assert gemini(messages="x").metadata.finish_reason == finish


def test_a_blocked_prompt_is_a_content_policy_error(
    gemini: GeminiChatCompletion, up: Upstream
) -> None:
    up.script(Reply(block_reason="PROHIBITED_CONTENT"))
    with pytest.raises(ContentPolicyError, match="PROHIBITED_CONTENT") as info:
        gemini(messages="x")
    assert info.value.body["blockReason"] == "PROHIBITED_CONTENT"


@pytest.mark.parametrize(
    "reason", ["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"]
)
def test_an_answer_stopped_for_safety_is_a_content_policy_error(
    gemini: GeminiChatCompletion, up: Upstream, reason: str
) -> None:
    up.script(Reply(finish_reason=reason))
    with pytest.raises(ContentPolicyError, match=reason):
        gemini(messages="x")


def test_a_malformed_function_call_is_a_validation_error(
    gemini: GeminiChatCompletion, up: Upstream
) -> None:
    up.script(Reply(finish_reason="MALFORMED_FUNCTION_CALL"))
    with pytest.raises(APIResponseValidationError, match="MALFORMED_FUNCTION_CALL"):
        gemini(messages="x")


# -- streams -----------------------------------------------------------------------------------
def test_stream_yields_text_and_canonical_chunks_with_usage(
    gemini: GeminiChatCompletion, up: Upstream
) -> None:
    up.script(Reply(text="one two three"))
    stream = gemini(messages="x", stream=True)
    assert isinstance(stream, ModelStreamResponse)
    chunks = list(stream.chunks())
    valid(up)
    assert (up.last.path, up.last.query) == (f"{PATH}:streamGenerateContent", {"alt": "sse"})
    assert {c["id"] for c in chunks} == {"resp-1"}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "one two three"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
    assert stream.metadata.finish_reason == "stop"


async def test_async_stream_of_function_calls_and_thoughts(
    gemini: GeminiChatCompletion, up: Upstream
) -> None:
    up.script(
        Reply(
            tool_calls=[ToolCallSpec("get_weather", {"city": "Rio"}), {"name": "get_time"}],
            reasoning="hmm",
        )
    )
    stream = await gemini.acall(messages="x", stream=True, tool_schemas=[WEATHER, TIME])
    items = [item async for item in stream.consume()]
    assert items == [stream.data]
    assert [(c.id, c.name, c.arguments) for c in stream.data] == [
        ("call_0", "get_weather", {"city": "Rio"}),
        ("call_1", "get_time", {}),
    ]
    assert stream.response_type == "reasoning_tool_call"
    assert stream.metadata.reasoning == "hmm"
    assert stream.metadata.finish_reason == "tool_calls"


def test_stream_cut_midway_raises_from_the_iterator(
    gemini: GeminiChatCompletion, up: Upstream
) -> None:
    up.script(Reply(text="a b c d", cut_after=2))
    got = []
    with pytest.raises(APIConnectionError):
        for chunk in gemini(messages="x", stream=True):
            got.append(chunk)
    assert got == ["a", " b"]


def test_stream_error_event_raises_with_the_retry_delay(
    gemini: GeminiChatCompletion, up: Upstream
) -> None:
    up.script(Reply(text="a b c", cut_after=1, stream_error="UNAVAILABLE", retry_delay="3s"))
    got = []
    with pytest.raises(InternalServerError) as info:
        for chunk in gemini(messages="x", stream=True):
            got.append(chunk)
    assert got == ["a"]
    assert (info.value.status_code, info.value.retry_after) == (503, 3.0)


@pytest.mark.parametrize(
    "reply", [Reply(block_reason="SAFETY"), Reply(text="a b", finish_reason="SAFETY")]
)
def test_blocked_streams_are_content_policy_errors(
    gemini: GeminiChatCompletion, up: Upstream, reply: Reply
) -> None:
    up.script(reply)
    with pytest.raises(ContentPolicyError):
        list(gemini(messages="x", stream=True))


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(status=400), BadRequestError),
        (
            Reply(
                status=400,
                error="API key not valid. Please pass a valid API key.",
                error_reason="API_KEY_INVALID",
            ),
            AuthenticationError,
        ),
        (
            Reply(
                status=400,
                error="The input token count (1200000) exceeds the maximum number of tokens "
                "allowed (1048576).",
            ),
            ContextWindowExceededError,
        ),
        (Reply(status=403), PermissionDeniedError),
        (Reply(status=404), NotFoundError),
        (Reply(status=429), RateLimitError),
        (Reply(status=500), InternalServerError),
        (Reply(status=503), InternalServerError),
        (Reply(status=504), InternalServerError),
        (Reply(status=400, error_type="RESOURCE_EXHAUSTED"), RateLimitError),
    ],
)
def test_error_statuses_map_to_typed_errors(
    gemini: GeminiChatCompletion, up: Upstream, reply: Reply, error: type[Exception]
) -> None:
    up.script(reply)
    with pytest.raises(error) as info:
        gemini(messages="x")
    assert type(info.value) is error
    assert info.value.status_code == reply.status


def test_retry_delay_in_the_body_is_retry_after(up: Upstream) -> None:
    clock = ManualClock()
    model = Model.chat_completion("gemini/gemini-2.5-flash", clock=clock)
    up.script(
        [Reply(status=429, retry_delay="4.5s"), Reply(status=503, retry_after=2, retry_delay="9s")]
    )
    assert model(messages="x").consume() == "Hello from gemini-2.5-flash"
    assert clock.sleeps == [4.5, 2.0]  # a Retry-After header wins over the body
    up.script(Reply(status=429, retry_delay="47s"))
    with pytest.raises(RateLimitError) as info:
        model._call_once(messages="x")
    assert info.value.retry_after == 47.0


@pytest.mark.parametrize("delay", ["47", "never", "-1s", "infs"])
def test_unusable_retry_delays_are_ignored(delay: str) -> None:
    detail = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}
    assert retry_delay({"error": {"details": [detail]}}) is None


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "must be an object"),
        (b"{}", "without candidates"),
        (b'{"candidates": {"a": 1}}', "must be a list"),
        (b'{"candidates": [{"content": {"parts": {}}}]}', "parts must be a list"),
        (b'{"candidates": [{"content": {"parts": [{"text": 3}]}}]}', "text part"),
        (b'{"candidates": [{"content": {"parts": [{"functionCall": {"args": {}}}]}}]}', "name"),
        (b'{"candidates": [{"finishReason": 7}]}', "finishReason"),
        (b'{"candidates": [{}], "usageMetadata": {"promptTokenCount": "x"}}', "promptTokenCount"),
    ],
)
def test_malformed_answers_are_validation_errors(
    gemini: GeminiChatCompletion, up: Upstream, body: bytes, what: str
) -> None:
    up.script(Reply(body=body, content_type="application/json"))
    with pytest.raises(APIResponseValidationError, match=what):
        gemini(messages="x")


# -- what Gemini cannot express ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"parallel_tool_calls": False, "tool_schemas": [WEATHER]}, "parallel_tool_calls"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "function"),
        ({"response_format": {"type": "xml"}}, "xml"),
    ],
)
def test_what_gemini_cannot_express_fails_before_sending(
    gemini: GeminiChatCompletion, up: Upstream, kwargs: dict[str, Any], what: str
) -> None:
    kwargs.setdefault("messages", "x")
    with pytest.raises(UnsupportedFeatureError, match=what):
        gemini(**kwargs)
    assert up.count() == 0


def test_a_tool_result_for_an_unknown_call_is_the_callers_mistake(
    gemini: GeminiChatCompletion,
) -> None:
    with pytest.raises(ValueError, match="name"):
        gemini(
            messages=[
                {"role": "user", "content": "x"},
                {"role": "tool", "tool_call_id": "c9", "content": "y"},
            ]
        )


# -- keys --------------------------------------------------------------------------------------
def test_missing_key_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, upstream: Upstream
) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    with pytest.raises(AuthenticationError, match="GEMINI_API_KEY"):
        Model.chat_completion("gemini/m", base_url=upstream.url)(messages="x")
    assert upstream.count() == 0


def test_key_never_appears_in_repr_serialization_or_errors(
    gemini: GeminiChatCompletion, up: Upstream
) -> None:
    up.script(Reply(status=400, error=f"API key not valid: {KEY}", error_reason="API_KEY_INVALID"))
    with pytest.raises(AuthenticationError) as info:
        gemini(messages="x")
    for text in (repr(gemini), str(gemini.serialize()), str(info.value), repr(info.value.body)):
        assert KEY not in text


def test_serialization_round_trip(up: Upstream) -> None:
    model = Model.chat_completion(
        "gemini/m", api_version="v1", structured_output="json_schema", top_k=2
    )
    state = model.serialize()
    restored = Model.from_serialized(state)
    assert restored.serialize() == state
    restored(messages="x")
    assert up.last.path == "/v1/models/m:generateContent"


# -- embeddings --------------------------------------------------------------------------------
def test_one_text_is_embedded_through_embed_content(up: Upstream) -> None:
    model = Model.text_embedder(
        "gemini/gemini-embedding-001", dimensions=4, task_type="RETRIEVAL_QUERY"
    )
    assert isinstance(model, GeminiTextEmbedder)
    response = model("hello world")
    valid(up)
    assert up.last.path == "/v1beta/models/gemini-embedding-001:embedContent"
    assert up.last.json == {
        "content": {"parts": [{"text": "hello world"}]},
        "outputDimensionality": 4,
        "taskType": "RETRIEVAL_QUERY",
    }
    assert response.response_type == "text_embedding"
    assert len(response.data) == 4
    assert response.metadata.usage == {"prompt_tokens": 3, "total_tokens": 3}


async def test_a_list_is_embedded_through_batch_embed_contents(up: Upstream) -> None:
    model = Model.text_embedder("gemini/gemini-embedding-001")
    response = await model.acall(["a", "b"], dimensions=3)
    valid(up)
    assert up.last.route == "batch_embed_contents"
    assert up.last.json["requests"][1] == {
        "model": "models/gemini-embedding-001",
        "content": {"parts": [{"text": "b"}]},
        "outputDimensionality": 3,
    }
    assert [len(v) for v in response.data] == [3, 3]


def test_embedding_errors_and_malformed_answers(up: Upstream) -> None:
    model = Model.text_embedder("gemini/e", max_retries=0)
    up.script(Reply(status=429, retry_delay="5s"))
    with pytest.raises(RateLimitError) as info:
        model("x")
    assert info.value.retry_after == 5.0
    up.script(Reply(json={"embeddings": [{"values": [1.0]}]}))
    with pytest.raises(APIResponseValidationError, match="1 embeddings for 2 texts"):
        model(["x", "y"])
    up.script(Reply(json={"embedding": {"values": ["a"]}}))
    with pytest.raises(APIResponseValidationError):
        model("x")


# -- the test upstream refuses what Gemini refuses ---------------------------------------------
@pytest.mark.parametrize(
    ("headers", "body", "status", "what"),
    [
        ({}, {"contents": [{"parts": [{"text": "x"}]}]}, 403, "unregistered callers"),
        (
            None,
            {"contents": [{"parts": [{"text": "x"}]}], "temperature": 1},
            400,
            'Unknown name "temperature"',
        ),
        (None, {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, 400, "valid role"),
        (
            None,
            {
                "contents": [{"parts": [{"text": "x"}]}],
                "generationConfig": {
                    "responseMimeType": "application/json",
                    "responseSchema": {"type": "OBJECT", "additionalProperties": False},
                },
            },
            400,
            "additionalProperties",
        ),
        (
            None,
            {
                "contents": [
                    {
                        "role": "model",
                        "parts": [{"functionCall": {"name": "f"}}, {"functionCall": {"name": "g"}}],
                    },
                    {
                        "role": "user",
                        "parts": [{"functionResponse": {"name": "f", "response": {}}}],
                    },
                ]
            },
            400,
            "number of function response parts",
        ),
    ],
)
def test_the_upstream_refuses_what_the_gemini_api_refuses(
    up: Upstream, headers: dict[str, str] | None, body: dict[str, Any], status: int, what: str
) -> None:
    sent = headers if headers is not None else {"x-goog-api-key": KEY}
    resp = urllib3.request(
        "POST",
        up.url + f"{PATH}:generateContent",
        body=orjson.dumps(body),
        headers=sent,
        retries=False,
    )
    assert resp.status == status
    assert what in orjson.loads(resp.data)["error"]["message"]
    assert what in (up.last.invalid or "")


# -- the official SDK as the reference ---------------------------------------------------------
def _camel_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {_camel(k): _camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel_keys(v) for v in value]
    return value


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def test_sdk_and_adapter_send_the_same_body_for_the_same_conversation(
    sdk: Any, up: Upstream
) -> None:
    params = {"type": "object", "properties": {"city": {"type": "string"}}}
    sdk.models.generate_content(
        model="gemini-2.5-flash",
        contents=[
            types.Content(
                role="user",
                parts=[
                    types.Part(text="Weather?"),
                    types.Part.from_bytes(data=base64.b64decode(PNG), mime_type="image/png"),
                ],
            ),
            types.Content(
                role="model",
                parts=[
                    types.Part(
                        function_call=types.FunctionCall(name="get_weather", args={"city": "Rio"})
                    )
                ],
            ),
            types.Content(
                role="user",
                parts=[
                    types.Part.from_function_response(
                        name="get_weather", response={"result": "sunny"}
                    )
                ],
            ),
        ],
        config=types.GenerateContentConfig(
            system_instruction="Be brief",
            max_output_tokens=256,
            temperature=0.5,
            stop_sequences=["END"],
            tools=[
                types.Tool(
                    function_declarations=[
                        types.FunctionDeclaration(
                            name="get_weather", description="Weather", parameters_json_schema=params
                        )
                    ]
                )
            ],
            tool_config=types.ToolConfig(
                function_calling_config=types.FunctionCallingConfig(mode="ANY")
            ),
        ),
    )
    theirs = up.last
    model = Model.chat_completion("gemini/gemini-2.5-flash", structured_output="json_schema")
    model(
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
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rio"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        system_prompt="Be brief",
        max_tokens=256,
        temperature=0.5,
        stop=["END"],
        tool_schemas=[
            {
                "type": "function",
                "function": {"name": "get_weather", "description": "Weather", "parameters": params},
            }
        ],
        tool_choice="required",
    )
    ours = up.last
    valid(up)
    expected = _camel_keys(theirs.json)
    expected["systemInstruction"].pop("role")  # the SDK adds role "user", which the API ignores
    assert ours.json == expected
    assert ours.path == theirs.path == f"{PATH}:generateContent"
    assert ours.headers["x-goog-api-key"] == theirs.headers["x-goog-api-key"] == KEY


@pytest.mark.parametrize(
    "reply",
    [
        Reply(text="Plain answer."),
        Reply(
            tool_calls=[ToolCallSpec("get_weather", {"city": "Rio"}), {"name": "get_time"}],
            thought_signature="c2ln",
        ),
        Reply(text="391", reasoning="17 times 23", usage={"cachedContentTokenCount": 2}),
        Reply(text="cut", finish_reason="MAX_TOKENS"),
    ],
    ids=["text", "tools", "thinking", "max_tokens"],
)
def test_sdk_and_adapter_parse_the_same_answer(
    gemini: GeminiChatCompletion, sdk: Any, up: Upstream, reply: Reply
) -> None:
    up.script([reply, reply])
    response = sdk.models.generate_content(model="gemini-2.5-flash", contents="x")
    ours = gemini(messages="x").raw
    message = ours["choices"][0]["message"]
    assert (message["content"] or None) == response.text
    assert [
        (c["function"]["name"], orjson.loads(c["function"]["arguments"]))
        for c in message.get("tool_calls", ())
    ] == [(c.name, c.args) for c in response.function_calls or ()]
    parts = response.candidates[0].content.parts
    thoughts = "".join(p.text for p in parts if p.thought)
    assert message.get("reasoning_content", "") == thoughts
    signatures = [
        base64.b64encode(p.thought_signature).decode() for p in parts if p.thought_signature
    ]
    assert [
        c["extra_content"]["google"]["thought_signature"] for c in message.get("tool_calls", ())
    ] == signatures
    meta = response.usage_metadata
    assert ours["usage"]["prompt_tokens"] == meta.prompt_token_count
    assert ours["usage"]["completion_tokens"] == meta.candidates_token_count + (
        meta.thoughts_token_count or 0
    )
    assert ours["usage"]["total_tokens"] == meta.total_token_count
    expected = {"STOP": "tool_calls" if response.function_calls else "stop", "MAX_TOKENS": "length"}
    assert (
        ours["choices"][0]["finish_reason"] == expected[response.candidates[0].finish_reason.value]
    )


def test_sdk_stream_and_adapter_stream_agree(
    gemini: GeminiChatCompletion, sdk: Any, up: Upstream
) -> None:
    reply = Reply(text="one two three", reasoning="hm")
    up.script([reply, reply])
    theirs = list(sdk.models.generate_content_stream(model="gemini-2.5-flash", contents="x"))
    stream = gemini(messages="x", stream=True)
    ours = list(stream)
    assert "".join(ours) == "".join(c.text or "" for c in theirs)
    assert stream.metadata.reasoning == "".join(
        p.text for c in theirs for p in c.candidates[0].content.parts if p.thought
    )
    assert stream.metadata.usage["total_tokens"] == theirs[-1].usage_metadata.total_token_count


def test_sdk_and_adapter_agree_on_a_blocked_prompt(
    gemini: GeminiChatCompletion, sdk: Any, up: Upstream
) -> None:
    up.script([Reply(block_reason="SAFETY"), Reply(block_reason="SAFETY")])
    response = sdk.models.generate_content(model="gemini-2.5-flash", contents="x")
    assert response.candidates is None
    assert response.prompt_feedback.block_reason.value == "SAFETY"
    with pytest.raises(ContentPolicyError, match="SAFETY"):
        gemini(messages="x")


@pytest.mark.parametrize(
    ("status", "theirs", "ours"),
    [
        (400, genai_errors.ClientError, BadRequestError),
        (403, genai_errors.ClientError, PermissionDeniedError),
        (404, genai_errors.ClientError, NotFoundError),
        (429, genai_errors.ClientError, RateLimitError),
        (500, genai_errors.ServerError, InternalServerError),
        (503, genai_errors.ServerError, InternalServerError),
    ],
)
def test_sdk_and_adapter_raise_the_same_kind_of_error(
    gemini: GeminiChatCompletion, sdk: Any, up: Upstream, status: int, theirs: type, ours: type
) -> None:
    reply = Reply(status=status, retry_delay="6s")
    up.script([reply, reply])
    with pytest.raises(theirs) as sdk_error:
        sdk.models.generate_content(model="gemini-2.5-flash", contents="x")
    with pytest.raises(ours) as our_error:
        gemini(messages="x")
    assert our_error.value.status_code == sdk_error.value.code == status
    assert our_error.value.body["error"]["status"] == sdk_error.value.status
    assert our_error.value.retry_after == 6.0


def test_sdk_and_adapter_embed_alike(sdk: Any, up: Upstream) -> None:
    theirs = sdk.models.embed_content(
        model="gemini-embedding-001",
        contents=["a", "b"],
        config=types.EmbedContentConfig(output_dimensionality=3),
    )
    sdk_request = up.last
    ours = Model.text_embedder("gemini/gemini-embedding-001", dimensions=3)(["a", "b"])
    valid(up)
    assert ours.data == [e.values for e in theirs.embeddings]
    assert up.last.path == sdk_request.path
    assert [r["content"]["parts"] for r in up.last.json["requests"]] == [
        r["content"]["parts"] for r in sdk_request.json["requests"]
    ]


def test_sdk_counts_tokens_on_the_upstream(sdk: Any, up: Upstream) -> None:
    assert sdk.models.count_tokens(model="gemini-2.5-flash", contents="two words").total_tokens == 2
    valid(up)


def test_a_tool_changed_in_place_is_sent_as_changed(
    gemini: GeminiChatCompletion, up: Upstream
) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {"type": "object", "properties": {"a": {"type": "string"}}},
        },
    }
    gemini(messages="x", tool_schemas=[tool])
    tool["function"]["parameters"]["properties"]["a"] = {"type": "integer"}
    gemini(messages="x", tool_schemas=[tool])
    sent = [
        r.json["tools"][0]["functionDeclarations"][0]["parameters"]["properties"]["a"]
        for r in up.requests
    ]
    assert sent == [{"type": "STRING"}, {"type": "INTEGER"}]


def test_the_tool_cache_keeps_no_reference_to_the_callers_dicts(
    gemini: GeminiChatCompletion, up: Upstream
) -> None:
    first = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {"type": "object", "properties": {"a": {"type": "string"}}},
        },
    }
    gemini(messages="x", tool_schemas=[first])
    first["function"]["parameters"]["properties"]["a"]["type"] = "integer"
    again = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {"type": "object", "properties": {"a": {"type": "string"}}},
        },
    }
    gemini(messages="x", tool_schemas=[again])
    assert up.last.json["tools"][0]["functionDeclarations"][0]["parameters"]["properties"]["a"] == {
        "type": "STRING"
    }
