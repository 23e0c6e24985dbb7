"""The Messages API family's pure translations (:mod:`msgflux.formats.anthropic`): its requests
into canonical ones (and what the policy drops), canonical answers and chunks into Messages API
answers and SSE events."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from msgflux.exceptions import InternalServerError, StreamInterruptedError, UnsupportedFeatureError
from msgflux.formats.anthropic import (
    FINISH_REASONS,
    STOP_REASONS,
    MessageEvents,
    error_type,
    message_usage,
    to_canonical,
    to_message,
)
from msgflux.formats.policy import Translation
from msgflux.models.request import CHAT, Request, from_openai

ASK: Any = [{"role": "user", "content": "Hi"}]


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "chat", "max_tokens": 16, "messages": ASK, **fields}


def to_request(
    payload: Any, *, version: str | None = None, ctx: Translation | None = None
) -> tuple[str, Request]:
    out = to_canonical(payload, ctx or Translation(), version=version)
    return out.pop("model"), from_openai(CHAT, out)


def canonical(**fields: Any) -> dict[str, Any]:
    return to_request(body(**fields))[1].body


def dropped(payload: Any) -> list[str]:
    ctx = Translation()
    to_request(payload, ctx=ctx)
    return ctx.dropped


# -- requests -----------------------------------------------------------------------------------
def test_a_plain_request() -> None:
    name, request = to_request(body())
    assert name == "chat" and not request.stream
    assert request.body == {"messages": ASK, "max_tokens": 16}


def test_a_stream_asks_for_usage() -> None:
    request = to_request(body(stream=True))[1]
    assert request.stream and request.body["stream_options"] == {"include_usage": True}


def test_the_system_prompt_as_a_string_or_blocks() -> None:
    assert canonical(system="Be brief.")["messages"][0] == {
        "role": "system",
        "content": "Be brief.",
    }
    blocks = [
        {"type": "text", "text": "A"},
        {"type": "text", "text": "B", "cache_control": {"type": "ephemeral"}},
    ]
    assert canonical(system=blocks)["messages"][0] == {"role": "system", "content": blocks}
    one = canonical(system=[{"type": "text", "text": "A"}])["messages"][0]
    assert one == {"role": "system", "content": "A"}


def test_sampling_stop_metadata_and_service_tier() -> None:
    out = canonical(
        temperature=0.2,
        top_p=0.5,
        top_k=40,
        stop_sequences=["END"],
        metadata={"user_id": "u"},
        service_tier="auto",
    )
    assert out["temperature"] == 0.2 and out["top_p"] == 0.5 and out["top_k"] == 40
    assert out["stop"] == ["END"] and out["user"] == "u"
    assert "service_tier" not in out  # a capacity hint for Anthropic: taken, not sent


def test_user_blocks_images_documents_and_tool_results() -> None:
    turn = {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "ok", "is_error": True},
            {"type": "tool_result", "tool_use_id": "t2"},
            {"type": "text", "text": "And?", "cache_control": {"type": "ephemeral"}},
            {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
            {
                "type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
            },
        ],
    }
    messages = canonical(messages=[turn])["messages"]
    assert messages[0] == {"role": "tool", "tool_call_id": "t1", "content": "ok", "is_error": True}
    assert messages[1] == {"role": "tool", "tool_call_id": "t2", "content": ""}
    assert messages[2]["content"] == [
        {"type": "text", "text": "And?", "cache_control": {"type": "ephemeral"}},
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE"}},
    ]


def test_assistant_blocks_tool_use_and_thinking() -> None:
    signed = {"type": "thinking", "thinking": "t", "signature": "s"}
    redacted = {"type": "redacted_thinking", "data": "xyz"}
    turn = {
        "role": "assistant",
        "content": [
            signed,
            redacted,
            {"type": "thinking", "thinking": "unsigned", "signature": ""},
            {"type": "text", "text": "Let me look. "},
            {"type": "text", "text": "Now."},
            {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
        ],
    }
    message = canonical(messages=[*ASK, turn])["messages"][1]
    assert message == {
        "role": "assistant",
        "content": "Let me look. Now.",
        "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
        ],
        "thinking_blocks": [signed, redacted],
    }


def test_tools_and_tool_choice() -> None:
    schema = {"type": "object", "properties": {}}
    tools = [
        {
            "name": "f",
            "description": "d",
            "input_schema": schema,
            "strict": True,
            "cache_control": {"type": "ephemeral"},
        },
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 2},
    ]
    out = canonical(tools=tools, tool_choice={"type": "any", "disable_parallel_tool_use": True})
    assert out["tools"] == [
        {
            "type": "function",
            "function": {"name": "f", "parameters": schema, "description": "d", "strict": True},
            "cache_control": {"type": "ephemeral"},
        },
        tools[1],  # a server tool: only an Anthropic deployment runs it, sent as it is
    ]
    assert out["tool_choice"] == "required" and out["parallel_tool_calls"] is False
    assert canonical(tool_choice={"type": "none"})["tool_choice"] == "none"
    forced = canonical(tool_choice={"type": "tool", "name": "f"})["tool_choice"]
    assert forced == {"type": "function", "function": {"name": "f"}}


@pytest.mark.parametrize(
    ("budget", "effort"),
    [(1024, "low"), (2000, "low"), (2048, "medium"), (5000, "high"), (30000, "xhigh")],
)
def test_thinking_budgets_become_reasoning_effort(budget: int, effort: str) -> None:
    out = canonical(max_tokens=40000, thinking={"type": "enabled", "budget_tokens": budget})
    assert out["reasoning_effort"] == effort
    assert "reasoning_effort" not in canonical(thinking={"type": "disabled"})


def test_output_config_becomes_a_json_schema_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    out = canonical(output_config={"format": {"type": "json_schema", "schema": schema}})
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }


def test_hints_with_no_canonical_form_are_dropped_and_named() -> None:
    payload = body(
        thinking={"type": "adaptive", "display": "omitted"},
        context_management={"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        output_config={"effort": "high"},
        metadata={"user_id": "u-1", "tenant": "x"},
        seed=1,
        tools=[{"name": "f", "input_schema": {"type": "object"}, "defer_loading": True, "x": 1}],
    )
    assert dropped(payload) == [
        "context_management",
        "seed",
        "tools.0.defer_loading",
        "tools.0.x",
        "thinking",
        "output_config.effort",
        "metadata",
    ]
    out = canonical(**{k: v for k, v in payload.items() if k not in body()})
    assert "thinking" not in out and "output_config" not in out and "seed" not in out
    assert out["user"] == "u-1"
    assert out["tools"][0]["function"]["name"] == "f"


def test_a_system_turn_mid_conversation_stays_where_it_is() -> None:
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "assistant", "content": "Hello"},
    ]
    assert canonical(messages=messages)["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "system", "content": "Be brief."},
        {"role": "assistant", "content": "Hello"},
    ]


def test_a_hint_refused_by_the_policy_makes_the_deployment_ineligible() -> None:
    ctx = Translation({"context_management": "refuse"})
    with pytest.raises(UnsupportedFeatureError, match="context_management"):
        to_request(body(context_management={}), ctx=ctx)
    with pytest.raises(UnsupportedFeatureError, match="MCP servers"):
        to_request(body(mcp_servers=[]))


@pytest.mark.parametrize(
    ("payload", "start"),
    [
        ([], "body: must be an object"),
        ({"messages": ASK, "max_tokens": 1}, "model: must be a string"),
        ({"model": "chat", "max_tokens": 1}, "messages: is required"),
        (body(max_tokens=0), "max_tokens: must be an integer >= 1"),
        (body(max_tokens=True), "max_tokens: must be an integer >= 1"),
        (body(temperature=2), "temperature: must be a number between 0 and 1"),
        (body(top_k=1.5), "top_k: must be an integer >= 0"),
        (body(stop_sequences="END"), "stop_sequences: must be an array of strings"),
        (body(stream="yes"), "stream: must be a boolean"),
        (
            body(messages=[{"role": "user"}]),
            "messages.0.content: must be a string or a non-empty array",
        ),
        (
            body(messages=[{"role": "user", "content": "x", "name": "n"}]),
            "messages.0.name: Extra inputs",
        ),
        (
            body(messages=[{"role": "bot", "content": "x"}]),
            "messages.0.role: must be one of 'user', 'assistant', 'system'",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "tool_use"}]}]),
            "messages.0.content.0.type: must be one of text, image, document, tool_result",
        ),
        (
            body(messages=[{"role": "assistant", "content": [{"type": "image"}]}]),
            "messages.0.content.0.type: must be one of text, tool_use, thinking, redacted_thinking",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "text"}]}]),
            "messages.0.content.0.text: must be a string",
        ),
        (
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/tiff",
                                    "data": "x",
                                },
                            }
                        ],
                    }
                ]
            ),
            "messages.0.content.0.source.media_type: must be one of",
        ),
        (
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                    }
                ]
            ),
            "messages.0.content.0.source.type: 'file'",
        ),
        (
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t",
                                "content": [{"type": "document"}],
                            }
                        ],
                    }
                ]
            ),
            "messages.0.content.0.content.0.type: must be 'text' or 'image'",
        ),
        (
            body(
                messages=[
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": []}],
                    }
                ]
            ),
            "messages.0.content.0.input: must be an object",
        ),
        (body(tools=[{"name": "f"}]), "tools.0.input_schema: must be an object"),
        (
            body(tools=[{"name": "f", "input_schema": {"type": "array"}}]),
            "tools.0.input_schema.type: must be 'object'",
        ),
        (body(tool_choice={"type": "tool"}), "tool_choice.name: must be a string"),
        (body(tool_choice={"type": "auto", "x": 1}), "tool_choice.x: Extra inputs"),
        (
            body(thinking={"type": "on"}),
            "thinking.type: must be one of 'enabled', 'disabled', 'adaptive'",
        ),
        (
            body(max_tokens=1024, thinking={"type": "enabled", "budget_tokens": 1024}),
            "max_tokens: must be greater than thinking.budget_tokens",
        ),
        (
            body(output_config={"format": {"type": "json_object"}}),
            "output_config.format.type: must be one of 'json_schema'",
        ),
    ],
)
def test_a_bad_field_is_named_with_what_is_accepted(payload: Any, start: str) -> None:
    with pytest.raises((TypeError, ValueError)) as info:
        to_request(payload)
    assert str(info.value).startswith(start)


def test_sampling_fields_with_the_version_that_has_none() -> None:
    refused = r"^top_k: Extra inputs are not permitted with anthropic-version 2026-10-21"
    with pytest.raises(ValueError, match=refused):
        to_request(body(top_k=5), version="2026-10-21")
    assert to_request(body(top_k=5), version="2023-06-01")[1].body["top_k"] == 5


# -- answers ------------------------------------------------------------------------------------
def completion(message: dict[str, Any], finish: str = "stop", usage: Any = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }


def test_stop_reasons_are_the_providers_table_inverted() -> None:
    for finish, stop in STOP_REASONS.items():
        assert FINISH_REASONS[stop] == ("tool_calls" if finish == "function_call" else finish)
    assert STOP_REASONS["stop"] == "end_turn" and STOP_REASONS["length"] == "max_tokens"
    assert STOP_REASONS["tool_calls"] == "tool_use" and STOP_REASONS["content_filter"] == "refusal"


def test_an_answer_with_thinking_text_and_tool_calls() -> None:
    calls = [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
        {"id": "c2", "type": "function", "function": {"name": "g", "arguments": ""}},
    ]
    message = to_message(
        completion(
            {
                "role": "assistant",
                "content": "Sure.",
                "reasoning_content": "Hmm",
                "tool_calls": calls,
            },
            "tool_calls",
            {
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 4},
            },
        ),
        "chat",
    )
    assert message == {
        "id": "chatcmpl-1",
        "type": "message",
        "role": "assistant",
        "model": "chat",
        "content": [
            {"type": "thinking", "thinking": "Hmm", "signature": ""},
            {"type": "text", "text": "Sure."},
            {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}},
            {"type": "tool_use", "id": "c2", "name": "g", "input": {}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 6, "output_tokens": 5, "cache_read_input_tokens": 4},
    }


def test_signed_thinking_blocks_and_refusals() -> None:
    blocks = [
        {"type": "thinking", "thinking": "t", "signature": "sig"},
        {"type": "redacted_thinking", "data": "d"},
    ]
    message = to_message(
        completion(
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "t",
                "thinking_blocks": blocks,
            }
        ),
        "chat",
    )
    assert message["content"] == blocks
    refused = to_message(
        completion({"role": "assistant", "content": None, "refusal": "No."}), "chat"
    )
    assert (
        refused["content"] == [{"type": "text", "text": "No."}]
        and refused["stop_reason"] == "refusal"
    )
    assert (
        to_message(completion({"role": "assistant", "content": "x"}, "length"), "c")["stop_reason"]
        == "max_tokens"
    )


def test_a_malformed_answer_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no choices"):
        to_message({"choices": []}, "chat")
    bad = {
        "role": "assistant",
        "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}],
    }
    with pytest.raises(ValueError, match="not a JSON object"):
        to_message(completion(bad), "chat")


def test_usage_keeps_anthropics_cache_fields() -> None:
    usage = {
        "prompt_tokens": 30,
        "completion_tokens": 2,
        "cache_creation_input_tokens": 10,
        "cache_read_input_tokens": 15,
    }
    assert message_usage(usage) == {
        "input_tokens": 5,
        "output_tokens": 2,
        "cache_creation_input_tokens": 10,
        "cache_read_input_tokens": 15,
    }
    assert message_usage(None) == {"input_tokens": 0, "output_tokens": 0}


# -- streams ------------------------------------------------------------------------------------
def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "chatcmpl-7", "choices": choices, **extra}


def events(chunks: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    translator = MessageEvents("chat")
    raw = b"".join(translator.feed(c) for c in chunks) + translator.end()
    out = []
    for frame in raw.decode().split("\n\n")[:-1]:
        name, data = frame.split("\n")
        out.append((name.removeprefix("event: "), orjson.loads(data.removeprefix("data: "))))
    return out


def test_a_text_stream() -> None:
    seen = events(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({}, "stop"),
            chunk(None, usage={"prompt_tokens": 3, "completion_tokens": 2}),
        ]
    )
    assert [e for e, _ in seen] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = seen[0][1]["message"]
    assert start["id"] == "chatcmpl-7" and start["model"] == "chat" and start["content"] == []
    assert seen[2][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert [d["delta"]["text"] for e, d in seen if e == "content_block_delta"] == ["Hel", "lo"]
    assert seen[6][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"input_tokens": 3, "output_tokens": 2},
    }


def test_text_and_the_finish_in_one_chunk() -> None:
    seen = events([chunk({"content": "a"}), chunk({"content": "b"}, "length")])
    assert [e for e, _ in seen][2:] == [
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert seen[4][1] == {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "b"},
    }
    assert seen[-2][1]["delta"]["stop_reason"] == "max_tokens"


def test_thinking_then_text_then_parallel_tool_calls() -> None:
    seen = events(
        [
            chunk({"reasoning_content": "Think"}),
            chunk(
                {"thinking_blocks": [{"type": "thinking", "thinking": "Think", "signature": "S"}]}
            ),
            chunk({"content": "Calling."}),
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "c0",
                            "type": "function",
                            "function": {"name": "f", "arguments": ""},
                        }
                    ]
                }
            ),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 1,
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "g", "arguments": "{}"},
                        }
                    ]
                }
            ),
            chunk({}, "tool_calls"),
        ]
    )
    shape = [
        (e, d.get("index"), (d.get("delta") or d.get("content_block") or {}).get("type"))
        for e, d in seen
    ]
    assert shape == [
        ("message_start", None, None),
        ("ping", None, None),
        ("content_block_start", 0, "thinking"),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "signature_delta"),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, "text"),
        ("content_block_delta", 1, "text_delta"),
        ("content_block_stop", 1, None),
        ("content_block_start", 2, "tool_use"),
        ("content_block_delta", 2, "input_json_delta"),
        ("content_block_delta", 2, "input_json_delta"),
        ("content_block_stop", 2, None),
        ("content_block_start", 3, "tool_use"),
        ("content_block_delta", 3, "input_json_delta"),
        ("content_block_stop", 3, None),
        ("message_delta", None, None),
        ("message_stop", None, None),
    ]
    assert seen[9][1]["content_block"] == {"type": "tool_use", "id": "c0", "name": "f", "input": {}}
    assert seen[4][1]["delta"] == {"type": "signature_delta", "signature": "S"}
    assert seen[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_a_redacted_thinking_block_is_its_own_block() -> None:
    block = {"type": "redacted_thinking", "data": "zz"}
    seen = events([chunk({"thinking_blocks": [block]}), chunk({"content": "x"})])
    assert seen[2][1]["content_block"] == block and seen[3][0] == "content_block_stop"
    assert seen[4][1]["index"] == 1


def test_an_empty_stream_is_still_a_complete_message() -> None:
    assert [e for e, _ in events([])] == ["message_start", "ping", "message_delta", "message_stop"]


def test_interleaved_tool_call_arguments_are_refused() -> None:
    translator = MessageEvents("chat")
    translator.feed(chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f"}}]}))
    translator.feed(chunk({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g"}}]}))
    with pytest.raises(ValueError, match="interleaved tool call 0"):
        translator.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}))


def test_a_broken_stream_ends_with_an_error_event() -> None:
    translator = MessageEvents("chat")
    overloaded = InternalServerError("Overloaded", status_code=529)
    cut = StreamInterruptedError("stream broke", cause=overloaded)
    assert b'"type":"overloaded_error"' in translator.error(cut)
    event = translator.error(StreamInterruptedError("connection closed"))
    assert event.startswith(b"event: error\ndata: ")
    assert orjson.loads(event.split(b"data: ")[1])["error"]["type"] == "api_error"


def test_error_types_are_the_providers_table_inverted() -> None:
    assert error_type(400) == "invalid_request_error" and error_type(401) == "authentication_error"
    assert error_type(404) == "not_found_error" and error_type(413) == "request_too_large"
    assert error_type(429) == "rate_limit_error" and error_type(529) == "overloaded_error"
    assert error_type(502) == "api_error" and error_type(504) == "timeout_error"
    assert error_type(405) == "invalid_request_error"
