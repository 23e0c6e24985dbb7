"""Gateway fallback and retry paths against the real local upstream (HTTP on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

import msgflux as mf
from msgflux._time import ManualClock
from msgflux.exceptions import (
    APIConnectionError,
    APITimeoutError,
    InternalServerError,
    ModelRouterError,
    RateLimitError,
    StreamInterruptedError,
)
from tests.upstream import Reply, Upstream

MODES = pytest.mark.parametrize("mode", ["sync", "async"])


async def run(gateway: mf.ModelGateway, mode: str, **kwargs: Any) -> Any:
    if mode == "sync":
        return gateway(**kwargs)
    return await gateway.acall(**kwargs)


def pair(primary_url: str, fallback_url: str, **options: Any) -> mf.ModelGateway:
    """Two deployments; breakers off unless asked, so each test sees plain fallback."""
    options.setdefault("breaker", False)
    return mf.ModelGateway(
        [
            {
                "model_name": "primary",
                "model": mf.Model.chat_completion("openai/primary", base_url=primary_url),
            },
            {
                "model_name": "fallback",
                "model": mf.Model.chat_completion("openai/fallback", base_url=fallback_url),
            },
        ],
        **options,
    )


@MODES
async def test_500_falls_back(upstream_env: Upstream, mode: str) -> None:
    upstream_env.script(Reply(status=500), model="primary")
    url = upstream_env.base_url
    resp = await run(pair(url, url), mode, messages="hi")
    assert resp.consume() == "Hello from fallback"
    assert resp.metadata.gateway["history"][0]["error"] == "InternalServerError"


@MODES
async def test_429_with_retry_after_is_retried_after_the_wait(
    upstream_env: Upstream, mode: str
) -> None:
    clock = ManualClock()
    upstream_env.script(Reply(status=429, retry_after=3), model="primary")
    url = upstream_env.base_url
    resp = await run(pair(url, url, max_retries=1, clock=clock), mode, messages="hi")
    assert resp.consume() == "Hello from primary"
    assert clock.sleeps == [3.0]
    assert upstream_env.count("chat", model="primary") == 2


@MODES
async def test_dropped_connection_falls_back(upstream_env: Upstream, mode: str) -> None:
    upstream_env.script(Reply(drop="before_headers"), model="primary")
    url = upstream_env.base_url
    resp = await run(pair(url, url), mode, messages="hi")
    assert resp.metadata.gateway["model_name"] == "fallback"
    assert resp.metadata.gateway["history"][0]["error"] == "APIConnectionError"


@MODES
async def test_connection_refused_falls_back(
    upstream_env: Upstream, closed_port: str, mode: str
) -> None:
    resp = await run(pair(closed_port, upstream_env.base_url), mode, messages="hi")
    assert resp.consume() == "Hello from fallback"


@MODES
async def test_timeout_on_a_slow_upstream_falls_back(upstream_env: Upstream, mode: str) -> None:
    upstream_env.script(Reply(delay=2.0), model="primary")
    url = upstream_env.base_url
    began = time.perf_counter()
    resp = await run(pair(url, url, timeout=0.2), mode, messages="hi")
    assert time.perf_counter() - began < 1.5
    assert resp.metadata.gateway["model_name"] == "fallback"
    assert resp.metadata.gateway["history"][0]["error"] == "APITimeoutError"


@MODES
async def test_all_down_reports_each_attempt_with_its_status(
    upstream_env: Upstream, mode: str
) -> None:
    upstream_env.set_default(Reply(status=503, error="overloaded"))
    url = upstream_env.base_url
    with pytest.raises(ModelRouterError) as info:
        await run(pair(url, url, max_retries=1, clock=ManualClock()), mode, messages="hi")
    statuses = [(a.model_name, a.attempt, a.exception.status_code) for a in info.value.attempts]  # type: ignore[union-attr]
    assert statuses == [
        ("primary", 1, 503),
        ("primary", 2, 503),
        ("fallback", 1, 503),
        ("fallback", 2, 503),
    ]
    assert all(isinstance(e, InternalServerError) for e in info.value.exceptions)


@MODES
async def test_stream_cut_before_first_chunk_falls_back_and_after_raises(
    upstream_env: Upstream, mode: str
) -> None:
    url = upstream_env.base_url
    upstream_env.script(Reply(status=500), model="primary")
    upstream_env.script(Reply(text="one two three"), model="fallback")
    gateway = pair(url, url)
    if mode == "sync":
        chunks = list(gateway(messages="hi", stream=True))
    else:
        chunks = [c async for c in (await gateway.acall(messages="hi", stream=True)).consume()]
    assert "".join(chunks) == "one two three"

    upstream_env.script(Reply(text="alpha beta gamma delta", cut_after=2), model="primary")
    got: list[str] = []
    with pytest.raises(StreamInterruptedError) as info:
        if mode == "sync":
            got.extend(gateway(messages="hi", stream=True))
        else:
            async for c in (await gateway.acall(messages="hi", stream=True)).consume():
                got.append(c)
    assert info.value.partial == "".join(got) == "alpha beta"
    assert isinstance(info.value.cause, APIConnectionError)


@MODES
async def test_stream_mid_stream_continue_against_the_upstream(
    upstream_env: Upstream, mode: str
) -> None:
    url = upstream_env.base_url
    upstream_env.script(Reply(text="alpha beta gamma delta", cut_after=2), model="primary")
    upstream_env.script(Reply(chunks=[" gamma", " delta"]), model="fallback")
    gateway = pair(url, url, mid_stream="continue")
    if mode == "sync":
        resp = gateway(messages="hi", stream=True)
        chunks = list(resp)
    else:
        resp = await gateway.acall(messages="hi", stream=True)
        chunks = [c async for c in resp.consume()]
    assert "".join(chunks) == "alpha beta gamma delta"
    messages = upstream_env.last.json["messages"]
    assert messages[-1] == {"role": "assistant", "content": "alpha beta"}
    assert resp.metadata.gateway["model_name"] == "fallback"
    assert resp.metadata.usage is not None


@pytest.mark.slow
async def test_1000_concurrent_calls_with_30_percent_failures_are_all_accounted_for(
    upstream_env: Upstream,
) -> None:
    rng = random.Random(42)
    url = upstream_env.base_url
    for model in ("primary", "fallback"):
        upstream_env.script(
            [Reply(status=500) if rng.random() < 0.3 else Reply() for _ in range(1000)],
            model=model,
        )
    gateway = pair(url, url)
    results = await asyncio.gather(
        *(gateway.acall(messages=f"q{i}") for i in range(1000)), return_exceptions=True
    )
    ok = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(e, ModelRouterError) for e in failed)
    for err in failed:
        assert isinstance(err, ModelRouterError)
        assert [(a.model_name, type(a.exception)) for a in err.attempts] == [
            ("primary", InternalServerError),
            ("fallback", InternalServerError),
        ]
    for resp in ok:
        record = resp.metadata.gateway
        assert record["model_name"] in ("primary", "fallback")
        assert resp.consume() == f"Hello from {record['model_name']}"
        assert record["fallbacks"] == ([] if record["model_name"] == "primary" else ["primary"])
    primary_errors = sum(
        1
        for r in upstream_env.requests
        if r.model == "primary" and r.reply and r.reply.status == 500
    )
    fallback_calls = upstream_env.count("chat", model="fallback")
    assert fallback_calls == primary_errors
    assert len(ok) + len(failed) == 1000
    assert 0.05 < len(failed) / 1000 < 0.15  # about 0.3 * 0.3


@pytest.mark.slow
async def test_1000_concurrent_calls_with_breakers_on_have_complete_attempts(
    upstream_env: Upstream,
) -> None:
    rng = random.Random(7)
    url = upstream_env.base_url
    for model in ("primary", "fallback"):
        upstream_env.script(
            [Reply(status=500) if rng.random() < 0.3 else Reply() for _ in range(1000)],
            model=model,
        )
    gateway = pair(url, url, breaker=True)
    results = await asyncio.gather(
        *(gateway.acall(messages=f"q{i}") for i in range(1000)), return_exceptions=True
    )
    for r in results:
        if isinstance(r, BaseException):
            assert isinstance(r, ModelRouterError)
            assert {a.model_name for a in r.attempts} == {"primary", "fallback"}
            assert all((a.exception is None) == (a.skipped is not None) for a in r.attempts)
        else:
            assert r.consume() == f"Hello from {r.metadata.gateway['model_name']}"


def test_sync_gateway_from_many_threads(upstream_env: Upstream) -> None:
    from concurrent.futures import ThreadPoolExecutor

    url = upstream_env.base_url
    upstream_env.script([Reply(status=500)] * 20, model="primary")
    gateway = pair(url, url)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: gateway(messages=str(i)), range(100)))
    names = [r.metadata.gateway["model_name"] for r in results]
    assert names.count("fallback") == 20 and names.count("primary") == 80


def test_timeout_error_carries_the_provider(upstream_env: Upstream) -> None:
    upstream_env.set_default(Reply(delay=1.0))
    url = upstream_env.base_url
    with pytest.raises(ModelRouterError) as info:
        pair(url, url, timeout=0.1)(messages="hi")
    assert all(isinstance(e, APITimeoutError) for e in info.value.exceptions)
    assert info.value.attempts[0].provider == "openai"


def test_rate_limit_retry_after_header_forms(upstream_env: Upstream) -> None:
    clock = ManualClock()
    upstream_env.script(Reply(status=429, retry_after_ms=1500), model="primary")
    url = upstream_env.base_url
    pair(url, url, max_retries=1, clock=clock)(messages="hi")
    assert clock.sleeps == [1.5]
    assert isinstance(RateLimitError("x"), RateLimitError)
