"""Prompt caching upstream: the input tokens an upstream read from its own cache are priced at
the cached rate, whatever the deployment's family, the client's family and the lane, whole
answers and streams alike (the record's ``cached_input_tokens`` and ``cost``), and the client
sees them in its own family's usage.
"""

from __future__ import annotations

from typing import Any

import pytest

from msgflux import Model, ModelGateway
from msgflux.pricing import usage_tokens
from tests.gateway.test_lanes import CLIENTS, FAMILIES, KEY, MODEL_IDS, PROVIDERS, body, events
from tests.upstream import Reply, Upstream

PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 2.0, "cached_input_per_mtok": 0.1}
COST = (200 * 1.0 + 800 * 0.1 + 10 * 2.0) / 1e6
"""1000 input tokens, 800 of them read from the upstream's cache, 10 output tokens."""
USAGE = {
    "chat": {
        "prompt_tokens": 1000,
        "completion_tokens": 10,
        "total_tokens": 1010,
        "prompt_tokens_details": {"cached_tokens": 800},
    },
    "messages": {"input_tokens": 200, "cache_read_input_tokens": 800, "output_tokens": 10},
    "gemini": {
        "promptTokenCount": 1000,
        "cachedContentTokenCount": 800,
        "candidatesTokenCount": 10,
        "totalTokenCount": 1010,
    },
}


def gateway(up: Upstream, provider: str, model_id: str) -> ModelGateway:
    base = up.base_url if provider in ("openai_compatible", "openai") else up.url
    model = Model.chat_completion(f"{provider}/{model_id}", base_url=base, api_key=KEY)
    return ModelGateway([{"model_name": "d", "model": model, "price": PRICE}])


def cached_seen(client: str, usage: dict[str, Any]) -> int | None:
    """The cached input tokens a client reads in its family's usage."""
    if client == "chat":
        return int(usage["prompt_tokens_details"]["cached_tokens"])
    if client == "messages":
        return int(usage["cache_read_input_tokens"])
    if client == "responses":
        return int(usage["input_tokens_details"]["cached_tokens"])
    return int(usage["cachedContentTokenCount"])


def last_usage(client: str, raw: bytes) -> dict[str, Any]:
    """A stream's usage as its client adds it up (Anthropic's counts are cumulative across
    ``message_start`` and ``message_delta``; the others' last usage is the whole)."""
    found: dict[str, Any] = {}
    for _, data in events(raw):
        if not isinstance(data, dict):
            continue
        usage = data.get("usage") or data.get("usageMetadata")
        for holder in ("response", "message"):
            if isinstance(data.get(holder), dict):
                usage = data[holder].get("usage") or usage
        if isinstance(usage, dict) and usage:
            found = {**found, **usage} if client == "messages" else usage
    return found


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("target", FAMILIES)
@pytest.mark.parametrize("client", CLIENTS)
async def test_cached_input_tokens_are_priced_at_the_cached_rate(
    upstream: Upstream, client: str, target: str, stream: bool
) -> None:
    upstream.set_default(Reply(usage=USAGE[target]))
    gw = gateway(upstream, PROVIDERS[target], MODEL_IDS[target])
    asked = body(client, stream)
    if client == "chat" and stream:
        asked["stream_options"] = {"include_usage": True}
    answer = await gw.acomplete(asked, api=client)
    if stream:
        usage = last_usage(client, b"".join([part async for part in answer.sse("gw")]))
    else:
        usage = answer.body.get("usage") or answer.body.get("usageMetadata")
    record = answer.record
    assert record is not None and record.cached_input_tokens == 800
    assert record.input_tokens == 1000 and record.cost == pytest.approx(COST)
    assert cached_seen(client, usage) == 800


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_native_responses_lane_prices_its_cached_tokens(
    upstream: Upstream, stream: bool
) -> None:
    usage = {"input_tokens": 1000, "input_tokens_details": {"cached_tokens": 800}}
    upstream.set_default(Reply(usage={**usage, "output_tokens": 10, "total_tokens": 1010}))
    gw = gateway(upstream, "openai", "m-resp")
    answer = await gw.acomplete(body("responses", stream), api="responses")
    assert answer.native
    if stream:
        seen = last_usage("responses", b"".join([part async for part in answer.sse("gw")]))
    else:
        seen = answer.body["usage"]
    assert cached_seen("responses", seen) == 800
    assert answer.record is not None and answer.record.cached_input_tokens == 800
    assert answer.record.cost == pytest.approx(COST)


def test_deepseeks_cache_hits_are_cached_input_tokens() -> None:
    tokens = usage_tokens(
        {
            "prompt_tokens": 1000,
            "completion_tokens": 10,
            "prompt_cache_hit_tokens": 800,
            "prompt_cache_miss_tokens": 200,
        }
    )
    assert tokens is not None and tokens.cached_input == 800 and tokens.input == 1000
