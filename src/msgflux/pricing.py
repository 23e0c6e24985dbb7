"""What a call cost, in USD, from the usage its answer reported.

Prices come from `genai-prices <https://github.com/pydantic/genai-prices>`_ (the ``[cost]``
extra), a maintained price list with tiered and cache prices. Looking a price up there costs
about 100 µs and importing the package a few hundred milliseconds, so :func:`price_of` looks a
``(provider, model_id)`` up once and keeps the answer as a :class:`Price` of plain floats;
:meth:`Price.cost` is then a few multiplications (about a microsecond).

>>> price = Price(input_per_mtok=2.5, output_per_mtok=10.0, cached_input_per_mtok=1.25)
>>> price.cost({"prompt_tokens": 1000, "completion_tokens": 100,
...             "prompt_tokens_details": {"cached_tokens": 400}})
0.003

Usage is OpenAI-shaped: cached input tokens are part of ``prompt_tokens`` and are charged at
the cached rate, the rest at the input rate (they are ``prompt_tokens_details.cached_tokens``,
or Anthropic's ``cache_read_input_tokens``, or DeepSeek's ``prompt_cache_hit_tokens``).
Anthropic's cache writes (``cache_creation_input_tokens``, also part of ``prompt_tokens`` in
our canonical usage) are charged at the cache-write rate. A rate a model has no price for (a
cache rate, say) charges those tokens at the input rate, as genai-prices does. A tiered price
is a cliff on the total input tokens: past a tier's start, every token of the call is charged
at that tier's rates.

What is not priced: audio, image and video tokens, web searches and per-request fees (the
canonical usage does not report them), and price changes scheduled after the lookup (a
price is looked up once per process).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, NamedTuple

__all__ = ["PRICE_KEYS", "Price", "Tokens", "parse_price", "price_of", "usage_tokens"]

logger = logging.getLogger("msgflux.pricing")

PRICE_KEYS = ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok")
"""The keys of a deployment's ``price`` override (the first two are required)."""

PROVIDERS = {
    "openai": "openai",
    "azure": "azure",  # genai-prices falls back to OpenAI's prices for Azure's models
    "anthropic": "anthropic",
    "gemini": "google",
    "deepseek": "deepseek",
    "groq": "groq",
    "mistral": "mistral",
    "together": "together",
    "openrouter": "openrouter",
    "cerebras": "cerebras",
    "bedrock": "aws",  # model ids, inference profiles and their ARNs
    "vertex": "google",  # Gemini, and Claude on Vertex (claude-sonnet-4@20250514)
}
"""Our provider names -> genai-prices' provider ids. Every other provider (vllm, ollama,
openai_compatible, local, a user's own) has no known price: set ``price`` on the deployment."""


class Tokens(NamedTuple):
    """The token counts of one answer, from its usage."""

    input: int
    """Every input token, cached and cache-written ones included (``prompt_tokens``)."""
    output: int
    cached_input: int
    """Input tokens read from the provider's prompt cache."""
    cache_write: int
    """Input tokens written to the provider's prompt cache (Anthropic)."""


def _count(value: Any) -> int:
    return value if type(value) is int and value >= 0 else 0


def _mapping(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


def usage_tokens(usage: Any) -> Tokens | None:
    """The token counts of an OpenAI-shaped usage dict; None when it reports none usable
    (no usage, or ``prompt_tokens``/``completion_tokens`` missing or not counts)."""
    if not _mapping(usage):
        return None
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    prompt_ok = type(prompt) is int and prompt >= 0
    if not prompt_ok and not (type(completion) is int and completion >= 0):
        return None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if _mapping(details) else None
    if cached is None:
        cached = usage.get("cache_read_input_tokens")
    if cached is None:
        cached = usage.get("prompt_cache_hit_tokens")  # DeepSeek's name for them
    return Tokens(
        prompt if prompt_ok else 0,
        _count(completion),
        _count(cached),
        _count(usage.get("cache_creation_input_tokens")),
    )


@dataclasses.dataclass(frozen=True)
class Price:
    """USD per million tokens of one model; ``cost(usage)`` gives a call's cost.

    ``tiers`` holds ``(start, price)`` pairs in ascending ``start`` order: when a call's
    input tokens exceed ``start``, all of its tokens are charged at that tier's ``price``.
    """

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None
    """None: cached input tokens cost the input rate."""
    cache_write_per_mtok: float | None = None
    """None: cache-write input tokens cost the input rate."""
    tiers: tuple[tuple[int, Price], ...] = ()

    def cost(self, usage: Mapping[str, Any]) -> float:
        """The cost in USD of an answer whose OpenAI-shaped usage is ``usage``."""
        tokens = usage_tokens(usage)
        if tokens is None:
            raise TypeError(
                "usage must be a dict with int prompt_tokens and/or completion_tokens "
                f"(and optionally prompt_tokens_details.cached_tokens), got {usage!r}"
            )
        return self.charge(tokens)

    def charge(self, tokens: Tokens) -> float:
        """The cost in USD of ``tokens`` (plain float arithmetic)."""
        rate = self
        for start, tier in reversed(self.tiers):
            if tokens.input > start:
                rate = tier
                break
        cached = tokens.cached_input
        written = tokens.cache_write
        fresh = max(tokens.input - cached - written, 0)
        cached_rate = rate.cached_input_per_mtok
        write_rate = rate.cache_write_per_mtok
        total = fresh * rate.input_per_mtok + tokens.output * rate.output_per_mtok
        total += cached * (rate.input_per_mtok if cached_rate is None else cached_rate)
        total += written * (rate.input_per_mtok if write_rate is None else write_rate)
        return total / 1e6

    def as_dict(self) -> dict[str, Any]:
        """The override dict that :func:`parse_price` accepts."""
        out: dict[str, Any] = {
            "input_per_mtok": self.input_per_mtok,
            "output_per_mtok": self.output_per_mtok,
        }
        if self.cached_input_per_mtok is not None:
            out["cached_input_per_mtok"] = self.cached_input_per_mtok
        if self.cache_write_per_mtok is not None:
            out["cache_write_per_mtok"] = self.cache_write_per_mtok
        if self.tiers:
            out["tiers"] = [{"start": start, **tier.as_dict()} for start, tier in self.tiers]
        return out


def _rate(value: Any, field: str, required: bool) -> float | None:
    accepted = "a finite number >= 0 (USD per million tokens)"
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field} must be {accepted}, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{field} must be {accepted}, got {value!r}")
    return float(value)


def _rates(value: Any, field: str, keys: tuple[str, ...]) -> Price:
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{field} must be a dict with keys {', '.join(keys)} "
            f"(input_per_mtok and output_per_mtok required), got {type(value).__name__}"
        )
    unknown = [k for k in value if k not in keys]
    if unknown:
        raise ValueError(
            f"{field} has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"accepted keys: {', '.join(keys)}"
        )
    for key in PRICE_KEYS[:2]:
        if key not in value:
            raise ValueError(f"{field} is missing required key {key!r}")
    rates = [_rate(value.get(k), f"{field}.{k}", i < 2) for i, k in enumerate(PRICE_KEYS)]
    return Price(rates[0] or 0.0, rates[1] or 0.0, rates[2], rates[3])


def _tiers(value: Any, field: str) -> tuple[tuple[int, Price], ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{field} must be a list of tier dicts, got {type(value).__name__}")
    tiers: list[tuple[int, Price]] = []
    for i, tier in enumerate(value):
        where = f"{field}[{i}]"
        price = _rates(tier, where, ("start", *PRICE_KEYS))
        start = tier.get("start")
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise TypeError(f"{where}.start must be an int >= 0 (input tokens), got {start!r}")
        if tiers and start <= tiers[-1][0]:
            raise ValueError(f"{field} must be in ascending order of start, got {start!r}")
        tiers.append((start, price))
    return tuple(tiers)


def parse_price(value: Any, field: str = "price") -> Price:
    """A :class:`Price` from a deployment's override: ``{"input_per_mtok": 0.5,
    "output_per_mtok": 1.5, "cached_input_per_mtok": 0.05}`` (or a :class:`Price`).

    ``tiers`` (optional) lists ``{"start": 200000, "input_per_mtok": ..., ...}`` dicts in
    ascending order: the rates of a call whose input tokens exceed ``start``."""
    if isinstance(value, Price):
        return value
    base = _rates(value, field, (*PRICE_KEYS, "tiers"))
    tiers = _tiers(value.get("tiers"), f"{field}.tiers")
    return dataclasses.replace(base, tiers=tiers) if tiers else base


# -- genai-prices ------------------------------------------------------------------------------
_cache: dict[tuple[str, str], Price | None] = {}
_lock = threading.Lock()


def price_of(provider: str, model_id: str) -> Price | None:
    """The price genai-prices knows for ``provider``'s ``model_id`` (looked up once per
    process); None when it does not know it, the provider is not one it prices, or the
    ``[cost]`` extra is not installed. Never raises for an unknown model."""
    if not isinstance(provider, str) or not isinstance(model_id, str):
        raise TypeError(
            f"provider and model_id must be str, got {type(provider).__name__} "
            f"and {type(model_id).__name__}"
        )
    key = (provider, model_id)
    try:
        return _cache[key]
    except KeyError:
        pass
    with _lock:
        if key not in _cache:
            _cache[key] = _look_up(provider, model_id)
        return _cache[key]


def _look_up(provider: str, model_id: str) -> Price | None:
    provider_id = PROVIDERS.get(provider)
    if provider_id is None or not model_id:
        return None
    try:
        import genai_prices
    except ImportError:
        logger.info('genai-prices is not installed (install "msgflux[cost]"): cost is None')
        return None
    try:
        found = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=0), model_id, provider_id=provider_id
        )
    except LookupError:
        return None
    except Exception:  # a malformed price list must not break a gateway
        logger.exception("genai-prices failed to price %s/%s", provider, model_id)
        return None
    return _from_model_price(found.model_price)


_FIELDS = (
    ("input_mtok", "input_per_mtok"),
    ("output_mtok", "output_per_mtok"),
    ("cache_read_mtok", "cached_input_per_mtok"),
    ("cache_write_mtok", "cache_write_per_mtok"),
)


def _at(value: Any, tokens: int | None) -> float | None:
    """A genai-prices price (a Decimal or tiered prices) as a float, for a call of
    ``tokens`` input tokens (None: the base price)."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return float(value)
    price = value.base
    if tokens is not None:
        for tier in value.tiers:  # ascending
            if tokens > tier.start:
                price = tier.price
    return float(price)


def _from_model_price(model_price: Any) -> Price | None:
    values = {ours: getattr(model_price, theirs, None) for theirs, ours in _FIELDS}
    if values["input_per_mtok"] is None and values["output_per_mtok"] is None:
        return None  # priced per request, per character, per second...: not by tokens
    starts = sorted(
        {
            tier.start
            for v in values.values()
            if v is not None and not isinstance(v, Decimal)
            for tier in v.tiers
        }
    )

    def at(tokens: int | None) -> Price:
        rates = {k: _at(v, tokens) for k, v in values.items()}
        return Price(
            rates["input_per_mtok"] or 0.0,
            rates["output_per_mtok"] or 0.0,
            rates["cached_input_per_mtok"],
            rates["cache_write_per_mtok"],
        )

    base = at(None)
    if not starts:
        return base
    # Past ``start`` every tiered field is at the rate of its own tier for ``start + 1``
    # input tokens: one merged tier per distinct start gives each field's own cliff.
    tiers = tuple((start, at(start + 1)) for start in starts)
    return dataclasses.replace(base, tiers=tiers)
