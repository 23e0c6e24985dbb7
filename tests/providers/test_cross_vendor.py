"""A gateway of OpenAI, Anthropic and Gemini (and Azure) deployments answers tools,
structured output and streams from whichever vendor is up, in the same canonical form, and
skips a vendor that cannot express the request before sending it anything."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
import pytest

from msgflux import Model, ModelGateway
from msgflux.exceptions import ModelRouterError
from msgflux.models.response import ModelResponse, ModelStreamResponse
from msgflux.models.tool_call import ToolCall
from tests.upstream import Reply, ToolCallSpec, Upstream

VENDORS = {
    "openai": "openai/gpt-x",
    "anthropic": "anthropic/claude-x",
    "gemini": "gemini/gemini-x",
    "azure": "azure/azure-x",
}
DOWN = {
    "openai": Reply(status=429, retry_after=1),
    "anthropic": Reply(status=529),
    "gemini": Reply(status=503, retry_delay="1s"),
    "azure": Reply(status=500),
}
"""How each vendor fails: its own kind of "not now"."""
ORDERS = list(itertools.permutations(["openai", "anthropic", "gemini"]))
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


class Person(msgspec.Struct):
    name: str
    age: int


@pytest.fixture
def up(upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> Upstream:
    for vendor in VENDORS:
        monkeypatch.setenv(f"{vendor.upper()}_API_KEY", f"key-{vendor}-0001")
    monkeypatch.setenv("OPENAI_BASE_URL", upstream.base_url)
    for vendor in ("anthropic", "gemini", "azure"):
        monkeypatch.setenv(f"{vendor.upper()}_BASE_URL", upstream.url)
    return upstream


def gateway(order: tuple[str, ...]) -> ModelGateway:
    return ModelGateway(
        [
            {"model_name": v, "model": Model.chat_completion(VENDORS[v], max_retries=0)}
            for v in order
        ],
        breaker=None,
    )


def only_last_up(up: Upstream, order: tuple[str, ...], reply: Reply) -> str:
    """Every deployment but the last fails; the last answers ``reply``. Returns its name."""
    for vendor in order[:-1]:
        up.set_default(DOWN[vendor], model=VENDORS[vendor].split("/")[1])
    up.set_default(reply, model=VENDORS[order[-1]].split("/")[1])
    return order[-1]


def tried(up: Upstream, order: tuple[str, ...]) -> None:
    """Each deployment was tried once, in order, and each request was valid for its vendor."""
    models = [r.model for r in up.requests]
    assert models == [VENDORS[v].split("/")[1] for v in order]
    assert [r.invalid for r in up.requests] == [None] * len(order)


def call_of(response: Any) -> list[tuple[str, Any]]:
    return [(c.name, c.arguments) for c in response]


# -- tools -------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ORDERS, ids="-".join)
def test_tools_fall_back_across_vendors(up: Upstream, order: tuple[str, ...]) -> None:
    winner = only_last_up(
        up, order, Reply(tool_calls=[ToolCallSpec("get_weather", {"city": "Rio"})])
    )
    response = gateway(order)(
        messages="Weather in Rio?", tool_schemas=[WEATHER], tool_choice="required"
    )
    tried(up, order)
    assert isinstance(response, ModelResponse)
    assert response.response_type == "tool_call"
    assert call_of(response.data) == [("get_weather", {"city": "Rio"})]
    assert all(isinstance(c, ToolCall) for c in response.data)
    assert response.metadata.finish_reason == "tool_calls"
    assert response.metadata.gateway["model_name"] == winner
    message = response.raw["choices"][0]["message"]
    assert message["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"Rio"}',
    }
    assert response.raw["object"] == "chat.completion"


@pytest.mark.parametrize("order", ORDERS, ids="-".join)
async def test_tools_fall_back_across_vendors_async(up: Upstream, order: tuple[str, ...]) -> None:
    only_last_up(up, order, Reply(tool_calls=[ToolCallSpec("get_weather", {"city": "Rio"})]))
    response = await gateway(order).acall(messages="Weather?", tool_schemas=[WEATHER])
    tried(up, order)
    assert call_of(response.data) == [("get_weather", {"city": "Rio"})]


# -- structured output -------------------------------------------------------------------------
@pytest.mark.parametrize("order", ORDERS, ids="-".join)
def test_structured_output_falls_back_across_vendors(up: Upstream, order: tuple[str, ...]) -> None:
    only_last_up(up, order, Reply(structured={"name": "Ada", "age": 36}))
    response = gateway(order)(messages="Who?", generation_schema=Person)
    tried(up, order)
    assert response.response_type == "structured"
    assert response.data == Person("Ada", 36)
    assert msgspec.json.decode(response.raw["choices"][0]["message"]["content"]) == {
        "name": "Ada",
        "age": 36,
    }


@pytest.mark.parametrize("order", ORDERS, ids="-".join)
async def test_structured_output_falls_back_across_vendors_async(
    up: Upstream, order: tuple[str, ...]
) -> None:
    only_last_up(up, order, Reply(structured={"name": "Ada", "age": 36}))
    response = await gateway(order).acall(messages="Who?", generation_schema=Person)
    tried(up, order)
    assert response.data == Person("Ada", 36)


# -- streams -----------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ORDERS, ids="-".join)
def test_streams_fall_back_across_vendors(up: Upstream, order: tuple[str, ...]) -> None:
    winner = only_last_up(up, order, Reply(text="one two three"))
    stream = gateway(order)(messages="Count", stream=True)
    assert isinstance(stream, ModelStreamResponse)
    assert list(stream) == ["one", " two", " three"]
    tried(up, order)
    assert stream.metadata.finish_reason == "stop"
    assert stream.metadata.usage["completion_tokens"] == 3
    assert stream.metadata.gateway["model_name"] == winner


@pytest.mark.parametrize("order", ORDERS, ids="-".join)
async def test_streams_fall_back_across_vendors_async(up: Upstream, order: tuple[str, ...]) -> None:
    only_last_up(up, order, Reply(text="one two three"))
    stream = await gateway(order).acall(messages="Count", stream=True)
    assert [c async for c in stream.consume()] == ["one", " two", " three"]
    tried(up, order)


@pytest.mark.parametrize("order", ORDERS, ids="-".join)
def test_a_stream_cut_before_its_first_chunk_falls_back(
    up: Upstream, order: tuple[str, ...]
) -> None:
    for vendor in order[:-1]:
        up.set_default(Reply(text="a b", cut_after=0), model=VENDORS[vendor].split("/")[1])
    stream = gateway(order)(messages="Count", stream=True)
    model_id = VENDORS[order[-1]].split("/")[1]
    assert list(stream) == ["Hello", " from", f" {model_id}"]
    assert stream.metadata.gateway["model_name"] == order[-1]


@pytest.mark.parametrize("order", ORDERS, ids="-".join)
async def test_canonical_stream_chunks_look_the_same_from_every_vendor(
    up: Upstream, order: tuple[str, ...]
) -> None:
    only_last_up(up, order, Reply(tool_calls=[ToolCallSpec("get_weather", {"city": "Rio"})]))
    stream = await gateway(order).acall(messages="Weather?", stream=True, tool_schemas=[WEATHER])
    chunks = [c async for c in stream.achunks()]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    arguments = "".join(
        d["tool_calls"][0]["function"].get("arguments", "") for d in deltas if d.get("tool_calls")
    )
    assert msgspec.json.decode(arguments) == {"city": "Rio"}
    assert [
        c["choices"][0]["finish_reason"]
        for c in chunks
        if c["choices"] and c["choices"][0]["finish_reason"]
    ] == ["tool_calls"]
    assert chunks[-1]["usage"]["total_tokens"] > 0
    assert call_of(stream.data) == [("get_weather", {"city": "Rio"})]


# -- features a vendor cannot express ----------------------------------------------------------
@pytest.mark.parametrize("kwargs", [{"logprobs": True}, {"n": 2}], ids=["logprobs", "n"])
def test_a_vendor_that_cannot_express_the_request_is_skipped_unsent(
    up: Upstream, kwargs: dict[str, Any]
) -> None:
    response = gateway(("anthropic", "openai"))(messages="x", **kwargs)
    assert response.metadata.gateway["model_name"] == "openai"
    assert [r.route for r in up.requests] == ["chat"]
    with pytest.raises(ModelRouterError) as info:
        gateway(("anthropic",))(messages="x", **kwargs)
    attempt = info.value.attempts[0]
    assert attempt.skipped is not None and attempt.skipped.startswith(
        "unsupported: Anthropic cannot"
    )
    assert up.count("messages") == 0


def test_gemini_is_skipped_for_parallel_tool_calls_false(up: Upstream) -> None:
    up.script(Reply(tool_calls=[ToolCallSpec("get_weather", {"city": "Rio"})]))
    response = gateway(("gemini", "anthropic"))(
        messages="x", tool_schemas=[WEATHER], parallel_tool_calls=False
    )
    assert response.metadata.gateway["model_name"] == "anthropic"
    assert up.count("generate_content") == 0
    assert up.last.json["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_every_vendor_failing_lists_each_typed_error(up: Upstream) -> None:
    order = ("openai", "anthropic", "gemini", "azure")
    for vendor in order:
        up.set_default(DOWN[vendor], model=VENDORS[vendor].split("/")[1])
    with pytest.raises(ModelRouterError) as info:
        gateway(order)(messages="x")
    kinds = [type(a.exception).__name__ for a in info.value.attempts]
    assert kinds == [
        "RateLimitError",
        "InternalServerError",
        "InternalServerError",
        "InternalServerError",
    ]
    assert [a.exception.retry_after for a in info.value.attempts] == [1.0, None, 1.0, None]


@pytest.mark.parametrize(
    "order", list(itertools.permutations(["azure", "anthropic", "gemini"], 2)), ids="-".join
)
def test_azure_takes_part_like_the_others(up: Upstream, order: tuple[str, ...]) -> None:
    only_last_up(up, order, Reply(structured={"name": "Ada", "age": 36}))
    response = gateway(order)(messages="Who?", generation_schema=Person)
    tried(up, order)
    assert response.data == Person("Ada", 36)


@pytest.mark.parametrize("second", ["anthropic", "gemini"])
def test_a_broken_stream_continues_on_another_vendor(up: Upstream, second: str) -> None:
    up.set_default(Reply(text="one two three four", cut_after=2), model="gpt-x")
    up.set_default(Reply(chunks=[" three", " four"]), model=VENDORS[second].split("/")[1])
    gw = ModelGateway(
        [
            {"model_name": v, "model": Model.chat_completion(VENDORS[v], max_retries=0)}
            for v in ("openai", second)
        ],
        breaker=None,
        mid_stream="continue",
    )
    stream = gw(messages="Count to four", stream=True)
    assert "".join(stream) == "one two three four"
    resumed = up.last
    assert resumed.invalid is None
    if second == "anthropic":
        assert resumed.json["messages"][-1] == {"role": "assistant", "content": "one two"}
    else:
        assert resumed.json["contents"][-1] == {"role": "model", "parts": [{"text": "one two"}]}


def test_msgflux_models_lists_the_native_providers() -> None:
    from typer.testing import CliRunner

    from msgflux.cli import app

    providers = Model.providers()
    assert {"anthropic", "azure", "gemini"} <= set(providers["chat_completion"])
    assert {"azure", "gemini"} <= set(providers["text_embedder"])
    assert {"text_to_speech", "speech_to_text", "text_to_image"} <= {
        kind for kind, names in providers.items() if "azure" in names
    }
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("anthropic", "azure", "gemini"):
        assert name in result.output
