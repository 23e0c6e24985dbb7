"""Gemini's family, both ways (:mod:`msgflux.formats.gemini`): its requests into canonical ones
(and what the policy drops or refuses), canonical answers and chunks into Gemini answers and
SSE events, the native lane's relay, the family's error bodies; then round trips, checked on
generated conversations, answers and streams."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msgflux.exceptions import (
    APIResponseValidationError,
    InternalServerError,
    RateLimitError,
    UnsupportedFeatureError,
)
from msgflux.formats import GEMINI, family
from msgflux.formats.gemini import (
    FAMILY,
    FINISH_REASONS,
    GEMINI_REASONS,
    GeminiEvents,
    GeminiRelay,
    GeminiStream,
    gemini_schema,
    gemini_usage,
    json_schema,
    to_canonical,
    to_completion,
    to_gemini,
    to_gemini_answer,
    usage_metadata,
)
from msgflux.formats.policy import Translation
from msgflux.models.request import CHAT, from_openai

WHO = ("gemini", "gemini-2.5-flash")
ASK: Any = [{"role": "user", "parts": [{"text": "Hi"}]}]
SCHEMA = {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]}
WEATHER = {"name": "get_weather", "description": "Weather", "parameters": SCHEMA}


def body(**fields: Any) -> dict[str, Any]:
    return {"contents": ASK, **fields}


def decode(payload: Any, *, ctx: Translation | None = None, stream: bool = False) -> dict[str, Any]:
    """The canonical body of ``payload``, checked as the gateway checks it."""
    out = to_canonical(payload, ctx or Translation(), model="gem", stream=stream)
    assert out.pop("model") == "gem"
    from_openai(CHAT, out)
    return out


def dropped(payload: Any, overrides: dict[str, str] | None = None) -> list[str]:
    ctx = Translation(overrides)
    decode(payload, ctx=ctx)
    return ctx.dropped


def model_turn(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "model", "parts": list(parts)}


def user_turn(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "parts": list(parts)}


def call(name: str, ident: str | None = None, **args: Any) -> dict[str, Any]:
    fc: dict[str, Any] = {"name": name, "args": args}
    if ident is not None:
        fc["id"] = ident
    return {"functionCall": fc}


def response(name: str, value: Any, ident: str | None = None) -> dict[str, Any]:
    fr: dict[str, Any] = {"name": name, "response": value}
    if ident is not None:
        fr["id"] = ident
    return {"functionResponse": fr}


# -- requests: Gemini -> canonical ---------------------------------------------------------------
def test_a_plain_request() -> None:
    assert decode(body()) == {"messages": [{"role": "user", "content": "Hi"}]}


def test_the_url_names_the_model_and_the_stream() -> None:
    out = to_canonical(body(), Translation(), model="gemini-2.5-flash", stream=True)
    assert out["model"] == "gemini-2.5-flash"
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}
    assert from_openai(CHAT, out).stream


def test_snake_case_fields_are_read_like_camel_case() -> None:
    payload = {
        "system_instruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {
                "role": "user",
                "parts": [{"inline_data": {"mime_type": "image/png", "data": "iVBO"}}],
            }
        ],
        "generation_config": {"max_output_tokens": 9, "stop_sequences": ["END"]},
        "tool_config": {"function_calling_config": {"mode": "NONE"}},
    }
    assert decode(payload) == {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}
                ],
            },
        ],
        "tool_choice": "none",
        "max_tokens": 9,
        "stop": ["END"],
    }
    with pytest.raises(ValueError, match=r"^body.systemInstruction: is given twice"):
        decode({**body(), "systemInstruction": {"parts": []}, "system_instruction": {}})


def test_system_instruction_parts() -> None:
    system = {"role": "system", "parts": [{"text": "A"}, {"text": "B"}]}
    assert decode(body(systemInstruction=system))["messages"][0] == {
        "role": "system",
        "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
    }


def test_user_parts_media_and_files() -> None:
    turn = user_turn(
        {"text": "Look"},
        {"inlineData": {"mimeType": "audio/mpeg", "data": "SUQz"}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://x.test/a.png"}},
    )
    assert decode(body(contents=[turn]))["messages"][0]["content"] == [
        {"type": "text", "text": "Look"},
        {"type": "input_audio", "input_audio": {"data": "SUQz", "format": "mp3"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
    ]


@pytest.mark.parametrize(
    "file",
    [
        {"mimeType": "image/png", "fileUri": "https://generativelanguage.googleapis.com/v1/f/1"},
        {"mimeType": "image/png", "fileUri": "gs://bucket/a.png"},
        {"mimeType": "video/mp4", "fileUri": "https://x.test/a.mp4"},
    ],
)
def test_a_file_only_gemini_can_read_makes_the_deployment_ineligible(file: Any) -> None:
    with pytest.raises(UnsupportedFeatureError, match="the deployment's API cannot"):
        decode(body(contents=[user_turn({"fileData": file})]))


def test_model_turns_calls_thoughts_and_signatures() -> None:
    contents = [
        *ASK,
        model_turn(
            {"text": "Let me think", "thought": True},
            {"text": "Looking. "},
            {"text": "Now.", "thoughtSignature": "c2ln"},
            {**call("get_weather", city="Rio"), "thoughtSignature": "czE="},
            call("get_weather", "fc-2", city="Oslo"),
        ),
        user_turn(
            response("get_weather", {"result": "snow"}, "fc-2"),
            response("get_weather", {"temp": 30}),
            {"text": "Thanks"},
        ),
    ]
    ctx = Translation()
    messages = decode(body(contents=contents), ctx=ctx)["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": "Looking. Now.",
        "tool_calls": [
            {
                "id": "call_1_0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Rio"}'},
                "extra_content": {"google": {"thought_signature": "czE="}},
            },
            {
                "id": "fc-2",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
            },
        ],
        "reasoning_content": "Let me think",
    }
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": "fc-2", "content": "snow"},
        {"role": "tool", "tool_call_id": "call_1_0", "content": '{"temp":30}'},
        {"role": "user", "content": "Thanks"},
    ]
    assert ctx.dropped == ["contents.1.parts.2.thoughtSignature"]


def test_a_response_to_no_call_is_the_clients_mistake() -> None:
    contents = [*ASK, model_turn(call("f")), user_turn(response("g", {}))]
    with pytest.raises(ValueError, match=r"^contents.2.parts.0.functionResponse.name: answers"):
        decode(body(contents=contents))


def test_tools_from_parameters_or_parameters_json_schema() -> None:
    raw = {"type": "object", "properties": {"q": {"type": "string"}}, "additionalProperties": False}
    tools = [
        {"functionDeclarations": [WEATHER]},
        {"function_declarations": [{"name": "search", "parameters_json_schema": raw}]},
    ]
    assert decode(body(tools=tools))["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        },
        {"type": "function", "function": {"name": "search", "parameters": raw}},
    ]


def test_geminis_own_tools_refuse_unless_the_policy_drops_them() -> None:
    tools = [{"googleSearch": {}, "functionDeclarations": [WEATHER]}]
    with pytest.raises(UnsupportedFeatureError, match="run Gemini's googleSearch tool"):
        decode(body(tools=tools))
    ctx = Translation({"builtin_tools": "drop"})
    assert [t["function"]["name"] for t in decode(body(tools=tools), ctx=ctx)["tools"]] == [
        "get_weather"
    ]
    assert ctx.dropped == ["tools.0.googleSearch"]


@pytest.mark.parametrize(
    ("config", "choice", "names"),
    [
        ({"mode": "AUTO"}, "auto", ["get_weather", "get_time"]),
        ({"mode": "NONE"}, "none", ["get_weather", "get_time"]),
        ({"mode": "ANY"}, "required", ["get_weather", "get_time"]),
        (
            {"mode": "ANY", "allowedFunctionNames": ["get_time"]},
            {"type": "function", "function": {"name": "get_time"}},
            ["get_weather", "get_time"],
        ),
        ({"mode": "ANY", "allowedFunctionNames": ["get_time", "get_weather"]}, "required", None),
        ({"mode": "VALIDATED", "allowedFunctionNames": ["get_time"]}, "auto", ["get_time"]),
        ({}, None, ["get_weather", "get_time"]),
    ],
)
def test_function_calling_config_is_tool_choice(
    config: dict[str, Any], choice: Any, names: list[str] | None
) -> None:
    tools = [{"functionDeclarations": [WEATHER, {"name": "get_time"}]}]
    out = decode(body(tools=tools, toolConfig={"functionCallingConfig": config}))
    assert out.get("tool_choice") == choice
    assert [t["function"]["name"] for t in out["tools"]] == (names or ["get_weather", "get_time"])


def test_generation_config_fields() -> None:
    config = {
        "maxOutputTokens": 100,
        "temperature": 1.5,
        "topP": 0.9,
        "topK": 40,
        "seed": 7,
        "presencePenalty": 0.5,
        "frequencyPenalty": -0.5,
        "candidateCount": 2,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
        "responseSchema": SCHEMA,
    }
    out = decode(body(generationConfig=config))
    assert {k: v for k, v in out.items() if k != "messages"} == {
        "max_tokens": 100,
        "temperature": 1.5,
        "top_p": 0.9,
        "top_k": 40,
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "n": 2,
        "stop": ["END"],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": json_schema(SCHEMA, "s")},
        },
    }
    assert "n" not in decode(body(generationConfig={"candidateCount": 1}))


@pytest.mark.parametrize(
    ("config", "fmt"),
    [
        ({"responseMimeType": "application/json"}, {"type": "json_object"}),
        ({"responseMimeType": "text/plain"}, None),
        (
            {"responseMimeType": "application/json", "responseJsonSchema": {"type": "array"}},
            {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": {"type": "array"}},
            },
        ),
    ],
)
def test_response_formats(config: dict[str, Any], fmt: Any) -> None:
    assert decode(body(generationConfig=config)).get("response_format") == fmt


@pytest.mark.parametrize(
    ("thinking", "effort", "lost"),
    [
        ({"thinkingLevel": "LOW"}, "low", []),
        ({"thinkingLevel": "high", "includeThoughts": True}, "high", []),
        ({"thinkingBudget": 0}, "none", []),
        ({"thinkingBudget": 1024}, "low", []),
        ({"thinkingBudget": 9000, "includeThoughts": True}, "medium", []),
        ({"thinkingBudget": 128}, "minimal", []),
        ({"thinkingBudget": 30000}, "high", []),
        ({"thinkingBudget": -1}, None, ["generationConfig.thinkingConfig.thinkingBudget"]),
        (
            {"thinkingBudget": 512, "includeThoughts": False},
            "minimal",
            ["generationConfig.thinkingConfig.includeThoughts"],
        ),
    ],
)
def test_thinking_config_is_reasoning_effort(
    thinking: dict[str, Any], effort: str | None, lost: list[str]
) -> None:
    ctx = Translation()
    out = decode(body(generationConfig={"thinkingConfig": thinking}), ctx=ctx)
    assert out.get("reasoning_effort") == effort
    assert ctx.dropped == lost


def test_hints_with_no_canonical_form_are_dropped_and_named() -> None:
    payload = body(
        safetySettings=[{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        labels={"team": "a"},
        someNewField=1,
        toolConfig={"retrievalConfig": {"latLng": {}}},
        generationConfig={
            "mediaResolution": "MEDIA_RESOLUTION_LOW",
            "responseModalities": ["TEXT"],
        },
    )
    assert dropped(payload) == [
        "safetySettings",
        "labels",
        "someNewField",
        "toolConfig.retrievalConfig",
        "generationConfig.mediaResolution",
    ]


@pytest.mark.parametrize(
    ("fields", "what"),
    [
        ({"cachedContent": "cachedContents/1"}, "read Gemini's cached content"),
        ({"generationConfig": {"responseModalities": ["TEXT", "AUDIO"]}}, "produce"),
        ({"generationConfig": {"responseLogprobs": True}}, "return logprobs"),
        ({"generationConfig": {"responseMimeType": "text/x.enum"}}, "text/x.enum"),
        (
            {"contents": [*ASK, model_turn({"executableCode": {"code": "1"}})]},
            "code execution",
        ),
    ],
)
def test_what_would_change_the_answer_refuses_by_default(fields: dict[str, Any], what: str) -> None:
    with pytest.raises(UnsupportedFeatureError, match=what):
        decode(body(**fields))


def test_a_refusal_the_policy_overrides_is_dropped() -> None:
    assert dropped(body(cachedContent="c/1"), {"cached_content": "drop"}) == ["cachedContent"]


@pytest.mark.parametrize(
    ("payload", "start"),
    [
        ([], "body: must be an object"),
        ({}, "contents: must be a non-empty array"),
        ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "contents.0.role: "),
        ({"contents": [{"parts": []}]}, "contents.0.parts: must be a non-empty array"),
        ({"contents": [{"parts": [{"text": 3}]}]}, "contents.0.parts.0.text: must be a string"),
        ({"contents": [{"parts": [{"text": "a", "inlineData": {}}]}]}, "contents.0.parts.0: "),
        ({"contents": [{"parts": [{"text": "a", "colour": 1}]}]}, "contents.0.parts.0.colour: "),
        ({"contents": [{"parts": [{"text": "a"}], "x": 1}]}, "contents.0.x: Unknown name"),
        (
            {"contents": [{"parts": [{"inlineData": {"data": "x"}}]}]},
            "contents.0.parts.0.inlineData.mimeType: must be a string",
        ),
        (
            {"contents": [model_turn({"functionCall": {"name": "f", "args": [1]}})]},
            "contents.0.parts.0.functionCall.args: must be an object",
        ),
        ({"contents": [user_turn(call("f"))]}, "contents.0.parts.0.functionCall: belongs to"),
        (body(generationConfig={"temperature": 3}), "generationConfig.temperature: "),
        (body(generationConfig={"maxOutputTokens": 0}), "generationConfig.maxOutputTokens: "),
        (body(generationConfig={"stopSequences": "END"}), "generationConfig.stopSequences: "),
        (
            body(generationConfig={"thinkingConfig": {"thinkingLevel": "MAX"}}),
            "generationConfig.thinkingConfig.thinkingLevel: ",
        ),
        (
            body(tools=[{"functionDeclarations": [{"description": "no name"}]}]),
            "tools.0.functionDeclarations.0.name: must be a string",
        ),
        (
            body(tools=[{"functionDeclarations": [{**WEATHER, "parametersJsonSchema": {}}]}]),
            "tools.0.functionDeclarations.0: parameters and parametersJsonSchema",
        ),
        (
            body(tools=[{"functionDeclarations": [{"name": "f", "parameters": {"type": 1}}]}]),
            "tools.0.functionDeclarations.0.parameters.type: ",
        ),
        (
            body(toolConfig={"functionCallingConfig": {"mode": "SOMETIMES"}}),
            "toolConfig.functionCallingConfig.mode: ",
        ),
        (
            body(
                toolConfig={"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}}
            ),
            "toolConfig.functionCallingConfig.allowedFunctionNames: names a function not declared",
        ),
    ],
)
def test_a_bad_field_is_named_with_what_is_accepted(payload: Any, start: str) -> None:
    with pytest.raises(ValueError) as info:
        to_canonical(payload, Translation(), model="gem")
    assert str(info.value).startswith(start)


# -- requests: canonical -> Gemini (what the policy decides) -------------------------------------
def encode(fields: dict[str, Any], ctx: Translation | None = None) -> dict[str, Any]:
    canonical = {"messages": [{"role": "user", "content": "x"}], **fields}
    return to_gemini(canonical, model_id="gemini-2.5-flash", ctx=ctx or Translation())


CUSTOM = {"type": "custom", "custom": {"name": "grammar"}}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("fields", "feature", "field", "left"),
    [
        ({"parallel_tool_calls": False, "tools": [TOOL]}, "parallel_tool_calls", None, "tools"),
        ({"response_format": {"type": "xml"}}, "response_format", None, None),
        ({"tools": [CUSTOM, TOOL]}, "builtin_tools", "tools[0]", "tools"),
    ],
)
def test_what_gemini_cannot_express_refuses_or_is_dropped(
    fields: dict[str, Any], feature: str, field: str | None, left: str | None
) -> None:
    with pytest.raises(UnsupportedFeatureError, match="Gemini cannot"):
        encode(fields)
    ctx = Translation({feature: "drop"})
    out = encode(fields, ctx)
    assert ctx.dropped == [field or feature]
    assert "generationConfig" not in out
    if left is not None:
        assert out[left] == [{"functionDeclarations": [{"name": "f"}]}]


def test_openai_fields_gemini_has_no_use_for_are_dropped_and_named() -> None:
    ctx = Translation()
    out = encode(
        {"user": "u", "metadata": {"a": "b"}, "store": True, "prompt_cache_key": "k", "seed": 3},
        ctx,
    )
    assert ctx.dropped == ["user", "metadata", "store", "prompt_cache_key"]
    assert out["generationConfig"] == {"seed": 3}


# -- answers -------------------------------------------------------------------------------------
def test_finish_reasons_are_one_table_read_both_ways() -> None:
    for finish, reason in GEMINI_REASONS.items():
        if finish not in ("tool_calls", "function_call"):
            assert FINISH_REASONS[reason] == finish
    assert GEMINI_REASONS["stop"] == "STOP" and GEMINI_REASONS["length"] == "MAX_TOKENS"
    assert GEMINI_REASONS["tool_calls"] == "STOP"


def test_a_completion_as_a_gemini_answer() -> None:
    completion = {
        "id": "chatcmpl-1",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Rio is warm.",
                    "reasoning_content": "Check the weather.",
                    "tool_calls": [
                        {
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Rio"}'},
                            "extra_content": {"google": {"thought_signature": "c2ln"}},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            },
            {
                "index": 1,
                "message": {"role": "assistant", "content": "Hm"},
                "finish_reason": "length",
            },
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 8,
            "total_tokens": 18,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 3},
        },
    }
    assert to_gemini_answer(completion, "gw") == {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "Check the weather.", "thought": True},
                        {"text": "Rio is warm."},
                        {
                            "functionCall": {
                                "id": "call_a",
                                "name": "get_weather",
                                "args": {"city": "Rio"},
                            },
                            "thoughtSignature": "c2ln",
                        },
                    ],
                },
                "finishReason": "STOP",
                "index": 0,
            },
            {
                "content": {"role": "model", "parts": [{"text": "Hm"}]},
                "finishReason": "MAX_TOKENS",
                "index": 1,
            },
        ],
        "usageMetadata": {
            "promptTokenCount": 10,
            "candidatesTokenCount": 5,
            "totalTokenCount": 18,
            "cachedContentTokenCount": 4,
            "thoughtsTokenCount": 3,
        },
        "modelVersion": "gw",
        "responseId": "chatcmpl-1",
    }


def test_refusals_content_parts_and_no_usage() -> None:
    message = {
        "role": "assistant",
        "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        "refusal": "No.",
    }
    answer = to_gemini_answer({"choices": [{"message": message, "finish_reason": None}]}, "gw")
    assert answer["candidates"][0]["content"]["parts"] == [{"text": "ab"}, {"text": "No."}]
    assert answer["candidates"][0]["finishReason"] == "STOP"
    assert "usageMetadata" not in answer and answer["responseId"] == "gemini"


@pytest.mark.parametrize(
    ("completion", "what"),
    [
        ({"choices": []}, "no choices"),
        ({"choices": [{"finish_reason": "stop"}]}, "no message"),
        (
            {
                "choices": [
                    {
                        "message": {
                            "role": "assistant",
                            "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}],
                        }
                    }
                ]
            },
            "arguments is not a JSON object",
        ),
    ],
)
def test_a_malformed_completion_is_a_value_error(completion: Any, what: str) -> None:
    with pytest.raises(ValueError, match=what):
        to_gemini_answer(completion, "gw")


def test_usage_metadata_is_the_inverse_of_gemini_usage() -> None:
    meta = {
        "promptTokenCount": 12,
        "candidatesTokenCount": 5,
        "thoughtsTokenCount": 7,
        "cachedContentTokenCount": 2,
        "totalTokenCount": 24,
    }
    usage = gemini_usage(meta, WHO)
    assert usage == {
        "prompt_tokens": 12,
        "completion_tokens": 12,
        "total_tokens": 24,
        "prompt_tokens_details": {"cached_tokens": 2},
        "completion_tokens_details": {"reasoning_tokens": 7},
    }
    assert usage_metadata(usage) == meta
    assert usage_metadata(None) is None


# -- streams: canonical chunks -> Gemini events --------------------------------------------------
def chunk_of(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
    choice = {"index": index, "delta": delta, "finish_reason": finish}
    return {"id": "r1", "object": "chat.completion.chunk", "model": "m", "choices": [choice]}


USAGE = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
USAGE_CHUNK = {"id": "r1", "choices": [], "usage": USAGE}


def events(stream: GeminiStream, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events written for ``chunks`` (checked framed as Gemini frames them)."""
    data = b"".join(stream.feed(c) for c in chunks) + stream.end()
    assert data.endswith(b"\r\n\r\n")
    frames = data.split(b"\r\n\r\n")[:-1]
    assert all(frame.startswith(b"data: ") for frame in frames)
    return [orjson.loads(frame[6:]) for frame in frames]


def test_a_text_stream() -> None:
    out = events(
        GeminiStream("gw"),
        [
            chunk_of({"role": "assistant", "content": ""}),
            chunk_of({"content": "Hel"}),
            chunk_of({"content": "lo"}),
            chunk_of({}, "stop"),
            USAGE_CHUNK,
        ],
    )
    texts = [
        {
            "candidates": [{"content": {"role": "model", "parts": [{"text": t}]}, "index": 0}],
            "modelVersion": "gw",
            "responseId": "r1",
        }
        for t in ("Hel", "lo")
    ]
    final = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": ""}]},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4, "totalTokenCount": 7},
        "modelVersion": "gw",
        "responseId": "r1",
    }
    assert out == [*texts, final]


def test_tool_call_pieces_become_whole_function_calls() -> None:
    first = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}
    second = {"index": 1, "id": "c2", "function": {"name": "g", "arguments": '{"b":'}}
    out = events(
        GeminiStream("gw"),
        [
            chunk_of({"reasoning_content": "hmm"}),
            chunk_of({"tool_calls": [first]}),
            chunk_of({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
            chunk_of({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
            chunk_of({"tool_calls": [second]}),
            chunk_of({"tool_calls": [{"index": 1, "function": {"arguments": "2}"}}]}),
            chunk_of({}, "tool_calls"),
        ],
    )
    assert [e["candidates"][0]["content"]["parts"] for e in out] == [
        [{"text": "hmm", "thought": True}],
        [
            {"functionCall": {"id": "c1", "name": "f", "args": {"a": 1}}},
            {"functionCall": {"id": "c2", "name": "g", "args": {"b": 2}}},
        ],
        [{"text": ""}],
    ]
    assert out[-1]["candidates"][0]["finishReason"] == "STOP"
    assert "usageMetadata" not in out[-1]


def test_text_after_a_call_sends_the_call_first() -> None:
    call_delta = {"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}
    out = events(
        GeminiStream("gw"),
        [
            chunk_of({"tool_calls": [call_delta]}),
            chunk_of({"content": "done"}),
            chunk_of({}, "stop"),
        ],
    )
    assert out[0]["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"id": "c1", "name": "f", "args": {}}},
        {"text": "done"},
    ]


def test_several_choices_are_several_candidates() -> None:
    out = events(
        GeminiStream("gw"),
        [
            chunk_of({"content": "a"}),
            chunk_of({"content": "b"}, index=1),
            chunk_of({}, "stop"),
            chunk_of({}, "length", index=1),
            USAGE_CHUNK,
        ],
    )
    assert out[1]["candidates"] == [
        {"content": {"role": "model", "parts": [{"text": "b"}]}, "index": 1}
    ]
    assert [(c["index"], c["finishReason"]) for c in out[-1]["candidates"]] == [
        (0, "STOP"),
        (1, "MAX_TOKENS"),
    ]


def test_an_empty_stream_is_still_a_complete_answer() -> None:
    (final,) = events(GeminiStream("gw"), [])
    assert final["candidates"][0]["finishReason"] == "STOP"
    assert final["modelVersion"] == "gw" and final["responseId"] == "gemini"


def test_a_broken_stream_ends_with_an_error_event() -> None:
    stream = GeminiStream("gw")
    busy = InternalServerError("busy", status_code=503)
    assert orjson.loads(stream.error(busy).removeprefix(b"data: ")) == {
        "error": {"code": 503, "message": f"InternalServerError: {busy}", "status": "UNAVAILABLE"}
    }
    assert b'"status":"INTERNAL"' in stream.error(RuntimeError("x"))


# -- the native lane -----------------------------------------------------------------------------
def sse(payload: dict[str, Any]) -> bytes:
    return orjson.dumps(payload)


def candidate(*parts: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}, "index": 0}
    if finish is not None:
        out["finishReason"] = finish
    return out


META = {"promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 6}


def test_the_relay_reads_usage_finish_and_content() -> None:
    relay = GeminiRelay(WHO)
    relay.texts = []
    head = {"modelVersion": "gemini-2.5-flash", "responseId": "r"}
    feeds = [
        sse({"candidates": [candidate({"text": "plan", "thought": True})], **head}),
        sse({"candidates": [candidate({"text": ""})], **head}),
        sse({"candidates": [candidate({"text": "Hi"})], "usageMetadata": META, **head}),
        sse({"candidates": [candidate(call("f"))], **head}),
        sse({"candidates": [candidate(finish="STOP")], "usageMetadata": META, **head}),
    ]
    assert [relay.feed(None, data)[1] for data in feeds] == [True, False, True, True, False]
    assert relay.usage == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    assert relay.finish_reason == "tool_calls" and not relay.done
    assert relay.texts == ["Hi"]
    assert relay.text_of(None, feeds[2]) == "Hi" and relay.text_of(None, feeds[0]) is None


def test_the_relay_renames_the_model_in_place() -> None:
    relay = GeminiRelay(WHO)
    data = b'{"candidates":[],"modelVersion":"gemini-2.5-flash","responseId":"r"}'
    assert relay.renamed(None, data, "gw") == data.replace(b"gemini-2.5-flash", b"gw")
    spaced = b'{"modelVersion": "gemini-2.5-flash", "candidates": []}'
    assert orjson.loads(relay.renamed(None, spaced, "gw"))["modelVersion"] == "gw"
    assert relay.renamed(None, b'{"candidates":[]}', "gw") == b'{"candidates":[]}'


def test_a_blocked_prompt_finishes_for_content() -> None:
    relay = GeminiRelay(WHO)
    relay.feed(None, sse({"promptFeedback": {"blockReason": "SAFETY"}}))
    assert relay.finish_reason == "content_filter"


def test_an_error_event_is_its_typed_error_with_the_retry_delay() -> None:
    error = {
        "code": 429,
        "message": "Resource exhausted",
        "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}],
    }
    with pytest.raises(RateLimitError) as info:
        GeminiRelay(WHO).feed(None, sse({"error": error}))
    assert info.value.retry_after == 7.0 and info.value.status_code == 429
    with pytest.raises(APIResponseValidationError):
        GeminiRelay(WHO).feed(None, b"[1]")


# -- the family ----------------------------------------------------------------------------------
def test_the_family_is_registered_under_its_name() -> None:
    assert family(GEMINI) is FAMILY and FAMILY.name == "gemini"
    assert FAMILY.model_key == "modelVersion"


def test_the_family_reads_native_answers() -> None:
    answer = {"candidates": [candidate(call("f"), finish="STOP")], "usageMetadata": META}
    usage, finish = FAMILY.read_answer(answer, WHO)
    assert usage == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    assert finish == "tool_calls"
    assert FAMILY.read_answer({"candidates": [candidate(finish="MAX_TOKENS")]}, WHO) == (
        None,
        "length",
    )
    blocked = {"promptFeedback": {"blockReason": "OTHER"}}
    assert FAMILY.read_answer(blocked, WHO) == (None, "content_filter")
    with pytest.raises(RateLimitError):
        FAMILY.read_answer({"error": {"code": 429, "message": "slow"}}, WHO)
    with pytest.raises(APIResponseValidationError):
        FAMILY.read_answer({"candidates": []}, WHO)


def test_the_family_renames_answers_in_model_version() -> None:
    content = b'{"candidates":[],"modelVersion":"gemini-2.5-flash"}'
    assert FAMILY.renamed_answer(content, "gw") == b'{"candidates":[],"modelVersion":"gw"}'
    payload = {"modelVersion": "x"}
    FAMILY.rename_answer(payload, "gw")
    assert payload == {"modelVersion": "gw"}


def test_the_family_takes_the_model_and_stream_from_the_body() -> None:
    out = FAMILY.to_canonical({**body(), "model": "gw", "stream": True}, Translation())
    assert out["model"] == "gw" and out["stream"] is True
    assert "stream" not in FAMILY.to_canonical({**body(), "model": "gw"}, Translation())


def test_the_familys_answers_streams_and_errors() -> None:
    completion = {"choices": [{"message": {"role": "assistant", "content": "x"}}]}
    assert FAMILY.answer(completion, "gw")["modelVersion"] == "gw"
    assert isinstance(FAMILY.stream("gw"), GeminiStream)
    status, data = FAMILY.error(400, "bad field")
    assert (status, orjson.loads(data)) == (
        400,
        {"error": {"code": 400, "message": "bad field", "status": "INVALID_ARGUMENT"}},
    )
    status, data = FAMILY.error(502, "all down", code="upstream_overloaded")
    assert status == 503 and orjson.loads(data)["error"]["status"] == "UNAVAILABLE"
    assert orjson.loads(FAMILY.error(418, "?")[1])["error"]["status"] == "INVALID_ARGUMENT"


# -- schemas -------------------------------------------------------------------------------------
def test_gemini_schemas_back_to_json_schema() -> None:
    schema = {
        "type": "OBJECT",
        "properties": {
            "b": {"type": "STRING", "nullable": True, "enum": ["x", "y"]},
            "a": {"anyOf": [{"type": "INTEGER"}, {"type": "NUMBER"}], "nullable": True},
            "c": {"type": "ARRAY", "items": {"type": "TYPE_UNSPECIFIED"}, "min_items": 1},
        },
        "propertyOrdering": ["a", "b", "c"],
    }
    out = json_schema(schema, "s")
    assert out == {
        "type": "object",
        "properties": {
            "a": {"anyOf": [{"type": "integer"}, {"type": "number"}, {"type": "null"}]},
            "b": {"type": ["string", "null"], "enum": ["x", "y"]},
            "c": {"type": "array", "items": {}, "minItems": 1},
        },
    }
    assert list(out["properties"]) == ["a", "b", "c"]


# -- round trips ---------------------------------------------------------------------------------
ROUND_TRIPS = settings(max_examples=50, deadline=None)

IDENT = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)
TEXT = st.text(max_size=12)
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    TEXT,
)
ARGS = st.dictionaries(IDENT, SCALAR, max_size=3)
PROPERTY = st.one_of(
    st.sampled_from(["string", "integer", "number", "boolean"]).map(lambda t: {"type": t}),
    st.just({"type": "array", "items": {"type": "string"}}),
)


@st.composite
def object_schemas(draw: st.DrawFn) -> dict[str, Any]:
    properties = draw(st.dictionaries(IDENT, PROPERTY, max_size=3))
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if properties:
        schema["required"] = draw(st.lists(st.sampled_from(sorted(properties)), unique=True))
    if draw(st.booleans()):
        schema["additionalProperties"] = False
    if draw(st.booleans()):
        schema["description"] = draw(TEXT)
    return schema


@st.composite
def tool_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(IDENT, min_size=1, max_size=3, unique=True))
    tools = []
    for name in names:
        function: dict[str, Any] = {"name": name, "parameters": draw(object_schemas())}
        if draw(st.booleans()):
            function["description"] = draw(TEXT.filter(bool))
        tools.append({"type": "function", "function": function})
    return tools


RESULT = st.one_of(
    TEXT.filter(lambda t: not t.startswith("{")),
    ARGS.filter(lambda d: not (len(d) == 1 and type(d.get("result")) is str)).map(
        lambda d: orjson.dumps(d).decode()
    ),
)
USER_PART = st.one_of(
    TEXT.map(lambda t: {"type": "text", "text": t}),
    st.just({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}),
    st.just({"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}}),
)


@st.composite
def conversations(draw: st.DrawFn, names: list[str]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    calls = 0
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["system", "user", "assistant", "tools"]))
        if kind == "system":
            role = draw(st.sampled_from(["system", "developer"]))
            messages.append({"role": role, "content": draw(TEXT)})
        elif kind == "user":
            content = draw(st.one_of(TEXT, st.lists(USER_PART, min_size=1, max_size=3)))
            messages.append({"role": "user", "content": content})
        elif kind == "assistant":
            messages.append({"role": "assistant", "content": draw(TEXT.filter(bool))})
        else:
            made = []
            for _ in range(draw(st.integers(1, 2))):
                arguments = orjson.dumps(draw(ARGS)).decode()
                function = {"name": draw(st.sampled_from(names)), "arguments": arguments}
                made.append({"id": f"id-{calls}", "type": "function", "function": function})
                calls += 1
            content = draw(st.one_of(st.none(), TEXT.filter(bool)))
            messages.append({"role": "assistant", "content": content, "tool_calls": made})
            for item in made:
                answer = {"role": "tool", "tool_call_id": item["id"], "content": draw(RESULT)}
                messages.append(answer)
    if all(m["role"] in ("system", "developer") for m in messages):
        messages.append({"role": "user", "content": draw(TEXT)})
    return messages


@st.composite
def chat_bodies(draw: st.DrawFn) -> dict[str, Any]:
    tools = draw(tool_lists())
    names = [t["function"]["name"] for t in tools]
    out: dict[str, Any] = {"messages": draw(conversations(names))}
    if draw(st.booleans()):
        out["tools"] = tools
        choice = st.sampled_from(
            ["auto", "none", "required", {"type": "function", "function": {"name": names[0]}}]
        )
        if draw(st.booleans()):
            out["tool_choice"] = draw(choice)
    optional: dict[str, st.SearchStrategy[Any]] = {
        "max_tokens": st.integers(1, 8192),
        "temperature": st.floats(0, 2, allow_nan=False),
        "top_p": st.floats(0, 1, allow_nan=False),
        "top_k": st.integers(1, 100),
        "seed": st.integers(0, 2**31 - 1),
        "n": st.integers(1, 3),
        "presence_penalty": st.floats(-2, 2, allow_nan=False),
        "frequency_penalty": st.floats(-2, 2, allow_nan=False),
        "stop": st.one_of(TEXT.filter(bool), st.lists(TEXT.filter(bool), min_size=1, max_size=4)),
        "reasoning_effort": st.sampled_from(["none", "minimal", "low", "medium", "high"]),
        "response_format": st.one_of(
            st.just({"type": "json_object"}),
            object_schemas().map(
                lambda s: {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": s, "strict": True},
                }
            ),
        ),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            out[name] = draw(strategy)
    return out


def _schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != "additionalProperties"}


def _user_parts(content: Any) -> list[Any]:
    return [{"type": "text", "text": content}] if type(content) is str else list(content)


def _result(content: str) -> Any:
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        return content
    return value if type(value) is dict else content


def normalised(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` in the form both sides of canonical -> Gemini -> canonical are compared in.

    Gemini's form has no place for what is normalised here:

    * system and developer turns: Gemini has one ``systemInstruction``, so they are compared
      as the list of their texts, in order, wherever they stood;
    * consecutive turns of one role: Gemini merges them into one content, so consecutive user
      turns are one list of parts, consecutive assistant turns one text and one list of calls;
    * user content: a string is its one text part;
    * tool call ids: Gemini's request has none (calls and responses pair by name and order),
      so an id is compared as the position of the call it names; a tool result is compared
      parsed when it is a JSON object text (``{"result": "<text>"}`` is how a plain text
      goes, so that exact object reads back as the text: the generator does not make it);
    * ``stop`` is a list; ``n`` of 1 is no ``n``; a tool's ``parameters`` without properties
      are none; a schema loses ``additionalProperties``; a JSON schema ``response_format``
      keeps its schema, not its name or ``strict``.
    """
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    ids: dict[str, int] = {}
    for message in body["messages"]:
        role = message["role"]
        if role in ("system", "developer"):
            content = message["content"]
            system += [content] if type(content) is str else [p["text"] for p in content]
            continue
        last = turns[-1] if turns else None
        if role == "user":
            if last is not None and last["role"] == "user":
                last["parts"] += _user_parts(message["content"])
            else:
                turns.append({"role": "user", "parts": _user_parts(message["content"])})
        elif role == "assistant":
            calls = []
            for item in message.get("tool_calls") or ():
                ids[item["id"]] = len(ids)
                function = item["function"]
                calls.append(
                    (ids[item["id"]], function["name"], orjson.loads(function["arguments"]))
                )
            if last is None or last["role"] != "assistant":
                last = {"role": "assistant", "text": "", "calls": []}
                turns.append(last)
            last["text"] += message.get("content") or ""
            last["calls"] += calls
        else:
            call_id = ids[message["tool_call_id"]]
            turns.append({"role": "tool", "call": call_id, "result": _result(message["content"])})
    out: dict[str, Any] = {"system": system, "turns": turns}
    for name, value in body.items():
        if name == "messages" or (name == "n" and value == 1):
            continue
        if name == "stop":
            value = [value] if type(value) is str else value
        elif name == "tools":
            value = [
                {
                    **t["function"],
                    "parameters": _schema(t["function"]["parameters"])
                    if t["function"].get("parameters", {}).get("properties")
                    else None,
                }
                for t in value
            ]
        elif name == "response_format" and value["type"] == "json_schema":
            value = _schema(value["json_schema"]["schema"])
        out[name] = value
    return out


@ROUND_TRIPS
@given(chat_bodies())
def test_canonical_to_gemini_and_back_keeps_what_gemini_expresses(chat: dict[str, Any]) -> None:
    """Every field Gemini has a form for comes back (see :func:`normalised`), nothing is
    dropped either way, and what comes back is a valid canonical request."""
    sent = Translation()
    wire = to_gemini(chat, model_id="gemini-2.5-flash", ctx=sent)
    wire = orjson.loads(orjson.dumps(wire))
    read = Translation()
    back = to_canonical(wire, read, model="m")
    assert back.pop("model") == "m"
    from_openai(CHAT, back)
    assert sent.dropped == [] and read.dropped == []
    assert normalised(back) == normalised(chat)


@st.composite
def gemini_answers(draw: st.DrawFn) -> dict[str, Any]:
    candidates = []
    for index in range(draw(st.integers(1, 2))):
        parts: list[dict[str, Any]] = []
        for _ in range(draw(st.integers(0, 4))):
            kind = draw(st.sampled_from(["text", "thought", "call"]))
            if kind == "call":
                fc: dict[str, Any] = {"name": draw(IDENT), "args": draw(ARGS)}
                if draw(st.booleans()):
                    fc["id"] = draw(IDENT)
                part: dict[str, Any] = {"functionCall": fc}
                if draw(st.booleans()):
                    part["thoughtSignature"] = draw(IDENT)
            else:
                part = {"text": draw(TEXT)}
                if kind == "thought":
                    part["thought"] = True
            parts.append(part)
        finish = draw(st.sampled_from(["STOP", "MAX_TOKENS"]))
        content = {"role": "model", "parts": parts}
        candidates.append({"content": content, "finishReason": finish, "index": index})
    counts = st.integers(0, 10**6)
    meta = {"promptTokenCount": draw(counts), "candidatesTokenCount": draw(counts)}
    for optional in ("thoughtsTokenCount", "cachedContentTokenCount", "toolUsePromptTokenCount"):
        if draw(st.booleans()):
            meta[optional] = draw(counts)
    meta["totalTokenCount"] = sum(
        v for k, v in meta.items() if k not in ("cachedContentTokenCount",)
    )
    return {
        "candidates": candidates,
        "usageMetadata": meta,
        "modelVersion": "gemini-x",
        "responseId": draw(IDENT),
    }


def normalised_answer(answer: dict[str, Any]) -> dict[str, Any]:
    """``answer`` in the form both sides of Gemini -> canonical -> Gemini are compared in: the
    parts regroup as a canonical message holds them (thoughts, then text, then calls; texts
    joined, empty ones gone); a call without an id is ``call_<position>`` (the id the
    canonical form gives it); ``toolUsePromptTokenCount`` counts in ``promptTokenCount`` and a
    zero count is no count (OpenAI's usage has one prompt count)."""
    candidates = []
    for item in answer["candidates"]:
        thought = text = ""
        calls = []
        for part in item["content"]["parts"]:
            if "functionCall" in part:
                fc = part["functionCall"]
                ident = fc.get("id") or f"call_{len(calls)}"
                calls.append((ident, fc["name"], fc["args"], part.get("thoughtSignature")))
            elif part.get("thought"):
                thought += part["text"]
            else:
                text += part["text"]
        candidates.append((item["index"], thought, text, calls, item["finishReason"]))
    meta = dict(answer["usageMetadata"])
    meta["promptTokenCount"] += meta.pop("toolUsePromptTokenCount", 0)
    for optional in ("thoughtsTokenCount", "cachedContentTokenCount"):
        if not meta.get(optional):
            meta.pop(optional, None)
    return {
        "candidates": candidates,
        "usage": meta,
        "model": answer["modelVersion"],
        "id": answer["responseId"],
    }


@ROUND_TRIPS
@given(gemini_answers())
def test_gemini_answer_to_canonical_and_back(answer: dict[str, Any]) -> None:
    completion = to_completion(answer, WHO)
    again = to_gemini_answer(completion, completion["model"])
    assert normalised_answer(again) == normalised_answer(answer)


@st.composite
def chunk_streams(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Canonical chunks, and what they say: text, reasoning, calls, finish, usage."""
    chunks = [chunk_of({"role": "assistant", "content": ""})]
    reasoning = draw(st.lists(TEXT, max_size=3))
    texts = draw(st.lists(TEXT, max_size=4))
    chunks += [chunk_of({"reasoning_content": r}) for r in reasoning]
    chunks += [chunk_of({"content": t}) for t in texts]
    calls = []
    for position in range(draw(st.integers(0, 2))):
        ident, name, args = f"call-{position}", draw(IDENT), draw(ARGS)
        text = orjson.dumps(args).decode()
        cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=3)))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        first = {"index": position, "id": ident, "type": "function"}
        chunks.append(chunk_of({"tool_calls": [{**first, "function": {"name": name}}]}))
        chunks += [
            chunk_of({"tool_calls": [{"index": position, "function": {"arguments": piece}}]})
            for piece in pieces
        ]
        calls.append((ident, name, args))
    finish = draw(st.sampled_from(["stop", "length"]))
    if calls and finish == "stop":
        finish = "tool_calls"
    chunks.append(chunk_of({}, finish))
    completion, reasoning_tokens = draw(st.integers(0, 500)), draw(st.integers(0, 500))
    prompt = draw(st.integers(0, 500))
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion + reasoning_tokens,
        "total_tokens": prompt + completion + reasoning_tokens,
    }
    if reasoning_tokens:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    chunks.append({"id": "r1", "choices": [], "usage": usage})
    said = {
        "text": "".join(texts),
        "reasoning": "".join(reasoning),
        "calls": calls,
        "finish": finish,
        "usage": usage,
    }
    return chunks, said


@ROUND_TRIPS
@given(chunk_streams())
def test_canonical_chunks_to_gemini_events_and_back(
    stream: tuple[list[dict[str, Any]], dict[str, Any]],
) -> None:
    """Text, reasoning, tool calls (ids, names, arguments compared parsed: Gemini sends a
    call's arguments whole), the finish reason and the usage come back."""
    chunks, said = stream
    decoder = GeminiEvents(WHO, include_usage=True)
    out: list[dict[str, Any]] = []
    for event in events(GeminiStream("gw"), chunks):
        out += [c for c, _ in decoder.feed(None, orjson.dumps(event))]
    out += decoder.end()
    deltas = [c["choices"][0]["delta"] for c in out if c["choices"]]
    calls = [call for d in deltas for call in d.get("tool_calls", ())]
    assert {
        "text": "".join(d.get("content", "") for d in deltas),
        "reasoning": "".join(d.get("reasoning_content", "") for d in deltas),
        "calls": [
            (c["id"], c["function"]["name"], orjson.loads(c["function"]["arguments"]))
            for c in calls
        ],
        "finish": [c["choices"][0]["finish_reason"] for c in out if c["choices"]][-1],
        "usage": out[-1]["usage"],
    } == said
    assert all(c["model"] == "gw" for c in out)


@ROUND_TRIPS
@given(object_schemas())
def test_schemas_to_geminis_subset_and_back(schema: dict[str, Any]) -> None:
    assert json_schema(gemini_schema(schema), "s") == _schema(schema)
