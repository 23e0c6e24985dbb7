"""Cost and usage in ``metadata.gateway``, price overrides, and stats() sums (real upstream)."""

from __future__ import annotations

from typing import Any

import genai_prices
import pytest

import msgflux as mf
from msgflux.models.gateway.raw import RawAnswer
from tests.upstream import Reply, Upstream

MODES = pytest.mark.parametrize("mode", ["sync", "async"])
USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 300,
    "total_tokens": 1500,
    "prompt_tokens_details": {"cached_tokens": 200},
}


def chat(upstream: Upstream, model: str, **kwargs: Any) -> Any:
    return mf.Model.chat_completion(model, base_url=upstream.base_url, **kwargs)


async def ask(gw: mf.ModelGateway, mode: str, **kwargs: Any) -> Any:
    if mode == "sync":
        return gw(messages="hi", **kwargs)
    return await gw.acall(messages="hi", **kwargs)


@MODES
async def test_metadata_gateway_carries_cost_and_usage(upstream_env: Upstream, mode: str) -> None:
    upstream_env.set_default(Reply(usage=USAGE))
    gw = mf.ModelGateway([{"model_name": "a", "model": chat(upstream_env, "openai/gpt-4o-mini")}])
    meta = (await ask(gw, mode)).metadata.gateway
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=200),
        "gpt-4o-mini",
        provider_id="openai",
    ).total_price
    assert meta["cost"] == pytest.approx(float(expected))
    assert meta["usage"] == {"input_tokens": 1200, "output_tokens": 300, "cached_input_tokens": 200}


@MODES
async def test_a_stream_is_priced_when_it_ended(upstream_env: Upstream, mode: str) -> None:
    upstream_env.set_default(Reply(usage=USAGE))
    gw = mf.ModelGateway([{"model_name": "a", "model": chat(upstream_env, "openai/gpt-4o-mini")}])
    stream = await ask(gw, mode, stream=True)
    assert stream.metadata.gateway["cost"] is None  # usage arrives with the last chunk
    if mode == "sync":
        list(stream)
    else:
        [c async for c in stream.consume()]
    assert stream.metadata.gateway["usage"]["input_tokens"] == 1200
    assert stream.metadata.gateway["cost"] == pytest.approx(
        (1000 * 0.15 + 200 * 0.075 + 300 * 0.6) / 1e6
    )
    assert gw.stats()["deployments"]["a"]["tokens"]["input"] == 1200  # counted once


def test_a_price_override_prices_a_self_hosted_model(upstream_env: Upstream) -> None:
    upstream_env.set_default(Reply(usage=USAGE))
    price = {"input_per_mtok": 0.2, "output_per_mtok": 0.8, "cached_input_per_mtok": 0.02}
    gw = mf.ModelGateway(
        [{"model_name": "mine", "model": chat(upstream_env, "vllm/my-llama"), "price": price}]
    )
    cost = gw(messages="hi").metadata.gateway["cost"]
    assert cost == pytest.approx((1000 * 0.2 + 200 * 0.02 + 300 * 0.8) / 1e6)


def test_an_override_wins_over_genai_prices(upstream_env: Upstream) -> None:
    upstream_env.set_default(Reply(usage=USAGE))
    gw = mf.ModelGateway(
        [
            {
                "model_name": "a",
                "model": chat(upstream_env, "openai/gpt-4o"),
                "price": {"input_per_mtok": 1, "output_per_mtok": 1},
            }
        ]
    )
    assert gw(messages="hi").metadata.gateway["cost"] == pytest.approx(1500 / 1e6)


def test_an_unknown_model_costs_none_and_counts_as_unpriced(upstream_env: Upstream) -> None:
    upstream_env.set_default(Reply(usage=USAGE))
    gw = mf.ModelGateway([{"model_name": "a", "model": chat(upstream_env, "vllm/my-llama")}])
    meta = gw(messages="hi").metadata.gateway
    assert meta["cost"] is None and meta["usage"]["output_tokens"] == 300
    stats = gw.stats()["deployments"]["a"]
    assert (stats["cost"], stats["unpriced"], stats["tokens"]["output"]) == (0.0, 1, 300)


def test_an_answer_without_usage_has_no_cost(upstream_env: Upstream) -> None:
    upstream_env.set_default(Reply(json={"choices": [{"message": {"content": "hi"}}]}))
    gw = mf.ModelGateway([{"model_name": "a", "model": chat(upstream_env, "openai/gpt-4o")}])
    meta = gw(messages="hi").metadata.gateway
    assert (meta["usage"], meta["cost"]) == (None, None)
    assert gw.stats()["deployments"]["a"]["unpriced"] == 0


@MODES
async def test_stats_sum_cost_and_tokens_per_deployment(upstream_env: Upstream, mode: str) -> None:
    upstream_env.set_default(Reply(usage=USAGE))
    upstream_env.script(Reply(status=500), model="gpt-4o")
    gw = mf.ModelGateway(
        [
            {"model_name": "a", "model": chat(upstream_env, "openai/gpt-4o")},
            {"model_name": "b", "model": chat(upstream_env, "openai/gpt-4o-mini")},
        ],
        breaker=False,
    )
    costs = [(await ask(gw, mode)).metadata.gateway["cost"] for _ in range(3)]
    stats = gw.stats()["deployments"]
    assert stats["a"]["cost"] == pytest.approx(costs[1] + costs[2])  # the first call fell back
    assert stats["b"]["cost"] == pytest.approx(costs[0])
    assert stats["a"]["tokens"] == {"input": 2400, "output": 600, "cached_input": 400}
    assert stats["b"]["tokens"] == {"input": 1200, "output": 300, "cached_input": 200}


def test_anthropic_cache_writes_are_priced(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key-0001")
    upstream.set_default(
        Reply(
            usage={
                "input_tokens": 100,
                "cache_creation_input_tokens": 50,
                "cache_read_input_tokens": 1000,
                "output_tokens": 20,
            }
        )
    )
    model = mf.Model.chat_completion("anthropic/claude-sonnet-4-5", base_url=upstream.url)
    gw = mf.ModelGateway([{"model_name": "claude", "model": model}])
    meta = gw(messages="hi").metadata.gateway
    assert meta["usage"] == {"input_tokens": 1150, "output_tokens": 20, "cached_input_tokens": 1000}
    assert meta["cost"] == pytest.approx((100 * 3 + 50 * 3.75 + 1000 * 0.3 + 20 * 15) / 1e6)


def test_the_raw_path_record_carries_the_cost(upstream_env: Upstream) -> None:
    upstream_env.set_default(Reply(usage=USAGE))
    gw = mf.ModelGateway([{"model_name": "a", "model": chat(upstream_env, "openai/gpt-4o-mini")}])
    answer = gw.complete({"messages": [{"role": "user", "content": "hi"}]})
    assert isinstance(answer, RawAnswer) and answer.record is not None
    assert answer.record.cost == answer.response.metadata["gateway"]["cost"] > 0
    assert answer.body["usage"]["prompt_tokens"] == 1200  # the upstream's usage, untouched


def test_price_round_trips_through_serialize() -> None:
    price = {"input_per_mtok": 0.2, "output_per_mtok": 0.8, "cached_input_per_mtok": 0.02}
    gw = mf.ModelGateway([{"model_name": "a", "model": "vllm/my-llama", "price": price}])
    data = gw.serialize()
    assert data["state"]["models"][0]["price"] == price
    again = mf.ModelGateway.from_serialized(data)
    assert again.serialize() == data


def test_a_bad_price_names_the_deployment_and_the_keys() -> None:
    with pytest.raises(ValueError, match="price of deployment 'a' has unknown key\\(s\\) 'usd'"):
        mf.ModelGateway(
            [
                {
                    "model_name": "a",
                    "model": "vllm/x",
                    "price": {"input_per_mtok": 1, "output_per_mtok": 1, "usd": 2},
                }
            ]
        )
    with pytest.raises(TypeError, match="price of deployment 'a' must be a dict"):
        mf.ModelGateway([{"model_name": "a", "model": "vllm/x", "price": 3}])
