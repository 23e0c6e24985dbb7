"""Native lanes on a real ``msgflux serve``: a request whose deployment speaks its API family
goes upstream as the client sent it, and the answer comes back as the upstream sent it.

Checked byte for byte where the wire allows it: the upstream receives the client's body field
for field (unknown fields, vendor headers and betas included; only ``model`` and the key
change), and the client receives the upstream's bytes (only the model's name changes), for
OpenAI chat (JSON and SSE) and Anthropic Messages (JSON and SSE). The bounds hold on the lane
too: an SSE event over ``max_event_bytes`` and an answer over ``max_response_bytes`` are the
upstream's failure, never relayed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2 as httpx
import openai
import orjson
import pytest

from tests.server.harness import SERVER_KEY, UPSTREAM_KEY, Served, start
from tests.upstream import Reply, Upstream

ASK: Any = [{"role": "user", "content": "Who was Frank Rosenblatt?"}]


class Env:
    def __init__(self, server: Served, oa: Upstream, an: Upstream) -> None:
        self.server = server
        self.oa = oa
        self.an = an

    def post(self, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
        return httpx.post(
            self.server.base_url + path,
            content=orjson.dumps(body),
            headers={"authorization": f"Bearer {SERVER_KEY}", **headers},
            timeout=30,
        )


def _dep(name: str, model: str, base_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "model_name": name,
        "model": model,
        "base_url": base_url,
        "api_key": "${UPSTREAM_KEY}",
        **extra,
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    oa, an = Upstream().start(), Upstream().start()
    config = {
        "server": {"keys": [{"name": "k", "key": "${CLIENT_KEY}", "models": "*"}]},
        "gateways": {
            "chat": {"models": [_dep("oa", "openai_compatible/up-model", oa.base_url)]},
            "claude": {"models": [_dep("an", "anthropic/claude-up", an.url)]},
            "tight": {
                "max_event_bytes": 512,
                "max_response_bytes": 3000,
                "models": [
                    _dep("oa", "openai_compatible/up-model", oa.base_url),
                    _dep("an", "anthropic/claude-up", an.url),
                ],
            },
        },
    }
    server = start(tmp_path_factory.mktemp("native"), config)
    try:
        yield Env(server, oa, an)
    finally:
        server.stop()
        oa.stop()
        an.stop()


@pytest.fixture(autouse=True)
def fresh(env: Env) -> None:
    env.oa.reset()
    env.an.reset()


def _sse(*events: tuple[str | None, dict[str, Any] | str]) -> bytes:
    out = b""
    for name, data in events:
        raw = data.encode() if isinstance(data, str) else orjson.dumps(data)
        out += (b"" if name is None else b"event: " + name.encode() + b"\n") + b"data: " + raw
        out += b"\n\n"
    return out


# -- OpenAI chat ---------------------------------------------------------------------------------
def test_a_chat_body_reaches_the_upstream_field_for_field(env: Env) -> None:
    body = {
        "model": "chat",
        "messages": ASK,
        "temperature": 0.3,
        "logprobs": True,
        "x_vendor_knob": {"depth": [1, 2.5, None], "note": "é ü \u2028"},
        "metadata": {"team": "search"},
    }
    resp = env.post("/chat/completions", body, **{"openai-beta": "x"})
    assert resp.status_code == 200
    rec = env.oa.last
    assert rec.json == {**body, "model": "up-model"}
    assert rec.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_a_chat_answer_comes_back_byte_for_byte(env: Env) -> None:
    answer = (
        b'{"id":"chatcmpl-9","object":"chat.completion","created":1,"model":"up-model-2026",'
        b'"choices":[{"index":0,"message":{"role":"assistant","content":"Hi \\u00e9"},'
        b'"finish_reason":"stop","logprobs":null}],"usage":{"prompt_tokens":3,'
        b'"completion_tokens":2,"total_tokens":5},"service_tier":"default","x_extra":[1.50]}'
    )
    env.oa.script([Reply(body=answer, content_type="application/json")])
    resp = env.post("/chat/completions", {"model": "chat", "messages": ASK})
    assert resp.content == answer.replace(b'"model":"up-model-2026"', b'"model":"chat"')
    assert resp.headers["x-msgflux-deployment"] == "oa"


def test_a_chat_answer_with_spaces_is_renamed_and_kept(env: Env) -> None:
    answer = {"id": "c", "model": "up-model", "choices": [{"message": {"content": "x"}}]}
    spaced = orjson.dumps(answer).replace(b":", b": ")
    env.oa.script([Reply(body=spaced, content_type="application/json")])
    resp = env.post("/chat/completions", {"model": "chat", "messages": ASK})
    assert resp.json() == {**answer, "model": "chat"}


def test_a_chat_stream_comes_back_event_for_event(env: Env) -> None:
    chunk = {"id": "c1", "object": "chat.completion.chunk", "model": "up-model", "x": "kept"}
    events = [
        (None, {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant"}}]}),
        (None, {**chunk, "choices": [{"index": 0, "delta": {"content": "Hi"}}]}),
        (None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        (None, {**chunk, "choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1}}),
        (None, "[DONE]"),
    ]
    env.oa.script([Reply(body=_sse(*events), content_type="text/event-stream")])
    body = {"model": "chat", "messages": ASK, "stream": True}
    resp = env.post("/chat/completions", body)
    expected = _sse(*events[:3], events[4]).replace(b'"model":"up-model"', b'"model":"chat"')
    # The client did not ask for the usage chunk: the gateway asked (it accounts tokens) and
    # drops it; that is the one field a native lane adds.
    assert resp.content == expected
    assert env.oa.last.json == {
        **body,
        "model": "up-model",
        "stream_options": {"include_usage": True},
    }
    with_usage = {**body, "stream_options": {"include_usage": True}}
    env.oa.script([Reply(body=_sse(*events), content_type="text/event-stream")])
    resp = env.post("/chat/completions", with_usage)
    assert resp.content == _sse(*events).replace(b'"model":"up-model"', b'"model":"chat"')
    assert env.oa.last.json == {**with_usage, "model": "up-model"}


def test_the_openai_sdk_on_the_native_lane(env: Env) -> None:
    client = openai.OpenAI(base_url=env.server.base_url, api_key=SERVER_KEY, max_retries=0)
    out = client.chat.completions.create(
        model="chat", messages=ASK, extra_body={"top_k": 4, "repetition_penalty": 1.1}
    )
    assert out.model == "chat" and out.choices[0].message.content == "Hello from up-model"
    assert env.oa.last.json["top_k"] == 4 and env.oa.last.json["repetition_penalty"] == 1.1
    stream = client.chat.completions.create(model="chat", messages=ASK, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == (
        "Hello from up-model"
    )


# -- Anthropic Messages --------------------------------------------------------------------------
def test_a_messages_body_and_its_headers_reach_the_upstream_as_sent(env: Env) -> None:
    body = {
        "model": "claude",
        "max_tokens": 64,
        "messages": [*ASK, {"role": "system", "content": "Be brief."}],
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "tools": [
            {"name": "f", "input_schema": {"type": "object"}, "defer_loading": True},
        ],
    }
    headers = {"anthropic-beta": "context-management-2025-06-27,effort-2025-11-24"}
    resp = env.post("/messages", body, **headers, **{"anthropic-version": "2023-06-01"})
    assert resp.status_code == 200, resp.text
    rec = env.an.last
    assert rec.invalid is None
    assert rec.json == {**body, "model": "claude-up"}
    assert rec.headers["anthropic-beta"] == headers["anthropic-beta"]
    assert rec.headers["anthropic-version"] == "2023-06-01"
    assert rec.headers["x-api-key"] == UPSTREAM_KEY and "authorization" not in rec.headers
    assert resp.headers["request-id"] == f"req_{rec.index}"


def test_a_messages_answer_comes_back_byte_for_byte(env: Env) -> None:
    answer = (
        b'{"id":"msg_1","type":"message","role":"assistant","model":"claude-up-20261001",'
        b'"content":[{"type":"text","text":"Hi","citations":null}],"stop_reason":"end_turn",'
        b'"stop_sequence":null,"usage":{"input_tokens":4,"output_tokens":1,'
        b'"server_tool_use":{"web_search_requests":0}},"container":null}'
    )
    env.an.script([Reply(body=answer, content_type="application/json")])
    resp = env.post("/messages", {"model": "claude", "max_tokens": 8, "messages": ASK})
    assert resp.content == answer.replace(b'"claude-up-20261001"', b'"claude"')


def test_a_messages_stream_comes_back_event_for_event(env: Env) -> None:
    start = {"type": "message_start", "message": {"id": "m", "model": "claude-up", "usage": {}}}
    events = [
        ("message_start", start),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "Hi"}}),
        ("brand_new_event", {"type": "brand_new_event", "x": 1}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                           "usage": {"output_tokens": 1}}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip
    env.an.script([Reply(body=_sse(*events), content_type="text/event-stream")])
    body = {"model": "claude", "max_tokens": 8, "messages": ASK, "stream": True}
    resp = env.post("/messages", body)
    renamed = {**start, "message": {**start["message"], "model": "claude"}}
    assert resp.content == _sse(("message_start", renamed), *events[1:])


def test_the_anthropic_sdk_on_the_native_lane(env: Env) -> None:
    client = anthropic.Anthropic(base_url=env.server.url, api_key=SERVER_KEY, max_retries=0)
    message = client.messages.create(
        model="claude",
        max_tokens=32,
        messages=ASK,
        extra_headers={"anthropic-beta": "some-beta-2026-01-01"},
        extra_body={"inference_geo": "us"},  # a field this gateway does not know
    )
    assert message.model == "claude" and message.content[0].text == "Hello from claude-up"  # type: ignore[union-attr]
    assert env.an.last.headers["anthropic-beta"] == "some-beta-2026-01-01"
    assert env.an.last.json["inference_geo"] == "us"
    with client.messages.stream(model="claude", max_tokens=32, messages=ASK) as stream:
        assert stream.get_final_message().content[0].text == "Hello from claude-up"  # type: ignore[union-attr]


# -- bounds hold on the lane ---------------------------------------------------------------------
def test_an_event_over_max_event_bytes_is_not_relayed(env: Env) -> None:
    big = {"choices": [{"index": 0, "delta": {"content": "x" * 1000}}], "model": "up-model"}
    env.oa.script([Reply(body=_sse((None, big)), content_type="text/event-stream")])
    body = {"model": "tight", "messages": ASK, "stream": True}
    resp = env.post("/chat/completions", body)
    # The first deployment failed before any content (ResponseTooLargeError): the second, on
    # the translated lane, answered.
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-msgflux-deployment"] == "an"
    assert resp.headers["x-msgflux-fallbacks"] == "oa"
    assert b"x" * 300 not in resp.content


def test_an_answer_over_max_response_bytes_is_not_relayed(env: Env) -> None:
    big = {"model": "up-model", "choices": [{"message": {"content": "y" * 4000}}]}
    env.oa.script([Reply(json=big)])
    env.an.script([Reply(status=503)])
    resp = env.post("/chat/completions", {"model": "tight", "messages": ASK})
    assert resp.status_code == 502
    assert "ResponseTooLargeError" in resp.text and b"y" * 100 not in resp.content
