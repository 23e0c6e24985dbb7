"""msgflux.pricing: prices from genai-prices looked up once, costs in plain float arithmetic."""

from __future__ import annotations

import sys
from typing import Any

import genai_prices
import pytest

from msgflux import pricing
from msgflux.pricing import Price, Tokens, parse_price, price_of, usage_tokens


def their_cost(provider_id: str, model: str, **usage: int) -> float:
    return float(
        genai_prices.calc_price(
            genai_prices.Usage(**usage), model, provider_id=provider_id
        ).total_price
    )


@pytest.mark.parametrize(
    ("ours", "theirs", "model"),
    [
        ("openai", "openai", "gpt-4o"),
        ("azure", "azure", "gpt-4o-mini"),
        ("gemini", "google", "gemini-2.5-pro"),
        ("anthropic", "anthropic", "claude-sonnet-4-5"),
    ],
)
@pytest.mark.parametrize(
    ("inp", "cached", "written", "out"),
    [(1000, 300, 0, 200), (250_000, 1000, 2000, 5000), (200_000, 0, 0, 10), (200_001, 0, 0, 10)],
)
def test_cost_of_known_models_matches_genai_prices_own_calculation(
    ours: str, theirs: str, model: str, inp: int, cached: int, written: int, out: int
) -> None:
    price = price_of(ours, model)
    assert price is not None
    cost = price.charge(Tokens(inp, out, cached, written))
    expected = their_cost(
        theirs,
        model,
        input_tokens=inp,
        output_tokens=out,
        cache_read_tokens=cached,
        cache_write_tokens=written,
    )
    assert cost == pytest.approx(expected, rel=1e-12)


def test_gpt_4o_figure_by_hand() -> None:
    # $2.50 input, $1.25 cached input, $10 output per million tokens (genai-prices' data).
    price = price_of("openai", "gpt-4o")
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 100,
        "prompt_tokens_details": {"cached_tokens": 400},
    }
    assert price is not None
    assert price.cost(usage) == pytest.approx((600 * 2.5 + 400 * 1.25 + 100 * 10) / 1e6)


def test_tiered_price_is_a_cliff_on_the_input_tokens() -> None:
    price = price_of("gemini", "gemini-2.5-pro")
    assert price is not None and price.tiers and price.tiers[0][0] == 200_000
    below = price.cost({"prompt_tokens": 200_000, "completion_tokens": 1000})
    above = price.cost({"prompt_tokens": 200_001, "completion_tokens": 1000})
    assert below == pytest.approx((200_000 * 1.25 + 1000 * 10) / 1e6)
    assert above == pytest.approx((200_001 * 2.5 + 1000 * 15) / 1e6)  # every token, both sides


def test_override_tiers_merge_each_field_own_cliff() -> None:
    price = parse_price(
        {
            "input_per_mtok": 1,
            "output_per_mtok": 2,
            "tiers": [
                {"start": 10, "input_per_mtok": 3, "output_per_mtok": 4},
                {"start": 20, "input_per_mtok": 5, "output_per_mtok": 6},
            ],
        }
    )
    assert [price.charge(Tokens(n, 1, 0, 0)) * 1e6 for n in (10, 11, 20, 21)] == [
        pytest.approx(10 * 1 + 2),
        pytest.approx(11 * 3 + 4),
        pytest.approx(20 * 3 + 4),
        pytest.approx(21 * 5 + 6),
    ]


def test_cached_tokens_cost_the_cached_rate_and_the_rest_the_input_rate() -> None:
    price = Price(input_per_mtok=4.0, output_per_mtok=8.0, cached_input_per_mtok=1.0)
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 0,
        "prompt_tokens_details": {"cached_tokens": 60},
    }
    assert price.cost(usage) == pytest.approx((40 * 4 + 60 * 1) / 1e6)


def test_without_a_cached_rate_cached_tokens_cost_the_input_rate() -> None:
    price = Price(input_per_mtok=4.0, output_per_mtok=8.0)
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 0,
        "prompt_tokens_details": {"cached_tokens": 60},
    }
    assert price.cost(usage) == pytest.approx(100 * 4 / 1e6)


def test_anthropic_cache_writes_cost_the_cache_write_rate() -> None:
    # Our canonical Anthropic usage: prompt_tokens = fresh + written + read.
    usage = {
        "prompt_tokens": 35,
        "completion_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 20},
        "cache_creation_input_tokens": 5,
        "cache_read_input_tokens": 20,
    }
    assert usage_tokens(usage) == Tokens(35, 7, 20, 5)
    price = price_of("anthropic", "claude-sonnet-4-5")
    assert price is not None
    expected = their_cost(
        "anthropic",
        "claude-sonnet-4-5",
        input_tokens=35,
        output_tokens=7,
        cache_read_tokens=20,
        cache_write_tokens=5,
    )
    assert price.cost(usage) == pytest.approx(expected)


def test_cache_read_input_tokens_counts_when_details_are_absent() -> None:
    assert usage_tokens(
        {"prompt_tokens": 9, "completion_tokens": 1, "cache_read_input_tokens": 4}
    ) == Tokens(9, 1, 4, 0)


@pytest.mark.parametrize(
    "usage",
    [None, "12", {}, {"prompt_tokens": "10"}, {"prompt_tokens": -1, "completion_tokens": None}],
)
def test_usage_without_counts_has_no_tokens(usage: Any) -> None:
    assert usage_tokens(usage) is None


def test_cost_of_malformed_usage_is_a_type_error_naming_the_usage() -> None:
    with pytest.raises(TypeError, match="usage must be a dict with int prompt_tokens"):
        Price(1.0, 1.0).cost({"prompt_tokens": "many"})


@pytest.mark.parametrize(
    ("provider", "model_id"),
    [
        ("openai", "no-such-model-xyz"),
        ("vllm", "gpt-4o"),
        ("ollama", "llama3"),
        ("openai_compatible", "gpt-4o"),  # 'openai' in the name must not match OpenAI
        ("local", "qwen"),
        ("bench", "x"),
    ],
)
def test_unknown_models_and_unpriced_providers_have_no_price(provider: str, model_id: str) -> None:
    assert price_of(provider, model_id) is None


def test_a_price_is_looked_up_once_per_model(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = genai_prices.calc_price

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(pricing, "_cache", {})
    monkeypatch.setattr(genai_prices, "calc_price", counting)
    first = price_of("openai", "gpt-4o-mini")
    assert price_of("openai", "gpt-4o-mini") is first
    assert calls == ["gpt-4o-mini"]


def test_without_genai_prices_installed_the_price_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pricing, "_cache", {})
    monkeypatch.setitem(sys.modules, "genai_prices", None)  # import raises ImportError
    assert price_of("openai", "gpt-4o") is None


def test_price_of_rejects_non_strings() -> None:
    with pytest.raises(TypeError, match="provider and model_id must be str"):
        price_of("openai", None)  # type: ignore[arg-type]


def test_parse_price_accepts_the_override_dict_and_round_trips() -> None:
    price = parse_price({"input_per_mtok": 0.5, "output_per_mtok": 1.5, "cached_input_per_mtok": 0})
    assert price == Price(0.5, 1.5, 0.0)
    assert parse_price(price.as_dict()) == price
    tiered = parse_price(
        {
            "input_per_mtok": 1,
            "output_per_mtok": 2,
            "tiers": [{"start": 100, "input_per_mtok": 2, "output_per_mtok": 3}],
        }
    )
    assert parse_price(tiered.as_dict()) == tiered


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ([1, 2], TypeError, "price must be a dict with keys input_per_mtok"),
        ({"input_per_mtok": 1}, ValueError, "missing required key 'output_per_mtok'"),
        (
            {"input_per_mtok": 1, "output_per_mtok": 1, "inptu": 2},
            ValueError,
            "unknown key\\(s\\) 'inptu'; accepted keys: input_per_mtok, output_per_mtok",
        ),
        ({"input_per_mtok": -1, "output_per_mtok": 1}, ValueError, "price.input_per_mtok must"),
        ({"input_per_mtok": 1, "output_per_mtok": float("nan")}, ValueError, "output_per_mtok"),
        ({"input_per_mtok": 1, "output_per_mtok": float("inf")}, ValueError, "finite number"),
        ({"input_per_mtok": True, "output_per_mtok": 1}, TypeError, "input_per_mtok"),
        ({"input_per_mtok": "1", "output_per_mtok": 1}, TypeError, "input_per_mtok"),
        (
            {"input_per_mtok": 1, "output_per_mtok": 1, "cached_input_per_mtok": -0.1},
            ValueError,
            "cached_input_per_mtok",
        ),
        (
            {"input_per_mtok": 1, "output_per_mtok": 1, "tiers": [{"start": -1}]},
            ValueError,
            "price.tiers\\[0\\] is missing required key 'input_per_mtok'",
        ),
        (
            {
                "input_per_mtok": 1,
                "output_per_mtok": 1,
                "tiers": [
                    {"start": 5, "input_per_mtok": 1, "output_per_mtok": 1},
                    {"start": 5, "input_per_mtok": 1, "output_per_mtok": 1},
                ],
            },
            ValueError,
            "ascending order of start",
        ),
    ],
)
def test_parse_price_errors_name_the_field_and_accepted_values(
    value: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        parse_price(value)
