"""Live stats and health: counts, error classes, in-flight, percentiles, JSON-ready output."""

from __future__ import annotations

import json
from typing import Any

import pytest

from msgflux import Breaker, ManualClock, ModelGateway
from msgflux.exceptions import InternalServerError, ModelRouterError, RateLimitError
from msgflux.models.gateway.stats import DeploymentStats, percentile
from tests.fakes import Scripted


class Timed(Scripted):
    """Takes ``latencies[i]`` seconds of the manual clock on its i-th call."""

    def __init__(self, model_id: str, clock: ManualClock, latencies: list[float], **kw: Any):
        super().__init__(model_id, **kw)
        self.clock = clock
        self.latencies = list(latencies)

    def __call__(self, **kwargs: Any) -> Any:
        if self.latencies:
            self.clock.advance(self.latencies.pop(0))
        return super().__call__(**kwargs)

    async def acall(self, **kwargs: Any) -> Any:
        if self.latencies:
            self.clock.advance(self.latencies.pop(0))
        return await super().acall(**kwargs)


def test_nearest_rank_percentile() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.95) == 95
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile([7.0], 0.95) == 7
    assert percentile([1.0, 2.0], 0.0) == 1


def test_latency_ring_keeps_the_recent_window_only() -> None:
    s = DeploymentStats(size=8, window=10)
    for i in range(20):  # only the last 8 are kept
        s.started()
        s.answered(float(i), now=0.0)
    assert s.latency(0.0) == (8, 15.0, 19.0, 19.0)
    s.started()
    s.answered(100.0, now=5.0)
    assert s.latency(5.0)[0] == 8
    assert s.latency(12.0) == (1, 100.0, 100.0, 100.0)  # the ones from t=0 aged out
    assert s.latency(16.0) == (0, 0.0, 0.0, 0.0)
    assert s.p50(16.0) is None


def test_percentiles_are_cached_between_refreshes() -> None:
    s = DeploymentStats(size=256, window=300)
    for _ in range(100):
        s.started()
        s.answered(1.0, now=0.0)
    assert s.latency(0.0)[1] == 1.0
    s.started()
    s.answered(50.0, now=0.0)  # 1 new sample < 100/16: the cached value is served
    assert s.latency(0.0)[0] == 100
    assert s.latency(1.0)[0] == 101  # a second later it is refreshed


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_stats_per_deployment(mode: str) -> None:
    clock = ManualClock()
    a = Timed(
        "a",
        clock,
        [0.1, 0.2, 0.3, 0.4, 1.0],
        script=[None, None, RateLimitError("429", status_code=429), None, None, None],
    )
    b = Scripted("b")
    gw = ModelGateway(
        [{"model_name": "a", "model": a}, {"model_name": "b", "model": b}],
        clock=clock,
        breaker=Breaker(failure_threshold=5),
    )
    for _ in range(5):
        if mode == "sync":
            gw(messages="hi")
        else:
            await gw.acall(messages="hi")
    stats = gw.stats()
    json.dumps(stats)  # plain JSON data
    assert stats["state"] == {"backend": "memory", "shared": False, "healthy": True}
    s = stats["deployments"]["a"]
    assert (s["calls"], s["successes"], s["failed"], s["in_flight"]) == (5, 4, 1, 0)
    assert s["failures"] == {"RateLimitError": 1}
    assert s["latency"] == {"samples": 4, "p50": pytest.approx(0.2), "p95": 1.0, "p99": 1.0}
    assert s["last_error"]["type"] == "RateLimitError"
    assert s["last_error"]["at"] == pytest.approx(clock.time() - 1.4)
    assert s["breaker"] == "closed" and s["reopens_at"] is None
    assert s["window_calls"] == 5 and s["window_failures"] == 1
    sb = stats["deployments"]["b"]
    assert sb["failures"] == {} and sb["successes"] == 1 and sb["calls"] == 1


def test_time_to_first_chunk_for_streams() -> None:
    clock = ManualClock()
    a = Timed("a", clock, [0.25], chunks=["x", "y"])
    gw = ModelGateway([{"model_name": "a", "model": a}], clock=clock)
    stream = gw(messages="hi", stream=True)
    assert gw.stats()["deployments"]["a"]["in_flight"] == 1  # still streaming
    clock.advance(1.0)
    assert list(stream) == ["x", "y"]
    s = gw.stats()["deployments"]["a"]
    assert s["time_to_first_chunk"]["p50"] == pytest.approx(0.25)
    assert s["latency"]["p50"] == pytest.approx(1.25)
    assert s["in_flight"] == 0 and s["successes"] == 1


def test_health_summary() -> None:
    clock = ManualClock()
    a = Scripted("a", [InternalServerError("x", status_code=500)] * 2)
    b = Scripted("b", [InternalServerError("x", status_code=500)])
    gw = ModelGateway(
        [{"model_name": "a", "model": a}, {"model_name": "b", "model": b}],
        clock=clock,
        breaker=Breaker(failure_threshold=2, open_for=10),
    )
    assert gw.health()["status"] == "healthy"
    with pytest.raises(ModelRouterError):
        gw(messages="hi")  # both fail once: degraded, not down
    health = gw.health()
    json.dumps(health)
    assert health["deployments"]["a"]["status"] == "degraded"
    assert health["deployments"]["b"]["status"] == "degraded"
    assert health["status"] == "degraded"
    gw(messages="hi")  # a fails again: open; b answers
    health = gw.health()
    assert health["deployments"]["a"]["status"] == "down"
    assert health["deployments"]["a"]["reopens_at"] == pytest.approx(clock.time() + 10)
    assert health["deployments"]["b"]["status"] == "healthy"
    assert health["status"] == "degraded"
    clock.advance(10)
    assert gw.health()["deployments"]["a"]["status"] == "degraded"  # half-open


def test_stats_without_any_tracked_state() -> None:
    gw = ModelGateway([{"model_name": "a", "model": Scripted("a")}], breaker=None)
    gw(messages="hi")
    s = gw.stats()["deployments"]["a"]
    assert s["breaker"] == "disabled" and s["calls"] == 1
    assert gw.health()["status"] == "healthy"


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_stream_breaking_mid_way_counts_once_and_leaves_flight(mode: str) -> None:
    from msgflux.exceptions import APIConnectionError, StreamInterruptedError

    cut = APIConnectionError("reset mid-stream")
    a = Scripted("a", chunks=["part ", cut])
    gw = ModelGateway(
        [{"model_name": "a", "model": a}, {"model_name": "b", "model": Scripted("b")}],
        clock=ManualClock(),
        breaker=Breaker(failure_threshold=1),
    )
    with pytest.raises(StreamInterruptedError):
        if mode == "sync":
            list(gw(messages="hi", stream=True))
        else:
            [c async for c in (await gw.acall(messages="hi", stream=True)).consume()]
    s = gw.stats()["deployments"]["a"]
    assert s["in_flight"] == 0 and s["cancelled"] == 0
    assert s["failures"] == {"APIConnectionError": 1}
    assert s["time_to_first_chunk"]["samples"] == 1
    assert s["breaker"] == "open"
