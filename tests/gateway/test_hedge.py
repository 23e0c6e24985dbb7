"""Hedged requests: race the next deployment when the first is slow; cancel the loser.

The race runs on real time (asyncio timers), so the delays here are tens of milliseconds
and the slow side sleeps far longer than any test waits.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from msgflux import Breaker, Hedge, ManualClock, MemoryStore, ModelGateway
from msgflux.exceptions import InternalServerError, ModelRouterError
from msgflux.models.gateway.deployment import Deployment
from msgflux.models.gateway.state import FAILURE, Policy, Settlement
from msgflux.models.model import Model
from msgflux.retry import RetryPolicy
from tests.fakes import Scripted
from tests.upstream import Reply, Upstream

MODES = pytest.mark.parametrize("mode", ["sync", "async"])
SLOW = 5.0


async def run(gateway: ModelGateway, mode: str, **kwargs: Any) -> Any:
    kwargs.setdefault("messages", "hi")
    if mode == "sync":
        return await asyncio.to_thread(lambda: gateway(**kwargs))
    return await gateway.acall(**kwargs)


class Paced(Scripted):
    """Answers (or raises) after ``delays[i]`` seconds on its i-th call; async-cancellable."""

    def __init__(self, model_id: str, delays: list[float], script: list[Any] | None = None):
        super().__init__(model_id, script or [])
        self.delays = list(delays)
        self.cancelled = 0

    async def acall(self, **kwargs: Any) -> Any:
        with self._lock:
            delay = self.delays.pop(0) if self.delays else 0.0
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return self._answer(self._next(kwargs), kwargs)


def gateway(*models: Scripted, **options: Any) -> ModelGateway:
    options.setdefault("hedge", Hedge(delay=0.03))
    return ModelGateway([{"model_name": m.model_id, "model": m} for m in models], **options)


# -- configuration -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"delay": 0}, ValueError, "delay"),
        ({"delay": "p90"}, ValueError, "delay"),
        ({"delay": [1]}, TypeError, "delay"),
        ({"delay": float("inf")}, ValueError, "delay"),
        ({"max_hedges": 0}, ValueError, "max_hedges"),
        ({"max_hedges": 1.5}, TypeError, "max_hedges"),
        ({"min_samples": 0}, ValueError, "min_samples"),
        ({"initial_delay": -1}, ValueError, "initial_delay"),
        ({"min_delay": "x"}, TypeError, "min_delay"),
    ],
)
def test_hedge_settings_are_validated(kwargs: dict[str, Any], error: type, field: str) -> None:
    with pytest.raises(error, match=f"Hedge.{field}"):
        Hedge(**kwargs)


def test_hedge_option_forms() -> None:
    a, b = Scripted("a"), Scripted("b")
    assert gateway(a, b, hedge=0.5).stats()["hedge"] == Hedge(delay=0.5).as_dict()
    assert gateway(a, b, hedge="p99").stats()["hedge"] == Hedge(delay="p99").as_dict()
    assert (
        gateway(a, b, hedge={"delay": 1, "max_hedges": 2}).stats()["hedge"] == Hedge(1, 2).as_dict()
    )
    assert gateway(a, b, hedge=None).stats()["hedge"] is None
    with pytest.raises(TypeError, match="hedge must be a Hedge"):
        gateway(a, b, hedge=[0.5])
    data = gateway(a, b, hedge=Hedge("p95", min_samples=5)).serialize()["state"]
    assert data["hedge"] == {"delay": "p95", "min_samples": 5}


def test_percentile_delay_needs_samples() -> None:
    dep = Deployment(0, "a", Scripted("a"), "fake", "a", RetryPolicy())
    hedge = Hedge(delay="p95", min_samples=10)
    assert hedge.delay_for(dep, stream=False, now=0.0) is None
    assert Hedge("p95", initial_delay=0.7).delay_for(dep, False, 0.0) == 0.7
    for i in range(1, 21):
        dep.stats.started()
        dep.stats.answered(i / 100, 0.0)
    assert hedge.delay_for(dep, stream=False, now=0.0) == pytest.approx(0.19)
    assert Hedge("p50", min_samples=10).delay_for(dep, False, 0.0) == pytest.approx(0.10)
    assert Hedge("p50", min_samples=10, min_delay=0.5).delay_for(dep, False, 0.0) == 0.5
    assert hedge.delay_for(dep, stream=True, now=0.0) is None  # no time-to-first-chunk yet
    assert Hedge(delay=0.25).delay_for(dep, stream=True, now=0.0) == 0.25


# -- the race ----------------------------------------------------------------------------------
@MODES
async def test_slow_first_attempt_is_hedged_and_the_loser_cancelled(mode: str) -> None:
    a, b = Paced("a", [SLOW]), Paced("b", [0.0])
    gw = gateway(a, b, breaker=Breaker(failure_threshold=1))
    started = time.perf_counter()
    resp = await run(gw, mode)
    assert time.perf_counter() - started < 1.0
    meta = resp.metadata.gateway
    assert meta["model_name"] == "b" and meta["hedged"] is True and meta["attempts"] == 2
    assert meta["fallbacks"] == []
    history = [(h["model_name"], h["hedge"], h["cancelled"], h["error"]) for h in meta["history"]]
    assert history == [("a", False, True, None), ("b", True, False, None)]
    assert a.cancelled == 1
    stats = gw.stats()["deployments"]
    assert stats["a"]["cancelled"] == 1 and stats["a"]["failures"] == {}
    assert stats["a"]["in_flight"] == 0 and stats["b"]["in_flight"] == 0
    assert stats["a"]["breaker"] == "closed"  # a cancelled loser never counts
    assert stats["b"]["hedges"] == {"started": 1, "won": 1}


@MODES
async def test_fast_first_attempt_is_not_hedged(mode: str) -> None:
    a, b = Paced("a", [0.0]), Paced("b", [0.0])
    resp = await run(gateway(a, b), mode)
    assert resp.metadata.gateway["model_name"] == "a"
    assert resp.metadata.gateway["hedged"] is False
    assert b.calls == []


@MODES
async def test_first_attempt_wins_if_it_answers_before_the_hedge(mode: str) -> None:
    a, b = Paced("a", [0.1]), Paced("b", [SLOW])
    resp = await run(gateway(a, b), mode)
    meta = resp.metadata.gateway
    assert meta["model_name"] == "a" and meta["hedged"] is False
    assert [(h["model_name"], h["cancelled"]) for h in meta["history"]] == [
        ("b", True),
        ("a", False),
    ]
    assert b.cancelled == 1


@MODES
async def test_early_failure_falls_back_without_a_hedge(mode: str) -> None:
    a = Paced("a", [0.0], [InternalServerError("x", status_code=500)])
    b = Paced("b", [0.0])
    resp = await run(gateway(a, b), mode)
    meta = resp.metadata.gateway
    assert meta["model_name"] == "b" and meta["hedged"] is False
    assert [h["error"] for h in meta["history"]] == ["InternalServerError", None]


@MODES
async def test_a_failing_first_attempt_leaves_the_hedge_running(mode: str) -> None:
    a = Paced("a", [0.1], [InternalServerError("x", status_code=500)])
    b = Paced("b", [0.2])
    gw = gateway(a, b, breaker=Breaker(failure_threshold=1))
    resp = await run(gw, mode)
    meta = resp.metadata.gateway
    assert meta["model_name"] == "b" and meta["hedged"] is True
    assert [(h["model_name"], h["error"]) for h in meta["history"]] == [
        ("a", "InternalServerError"),
        ("b", None),
    ]
    assert gw.stats()["deployments"]["a"]["breaker"] == "open"  # a real failure counts


@MODES
async def test_every_racer_failing_moves_on_to_the_next_deployment(mode: str) -> None:
    err = InternalServerError("x", status_code=500)
    a, b, c = Paced("a", [0.1], [err]), Paced("b", [0.05], [err]), Paced("c", [0.0])
    resp = await run(gateway(a, b, c), mode)
    meta = resp.metadata.gateway
    assert meta["model_name"] == "c"
    assert [(h["model_name"], h["error"]) for h in meta["history"]] == [
        ("b", "InternalServerError"),
        ("a", "InternalServerError"),
        ("c", None),
    ]


@MODES
async def test_all_racers_failing_raises_with_every_attempt(mode: str) -> None:
    err = InternalServerError("x", status_code=500)
    a, b = Paced("a", [0.1], [err]), Paced("b", [0.0], [err])
    with pytest.raises(ModelRouterError, match="All 2 available models failed") as info:
        await run(gateway(a, b), mode)
    assert {x.model_name for x in info.value.attempts} == {"a", "b"}


@MODES
async def test_max_hedges_starts_one_more_per_delay(mode: str) -> None:
    a, b, c = Paced("a", [SLOW]), Paced("b", [SLOW]), Paced("c", [0.0])
    resp = await run(gateway(a, b, c, hedge=Hedge(delay=0.03, max_hedges=2)), mode)
    meta = resp.metadata.gateway
    assert meta["model_name"] == "c" and meta["attempts"] == 3
    assert a.cancelled == b.cancelled == 1


@MODES
async def test_a_hedge_skips_an_open_deployment(mode: str) -> None:
    a, b, c = Paced("a", [SLOW]), Paced("b", [0.0]), Paced("c", [0.0])
    clock, store = ManualClock(), MemoryStore()
    gw = gateway(a, b, c, clock=clock, state=store, breaker=Breaker(failure_threshold=1))
    policy = Policy("b", "fake", "b", breaker=Breaker(failure_threshold=1))  # b's identity
    now = clock.time()
    store.settle(Settlement(policy, store.admit([policy], now), FAILURE, now))
    resp = await run(gw, mode)
    meta = resp.metadata.gateway
    assert meta["model_name"] == "c" and meta["hedged"] is True
    assert sorted((h["model_name"], h["skipped"], h["cancelled"]) for h in meta["history"]) == [
        ("a", None, True),
        ("b", "circuit open", False),
        ("c", None, False),
    ]
    assert b.calls == []


async def test_caller_cancellation_cancels_every_racer() -> None:
    a, b = Paced("a", [SLOW]), Paced("b", [SLOW])
    gw = gateway(a, b)
    task = asyncio.ensure_future(gw.acall(messages="hi"))
    await asyncio.sleep(0.1)  # both running
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert a.cancelled == b.cancelled == 1
    stats = gw.stats()["deployments"]
    assert stats["a"]["in_flight"] == stats["b"]["in_flight"] == 0


@MODES
async def test_streams_are_hedged_on_their_first_chunk(mode: str) -> None:
    class SlowStart(Scripted):
        async def acall(self, **kwargs: Any) -> Any:
            await asyncio.sleep(SLOW)
            return self._answer(self._next(kwargs), kwargs)

    a, b = SlowStart("a", chunks=["never"]), Scripted("b", chunks=["from ", "b"])
    gw = gateway(a, b)
    if mode == "sync":
        resp = await asyncio.to_thread(lambda: gw(messages="hi", stream=True))
        chunks = await asyncio.to_thread(list, resp)
    else:
        resp = await gw.acall(messages="hi", stream=True)
        chunks = [c async for c in resp.consume()]
    assert chunks == ["from ", "b"]
    assert resp.metadata.gateway["model_name"] == "b" and resp.metadata.gateway["hedged"]


def test_sync_hedging_from_many_threads() -> None:
    a = Paced("a", [SLOW if i % 2 else 0.0 for i in range(40)])
    b = Paced("b", [0.0] * 40)
    gw = gateway(a, b)
    winners: list[str] = []

    def call() -> None:
        winners.append(gw(messages="hi").metadata.gateway["model_name"])

    threads = [threading.Thread(target=call) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(winners) == 40 and set(winners) <= {"a", "b"}
    stats = gw.stats()["deployments"]
    assert stats["a"]["in_flight"] == stats["b"]["in_flight"] == 0
    gw.close()


# -- against the real upstream: the loser's connection is closed -------------------------------
def upstream_gateway(up: Upstream, **options: Any) -> ModelGateway:
    return ModelGateway(
        [
            {
                "model_name": "slow",
                "model": Model.chat_completion("openai/slow", base_url=up.base_url),
            },
            {
                "model_name": "fast",
                "model": Model.chat_completion("openai/fast", base_url=up.base_url),
            },
        ],
        **options,
    )


@MODES
async def test_the_losers_upstream_sees_the_connection_closed(
    mode: str, upstream_env: Upstream
) -> None:
    upstream_env.script([Reply(delay=SLOW)], model="slow")
    gw = upstream_gateway(upstream_env, hedge=Hedge(delay=0.05))
    started = time.perf_counter()
    resp = await run(gw, mode)
    assert time.perf_counter() - started < 1.0
    assert resp.consume() == "Hello from fast"
    assert resp.metadata.gateway["hedged"] is True
    assert await upstream_env.await_for(lambda up: len(up.closed_early(model="slow")) == 1)
    assert upstream_env.count("chat", model="slow") == upstream_env.count("chat", model="fast") == 1
    gw.close()


@MODES
async def test_hedged_stream_against_the_upstream(mode: str, upstream_env: Upstream) -> None:
    upstream_env.script([Reply(delay=SLOW)], model="slow")
    upstream_env.script([Reply(chunks=["fast ", "stream"])], model="fast")
    gw = upstream_gateway(upstream_env, hedge=Hedge(delay=0.05))
    if mode == "sync":
        resp = await asyncio.to_thread(lambda: gw(messages="hi", stream=True))
        chunks = await asyncio.to_thread(list, resp)
    else:
        resp = await gw.acall(messages="hi", stream=True)
        chunks = [c async for c in resp.consume()]
    assert "".join(chunks) == "fast stream"
    assert resp.metadata.gateway["model_name"] == "fast"
    assert await upstream_env.await_for(lambda up: len(up.closed_early(model="slow")) == 1)
    gw.close()
