"""OpenAI's Responses API family, both ways (:mod:`msgflux.formats.openai_responses`): its
requests into canonical ones (Codex CLI's shape first, and what the policy drops or refuses),
canonical bodies, answers and chunks into Responses bodies, ``response`` objects and SSE
events (checked against the official SDK's types), the native lane's relay, the family's
errors; then round trips, checked on generated requests, answers and streams."""

from __future__ import annotations

from typing import Any

import orjson
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.responses import Response, ResponseStreamEvent

from msgflux._secrets import register
from msgflux.exceptions import (
    APIResponseValidationError,
    ContentPolicyError,
    ContextWindowExceededError,
    InternalServerError,
    RateLimitError,
    UnsupportedFeatureError,
)
from msgflux.formats import RESPONSES, family
from msgflux.formats.openai_responses import (
    FAMILY,
    ResponseEvents,
    ResponsesRelay,
    ResponseStreamEvents,
    error_event,
    expand,
    input_items,
    output_items,
    responses_usage,
    to_canonical,
    to_completion,
    to_response,
    to_responses,
)
from msgflux.formats.policy import DROP, Translation
from msgflux.models.request import CHAT, from_openai

WHO = ("openai", "gpt-5")
EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)
SHELL = {
    "type": "function",
    "name": "shell",
    "description": "Runs a shell command.",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {"command": {"type": "array", "items": {"type": "string"}}},
        "required": ["command"],
    },
}
GITHUB = {
    "type": "namespace",
    "name": "mcp__github",
    "description": "The GitHub MCP server.",
    "tools": [
        {
            "type": "function",
            "name": "create_issue",
            "description": "Opens an issue.",
            "parameters": {"type": "object", "properties": {"title": {"type": "string"}}},
        }
    ],
}


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "gw", "input": "Hi", **fields}


def decode(payload: Any, ctx: Translation | None = None) -> dict[str, Any]:
    """The canonical body of ``payload``, checked as the gateway checks it."""
    out = to_canonical(payload, ctx or Translation())
    assert out.pop("model") == "gw"
    from_openai(CHAT, out)
    return out


def dropped(payload: Any, overrides: dict[str, str] | None = None) -> list[str]:
    ctx = Translation(overrides)
    decode(payload, ctx)
    return ctx.dropped


def message(role: str, *texts: str, kind: str = "input_text") -> dict[str, Any]:
    parts = [{"type": kind, "text": text} for text in texts]
    return {"type": "message", "role": role, "content": parts}


def text(value: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": value}]


def fcall(call_id: str, name: str, arguments: str = "{}", **extra: Any) -> dict[str, Any]:
    return {
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        **extra,
    }


def fout(call_id: str, output: Any) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": output}


def tool_call(ident: str, name: str, arguments: str = "{}") -> dict[str, Any]:
    return {"id": ident, "type": "function", "function": {"name": name, "arguments": arguments}}


# -- requests: Responses -> canonical ------------------------------------------------------------
def test_a_plain_request() -> None:
    assert decode(body()) == {"messages": [{"role": "user", "content": "Hi"}]}


def test_a_stream_asks_for_usage() -> None:
    out = to_canonical(body(stream=True), Translation())
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}
    assert from_openai(CHAT, out).stream


def test_codex_clis_request() -> None:
    """The shape Codex CLI sends: instructions, developer messages, function tools, a
    namespace of MCP functions, web search, reasoning summaries, encrypted reasoning asked
    for and not stored, a cache key, client metadata; a later turn's input holds the
    encrypted reasoning of the turn before and a message's phase."""
    payload = {
        "model": "gw",
        "instructions": "You are Codex.",
        "input": [
            message("developer", "<permissions>workspace-write</permissions>"),
            message("user", "<environment_context>cwd=/src</environment_context>"),
            message("user", "List the files."),
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "**Listing files**"}],
                "encrypted_content": "gAAAAB...",
            },
            fcall("call_1", "shell", '{"command":["ls"]}', id="fc_1", status="completed"),
            fout("call_1", "a.txt\nb.txt"),
            {
                "type": "message",
                "role": "assistant",
                "id": "msg_1",
                "status": "completed",
                "phase": "final_answer",
                "content": [{"type": "output_text", "text": "Two files.", "annotations": []}],
            },
            message("user", "Open an issue about it."),
        ],
        "tools": [SHELL, GITHUB, {"type": "web_search", "external_web_access": False}],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "0199-conversation",
        "client_metadata": {"x-codex-turn": "2"},
    }
    ctx = Translation()
    out = decode(payload, ctx)
    assert out == {
        "messages": [
            {"role": "system", "content": "You are Codex."},
            {"role": "system", "content": text("<permissions>workspace-write</permissions>")},
            {
                "role": "user",
                "content": text("<environment_context>cwd=/src</environment_context>"),
            },
            {"role": "user", "content": text("List the files.")},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [tool_call("call_1", "shell", '{"command":["ls"]}')],
                "reasoning_content": "**Listing files**",
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "a.txt\nb.txt"},
            {"role": "assistant", "content": "Two files."},
            {"role": "user", "content": text("Open an issue about it.")},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "shell",
                    "description": "Runs a shell command.",
                    "parameters": SHELL["parameters"],
                    "strict": False,
                },
            },
            {
                "type": "function",
                "function": {
                    "name": "mcp__github__create_issue",
                    "description": "Opens an issue.",
                    "parameters": GITHUB["tools"][0]["parameters"],  # type: ignore[index]
                },
            },
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning_effort": "medium",
        "prompt_cache_key": "0199-conversation",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert ctx.dropped == [
        "encrypted_content",
        "phase",
        "client_metadata",
        "tools.1.description",
        "web_search",
        "reasoning.summary",
        "include",
    ]


def test_instructions_and_developer_turns_stay_where_they_are() -> None:
    payload = body(
        instructions="Be brief.",
        input=[
            {"role": "user", "content": "Hi"},
            {"role": "developer", "content": "Answer in French."},
            {"role": "system", "content": [{"type": "input_text", "text": "No lists."}]},
            {"role": "assistant", "content": "Bonjour."},
        ],
    )
    assert decode(payload)["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "system", "content": "Answer in French."},
        {"role": "system", "content": text("No lists.")},
        {"role": "assistant", "content": "Bonjour."},
    ]


def test_user_parts_and_tool_results() -> None:
    png = "data:image/png;base64,iVBORw0KGgo="
    pdf = "data:application/pdf;base64,JVBERi0="
    payload = body(
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Look"},
                    {"type": "input_image", "image_url": png, "detail": "auto"},
                    {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "low"},
                    {"type": "input_image", "image_url": png, "detail": "original"},
                    {"type": "input_file", "file_data": pdf, "filename": "a.pdf"},
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                ],
            },
            fcall("c1", "see"),
            fout(
                "c1",
                [{"type": "input_text", "text": "seen"}, {"type": "input_image", "image_url": png}],
            ),
        ]
    )
    user, call, result = decode(payload)["messages"]
    assert user["content"] == [
        {"type": "text", "text": "Look"},
        {"type": "image_url", "image_url": {"url": png}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": png, "detail": "high"}},
        {"type": "file", "file": {"file_data": pdf, "filename": "a.pdf"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
    ]
    assert call == {"role": "assistant", "content": None, "tool_calls": [tool_call("c1", "see")]}
    assert result == {
        "role": "tool",
        "tool_call_id": "c1",
        "content": [
            {"type": "text", "text": "seen"},
            {"type": "image_url", "image_url": {"url": png}},
        ],
    }


def test_consecutive_calls_are_one_assistant_turn() -> None:
    payload = body(
        input=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [
                    {"type": "summary_text", "text": "Two cities."},
                    {"type": "summary_text", "text": "Two calls."},
                ],
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": "Checking"},
                    {"type": "output_text", "text": "..."},
                ],
            },
            fcall("c1", "weather", '{"city":"Paris"}'),
            fcall("c2", "create_issue", "{}", namespace="mcp__github"),
            fout("c1", "sunny"),
            fout("c2", "opened"),
            fcall("c3", "weather", '{"city":"Oslo"}'),
            {
                "type": "message",
                "role": "assistant",
                "content": [
                    {"type": "refusal", "refusal": "No more."},
                ],
            },
        ]
    )
    messages = decode(payload)["messages"]
    assert messages[1:] == [
        {
            "role": "assistant",
            "content": "Checking...",
            "reasoning_content": "Two cities.\n\nTwo calls.",
            "tool_calls": [
                tool_call("c1", "weather", '{"city":"Paris"}'),
                tool_call("c2", "mcp__github__create_issue"),
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "opened"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [tool_call("c3", "weather", '{"city":"Oslo"}')],
        },
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "No more."}]},
    ]


def test_encrypted_reasoning_of_an_earlier_turn_is_dropped_and_named() -> None:
    encrypted = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"}
    payload = body(input=[{"role": "user", "content": "Hi"}, encrypted, fcall("c1", "f")])
    ctx = Translation()
    assert decode(payload, ctx)["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [tool_call("c1", "f")],
    }
    assert ctx.dropped == ["encrypted_content"]
    summary = {**encrypted, "summary": [{"type": "summary_text", "text": "Hm."}]}
    last = body(input=[{"role": "user", "content": "Hi"}, summary])
    assert dropped(last) == ["encrypted_content", "reasoning"]  # no output for it to lead to


def test_hosted_tools_are_dropped_unless_forced() -> None:
    hosted = [
        {"type": "web_search_preview"},
        {"type": "file_search", "vector_store_ids": ["vs_1"]},
        {"type": "code_interpreter", "container": {"type": "auto"}},
        {"type": "image_generation"},
        {"type": "mcp", "server_label": "x", "server_url": "https://x.test"},
        {"type": "local_shell"},
    ]
    payload = body(tools=[SHELL, *hosted], max_tool_calls=3)
    assert decode(payload)["tools"] == [decode(body(tools=[SHELL]))["tools"][0]]
    assert dropped(payload) == [
        "max_tool_calls",
        "web_search_preview",
        "file_search",
        "code_interpreter",
        "image_generation",
        "mcp",
        "local_shell",
    ]
    only = body(tools=hosted[:1])
    assert "tools" not in decode(only) and "tool_choice" not in decode(only)
    forced = body(tools=[SHELL, {"type": "web_search_preview_2025_03_11"}])
    forced["tool_choice"] = {"type": "web_search_preview"}
    with pytest.raises(UnsupportedFeatureError, match="run the hosted tool"):
        decode(forced)
    assert dropped(forced, {"tool_choice": DROP}) == ["tools.1", "tool_choice"]
    with pytest.raises(UnsupportedFeatureError, match=r"take the Responses API's web_search$"):
        decode(body(tools=[{"type": "web_search"}]), Translation({"hosted_tools": "refuse"}))


def test_hosted_tool_calls_in_the_conversation_are_dropped() -> None:
    payload = body(
        input=[
            {"role": "user", "content": "News?"},
            {
                "type": "web_search_call",
                "id": "ws_1",
                "status": "completed",
                "action": {"type": "search", "query": "news"},
            },
            {"role": "assistant", "content": "Here is the news."},
        ]
    )
    ctx = Translation()
    assert [m["role"] for m in decode(payload, ctx)["messages"]] == ["user", "assistant"]
    assert ctx.dropped == ["web_search_call"]


def test_custom_tools_and_their_calls_refuse_by_default() -> None:
    patch = {"type": "custom", "name": "apply_patch", "format": {"type": "text"}}
    with pytest.raises(UnsupportedFeatureError, match="custom"):
        decode(body(tools=[SHELL, patch]))
    assert dropped(body(tools=[SHELL, patch]), {"builtin_tools": DROP}) == ["tools.1"]
    call = {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "***"}
    with pytest.raises(UnsupportedFeatureError, match="custom_tool_call"):
        decode(body(input=[{"role": "user", "content": "Fix it"}, call]))


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        (
            {"type": "function", "name": "shell"},
            {"type": "function", "function": {"name": "shell"}},
        ),
        (
            {"type": "function", "name": "create_issue", "namespace": "mcp__github"},
            {"type": "function", "function": {"name": "mcp__github__create_issue"}},
        ),
    ],
)
def test_tool_choice(choice: Any, expected: Any) -> None:
    assert decode(body(tools=[SHELL, GITHUB], tool_choice=choice))["tool_choice"] == expected


def test_allowed_tools_are_the_tools_the_model_gets() -> None:
    choice = {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [{"type": "namespace", "name": "mcp__github"}, {"type": "web_search"}],
    }
    out = decode(body(tools=[SHELL, GITHUB], tool_choice=choice))
    assert [t["function"]["name"] for t in out["tools"]] == ["mcp__github__create_issue"]
    assert out["tool_choice"] == "required"
    auto = {**choice, "mode": "auto", "tools": [{"type": "function", "name": "shell"}]}
    out = decode(body(tools=[SHELL, GITHUB], tool_choice=auto))
    assert [t["function"]["name"] for t in out["tools"]] == ["shell"]
    hosted_only = {**choice, "tools": [{"type": "web_search"}]}
    with pytest.raises(UnsupportedFeatureError, match="call a tool when it has none"):
        decode(body(tools=[SHELL, {"type": "web_search"}], tool_choice=hosted_only))


def test_text_format_verbosity_and_reasoning() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    fmt = {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}
    out = decode(body(text={"format": fmt, "verbosity": "low"}, reasoning={"effort": "high"}))
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "strict": True},
    }
    assert out["verbosity"] == "low" and out["reasoning_effort"] == "high"
    assert decode(body(text={"format": {"type": "json_object"}}))["response_format"] == {
        "type": "json_object"
    }
    assert "response_format" not in decode(body(text={"format": {"type": "text"}}))


def test_sampling_limits_and_who_asks() -> None:
    out = decode(
        body(
            max_output_tokens=256,
            temperature=1.5,
            top_p=0.9,
            safety_identifier="u-1",
            service_tier="flex",
            store=False,
            truncation="disabled",
            background=False,
            metadata={},
            include=[],
        )
    )
    assert out == {
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 256,
        "temperature": 1.5,
        "top_p": 0.9,
        "user": "u-1",
        "service_tier": "flex",
    }
    assert decode(body(user="a", safety_identifier="b"))["user"] == "a"


def test_hints_with_no_canonical_form_are_dropped_and_named() -> None:
    payload = body(
        metadata={"run": "1"},
        store=True,
        truncation="auto",
        include=["web_search_call.action.sources"],
        stream_options={"include_obfuscation": False},
        prompt_cache_retention="24h",
        reasoning={"effort": "low", "summary": "detailed", "context": "all_turns"},
        context_management=[{"type": "compaction"}],
        tools=[{**SHELL, "defer_loading": True, "output_schema": {"type": "string"}}],
        x_vendor=1,
    )
    assert dropped(payload) == [
        "metadata",
        "stream_options",
        "prompt_cache_retention",
        "context_management",
        "x_vendor",
        "tools.0.defer_loading",
        "tools.0.output_schema",
        "reasoning.summary",
        "reasoning.context",
        "store",
        "include",
        "truncation",
    ]


@pytest.mark.parametrize(
    ("fields", "what"),
    [
        ({"background": True}, "background mode"),
        ({"top_logprobs": 3}, "return logprobs"),
        ({"include": ["message.output_text.logprobs"]}, "return logprobs"),
        ({"tools": [SHELL], "tool_choice": {"type": "custom", "name": "x"}}, "force the 'custom'"),
        (
            {"tools": [SHELL], "tool_choice": {"type": "mcp", "server_label": "x"}},
            "force the hosted",
        ),
    ],
)
def test_what_would_change_the_answer_refuses(fields: dict[str, Any], what: str) -> None:
    with pytest.raises(UnsupportedFeatureError, match=what):
        decode(body(**fields))


def test_stored_things_need_their_store() -> None:
    for field in ("previous_response_id", "conversation"):
        with pytest.raises(ValueError, match=f"^{field}: .*needs the response store"):
            decode(body(**{field: "resp_1"}))
    with pytest.raises(
        ValueError, match=r"^input\.1\.type: 'item_reference' needs the response store"
    ):
        decode(
            body(
                input=[{"role": "user", "content": "Hi"}, {"type": "item_reference", "id": "msg_1"}]
            )
        )


@pytest.mark.parametrize(
    ("payload", "start"),
    [
        ([], "body: must be an object"),
        ({"input": "Hi"}, "model: must be a string"),
        ({"model": "gw"}, "input: is required"),
        (body(input=7), "input: must be a string or an array"),
        (body(input=[7]), "input.0: must be an object"),
        (
            body(input=[{"type": "message", "role": "tool", "content": "x"}]),
            "input.0.role: must be one of",
        ),
        (
            body(input=[{"role": "user", "content": [{"type": "output_text", "text": "x"}]}]),
            "input.0.content.0.type: must be one of",
        ),
        (
            body(input=[{"role": "user", "content": []}]),
            "input.0.content: must be a string or a non-empty array",
        ),
        (
            body(input=[{"role": "assistant", "content": [{"type": "input_image"}]}]),
            "input.0.content.0.type: must be 'output_text' or 'refusal'",
        ),
        (
            body(
                input=[{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]
            ),
            "input.0.content.0.file_id: a file of OpenAI's Files API",
        ),
        (
            body(
                input=[
                    {
                        "role": "user",
                        "content": [{"type": "input_file", "file_url": "https://x.test/a.pdf"}],
                    }
                ]
            ),
            "input.0.content.0.file_url: a file by URL",
        ),
        (
            body(
                input=[
                    {"role": "user", "content": [{"type": "input_file", "file_data": "JVBERi0="}]}
                ]
            ),
            "input.0.content.0.file_data: must be a base64 data URL",
        ),
        (
            body(
                input=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_image", "image_url": "https://x", "detail": "max"}
                        ],
                    }
                ]
            ),
            "input.0.content.0.detail: must be one of",
        ),
        (
            body(input=[{"type": "function_call", "name": "f", "arguments": "{}"}]),
            "input.0.call_id: must be a string",
        ),
        (
            body(input=[{"type": "function_call_output", "call_id": "c", "output": 3}]),
            "input.0.output: must be a string or a non-empty array",
        ),
        (
            body(input=[{"type": "reasoning", "summary": [{"type": "text", "text": "x"}]}]),
            "input.0.summary.0.type: must be one of 'summary_text'",
        ),
        (
            body(input=[{"type": "compaction", "encrypted_content": "x"}]),
            "input.0.type: 'compaction'",
        ),
        (
            body(input=[{"type": "telepathy"}]),
            "input.0.type: must be one of 'message', 'function_call'",
        ),
        (body(instructions=3), "instructions: must be a string"),
        (body(tools={}), "tools: must be an array"),
        (body(tools=[{"type": "function"}]), "tools.0.name: must be a string"),
        (
            body(tools=[{"type": "function", "name": "f", "parameters": []}]),
            "tools.0.parameters: must be an object",
        ),
        (
            body(tools=[{"type": "namespace", "name": "ns", "tools": [{"type": "mcp"}]}]),
            "tools.0.tools.0.type: must be one of 'function', 'custom'",
        ),
        (body(tools=[{"name": "f"}]), "tools.0.type: must name the tool type"),
        (
            body(tools=[SHELL], tool_choice="any"),
            "tool_choice: must be one of 'auto', 'none', 'required'",
        ),
        (
            body(tools=[SHELL], tool_choice={"type": "function", "name": "nope"}),
            "tool_choice.name: names no function of tools",
        ),
        (
            body(tools=[SHELL], tool_choice={"type": "allowed_tools", "mode": "any", "tools": []}),
            "tool_choice.mode: must be one of",
        ),
        (body(text={"format": {"type": "xml"}}), "text.format.type: must be one of"),
        (
            body(text={"format": {"type": "json_schema", "name": "a"}}),
            "text.format.schema: must be an object",
        ),
        (body(text={"verbosity": "loud"}), "text.verbosity: must be one of"),
        (body(reasoning={"effort": "max"}), "reasoning.effort: must be one of"),
        (body(max_output_tokens=0), "max_output_tokens: must be an integer >= 1"),
        (body(temperature=3), "temperature: must be a number between 0 and 2"),
        (body(top_p=-1), "top_p: must be a number between 0 and 1"),
        (body(stream="yes"), "stream: must be a boolean"),
        (body(parallel_tool_calls="no"), "parallel_tool_calls: must be a boolean"),
        (body(include="all"), "include: must be an array of strings"),
        (body(truncation="some"), "truncation: must be one of"),
        (body(prompt={"id": "pmpt_1"}), "prompt: a stored prompt template"),
    ],
)
def test_a_bad_field_is_named_by_its_path(payload: Any, start: str) -> None:
    with pytest.raises((ValueError, TypeError)) as info:
        to_canonical(payload, Translation())
    assert str(info.value).startswith(start), str(info.value)


# -- stored turns --------------------------------------------------------------------------------
def test_stored_turns_become_the_requests_own_input() -> None:
    first = {"model": "gw", "input": "Hi", "instructions": "Be brief."}
    answer = to_response(
        {"choices": [{"message": {"role": "assistant", "content": "Hello."}}]}, "gw", first
    )
    history = [*input_items(first), *output_items(answer)]
    assert history[0] == message("user", "Hi")
    assert history[1]["type"] == "message" and history[1]["role"] == "assistant"
    follow = {"model": "gw", "input": "And you?", "previous_response_id": answer["id"]}
    whole = expand(follow, history)
    assert "previous_response_id" not in whole and "instructions" not in whole
    assert whole["input"] == [*history, message("user", "And you?")]
    assert decode(whole)["messages"] == [
        {"role": "user", "content": text("Hi")},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": text("And you?")},
    ]


def test_input_items_are_normalised_messages() -> None:
    items = input_items(
        {
            "input": [
                {"role": "assistant", "content": "Yes."},
                {"role": "developer", "content": "Short."},
                fcall("c1", "f"),
            ]
        }
    )
    assert items == [
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Yes.", "annotations": []}],
        },
        message("developer", "Short."),
        fcall("c1", "f"),
    ]
    assert input_items({}) == [] and output_items({"output": None}) == []


# -- requests: canonical -> Responses ------------------------------------------------------------
def test_a_canonical_body_as_a_responses_body() -> None:
    png = "data:image/png;base64,iVBORw0KGgo="
    schema = {"type": "object", "properties": {}}
    chat = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {"type": "image_url", "image_url": {"url": png}},
                ],
            },
            {
                "role": "assistant",
                "content": "Calling.",
                "reasoning_content": "another vendor's",
                "tool_calls": [
                    tool_call("c1", "see", '{"a":1}'),
                    {"id": "c2", "type": "custom", "custom": {"name": "patch", "input": "***"}},
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "seen"},
            {"role": "tool", "tool_call_id": "c2", "content": "patched"},
            {"role": "developer", "content": "Now in French."},
            {"role": "assistant", "content": None, "refusal": "Non."},
        ],
        "tools": [
            {"type": "function", "function": {"name": "see", "parameters": schema}},
            {"type": "custom", "custom": {"name": "patch", "format": {"type": "text"}}},
        ],
        "tool_choice": {"type": "function", "function": {"name": "see"}},
        "parallel_tool_calls": False,
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
        "verbosity": "high",
        "reasoning_effort": "low",
        "max_completion_tokens": 100,
        "temperature": 0.5,
        "seed": 7,
        "user": "u",
        "prompt_cache_key": "k",
    }
    ctx = Translation()
    out = to_responses(chat, model_id="gpt-5", stream=True, ctx=ctx)
    assert out == {
        "model": "gpt-5",
        "instructions": "Be brief.",
        "input": [
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Look"},
                    {"type": "input_image", "image_url": png, "detail": "auto"},
                ],
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Calling."}],
            },
            {"type": "function_call", "call_id": "c1", "name": "see", "arguments": '{"a":1}'},
            {"type": "custom_tool_call", "call_id": "c2", "name": "patch", "input": "***"},
            {"type": "function_call_output", "call_id": "c1", "output": "seen"},
            {"type": "custom_tool_call_output", "call_id": "c2", "output": "patched"},
            {"type": "message", "role": "developer", "content": "Now in French."},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "refusal", "refusal": "Non."}],
            },
        ],
        "temperature": 0.5,
        "user": "u",
        "prompt_cache_key": "k",
        "store": False,
        "max_output_tokens": 100,
        "tools": [
            {"type": "function", "name": "see", "parameters": schema, "strict": False},
            {"type": "custom", "name": "patch", "format": {"type": "text"}},
        ],
        "tool_choice": {"type": "function", "name": "see"},
        "parallel_tool_calls": False,
        "text": {
            "format": {"type": "json_schema", "name": "a", "schema": schema},
            "verbosity": "high",
        },
        "reasoning": {"effort": "low"},
        "stream": True,
    }
    assert ctx.dropped == ["reasoning_content", "seed"]


def test_what_the_responses_api_cannot_take() -> None:
    ask = [{"role": "user", "content": "Hi"}]
    with pytest.raises(UnsupportedFeatureError, match="stop sequences"):
        to_responses(
            {"messages": ask, "stop": ["END"]}, model_id="m", stream=False, ctx=Translation()
        )
    with pytest.raises(UnsupportedFeatureError, match="n=2"):
        to_responses({"messages": ask, "n": 2}, model_id="m", stream=False, ctx=Translation())
    ctx = Translation()
    web = {"type": "web_search_20250305", "name": "web_search"}
    with pytest.raises(UnsupportedFeatureError):
        to_responses({"messages": ask, "tools": [web]}, model_id="m", stream=False, ctx=ctx)
    names = {
        "messages": ask,
        "tools": [{"type": "function", "function": {"name": "mcp__github__create_issue"}}],
    }
    out = to_responses(names, model_id="m", stream=False, ctx=Translation())
    assert out["tools"][0]["name"] == "mcp__github__create_issue"  # not split back
    assert out["input"] == [{"type": "message", "role": "user", "content": "Hi"}]


# -- answers -------------------------------------------------------------------------------------
def response_of(output: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    usage = {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 3},
        "total_tokens": 17,
    }
    out = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1700000000,
        "status": "completed",
        "model": "gpt-5",
        "output": output,
        "usage": usage,
        **fields,
    }
    return out


def test_a_response_as_a_canonical_completion() -> None:
    payload = response_of(
        [
            {
                "id": "rs_1",
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "Hm."}],
                "encrypted_content": "x",
            },
            {
                "id": "msg_1",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": "Hel", "annotations": []},
                    {"type": "output_text", "text": "lo", "annotations": []},
                    {"type": "refusal", "refusal": "But no."},
                ],
            },
            {
                "id": "fc_1",
                "type": "function_call",
                "call_id": "c1",
                "name": "create_issue",
                "namespace": "mcp__github",
                "arguments": "{}",
            },
            {"id": "ws_1", "type": "web_search_call", "status": "completed"},
        ]
    )
    assert to_completion(payload, WHO) == {
        "id": "resp_1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-5",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello",
                    "refusal": "But no.",
                    "tool_calls": [tool_call("c1", "mcp__github__create_issue")],
                    "reasoning_content": "Hm.",
                },
                "finish_reason": "tool_calls",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 7,
            "total_tokens": 17,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 3},
        },
    }


def test_unfinished_and_failed_responses() -> None:
    done = [
        {"id": "m", "type": "message", "role": "assistant", "status": "completed", "content": []}
    ]
    incomplete = response_of(
        done, status="incomplete", incomplete_details={"reason": "max_output_tokens"}
    )
    assert to_completion(incomplete, WHO)["choices"][0]["finish_reason"] == "length"
    filtered = {**incomplete, "incomplete_details": {"reason": "content_filter"}}
    with pytest.raises(ContentPolicyError):
        to_completion(filtered, WHO)
    failed = response_of(
        [], status="failed", error={"code": "rate_limit_exceeded", "message": "slow down"}
    )
    with pytest.raises(RateLimitError, match="slow down"):
        to_completion(failed, WHO)
    with pytest.raises(APIResponseValidationError, match="not finished"):
        to_completion(response_of([], status="in_progress"), WHO)
    with pytest.raises(APIResponseValidationError):
        to_completion({"output": "x"}, WHO)


def test_a_completion_as_a_response_object() -> None:
    completion = {
        "id": "chatcmpl-1",
        "created": 1700000000,
        "model": "claude",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Opening it.",
                    "reasoning_content": "An issue.",
                    "tool_calls": [
                        tool_call("c1", "mcp__github__create_issue", '{"title":"x"}'),
                        tool_call("c2", "mcp__gitlab__create_issue"),
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 5,
            "total_tokens": 17,
            "prompt_tokens_details": {"cached_tokens": 2},
            "cache_creation_input_tokens": 6,
        },
    }
    request = {
        "model": "gw",
        "input": "Hi",
        "tools": [SHELL, GITHUB, {"type": "web_search"}],
        "store": False,
        "reasoning": {"effort": "low", "summary": "auto"},
    }
    out = to_response(completion, "gw", request)
    Response.model_validate(out)
    assert out["id"].startswith("resp_") and len(out["id"]) > 20
    assert out["object"] == "response" and out["status"] == "completed" and out["model"] == "gw"
    reasoning, msg, first, second = out["output"]
    assert reasoning["type"] == "reasoning" and reasoning["summary"] == [
        {"type": "summary_text", "text": "An issue."}
    ]
    assert msg["content"] == [
        {"type": "output_text", "text": "Opening it.", "annotations": [], "logprobs": []}
    ]
    assert msg["id"].startswith("msg_") and msg["status"] == "completed"
    assert (first["name"], first["namespace"], first["call_id"], first["arguments"]) == (
        "create_issue",
        "mcp__github",
        "c1",
        '{"title":"x"}',
    )
    assert first["id"].startswith("fc_") and first["status"] == "completed"
    assert second["name"] == "mcp__gitlab__create_issue" and "namespace" not in second
    assert out["usage"] == {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 2, "cache_write_tokens": 6},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 17,
    }
    assert out["tools"] == request["tools"] and out["store"] is False
    assert out["reasoning"] == request["reasoning"] and out["error"] is None
    assert out["tool_choice"] == "auto" and out["parallel_tool_calls"] is True


def test_a_bare_completion_as_a_response_object() -> None:
    bare = {
        "choices": [{"message": {"role": "assistant", "content": None}, "finish_reason": "length"}]
    }
    out = to_response(bare, "gw")
    Response.model_validate(out)
    assert out["status"] == "incomplete" and out["incomplete_details"] == {
        "reason": "max_output_tokens"
    }
    assert out["output"][0]["content"] == [
        {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    ]
    assert out["usage"]["total_tokens"] == 0 and out["tools"] == [] and out["metadata"] == {}
    assert "output_text" not in out  # the SDK's convenience property, not a field
    refused = {"choices": [{"message": {"role": "assistant", "content": None, "refusal": "No."}}]}
    [item] = to_response(refused, "gw")["output"]
    assert item["content"] == [{"type": "refusal", "refusal": "No."}]
    with pytest.raises(ValueError, match="no choices"):
        to_response({"choices": []}, "gw")


def test_usage_is_one_mapping_both_ways() -> None:
    usage = response_of([])["usage"]
    assert responses_usage(to_completion(response_of([]), WHO)["usage"]) == usage
    assert responses_usage(None) == {
        "input_tokens": 0,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 0,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 0,
    }


# -- streams: canonical chunks -> Responses events -----------------------------------------------
def chunk_of(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"id": "r1", "object": "chat.completion.chunk", "model": "m", "choices": [choice]}


USAGE = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
USAGE_CHUNK = {"id": "r1", "choices": [], "usage": USAGE}


def sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """The events of ``raw``, each checked: framed as the API frames them, its name its type,
    numbered in order, and valid as the official SDK reads it."""
    assert raw.endswith(b"\n\n")
    out = []
    for frame in raw[:-2].split(b"\n\n"):
        head, data = frame.split(b"\n")
        assert head.startswith(b"event: ") and data.startswith(b"data: ")
        name, payload = head[7:].decode(), orjson.loads(data[6:])
        assert payload["type"] == name and payload["sequence_number"] == len(out)
        EVENTS.validate_python(payload)
        out.append((name, payload))
    return out


def written(
    stream: ResponseEvents, chunks: list[dict[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    return sse(b"".join(stream.feed(c) for c in chunks) + stream.end())


def test_a_text_stream() -> None:
    events = written(
        ResponseEvents("gw"),
        [
            chunk_of({"role": "assistant", "content": ""}),
            chunk_of({"content": "Hel"}),
            chunk_of({"content": "lo"}),
            chunk_of({}, "stop"),
            USAGE_CHUNK,
        ],
    )
    assert [name for name, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    created = events[0][1]["response"]
    assert (
        created["status"] == "in_progress" and created["output"] == [] and created["model"] == "gw"
    )
    item_id = events[2][1]["item"]["id"]
    assert events[4][1] == {
        "type": "response.output_text.delta",
        "sequence_number": 4,
        "item_id": item_id,
        "output_index": 0,
        "content_index": 0,
        "delta": "Hel",
        "logprobs": [],
    }
    assert events[6][1]["text"] == "Hello"
    final = events[-1][1]["response"]
    Response.model_validate(final)
    assert final["id"] == created["id"] and final["status"] == "completed"
    assert final["output"] == [events[8][1]["item"]]
    assert final["output"][0]["content"][0]["text"] == "Hello"
    assert final["usage"]["input_tokens"] == 3 and final["usage"]["output_tokens"] == 4


def test_reasoning_text_and_namespaced_calls() -> None:
    chunks = [
        chunk_of({"role": "assistant", "content": ""}),
        chunk_of({"reasoning_content": "Think"}),
        chunk_of({"reasoning_content": "ing."}),
        chunk_of({"content": "On it."}),
        chunk_of(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "mcp__github__create_issue", "arguments": ""},
                    }
                ]
            }
        ),
        chunk_of({"tool_calls": [{"index": 0, "function": {"arguments": '{"title"'}}]}),
        chunk_of({"tool_calls": [{"index": 0, "function": {"arguments": ':"x"}'}}]}),
        chunk_of(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "shell", "arguments": "{}"},
                    }
                ]
            }
        ),
        chunk_of({}, "tool_calls"),
        USAGE_CHUNK,
    ]
    events = written(ResponseEvents("gw", {"tools": [SHELL, GITHUB]}), chunks)
    final = events[-1][1]["response"]
    Response.model_validate(final)
    reasoning, msg, issue, shell = final["output"]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Thinking."}]
    assert msg["content"][0]["text"] == "On it."
    assert (issue["name"], issue["namespace"], issue["arguments"]) == (
        "create_issue",
        "mcp__github",
        '{"title":"x"}',
    )
    assert (shell["name"], shell["arguments"], shell["call_id"]) == ("shell", "{}", "c2")
    added = [d["item"] for n, d in events if n == "response.output_item.added"]
    assert added[2]["namespace"] == "mcp__github" and added[2]["arguments"] == ""
    assert [d["output_index"] for n, d in events if n == "response.output_item.done"] == [
        0,
        1,
        2,
        3,
    ]
    names = [n for n, _ in events]
    assert names.count("response.reasoning_summary_text.delta") == 2
    assert names.count("response.function_call_arguments.delta") == 3


def test_a_refusal_and_a_length_finish() -> None:
    events = written(
        ResponseEvents("gw"),
        [chunk_of({"content": "Well"}), chunk_of({"refusal": "no"}), chunk_of({}, "length")],
    )
    names = [n for n, _ in events]
    assert "response.refusal.delta" in names and "response.refusal.done" in names
    assert names[-1] == "response.incomplete"
    final = events[-1][1]["response"]
    assert final["status"] == "incomplete" and final["incomplete_details"] == {
        "reason": "max_output_tokens"
    }
    assert final["output"][0]["content"] == [
        {"type": "output_text", "text": "Well", "annotations": [], "logprobs": []},
        {"type": "refusal", "refusal": "no"},
    ]


def test_an_empty_stream_is_still_a_whole_response() -> None:
    events = sse(ResponseEvents("gw").end())
    assert [n for n, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.completed",
    ]


def test_interleaved_call_arguments_are_refused() -> None:
    stream = ResponseEvents("gw")
    stream.feed(chunk_of({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f"}}]}))
    stream.feed(chunk_of({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g"}}]}))
    with pytest.raises(ValueError, match="interleaved"):
        stream.feed(chunk_of({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}))


def test_a_broken_stream_ends_with_response_failed() -> None:
    register("sk-secret-key-that-leaks-0001")
    stream = ResponseEvents("gw")
    head = stream.feed(chunk_of({"content": "Hi"}))
    tail = stream.error(InternalServerError("upstream said sk-secret-key-that-leaks-0001"))
    events = sse(head + tail)
    name, data = events[-1]
    assert name == "response.failed"
    Response.model_validate(data["response"])
    error = data["response"]["error"]
    assert error["code"] == "server_error" and "InternalServerError" in error["message"]
    assert "sk-secret-key-that-leaks-0001" not in (head + tail).decode()


# -- streams: Responses events -> canonical chunks -----------------------------------------------
def read(events: list[tuple[str | None, Any]]) -> list[dict[str, Any]]:
    decoder = ResponseStreamEvents(WHO)
    out: list[dict[str, Any]] = []
    for name, data in events:
        out += [c for c, _ in decoder.feed(name, orjson.dumps(data))]
    return out + decoder.end()


def deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in chunks if c["choices"]]


def test_arguments_and_text_sent_whole_in_done_events() -> None:
    call = {"id": "fc_1", "type": "function_call", "call_id": "c1", "name": "f", "arguments": ""}
    done = {**call, "arguments": '{"a":1}', "status": "completed"}
    chunks = read(
        [
            (
                "response.created",
                {"type": "response.created", "response": {"id": "resp_9", "model": "gpt-5"}},
            ),
            (None, {"type": "response.output_text.done", "output_index": 0, "text": "Hi"}),
            (
                "response.output_item.added",
                {"type": "response.output_item.added", "output_index": 1, "item": call},
            ),
            (
                "response.output_item.done",
                {"type": "response.output_item.done", "output_index": 1, "item": done},
            ),
            ("response.completed", {"type": "response.completed", "response": response_of([done])}),
        ]
    )
    assert deltas(chunks) == [
        {"role": "assistant", "content": ""},
        {"content": "Hi"},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "f", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"a":1}'}}]},
        {},
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["prompt_tokens"] == 10 and chunks[0]["id"] == "resp_9"


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (
            {"type": "error", "code": "rate_limit_exceeded", "message": "slow", "param": None},
            RateLimitError,
        ),
        (
            {"type": "error", "code": "context_length_exceeded", "message": "too long"},
            ContextWindowExceededError,
        ),
        ({"type": "error", "code": "server_error", "message": "oops"}, InternalServerError),
        (
            {
                "type": "response.failed",
                "response": response_of(
                    [], status="failed", error={"code": "bio_policy", "message": "no"}
                ),
            },
            ContentPolicyError,
        ),
        (
            {
                "type": "response.incomplete",
                "response": response_of(
                    [], status="incomplete", incomplete_details={"reason": "content_filter"}
                ),
            },
            ContentPolicyError,
        ),
    ],
)
def test_an_error_in_the_stream_is_its_typed_error(
    event: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        read([(event["type"], event)])


# -- the native lane's relay ---------------------------------------------------------------------
def native(chunks: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    stream = ResponseEvents("gpt-5")
    raw = b"".join(stream.feed(c) for c in chunks) + stream.end()
    return [(n, orjson.dumps(d)) for n, d in sse(raw)]


def test_the_relay_reads_content_usage_and_the_end() -> None:
    events = native(
        [
            chunk_of({"reasoning_content": "Hm"}),
            chunk_of({"content": "Hi"}),
            chunk_of(
                {
                    "tool_calls": [
                        {"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}
                    ]
                }
            ),
            chunk_of({}, "tool_calls"),
            {**USAGE_CHUNK, "usage": {**USAGE, "prompt_tokens_details": {"cached_tokens": 1}}},
        ]
    )
    relay = ResponsesRelay(WHO)
    relay.texts = []
    content = {}
    for name, data in events:
        out, has = relay.feed(name, data)
        assert out == data
        content[name] = content.get(name, False) or has
    assert (
        content["response.output_text.delta"] and content["response.reasoning_summary_text.delta"]
    )
    assert content["response.output_item.added"]  # the call
    assert not content["response.content_part.added"] and not content["response.created"]
    assert relay.done and relay.finish_reason == "tool_calls" and relay.texts == ["Hi"]
    assert relay.usage is not None and relay.usage["prompt_tokens"] == 3
    assert relay.usage["prompt_tokens_details"] == {"cached_tokens": 1}


def test_the_relay_renames_the_model_in_response_events_only() -> None:
    events = native([chunk_of({"content": "Hi"}), chunk_of({}, "length")])
    relay = ResponsesRelay(WHO)
    relay.model = "gw"
    out = [relay.feed(name, data)[0] for name, data in events]
    for (_, data), sent in zip(events, out, strict=True):
        parsed = orjson.loads(sent or b"")
        if "response" in parsed:
            assert parsed["response"]["model"] == "gw"
        else:
            assert sent == data
    assert relay.finish_reason == "length"
    assert (
        orjson.loads(relay.renamed("response.created", events[0][1], "x"))["response"]["model"]
        == "x"
    )
    nested = {
        "type": "response.completed",
        "response": {"model": "gpt-5", "metadata": {"model": "gpt-5"}},
    }
    renamed = orjson.loads(relay.renamed(None, orjson.dumps(nested), "x"))
    assert renamed["response"] == {"model": "x", "metadata": {"model": "gpt-5"}}
    assert relay.text_of("response.output_text.delta", events[4][1]) == "Hi"


def test_the_relay_raises_in_stream_errors() -> None:
    relay = ResponsesRelay(WHO)
    with pytest.raises(RateLimitError):
        relay.feed(
            "error", orjson.dumps({"type": "error", "code": "rate_limit_exceeded", "message": "x"})
        )
    failed = {
        "type": "response.failed",
        "response": response_of(
            [], status="failed", error={"code": "server_error", "message": "x"}
        ),
    }
    with pytest.raises(InternalServerError):
        ResponsesRelay(WHO).feed(None, orjson.dumps(failed))


# -- the family ----------------------------------------------------------------------------------
def test_the_family_is_registered_under_its_name() -> None:
    assert family(RESPONSES) is FAMILY and FAMILY.name == "responses"


def test_the_family_reads_native_answers() -> None:
    answer = response_of(
        [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}]
    )
    usage, finish = FAMILY.read_answer(answer, WHO)
    assert finish == "tool_calls" and usage is not None and usage["total_tokens"] == 17
    assert FAMILY.read_answer(response_of([], status="incomplete"), WHO)[1] == "length"
    with pytest.raises(RateLimitError):
        FAMILY.read_answer(
            response_of([], status="failed", error={"code": "rate_limit_exceeded", "message": "x"}),
            WHO,
        )
    with pytest.raises(APIResponseValidationError):
        FAMILY.read_answer([], WHO)
    assert FAMILY.native_body(body(stream=True)) == (body(stream=True), False)
    renamed = orjson.loads(FAMILY.renamed_answer(orjson.dumps(answer), "gw"))
    assert renamed["model"] == "gw"


def test_a_background_response_has_no_finish_yet() -> None:
    assert FAMILY.read_answer(response_of([], status="queued", usage=None), WHO) == (None, None)


def test_an_error_event_as_the_sdk_reads_it() -> None:
    register("sk-secret-key-that-leaks-0002")
    [(name, data)] = sse(error_event("no sk-secret-key-that-leaks-0002", "server_error"))
    assert name == "error" and data["code"] == "server_error" and data["message"] == "no ***"


def test_each_answer_echoes_defaults_of_its_own() -> None:
    bare = {"choices": [{"message": {"role": "assistant", "content": "Hi"}}]}
    first = to_response(bare, "gw")
    first["reasoning"]["effort"] = "high"
    assert to_response(bare, "gw")["reasoning"] == {"effort": None, "summary": None}


def test_the_familys_answers_streams_and_errors() -> None:
    completion = {
        "choices": [{"message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}]
    }
    assert FAMILY.answer(completion, "gw", body())["output"][0]["content"][0]["text"] == "Hi"
    assert isinstance(FAMILY.stream("gw", False, body()), ResponseEvents)
    assert isinstance(FAMILY.relay(WHO), ResponsesRelay)
    status, raw = FAMILY.error(429, "slow down")
    assert status == 429
    assert orjson.loads(raw) == {
        "error": {"message": "slow down", "type": "rate_limit_error", "param": None, "code": None}
    }
    assert FAMILY.to_canonical(body(), Translation())["messages"] == [
        {"role": "user", "content": "Hi"}
    ]


# -- round trips ---------------------------------------------------------------------------------
ROUND_TRIPS = settings(max_examples=50, deadline=None)

IDENT = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)
TEXT = st.text(max_size=12)
WORDS = TEXT.filter(bool)
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), TEXT)
ARGS = st.dictionaries(IDENT, SCALAR, max_size=3).map(lambda d: orjson.dumps(d).decode())
SCHEMA = st.dictionaries(
    IDENT, st.sampled_from(["string", "integer"]).map(lambda t: {"type": t}), max_size=3
).map(lambda p: {"type": "object", "properties": p})
IMAGE = st.builds(
    lambda url, detail: {"type": "input_image", "image_url": url, "detail": detail},
    st.sampled_from(["data:image/png;base64,iVBORw0KGgo=", "https://x.test/cat.png"]),
    st.sampled_from(["auto", "low", "high"]),
)
INPUT_TEXT = TEXT.map(lambda t: {"type": "input_text", "text": t})


@st.composite
def conversations(draw: st.DrawFn, names: list[str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    calls = 0
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["user", "system", "assistant", "calls"]))
        if kind == "user":
            parts = st.lists(st.one_of(INPUT_TEXT, IMAGE), min_size=1, max_size=3)
            items.append(
                {"type": "message", "role": "user", "content": draw(st.one_of(TEXT, parts))}
            )
        elif kind == "system":
            role = draw(st.sampled_from(["system", "developer"]))
            content = draw(st.one_of(TEXT, st.lists(INPUT_TEXT, min_size=1, max_size=2)))
            items.append({"type": "message", "role": role, "content": content})
        elif kind == "assistant":
            parts = [{"type": "output_text", "text": draw(WORDS)}]
            items.append({"type": "message", "role": "assistant", "content": parts})
        else:
            made = [f"call-{calls + k}" for k in range(draw(st.integers(1, 2)))]
            calls += len(made)
            items += [fcall(ident, draw(st.sampled_from(names)), draw(ARGS)) for ident in made]
            for ident in made:
                output = draw(st.one_of(TEXT, st.lists(INPUT_TEXT, min_size=1, max_size=2)))
                items.append(fout(ident, output))
    return items


@st.composite
def responses_bodies(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(IDENT, min_size=1, max_size=3, unique=True))
    out: dict[str, Any] = {"model": "gw", "input": draw(st.one_of(WORDS, conversations(names)))}
    if draw(st.booleans()):
        out["instructions"] = draw(WORDS)
    if draw(st.booleans()):
        tools = []
        for name in names:
            tool = {
                "type": "function",
                "name": name,
                "parameters": draw(SCHEMA),
                "strict": draw(st.booleans()),
            }
            if draw(st.booleans()):
                tool["description"] = draw(TEXT)
            tools.append(tool)
        out["tools"] = tools
        if draw(st.booleans()):
            choices = st.sampled_from(
                ["auto", "none", "required", {"type": "function", "name": names[0]}]
            )
            out["tool_choice"] = draw(choices)
        if draw(st.booleans()):
            out["parallel_tool_calls"] = draw(st.booleans())
    text: dict[str, Any] = {}
    if draw(st.booleans()):
        text["format"] = draw(
            st.one_of(
                st.just({"type": "json_object"}),
                SCHEMA.map(
                    lambda s: {"type": "json_schema", "name": "answer", "schema": s, "strict": True}
                ),
            )
        )
    if draw(st.booleans()):
        text["verbosity"] = draw(st.sampled_from(["low", "medium", "high"]))
    if text:
        out["text"] = text
    optional: dict[str, st.SearchStrategy[Any]] = {
        "reasoning": st.sampled_from(["minimal", "low", "medium", "high"]).map(
            lambda e: {"effort": e}
        ),
        "max_output_tokens": st.integers(16, 8192),
        "temperature": st.floats(0, 2, allow_nan=False),
        "top_p": st.floats(0, 1, allow_nan=False),
        "user": IDENT,
        "store": st.just(False),
        "service_tier": st.sampled_from(["auto", "default", "flex", "priority"]),
        "prompt_cache_key": IDENT,
        "stream": st.booleans(),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            out[name] = draw(strategy)
    return out


def normalised(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` in the form both sides of Responses -> canonical -> Responses are compared
    in. The canonical form has no place for what is normalised here:

    * ``instructions``: a leading system turn, as a plain-text first system or developer
      message is one (and the other way round), so both are the first item;
    * a string ``input``: its one user message; ``system`` and ``developer`` roles: one role;
    * an assistant message: its text (output_text parts join into one string);
    * ``store``: false unless true (the canonical default; a Responses body says so);
    * ``stream: false``: no ``stream``; a ``text`` format of ``text``: no format.
    """
    out = dict(payload)
    value = out.pop("input")
    items: list[Any] = (
        [{"type": "message", "role": "user", "content": value}]
        if type(value) is str
        else list(value)
    )
    instructions = out.pop("instructions", None)
    if instructions is not None:
        items.insert(0, {"type": "message", "role": "system", "content": instructions})
    flat = []
    for item in items:
        if item.get("type") == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            content = item["content"]
            if role == "assistant":
                content = "".join(p["text"] for p in content)
            item = {"type": "message", "role": role, "content": content}
        flat.append(item)
    out["input"] = flat
    out["store"] = out.get("store") is True
    if out.get("stream") is False:
        del out["stream"]
    return out


@ROUND_TRIPS
@given(responses_bodies())
def test_responses_request_to_canonical_and_back(payload: dict[str, Any]) -> None:
    """Every field the canonical form expresses comes back (see :func:`normalised`), nothing
    is dropped either way, and the canonical body in between is a valid one."""
    read = Translation()
    canonical = to_canonical(payload, read)
    canonical.pop("model")
    stream = canonical.pop("stream", False)
    canonical.pop("stream_options", None)
    from_openai(CHAT, canonical)
    sent = Translation()
    back = to_responses(canonical, model_id="gw", stream=stream, ctx=sent)
    back = orjson.loads(orjson.dumps(back))
    assert read.dropped == [] and sent.dropped == []
    assert normalised(back) == normalised(payload)


@st.composite
def completions(draw: st.DrawFn) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": draw(st.one_of(st.none(), TEXT))}
    calls = [
        tool_call(
            f"call-{j}", draw(st.one_of(IDENT, st.just("mcp__github__create_issue"))), draw(ARGS)
        )
        for j in range(draw(st.integers(0, 2)))
    ]
    if calls:
        message["tool_calls"] = calls
    if draw(st.booleans()):
        message["reasoning_content"] = draw(WORDS)
    if draw(st.booleans()):
        message["refusal"] = draw(WORDS)
    finish = draw(st.sampled_from(["stop", "length"]))
    if calls and finish == "stop":
        finish = "tool_calls"
    counts = st.integers(0, 10**6)
    prompt, completion = draw(counts), draw(counts)
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": draw(st.integers(0, prompt))},
        "completion_tokens_details": {"reasoning_tokens": draw(st.integers(0, completion))},
    }
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gw",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": usage,
    }


@ROUND_TRIPS
@given(completions())
def test_canonical_completion_to_a_response_and_back(completion: dict[str, Any]) -> None:
    """Content (none is empty), refusal, reasoning, tool calls (namespaced ones too: the
    request declares the namespace), finish and usage come back; the answer is valid as the
    SDK reads it."""
    request = {"model": "gw", "input": "Hi", "tools": [GITHUB]}
    answer = orjson.loads(orjson.dumps(to_response(completion, "gw", request)))
    Response.model_validate(answer)
    back = to_completion(answer, WHO)
    expected = orjson.loads(orjson.dumps(completion))
    message = expected["choices"][0]["message"]
    if not message["content"]:
        # An answer with nothing else holds one empty message; one with calls or a refusal
        # holds no text at all.
        message["content"] = None if message.get("tool_calls") or message.get("refusal") else ""
    back["id"], back["created"] = expected["id"], expected["created"]
    assert back == expected


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
        ident, name, arguments = f"call-{position}", draw(IDENT), draw(ARGS)
        cuts = sorted(draw(st.lists(st.integers(0, len(arguments)), max_size=3)))
        pieces = [arguments[a:b] for a, b in zip([0, *cuts], [*cuts, len(arguments)], strict=True)]
        first = {"index": position, "id": ident, "type": "function", "function": {"name": name}}
        chunks.append(chunk_of({"tool_calls": [first]}))
        chunks += [
            chunk_of({"tool_calls": [{"index": position, "function": {"arguments": p}}]})
            for p in pieces
        ]
        calls.append((ident, name, arguments))
    finish = draw(st.sampled_from(["stop", "length"]))
    if calls and finish == "stop":
        finish = "tool_calls"
    chunks.append(chunk_of({}, finish))
    prompt, completion = draw(st.integers(0, 500)), draw(st.integers(0, 500))
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
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
def test_canonical_chunks_to_responses_events_and_back(
    stream: tuple[list[dict[str, Any]], dict[str, Any]],
) -> None:
    """Text, reasoning, tool calls (ids, names, arguments), the finish reason and the usage
    come back; every event is valid as the SDK reads it, and so is the final response."""
    chunks, said = stream
    events = written(ResponseEvents("gw"), chunks)
    Response.model_validate(events[-1][1]["response"])
    out = read([(n, d) for n, d in events])
    got = deltas(out)
    calls = [call for d in got for call in d.get("tool_calls", ())]
    usage = {k: out[-1]["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    assert {
        "text": "".join(d.get("content", "") for d in got),
        "reasoning": "".join(d.get("reasoning_content", "") for d in got),
        "calls": [
            (
                c["id"],
                c["function"]["name"],
                "".join(x["function"]["arguments"] for x in calls if x["index"] == c["index"]),
            )
            for c in calls
            if "id" in c
        ],
        "finish": [c["choices"][0]["finish_reason"] for c in out if c["choices"]][-1],
        "usage": usage,
    } == said
    assert all(c["model"] == "gw" for c in out)
