"""``POST /v1/messages`` (Anthropic's Messages API) on a real ``msgflux serve`` process, with
the official ``anthropic`` Python SDK as the client.

Two upstreams: ``an`` speaks Anthropic's wire format (the ``anthropic`` provider calls it),
``oa`` OpenAI's. Gateway ``claude`` is [anthropic, openai], ``gpt`` is [openai, anthropic], so
every feature is checked answered by each vendor and falling back in each direction. The
test upstream checks each request the way its vendor would (``Recorded.invalid``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2 as httpx
import pytest

from tests.server.harness import SERVER_KEY, UPSTREAM_KEY, Served, start
from tests.upstream import Reply, ToolCallSpec, Upstream

MODELS = {"claude": "claude-x", "gpt": "gpt-x"}
"""Gateway -> the model id of its first deployment (the one that answers when both are up)."""
ASK: Any = [{"role": "user", "content": "Who was Frank Rosenblatt?"}]
WEATHER: Any = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
TIME: Any = {
    "name": "get_time",
    "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}},
}


class Env:
    def __init__(self, server: Served, an: Upstream, oa: Upstream) -> None:
        self.server = server
        self.an = an
        self.oa = oa
        self.client_sent_invalid = False

    def client(self, **kwargs: Any) -> anthropic.Anthropic:
        kwargs.setdefault("api_key", SERVER_KEY)
        return anthropic.Anthropic(base_url=self.server.url, max_retries=0, **kwargs)

    def upstream(self, gateway: str) -> Upstream:
        """The upstream of the gateway's first deployment."""
        return self.an if gateway == "claude" else self.oa

    def untouched(self) -> bool:
        return self.an.count() == 0 and self.oa.count() == 0

    def health(self, gateway: str) -> dict[str, Any]:
        """The deployments' health entries of ``gateway`` (``/health/models``)."""
        resp = httpx.get(
            self.server.url + "/health/models", headers={"x-api-key": SERVER_KEY}, timeout=10
        )
        return resp.json()["gateways"][gateway]["deployments"]  # type: ignore[no-any-return]


def _deployment(vendor: str, up: Upstream) -> dict[str, Any]:
    if vendor == "anthropic":
        return {
            "model_name": "anthropic",
            "model": "anthropic/claude-x",
            "base_url": up.url,
            "api_key": "${UPSTREAM_KEY}",
        }
    return {
        "model_name": "openai",
        "model": "openai/gpt-x",
        "base_url": up.base_url,
        "api_key": "${UPSTREAM_KEY}",
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    an, oa = Upstream().start(), Upstream().start()
    config = {
        "server": {"keys": [{"name": "sdk", "key": "${CLIENT_KEY}", "models": "*"}]},
        "gateways": {
            "claude": {
                "breaker": False,
                "models": [_deployment("anthropic", an), _deployment("openai", oa)],
            },
            "gpt": {
                "breaker": False,
                "models": [_deployment("openai", oa), _deployment("anthropic", an)],
            },
            "gpt-only": {"models": [_deployment("openai", oa)]},
            "claude-only": {"models": [_deployment("anthropic", an)]},
            "embed": {
                "type": "text_embedder",
                "models": [{"model_name": "e", "model": "openai/emb", "base_url": oa.base_url}],
            },
        },
    }
    server = start(tmp_path_factory.mktemp("messages"), config)
    try:
        yield Env(server, an, oa)
    finally:
        server.stop()
        an.stop()
        oa.stop()


@pytest.fixture(autouse=True)
def fresh(env: Env) -> Iterator[None]:
    env.an.reset()
    env.oa.reset()
    env.client_sent_invalid = False
    yield
    if env.client_sent_invalid:
        return  # a native lane sends the client's request as it is, mistakes included
    for rec in env.an.requests:
        assert rec.invalid is None, rec.invalid  # nothing Anthropic would refuse was sent


both = pytest.mark.parametrize("gateway", ["claude", "gpt"])


def sse(resp: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of an SSE body."""
    out = []
    for frame in resp.text.split("\n\n"):
        if not frame.strip():
            continue
        lines = dict(line.split(": ", 1) for line in frame.split("\n"))
        out.append((lines["event"], json.loads(lines["data"])))
    return out


# -- answers ------------------------------------------------------------------------------------
@both
def test_a_plain_answer(env: Env, gateway: str) -> None:
    with env.client() as client:
        raw = client.messages.with_raw_response.create(model=gateway, max_tokens=64, messages=ASK)
        message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == f"Hello from {MODELS[gateway]}"  # type: ignore[union-attr]
    assert message.model == gateway
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 4 and message.usage.output_tokens == 3
    assert raw.headers["x-msgflux-deployment"] == ("anthropic" if gateway == "claude" else "openai")
    sent = env.upstream(gateway).last.json
    assert sent["max_tokens"] == 64
    if gateway == "claude":
        assert sent["messages"] == ASK and sent["model"] == "claude-x"
        assert message.usage.cache_read_input_tokens == 0  # Anthropic reports its cache use
    else:
        assert sent["messages"] == ASK and sent["model"] == "gpt-x"


@both
def test_system_prompt_sampling_and_a_multi_turn_conversation(env: Env, gateway: str) -> None:
    turns: Any = [
        {"role": "user", "content": "Name a perceptron pioneer."},
        {"role": "assistant", "content": [{"type": "text", "text": "Frank Rosenblatt."}]},
        {"role": "user", "content": [{"type": "text", "text": "When was he born?"}]},
    ]
    # The SDK's own API version has no sampling fields; Claude Code and older SDKs send these.
    with env.client(default_headers={"anthropic-version": "2023-06-01"}) as client:
        client.messages.create(
            model=gateway,
            max_tokens=32,
            system="Answer in one line.",
            messages=turns,
            stop_sequences=["\n\n"],
            metadata={"user_id": "u-42"},
            extra_body={"temperature": 0.5, "top_p": 0.9},
        )
    sent = env.upstream(gateway).last.json
    if gateway == "claude":
        assert sent["system"] == "Answer in one line."
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
        assert sent["stop_sequences"] == ["\n\n"] and sent["metadata"] == {"user_id": "u-42"}
    else:
        assert sent["messages"] == [
            {"role": "system", "content": "Answer in one line."},
            {"role": "user", "content": "Name a perceptron pioneer."},
            {"role": "assistant", "content": "Frank Rosenblatt."},
            {"role": "user", "content": "When was he born?"},
        ]
        assert sent["stop"] == ["\n\n"] and sent["user"] == "u-42"
    assert sent["temperature"] == 0.5 and sent["top_p"] == 0.9


def test_system_blocks_keep_cache_control_for_anthropic(env: Env) -> None:
    system: Any = [
        {"type": "text", "text": "You are a historian."},
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
    ]
    env.an.script(Reply(usage={"cache_read_input_tokens": 7, "input_tokens": 3}))
    with env.client() as client:
        message = client.messages.create(model="claude", max_tokens=32, system=system, messages=ASK)
    assert env.an.last.json["system"] == system
    assert message.usage.input_tokens == 3 and message.usage.cache_read_input_tokens == 7


@both
def test_parallel_tool_calls_and_their_results(env: Env, gateway: str) -> None:
    up = env.upstream(gateway)
    up.script(
        Reply(
            tool_calls=[
                ToolCallSpec("get_weather", {"city": "Paris"}, id="call_a"),
                ToolCallSpec("get_time", {"tz": "CET"}, id="call_b"),
            ]
        )
    )
    with env.client() as client:
        message = client.messages.create(
            model=gateway,
            max_tokens=64,
            messages=ASK,
            tools=[WEATHER, TIME],
            tool_choice={"type": "auto"},
        )
        assert message.stop_reason == "tool_use"
        uses = [b for b in message.content if b.type == "tool_use"]
        assert [(u.id, u.name, u.input) for u in uses] == [
            ("call_a", "get_weather", {"city": "Paris"}),
            ("call_b", "get_time", {"tz": "CET"}),
        ]
        sent = up.last.json
        if gateway == "claude":
            assert sent["tools"] == [WEATHER, TIME] and sent["tool_choice"] == {"type": "auto"}
        else:
            assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather", "get_time"]
            assert sent["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
            assert sent["tool_choice"] == "auto"
        followup: Any = [
            *ASK,
            {"role": "assistant", "content": [u.model_dump() for u in uses]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_a", "content": "18C, sunny"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "call_b",
                        "content": [{"type": "text", "text": "14:05"}],
                        "is_error": False,
                    },
                ],
            },
        ]
        answer = client.messages.create(
            model=gateway, max_tokens=64, messages=followup, tools=[WEATHER, TIME]
        )
    assert answer.content[0].type == "text"
    sent = up.last.json
    if gateway == "claude":
        results = sent["messages"][2]["content"]
        assert [r["tool_use_id"] for r in results] == ["call_a", "call_b"]
    else:
        assert sent["messages"][1]["tool_calls"][0]["function"] == {
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        }
        assert sent["messages"][2:] == [
            {"role": "tool", "tool_call_id": "call_a", "content": "18C, sunny"},
            {
                "role": "tool",
                "tool_call_id": "call_b",
                "content": [{"type": "text", "text": "14:05"}],
            },
        ]


def test_a_forced_tool_without_parallel_calls(env: Env) -> None:
    env.oa.script(Reply(tool_calls=[ToolCallSpec("get_weather", {"city": "Oslo"})]))
    with env.client() as client:
        client.messages.create(
            model="gpt",
            max_tokens=64,
            messages=ASK,
            tools=[WEATHER],
            tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        )
    sent = env.oa.last.json
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False


def test_an_image_block(env: Env) -> None:
    image: Any = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    turn: Any = [{"role": "user", "content": [image, {"type": "text", "text": "What is it?"}]}]
    with env.client() as client:
        client.messages.create(model="gpt", max_tokens=16, messages=turn)
        client.messages.create(model="claude", max_tokens=16, messages=turn)
    assert env.oa.last.json["messages"][0]["content"][0] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
    }
    assert env.an.last.json["messages"][0]["content"][0] == image


# -- thinking -----------------------------------------------------------------------------------
@both
def test_thinking_blocks_from_the_upstreams_reasoning(env: Env, gateway: str) -> None:
    up = env.upstream(gateway)
    up.script(Reply(reasoning="Rosenblatt built the perceptron.", text="In 1958."))
    with env.client() as client:
        message = client.messages.create(
            model=gateway,
            max_tokens=4096,
            messages=ASK,
            thinking={"type": "enabled", "budget_tokens": 2048},
        )
    assert [b.type for b in message.content] == ["thinking", "text"]
    thinking = message.content[0]
    assert thinking.thinking == "Rosenblatt built the perceptron."  # type: ignore[union-attr]
    sent = up.last.json
    if gateway == "claude":
        assert thinking.signature.startswith("sig-")  # type: ignore[union-attr]
        assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    else:
        assert thinking.signature == ""  # type: ignore[union-attr]
        assert sent["reasoning_effort"] == "medium" and "thinking" not in sent


def test_signed_thinking_goes_back_to_anthropic_and_unsigned_is_dropped(env: Env) -> None:
    signed = {"type": "thinking", "thinking": "Hmm.", "signature": "sig-1"}
    unsigned = {"type": "thinking", "thinking": "From another vendor.", "signature": ""}
    turns: Any = [
        *ASK,
        {
            "role": "assistant",
            "content": [
                signed,
                {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}],
        },
        {"role": "assistant", "content": [unsigned, {"type": "text", "text": "Done."}]},
        {"role": "user", "content": "Thanks."},
    ]
    with env.client() as client:
        client.messages.create(model="claude", max_tokens=16, messages=turns, tools=[WEATHER])
    sent = env.an.last.json["messages"]
    assert sent[1]["content"][0] == signed
    assert sent[3]["content"] == [{"type": "text", "text": "Done."}]


# -- streams ------------------------------------------------------------------------------------
@both
def test_a_text_stream(env: Env, gateway: str) -> None:
    env.upstream(gateway).script(Reply(chunks=["Frank", " built", " the", " perceptron"]))
    with (
        env.client() as client,
        client.messages.stream(model=gateway, max_tokens=64, messages=ASK) as stream,
    ):
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert pieces == ["Frank", " built", " the", " perceptron"]
    assert final.content[0].text == "Frank built the perceptron"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.model == gateway
    assert final.usage.input_tokens == 4 and final.usage.output_tokens == 4


@both
def test_a_streams_events_come_in_anthropics_order(env: Env, gateway: str) -> None:
    env.upstream(gateway).script(Reply(chunks=["a", "b"]))
    resp = httpx.post(
        env.server.url + "/messages",  # the path without /v1 works too
        json={"model": gateway, "max_tokens": 8, "messages": ASK, "stream": True},
        headers={"x-api-key": SERVER_KEY, "anthropic-version": "2023-06-01"},
    )
    assert resp.headers["content-type"] == "text/event-stream"
    events = sse(resp)
    # The translated lane writes its own events; the native lane relays the upstream's, whose
    # ping comes after the block's start.
    head = ["ping", "content_block_start"] if gateway == "gpt" else ["content_block_start", "ping"]
    assert [e for e, _ in events] == [
        "message_start",
        *head,
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == event for event, data in events)
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert events[-2][1]["usage"]["output_tokens"] == 2


@both
def test_a_tool_use_stream(env: Env, gateway: str) -> None:
    env.upstream(gateway).script(
        Reply(
            tool_calls=[
                ToolCallSpec("get_weather", {"city": "Paris"}, id="call_a"),
                ToolCallSpec("get_time", {"tz": "CET"}, id="call_b"),
            ]
        )
    )
    with (
        env.client() as client,
        client.messages.stream(
            model=gateway, max_tokens=64, messages=ASK, tools=[WEATHER, TIME]
        ) as stream,
    ):
        events = list(stream)
        final = stream.get_final_message()
    partial = [e.partial_json for e in events if e.type == "input_json"]  # type: ignore[union-attr]
    assert "".join(partial) == '{"city":"Paris"}{"tz":"CET"}'
    assert final.stop_reason == "tool_use"
    assert [(b.id, b.input) for b in final.content if b.type == "tool_use"] == [
        ("call_a", {"city": "Paris"}),
        ("call_b", {"tz": "CET"}),
    ]


@both
def test_a_thinking_stream(env: Env, gateway: str) -> None:
    env.upstream(gateway).script(Reply(reasoning="First the year.", text="1928"))
    with (
        env.client() as client,
        client.messages.stream(
            model=gateway,
            max_tokens=4096,
            messages=ASK,
            thinking={"type": "enabled", "budget_tokens": 1024},
        ) as stream,
    ):
        kinds = {e.type for e in stream}
        final = stream.get_final_message()
    assert "thinking" in kinds
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "First the year."  # type: ignore[union-attr]
    if gateway == "claude":
        assert final.content[0].signature.startswith("sig-")  # type: ignore[union-attr]


@both
def test_a_stream_cut_midway_ends_with_an_error_event(env: Env, gateway: str) -> None:
    env.upstream(gateway).script(Reply(chunks=["one", " two", " three"], cut_after=2))
    pieces: list[str] = []
    with (
        env.client() as client,
        client.messages.stream(model=gateway, max_tokens=64, messages=ASK) as stream,
        pytest.raises(anthropic.APIStatusError) as info,
    ):
        for piece in stream.text_stream:
            pieces.append(piece)
    assert "".join(pieces) == "one two"
    assert info.value.type == "api_error"  # type: ignore[attr-defined]


def test_an_anthropic_overloaded_error_midstream_is_relayed_as_one(env: Env) -> None:
    env.an.script(Reply(chunks=["one", " two"], cut_after=1, stream_error="overloaded_error"))
    resp = httpx.post(
        env.server.base_url + "/messages",
        json={"model": "claude", "max_tokens": 8, "messages": ASK, "stream": True},
        headers={"x-api-key": SERVER_KEY},
    )
    event, data = sse(resp)[-1]
    assert event == "error" and data["error"]["type"] == "overloaded_error"


# -- fallback across vendors --------------------------------------------------------------------
def test_anthropic_down_falls_back_to_openai(env: Env) -> None:
    env.an.set_default(Reply(status=529))
    with env.client() as client:
        raw = client.messages.with_raw_response.create(model="claude", max_tokens=32, messages=ASK)
        message = raw.parse()
        with client.messages.stream(model="claude", max_tokens=32, messages=ASK) as stream:
            streamed = stream.get_final_message()
    assert message.content[0].text == "Hello from gpt-x"  # type: ignore[union-attr]
    assert raw.headers["x-msgflux-deployment"] == "openai"
    assert raw.headers["x-msgflux-fallbacks"] == "anthropic"
    assert streamed.content[0].text == "Hello from gpt-x"  # type: ignore[union-attr]
    assert env.an.count("messages") == 2 and env.oa.count("chat") == 2


def test_openai_down_falls_back_to_anthropic(env: Env) -> None:
    env.oa.set_default(Reply(status=500))
    env.an.script(Reply(tool_calls=[ToolCallSpec("get_weather", {"city": "Rome"}, id="toolu_1")]))
    with env.client() as client:
        raw = client.messages.with_raw_response.create(
            model="gpt", max_tokens=32, messages=ASK, tools=[WEATHER]
        )
        message = raw.parse()
        with client.messages.stream(model="gpt", max_tokens=32, messages=ASK) as stream:
            streamed = stream.get_final_message()
    assert raw.headers["x-msgflux-deployment"] == "anthropic"
    assert raw.headers["x-msgflux-fallbacks"] == "openai"
    assert message.content[0].type == "tool_use" and message.content[0].input == {"city": "Rome"}
    assert env.an.requests[0].json["tools"] == [WEATHER]
    assert streamed.content[0].text == "Hello from claude-x"  # type: ignore[union-attr]


# -- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"temperature": 1.5}, "temperature"),
        (
            {"messages": [{"role": "user", "content": [{"type": "audio"}]}]},
            "messages.0.content.0.type",
        ),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
        ({"thinking": {"type": "enabled", "budget_tokens": 10}}, "thinking.budget_tokens"),
    ],
)
def test_a_bad_request_is_a_400_naming_the_field(env: Env, change: Any, field: str) -> None:
    """The deployment that speaks the Messages API judges the request (a native lane: what it
    says comes back); the one that would need it translated is skipped, never blamed."""
    env.client_sent_invalid = True
    body = {"model": "gpt", "max_tokens": 16, "messages": ASK, **change}
    body = {k: v for k, v in body.items() if v is not None}
    with (
        env.client(default_headers={"anthropic-version": "2023-06-01"}) as client,
        pytest.raises(anthropic.BadRequestError) as info,
    ):
        client.post("/v1/messages", cast_to=object, body=body)
    assert info.value.status_code == 400
    assert info.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert info.value.body["error"]["message"].startswith(field + ":")  # type: ignore[index]
    assert env.oa.count() == 0 and env.an.count("messages") == 1
    assert info.value.response.headers["x-msgflux-attempts"] == "1"  # the skip is no attempt


def test_a_field_a_translated_lane_cannot_carry_is_dropped_and_named(env: Env) -> None:
    extra = {"frequency_penalty": 1, "context_management": {"edits": []}}
    with env.client() as client:
        raw = client.messages.with_raw_response.create(
            model="gpt", max_tokens=16, messages=ASK, extra_body=extra
        )
    assert raw.headers["x-msgflux-deployment"] == "openai"
    assert raw.headers["x-msgflux-dropped"] == "frequency_penalty,context_management"
    assert "frequency_penalty" not in env.oa.last.json


def test_a_request_no_deployment_can_take_names_the_field(env: Env) -> None:
    body = {"model": "gpt-only", "max_tokens": 16, "messages": ASK, "temperature": 1.5}
    headers = {"anthropic-version": "2023-06-01"}
    with (
        env.client(default_headers=headers) as client,
        pytest.raises(anthropic.BadRequestError) as info,
    ):
        client.post("/v1/messages", cast_to=object, body=body)
    assert info.value.status_code == 400
    assert "temperature: must be a number between 0 and 1" in str(info.value)
    assert env.untouched()


def test_sampling_fields_are_refused_with_the_api_version_that_has_none(env: Env) -> None:
    env.client_sent_invalid = True
    with (
        env.client() as client,  # the SDK sends anthropic-version 2026-10-21
        pytest.raises(anthropic.BadRequestError, match=r"temperature"),
    ):
        client.messages.create(
            model="gpt", max_tokens=16, messages=ASK, extra_body={"temperature": 0.5}
        )
    assert env.oa.count() == 0  # the translation refused it as Anthropic would: skipped
    assert env.an.last.headers["anthropic-version"] == "2026-10-21"


def test_an_unknown_model_is_a_not_found_error(env: Env) -> None:
    with env.client() as client, pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="claude-opus", max_tokens=16, messages=ASK)
    assert info.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert "claude, gpt" in str(info.value)
    with (
        env.client() as client,
        pytest.raises(anthropic.BadRequestError, match="text_embedder"),
    ):
        client.messages.create(model="embed", max_tokens=16, messages=ASK)
    assert env.untouched()


def test_keys_as_x_api_key_or_bearer_and_the_version_header(env: Env) -> None:
    env.client_sent_invalid = True
    with (
        env.client(api_key="sk-wrong-key-000") as client,
        pytest.raises(anthropic.AuthenticationError) as info,
    ):
        client.messages.create(model="gpt", max_tokens=16, messages=ASK)
    assert info.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with env.client(api_key=None, auth_token=SERVER_KEY) as client:  # Authorization: Bearer
        assert client.messages.create(model="gpt", max_tokens=16, messages=ASK).content
    resp = httpx.post(
        env.server.base_url + "/messages",
        json={"model": "claude-only", "max_tokens": 16, "messages": ASK},
        headers={"x-api-key": SERVER_KEY, "anthropic-version": "latest"},
    )
    # The client's version goes to the deployment that speaks the API, which judges it.
    assert resp.status_code == 400 and "anthropic-version" in resp.json()["error"]["message"]
    assert resp.json()["type"] == "error"
    assert env.an.last.headers["anthropic-version"] == "latest"
    assert httpx.get(env.server.base_url + "/messages").status_code == 405
    assert SERVER_KEY not in env.server.log()


def test_every_deployment_overloaded_is_an_overloaded_error(env: Env) -> None:
    env.an.set_default(Reply(status=529))
    env.oa.set_default(Reply(status=503))
    with env.client() as client, pytest.raises(anthropic.OverloadedError) as info:
        client.messages.create(model="claude", max_tokens=16, messages=ASK)
    assert info.value.status_code == 529
    assert info.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert UPSTREAM_KEY not in str(info.value)


def test_every_deployment_rate_limited_is_a_rate_limit_error(env: Env) -> None:
    env.an.set_default(Reply(status=429, retry_after=7))
    env.oa.set_default(Reply(status=429, retry_after=3))
    with env.client() as client, pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model="gpt", max_tokens=16, messages=ASK)
    assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert info.value.response.headers["retry-after"] == "3"


# -- count_tokens -------------------------------------------------------------------------------
def test_count_tokens_is_passed_to_an_anthropic_upstream(env: Env) -> None:
    with env.client() as client:
        raw = client.messages.with_raw_response.count_tokens(
            model="claude", system="Be brief.", messages=ASK, tools=[WEATHER]
        )
        count = raw.parse()
    assert count.input_tokens == 6  # the upstream counts the system prompt too
    assert raw.headers["x-msgflux-deployment"] == "anthropic"
    rec = env.an.last
    assert rec.route == "count_tokens" and rec.json["model"] == "claude-x"
    assert rec.json["tools"] == [WEATHER] and rec.json["system"] == "Be brief."


def test_count_tokens_without_an_anthropic_deployment_is_not_found(env: Env) -> None:
    with env.client() as client, pytest.raises(anthropic.NotFoundError, match="openai"):
        client.messages.count_tokens(model="gpt", messages=ASK)
    assert env.untouched()


def test_count_tokens_relays_the_upstreams_refusal(env: Env) -> None:
    env.client_sent_invalid = True
    with env.client() as client, pytest.raises(anthropic.BadRequestError, match="max_tokens"):
        client.messages.count_tokens(model="claude", messages=ASK, extra_body={"max_tokens": 5})
    assert env.an.count("count_tokens") == 1
