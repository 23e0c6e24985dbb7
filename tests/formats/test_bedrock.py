"""Bedrock's wire formats (:mod:`msgflux.formats.bedrock`), pure: Converse requests both ways
(round trips), answers both ways, usage and stop reasons, guardrails, the stream translator,
AWS error types, and Claude's own API on Bedrock (the invoke body and its base64 chunks)."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from msgflux._transport.eventstream import EXCEPTION, encode_message
from msgflux.exceptions import (
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
    RequestTimeoutError,
    UnsupportedFeatureError,
)
from msgflux.formats.bedrock import (
    BEDROCK_BETAS,
    CONVERSE_FIELDS,
    ERROR_STATUS,
    FINISH_REASONS,
    ConverseEvents,
    InvokeDecoder,
    bedrock_betas,
    classify_bedrock_error,
    converse_usage,
    from_converse,
    invoke_body,
    stream_exception,
    to_completion,
    to_converse,
    to_converse_answer,
)
from msgflux.formats.policy import Translation

CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
NOVA = "amazon.nova-lite-v1:0"
WHO = ("bedrock", CLAUDE)
PNG = "data:image/png;base64,iVBORw0KGgo="
PDF = "data:application/pdf;base64,JVBERi0xLjQK"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def converse(body: dict[str, Any], model: str = CLAUDE, ctx: Translation | None = None) -> Any:
    return to_converse(body, model_id=model, ctx=ctx or Translation())


# -- requests -------------------------------------------------------------------------------------
def test_system_user_assistant_and_inference_config() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! "},
        ],
        "max_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": "END",
    }
    assert converse(body) == {
        "messages": [
            {"role": "user", "content": [{"text": "Hi"}]},
            {"role": "assistant", "content": [{"text": "Hello!"}]},  # a final prefill trimmed
        ],
        "system": [{"text": "Be brief."}, {"text": "Use metric."}],
        "inferenceConfig": {
            "maxTokens": 50,
            "temperature": 0.2,
            "topP": 0.9,
            "stopSequences": ["END"],
        },
    }


def test_images_documents_and_cache_points() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Read these", "cache_control": {"type": "ephemeral"}},
                    {"type": "image_url", "image_url": {"url": PNG}},
                    {"type": "file", "file": {"filename": "report_2024.pdf", "file_data": PDF}},
                ],
            }
        ]
    }
    assert converse(body)["messages"][0]["content"] == [
        {"text": "Read these"},
        {"cachePoint": {"type": "default"}},
        {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}},
        {"document": {"format": "pdf", "name": "report 2024", "source": {"bytes": "JVBERi0xLjQK"}}},
    ]


def test_an_image_by_url_or_audio_cannot_go() -> None:
    url = {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}],
    }
    with pytest.raises(UnsupportedFeatureError, match="data: URLs"):
        converse({"messages": [url]})
    audio = {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AA=="}}]}
    with pytest.raises(UnsupportedFeatureError, match="input_audio"):
        converse({"messages": [audio]})


def test_tools_calls_results_and_alternation() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "Weather in Rio and Oslo?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "t1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rio"}'},
                    },
                    {
                        "id": "t2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "t1", "content": "30C"},
            {"role": "tool", "tool_call_id": "t2", "content": "boom", "is_error": True},
            {"role": "user", "content": "And tomorrow?"},
        ],
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }
    out = converse(body)
    assert out["messages"][1] == {
        "role": "assistant",
        "content": [
            {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Rio"}}},
            {"toolUse": {"toolUseId": "t2", "name": "get_weather", "input": {"city": "Oslo"}}},
        ],
    }
    assert out["messages"][2] == {  # the results and the next question: one user turn
        "role": "user",
        "content": [
            {"toolResult": {"toolUseId": "t1", "content": [{"text": "30C"}]}},
            {"toolResult": {"toolUseId": "t2", "content": [{"text": "boom"}], "status": "error"}},
            {"text": "And tomorrow?"},
        ],
    }
    assert out["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "inputSchema": {"json": WEATHER["function"]["parameters"]},  # type: ignore[index]
                    "description": "The weather",
                }
            }
        ],
        "toolChoice": {"tool": {"name": "get_weather"}},
    }


def test_tool_choice_forms() -> None:
    base = {"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER]}
    assert converse({**base, "tool_choice": "required"})["toolConfig"]["toolChoice"] == {"any": {}}
    assert converse({**base, "tool_choice": "auto"})["toolConfig"]["toolChoice"] == {"auto": {}}
    assert "toolConfig" not in converse({**base, "tool_choice": "none"})
    history = {
        "messages": [
            {"role": "user", "content": "x"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "a", "content": "ok"},
        ]
    }
    # a conversation with tool calls and no tools: Converse needs them declared
    assert converse(history)["toolConfig"]["tools"][0]["toolSpec"]["name"] == "f"
    with pytest.raises(UnsupportedFeatureError, match="forbid tool calls"):
        converse({**history, "tools": [WEATHER], "tool_choice": "none"})


def test_thinking_blocks_go_back_signed_and_others_are_dropped() -> None:
    ctx = Translation()
    body = {
        "messages": [
            {"role": "user", "content": "x"},
            {
                "role": "assistant",
                "content": "y",
                "thinking_blocks": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "ZGF0YQ=="},
                    {"type": "thinking", "thinking": "another vendor's"},
                ],
            },
            {"role": "user", "content": "z"},
        ]
    }
    assert converse(body, ctx=ctx)["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}},
        {"reasoningContent": {"redactedContent": "ZGF0YQ=="}},
        {"text": "y"},
    ]
    assert ctx.dropped == ["messages[1].thinking_blocks"]


def test_model_fields_go_in_additional_model_request_fields() -> None:
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 100,
        "top_k": 5,
        "reasoning_effort": "medium",
        "anthropic_beta": ["x"],  # a vendor field: the model reads it
        "guardrailConfig": {"guardrailIdentifier": "g", "guardrailVersion": "1"},
        "additionalModelRequestFields": {"foo": 1},
    }
    out = converse(body)
    assert out["additionalModelRequestFields"] == {
        "top_k": 5,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "anthropic_beta": ["x"],
        "foo": 1,
    }
    assert out["inferenceConfig"] == {"maxTokens": 2148}  # above the thinking budget
    assert out["guardrailConfig"] == body["guardrailConfig"]
    nova = converse({"messages": body["messages"], "top_k": 5}, model=NOVA)
    assert nova["additionalModelRequestFields"] == {"inferenceConfig": {"topK": 5}}


def test_what_converse_cannot_express_follows_the_policy() -> None:
    ctx = Translation()
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "seed": 1,
        "user": "u",
        "reasoning_effort": "low",
    }
    assert "additionalModelRequestFields" not in converse(body, model=NOVA, ctx=ctx)
    assert ctx.dropped == ["seed", "user", "reasoning_effort"]
    for refused in ({"n": 2}, {"logprobs": True}, {"parallel_tool_calls": False}):
        with pytest.raises(UnsupportedFeatureError):
            converse({"messages": [{"role": "user", "content": "x"}], **refused})
    with pytest.raises(UnsupportedFeatureError, match="json_object"):
        converse(
            {
                "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "json_object"},
            }
        )


def test_json_schema_output() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "out", "schema": schema}}
    out = converse({"messages": [{"role": "user", "content": "x"}], "response_format": fmt})
    definition = out["outputConfig"]["textFormat"]["structure"]["jsonSchema"]
    assert orjson.loads(definition["schema"]) == schema and definition["name"] == "out"


ROUND_TRIPS: list[dict[str, Any]] = [
    {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 10},
    {
        "messages": [
            {"role": "system", "content": "S"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {"type": "image_url", "image_url": {"url": PNG}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "t1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rio"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "t1", "content": "30C"},
        ],
        "tools": [WEATHER],
        "tool_choice": "required",
        "temperature": 0.5,
        "stop": ["X"],
        "top_k": 3,
    },
    {
        "messages": [
            {"role": "user", "content": "x"},
            {
                "role": "assistant",
                "content": "y",
                "thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "s"}],
            },
            {
                "role": "user",
                "content": [{"type": "text", "text": "z", "cache_control": {"type": "ephemeral"}}],
            },
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "o", "schema": {"type": "object"}},
        },
        "service_tier": "flex",
    },
]


@pytest.mark.parametrize("body", ROUND_TRIPS)
def test_requests_round_trip(body: dict[str, Any]) -> None:
    once = converse(body)
    assert converse(from_converse(once)) == once


# -- answers --------------------------------------------------------------------------------------
ANSWER = {
    "output": {
        "message": {
            "role": "assistant",
            "content": [
                {
                    "reasoningContent": {
                        "reasoningText": {"text": "Let me see.", "signature": "sig"}
                    }
                },
                {"text": "It is sunny."},
                {"toolUse": {"toolUseId": "tu1", "name": "get_weather", "input": {"city": "Rio"}}},
            ],
        }
    },
    "stopReason": "tool_use",
    "usage": {
        "inputTokens": 10,
        "outputTokens": 5,
        "totalTokens": 65,
        "cacheReadInputTokens": 40,
        "cacheWriteInputTokens": 10,
    },
    "metrics": {"latencyMs": 100},
}


def test_an_answer_becomes_a_completion() -> None:
    out = to_completion(ANSWER, WHO)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "It is sunny."
    assert choice["message"]["reasoning_content"] == "Let me see."
    assert choice["message"]["thinking_blocks"] == [
        {"type": "thinking", "thinking": "Let me see.", "signature": "sig"}
    ]
    assert choice["message"]["tool_calls"] == [
        {
            "id": "tu1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Rio"}'},
        }
    ]
    assert out["usage"] == {
        "prompt_tokens": 60,
        "completion_tokens": 5,
        "total_tokens": 65,
        "prompt_tokens_details": {"cached_tokens": 40},
        "cache_read_input_tokens": 40,
        "cache_creation_input_tokens": 10,
    }


def test_answers_round_trip() -> None:
    once = to_completion(ANSWER, WHO)
    again = to_completion(to_converse_answer(once), WHO)
    assert again["choices"] == once["choices"] and again["usage"] == once["usage"]


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
    ],
)
def test_stop_reasons(stop: str, finish: str) -> None:
    answer = {
        **ANSWER,
        "stopReason": stop,
        "output": {"message": {"role": "assistant", "content": [{"text": "x"}]}},
    }
    assert to_completion(answer, WHO)["choices"][0]["finish_reason"] == finish


def test_a_guardrail_that_intervened_is_a_content_policy_error_with_its_trace() -> None:
    trace = {"guardrail": {"actionReason": "Guardrail blocked."}}
    answer = {**ANSWER, "stopReason": "guardrail_intervened", "trace": trace}
    with pytest.raises(ContentPolicyError, match="guardrail") as info:
        to_completion(answer, WHO)
    assert info.value.body == {"stopReason": "guardrail_intervened", "trace": trace}
    with pytest.raises(ContentPolicyError):
        to_completion({**ANSWER, "stopReason": "content_filtered"}, WHO)
    with pytest.raises(APIResponseValidationError, match="malformed_tool_use"):
        to_completion({**ANSWER, "stopReason": "malformed_tool_use"}, WHO)
    with pytest.raises(APIResponseValidationError):
        to_completion({"output": {}}, WHO)


def test_usage_without_cache() -> None:
    assert converse_usage({"inputTokens": 3, "outputTokens": 2, "totalTokens": 5}, WHO) == {
        "prompt_tokens": 3,
        "completion_tokens": 2,
        "total_tokens": 5,
    }
    with pytest.raises(APIResponseValidationError):
        converse_usage({"inputTokens": "3"}, WHO)


# -- streams --------------------------------------------------------------------------------------
def feed(
    events: list[tuple[str, Any]], include_usage: bool = True
) -> tuple[list[Any], ConverseEvents]:
    translator = ConverseEvents(WHO, include_usage)
    out = []
    for name, payload in events:
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        out += translator.feed(name, data)
    return out, translator


STREAM = [
    ("messageStart", {"role": "assistant"}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hmm"}}}),
    (
        "contentBlockDelta",
        {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig"}}},
    ),
    ("contentBlockStop", {"contentBlockIndex": 0}),
    ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "Hi"}, "p": "abcdef"}),
    (
        "contentBlockStart",
        {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tu", "name": "f"}}},
    ),
    ("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '{"a":'}}}),
    ("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": "1}"}}}),
    ("messageStop", {"stopReason": "tool_use"}),
    (
        "metadata",
        {
            "usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7},
            "metrics": {"latencyMs": 9},
        },
    ),
]


def test_a_converse_stream_becomes_chunks() -> None:
    out, translator = feed(STREAM)
    deltas = [c["choices"][0]["delta"] for c, _ in out]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "hmm"},
        {"thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "sig"}]},
        {"content": "Hi"},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "tu",
                    "type": "function",
                    "function": {"name": "f", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]},
        {},
    ]
    assert out[-1][0]["choices"][0]["finish_reason"] == "tool_calls"
    assert out[3][1] == "Hi"  # the text item, accounted without re-checking
    assert translator.done
    (usage,) = translator.end()
    assert usage["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert feed(STREAM, include_usage=False)[1].end() == []


def test_an_exception_in_the_stream_raises_its_typed_error() -> None:
    with pytest.raises(RateLimitError):
        feed(
            [
                ("messageStart", {"role": "assistant"}),
                (EXCEPTION + "throttlingException", {"message": "slow"}),
            ]
        )
    with pytest.raises(InternalServerError):
        feed(
            [(EXCEPTION + "modelStreamErrorException", {"message": "x", "originalStatusCode": 500})]
        )
    with pytest.raises(APIResponseValidationError):
        feed([("contentBlockDelta", b"not json")])


def test_a_guardrail_in_a_stream_raises_with_the_trace_of_its_metadata() -> None:
    events = [
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Sorry"}}),
        ("messageStop", {"stopReason": "guardrail_intervened"}),
        (
            "metadata",
            {"usage": {"inputTokens": 1, "outputTokens": 1}, "trace": {"guardrail": {"x": 1}}},
        ),
    ]
    with pytest.raises(ContentPolicyError) as info:
        feed(events)
    assert info.value.body == {
        "stopReason": "guardrail_intervened",
        "trace": {"guardrail": {"x": 1}},
    }
    _, translator = feed(events[:3])  # cut before the metadata: raised at the end
    with pytest.raises(ContentPolicyError):
        translator.end()


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "kind", "message", "cls"),
    [
        (429, "ThrottlingException", "Too many requests", RateLimitError),
        (429, "ModelNotReadyException", "Model is not ready", InternalServerError),
        (503, "ServiceUnavailableException", "unavailable", InternalServerError),
        (500, "InternalServerException", "boom", InternalServerError),
        (424, "ModelErrorException", "model failed", InternalServerError),
        (408, "ModelTimeoutException", "slow", RequestTimeoutError),
        (403, "AccessDeniedException", "no access to the model", PermissionDeniedError),
        (403, "UnrecognizedClientException", "invalid token", AuthenticationError),
        (403, "InvalidSignatureException", "signature mismatch", AuthenticationError),
        (403, "ExpiredTokenException", "expired", AuthenticationError),
        (404, "ResourceNotFoundException", "no model", NotFoundError),
        (
            400,
            "ValidationException",
            "Input is too long for requested model.",
            ContextWindowExceededError,
        ),
        (
            400,
            "ValidationException",
            "prompt is too long: 250000 tokens > 200000 maximum",
            ContextWindowExceededError,
        ),
        (400, "ValidationException", "extraneous key [foo] is not permitted", None),
        (400, "ServiceQuotaExceededException", "quota", RateLimitError),
    ],
)
def test_aws_error_types(status: int, kind: str, message: str, cls: type | None) -> None:
    body = {"message": message, "__type": kind}
    assert classify_bedrock_error(status, body) is cls
    assert (
        classify_bedrock_error(status, {"message": message, "__type": f"com.amazon.bedrock#{kind}"})
        is cls
    )


def test_a_stream_exception_is_classified_like_an_answer() -> None:
    exc = stream_exception("validationException", b'{"message":"Input is too long"}', WHO)
    assert isinstance(exc, ContextWindowExceededError) and exc.status_code == 400
    assert isinstance(stream_exception("whatever", b"{}", WHO), InternalServerError)
    assert isinstance(stream_exception("throttlingException", b"junk", WHO), RateLimitError)
    assert not isinstance(
        stream_exception("validationException", b"{}", WHO), ContextWindowExceededError
    )
    assert isinstance(stream_exception("validationException", b"{}", WHO), BadRequestError)


# -- Claude's own API on Bedrock ------------------------------------------------------------------
def test_the_invoke_body_is_the_clients_with_bedrocks_version_and_betas() -> None:
    body = {
        "model": "claude-x",
        "stream": True,
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
        "context_management": {"edits": []},
        "anthropic_beta": ["a"],
    }
    header = "interleaved-thinking-2025-05-14, a"
    out = orjson.loads(invoke_body(body, {"anthropic-beta": header, "anthropic-version": "x"}))
    assert out == {
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
        "context_management": {"edits": []},
        "anthropic_beta": ["a", "interleaved-thinking-2025-05-14"],
        "anthropic_version": "bedrock-2023-05-31",
    }


def test_betas_bedrock_would_refuse_are_dropped_from_the_header() -> None:
    """Bedrock answers a beta it does not take with a 400 (``invalid beta flag``): Claude
    Code's first-party betas are dropped, Anthropic's name of tool search is Bedrock's."""
    header = (
        "claude-code-20250219,interleaved-thinking-2025-05-14,oauth-2025-04-20,"
        "advanced-tool-use-2025-11-20, context-management-2025-06-27,"
        "prompt-caching-scope-2026-01-05,interleaved-thinking-2025-05-14"
    )
    assert bedrock_betas(header) == (
        [
            "interleaved-thinking-2025-05-14",
            "tool-search-tool-2025-10-19",
            "context-management-2025-06-27",
        ],
        ["claude-code-20250219", "oauth-2025-04-20", "prompt-caching-scope-2026-01-05"],
    )
    body = {"max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    out = orjson.loads(invoke_body(body, {"anthropic-beta": "claude-code-20250219"}))
    assert "anthropic_beta" not in out
    assert set(bedrock_betas(",".join(BEDROCK_BETAS))[0]) == BEDROCK_BETAS


def chunk(event: dict[str, Any]) -> bytes:
    payload = {"bytes": base64.b64encode(orjson.dumps(event)).decode(), "p": "xyz"}
    headers = {
        ":event-type": "chunk",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return encode_message(headers, orjson.dumps(payload))


def test_invoke_chunks_become_messages_events() -> None:
    start = {"type": "message_start", "message": {"id": "m"}}
    delta = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "Hi"},
    }
    raw = chunk(start) + chunk(delta)
    decoder = InvokeDecoder(1 << 20, WHO)
    events = decoder.feed(raw[:7]) + decoder.feed(raw[7:]) + decoder.end()
    assert [(name, orjson.loads(data)) for name, data in events] == [
        ("message_start", start),
        ("content_block_delta", delta),
    ]
    throttled = encode_message(
        {":message-type": "exception", ":exception-type": "throttlingException"}, b'{"message":"x"}'
    )
    with pytest.raises(RateLimitError):
        InvokeDecoder(1 << 20, WHO).feed(throttled)
    not_base64 = encode_message(
        {":event-type": "chunk", ":message-type": "event"}, b'{"bytes":"!!"}'
    )
    with pytest.raises(APIResponseValidationError):
        InvokeDecoder(1 << 20, WHO).feed(not_base64)


# -- botocore's service model, the reference ------------------------------------------------------
def _service_model() -> Any:
    botocore_session = pytest.importorskip("botocore.session")
    return botocore_session.get_session().get_service_model("bedrock-runtime")


def test_every_stop_reason_field_event_and_error_of_botocores_service_model_is_known() -> None:
    """What AWS publishes for bedrock-runtime (the model botocore ships): every ``stopReason``
    has a finish reason, every Converse request field is translated or passed through, every
    stream event and every error type of the four operations is handled."""
    model = _service_model()
    assert set(model.shape_for("StopReason").enum) == set(FINISH_REASONS)
    members = set(model.operation_model("Converse").input_shape.members)
    assert members - {"modelId", "messages", "system"} == set(CONVERSE_FIELDS)
    assert set(model.shape_for("TokenUsage").members) >= {
        "cacheReadInputTokens",
        "cacheWriteInputTokens",
    }
    errors = {
        e.name
        for name in ("Converse", "ConverseStream", "InvokeModel", "InvokeModelWithResponseStream")
        for e in model.operation_model(name).error_shapes
    }
    assert errors <= set(ERROR_STATUS)
    for kind in errors:
        exc = stream_exception(kind[:1].lower() + kind[1:], b'{"message":"x"}', WHO)
        assert isinstance(exc, APIStatusError) and exc.status_code == ERROR_STATUS[kind]
    for kind, member in model.shape_for("ConverseStreamOutput").members.items():
        if member.metadata.get("exception"):
            with pytest.raises(APIStatusError):
                ConverseEvents(WHO, True).feed(EXCEPTION + kind, b'{"message":"x"}')
    events = set(model.shape_for("ConverseStreamOutput").members)
    handled = {"messageStart", "contentBlockStart", "contentBlockDelta", "contentBlockStop"}
    assert {e for e in events if not e.endswith("Exception")} == {
        *handled,
        "messageStop",
        "metadata",
    }
