"""Health-aware routing end to end: real HTTP against the local upstream.

The gateway's clock is a ManualClock (breaker and limit times move only when told to); the
requests themselves are real.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from msgflux import Breaker, ManualClock, ModelGateway
from msgflux.exceptions import ModelRouterError
from msgflux.models.model import Model
from tests.upstream import Reply, Upstream

MODES = pytest.mark.parametrize("mode", ["sync", "async"])


async def run(gateway: ModelGateway, mode: str, **kwargs: Any) -> Any:
    kwargs.setdefault("messages", "hi")
    if mode == "sync":
        return gateway(**kwargs)
    return await gateway.acall(**kwargs)


def two(
    up: Upstream, clock: ManualClock, primary: dict[str, Any] | None = None, **options: Any
) -> ModelGateway:
    return ModelGateway(
        [
            {
                "model_name": "primary",
                "model": Model.chat_completion("openai/primary", base_url=up.base_url),
                **(primary or {}),
            },
            {
                "model_name": "fallback",
                "model": Model.chat_completion("openai/fallback", base_url=up.base_url),
            },
        ],
        clock=clock,
        **options,
    )


@MODES
async def test_dead_primary_gets_no_requests_until_the_probe(
    mode: str, upstream_env: Upstream
) -> None:
    upstream_env.set_default(Reply(status=503), model="primary")
    clock = ManualClock()
    gw = two(upstream_env, clock, breaker=Breaker(failure_threshold=3, open_for=30))
    for _ in range(10):
        assert (await run(gw, mode)).consume() == "Hello from fallback"
    assert upstream_env.count("chat", model="primary") == 3
    clock.advance(29.9)
    for _ in range(5):
        await run(gw, mode)
    assert upstream_env.count("chat", model="primary") == 3
    clock.advance(0.1)  # probe time: exactly one request tests the primary
    await run(gw, mode)
    assert upstream_env.count("chat", model="primary") == 4
    upstream_env.set_default(Reply(), model="primary")  # it recovered
    clock.advance(60)
    assert (await run(gw, mode)).consume() == "Hello from primary"
    assert gw.stats()["deployments"]["primary"]["breaker"] == "closed"


@MODES
async def test_connection_refused_trips_the_breaker(
    mode: str, upstream_env: Upstream, closed_port: str
) -> None:
    clock = ManualClock()
    gw = ModelGateway(
        [
            {
                "model_name": "primary",
                "model": Model.chat_completion("openai/primary", base_url=closed_port),
            },
            {
                "model_name": "fallback",
                "model": Model.chat_completion("openai/fallback", base_url=upstream_env.base_url),
            },
        ],
        clock=clock,
        breaker=Breaker(failure_threshold=2),
    )
    for _ in range(4):
        await run(gw, mode)
    stats = gw.stats()["deployments"]["primary"]
    assert stats["calls"] == 2 and stats["skips"] == {"circuit open": 2}
    assert stats["failures"] == {"APIConnectionError": 2}


@MODES
async def test_retry_after_from_the_upstream_extends_the_open_time(
    mode: str, upstream_env: Upstream
) -> None:
    upstream_env.script([Reply(status=429, retry_after=90)], model="primary")
    clock = ManualClock()
    gw = two(upstream_env, clock, breaker=Breaker(failure_threshold=1, open_for=10))
    await run(gw, mode)
    assert gw.stats()["deployments"]["primary"]["reopens_at"] == pytest.approx(clock.time() + 90)


@MODES
async def test_bad_requests_never_trip(mode: str, upstream_env: Upstream) -> None:
    upstream_env.set_default(Reply(status=400, error="bad field"), model="primary")
    clock = ManualClock()
    gw = two(upstream_env, clock, breaker=Breaker(failure_threshold=1))
    for _ in range(3):
        await run(gw, mode)
    assert upstream_env.count("chat", model="primary") == 3
    assert gw.stats()["deployments"]["primary"]["breaker"] == "closed"


@MODES
async def test_a_dropped_connection_counts(mode: str, upstream_env: Upstream) -> None:
    upstream_env.script([Reply(drop="before_headers")], model="primary")
    clock = ManualClock()
    gw = two(upstream_env, clock, breaker=Breaker(failure_threshold=1))
    assert (await run(gw, mode)).consume() == "Hello from fallback"
    assert gw.stats()["deployments"]["primary"]["breaker"] == "open"


@MODES
async def test_rpm_keeps_requests_from_reaching_the_upstream(
    mode: str, upstream_env: Upstream
) -> None:
    clock = ManualClock()
    gw = two(upstream_env, clock, primary={"rpm": 3})
    answers = [(await run(gw, mode)).consume() for _ in range(5)]
    assert answers == ["Hello from primary"] * 3 + ["Hello from fallback"] * 2
    assert upstream_env.count("chat", model="primary") == 3


async def test_tpm_from_real_usage(upstream_env: Upstream) -> None:
    upstream_env.set_default(
        Reply(usage={"prompt_tokens": 300, "completion_tokens": 300, "total_tokens": 600}),
        model="primary",
    )
    gw = two(upstream_env, ManualClock(), primary={"tpm": 1000})
    answers = [(await gw.acall(messages="hi")).consume() for _ in range(3)]
    assert answers == ["Hello from primary"] * 2 + ["Hello from fallback"]


async def test_all_open_fails_fast_without_touching_the_network(upstream_env: Upstream) -> None:
    upstream_env.set_default(Reply(status=500))
    clock = ManualClock()
    gw = two(upstream_env, clock, breaker=Breaker(failure_threshold=1, open_for=15))
    with pytest.raises(ModelRouterError):
        await gw.acall(messages="hi")
    before = upstream_env.count()
    clock.advance(5)
    with pytest.raises(ModelRouterError) as info:
        await gw.acall(messages="hi")
    assert info.value.retry_after == pytest.approx(10)
    assert upstream_env.count() == before


@pytest.mark.slow
async def test_many_concurrent_calls_with_a_failing_primary(upstream_env: Upstream) -> None:
    """Calls admitted before the breaker opened may still reach the primary; none after."""
    upstream_env.set_default(Reply(status=500, delay=0.01), model="primary")
    clock = ManualClock()
    gw = two(upstream_env, clock, breaker=Breaker(failure_threshold=5))
    results = await asyncio.gather(*(gw.acall(messages="hi") for _ in range(300)))
    assert all(r.consume() == "Hello from fallback" for r in results)
    assert gw.stats()["deployments"]["primary"]["breaker"] == "open"
    reached = upstream_env.count("chat", model="primary")
    for _ in range(50):
        await gw.acall(messages="hi")
    assert upstream_env.count("chat", model="primary") == reached
    stats = gw.stats()["deployments"]
    assert stats["primary"]["in_flight"] == stats["fallback"]["in_flight"] == 0
