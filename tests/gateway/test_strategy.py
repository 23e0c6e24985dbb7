"""Routing strategies rank the eligible deployments; fallback still walks the ranking."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from msgflux import LeastBusy, LeastLatency, ManualClock, ModelGateway, RoundRobin, Weighted
from msgflux.exceptions import InternalServerError
from msgflux.models.gateway.deployment import Deployment
from msgflux.models.gateway.strategy import GroupFirst, resolve_strategy
from tests.fakes import Scripted


def gateway(*models: Scripted, clock: ManualClock | None = None, **options: Any) -> ModelGateway:
    return ModelGateway(
        [{"model_name": m.model_id, "model": m} for m in models],
        clock=clock or ManualClock(),
        **options,
    )


def order(gw: ModelGateway, preference: str | None = None) -> list[str]:
    return gw.plan(preference)


class Timed(Scripted):
    """Answers after ``latency`` seconds of the (manual) clock the gateway measures with."""

    def __init__(self, model_id: str, clock: ManualClock, latency: float = 0.0) -> None:
        super().__init__(model_id)
        self.clock = clock
        self.latency = latency

    def __call__(self, **kwargs: Any) -> Any:
        self.clock.advance(self.latency)
        return super().__call__(**kwargs)


class Held(Scripted):
    """Its async calls stay in flight until ``release`` is set."""

    def __init__(self, model_id: str) -> None:
        super().__init__(model_id)
        self.release = asyncio.Event()

    async def acall(self, **kwargs: Any) -> Any:
        await self.release.wait()
        return self._answer(self._next(kwargs), kwargs)


def models(*names: str) -> list[Scripted]:
    return [Scripted(n) for n in names]


def test_ordered_is_the_default_and_keeps_the_list() -> None:
    gw = gateway(*models("a", "b", "c"))
    assert order(gw) == order(gw) == ["a", "b", "c"]
    assert gw.stats()["strategy"] == "ordered"


def test_round_robin_rotates_the_start() -> None:
    gw = gateway(*models("a", "b", "c"), strategy="round_robin")
    assert [order(gw) for _ in range(4)] == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]


def test_round_robin_spreads_real_calls() -> None:
    a, b = models("a", "b")
    gw = gateway(a, b, strategy=RoundRobin())
    for _ in range(10):
        gw(messages="hi")
    assert len(a.calls) == len(b.calls) == 5


def test_weighted_follows_the_weights() -> None:
    a, b, c = models("a", "b", "c")
    gw = ModelGateway(
        [
            {"model_name": "a", "model": a, "weight": 6},
            {"model_name": "b", "model": b, "weight": 3},
            {"model_name": "c", "model": c, "weight": 1},
        ],
        strategy=Weighted(rng=random.Random(7)),
    )
    firsts = Counter(order(gw)[0] for _ in range(5000))
    assert firsts["a"] / 5000 == pytest.approx(0.6, abs=0.03)
    assert firsts["b"] / 5000 == pytest.approx(0.3, abs=0.03)
    assert firsts["c"] / 5000 == pytest.approx(0.1, abs=0.02)


def test_weighted_is_reproducible_with_a_seeded_rng() -> None:
    def picks(seed: int) -> list[list[str]]:
        gw = ModelGateway(
            [
                {"model_name": "a", "model": Scripted("a"), "weight": 1},
                {"model_name": "b", "model": Scripted("b"), "weight": 2},
            ],
            strategy=Weighted(rng=random.Random(seed)),
        )
        return [order(gw) for _ in range(20)]

    assert picks(3) == picks(3)
    assert picks(3) != picks(4)  # the seed matters: the orders really are drawn
    assert {tuple(p) for p in picks(3)} == {("a", "b"), ("b", "a")}


def test_weight_zero_is_tried_last() -> None:
    gw = ModelGateway(
        [
            {"model_name": "a", "model": Scripted("a"), "weight": 0},
            {"model_name": "b", "model": Scripted("b"), "weight": 1},
        ],
        strategy="weighted",
    )
    assert all(order(gw) == ["b", "a"] for _ in range(50))


def test_least_latency_prefers_the_fastest_and_explores_unknowns_first() -> None:
    clock = ManualClock()
    a, b, c = Timed("a", clock, 0.3), Timed("b", clock, 0.1), Timed("c", clock, 0.2)
    gw = gateway(a, b, c, clock=clock, strategy="least_latency")
    for name in ("a", "b"):
        for _ in range(5):
            gw(messages="hi", model_preference=name)
    clock.advance(2)  # past the stats cache's refresh interval
    assert order(gw) == ["c", "b", "a"]  # c has no samples yet: explored first
    for _ in range(5):
        gw(messages="hi", model_preference="c")
    clock.advance(2)
    assert order(gw) == ["b", "c", "a"]


def test_least_latency_forgets_old_samples() -> None:
    clock = ManualClock()
    a, b = Timed("a", clock, 5.0), Timed("b", clock, 1.0)
    gw = gateway(a, b, clock=clock, strategy=LeastLatency(), stats_window=60)
    gw(messages="hi", model_preference="a")
    gw(messages="hi", model_preference="b")
    clock.advance(2)
    assert order(gw) == ["b", "a"]
    clock.advance(61)
    gw(messages="hi", model_preference="b")
    clock.advance(2)
    assert order(gw) == ["a", "b"]  # a's slow sample aged out: a is unknown again


async def test_least_busy_prefers_fewest_in_flight() -> None:
    a, b, c = Held("a"), Held("b"), Held("c")
    gw = gateway(a, b, c, strategy=LeastBusy())
    held = [
        asyncio.ensure_future(gw.acall(messages="hi", model_preference=name))
        for name in ("a", "a", "b")
    ]
    await asyncio.sleep(0.01)
    assert order(gw) == ["c", "b", "a"]
    a.release.set()
    await asyncio.gather(*held[:2])
    assert order(gw) == ["a", "c", "b"]
    b.release.set()
    await asyncio.gather(*held)


def test_preference_comes_before_the_strategy() -> None:
    gw = gateway(*models("a", "b", "c"), strategy="round_robin")
    assert [order(gw, "c")[0] for _ in range(3)] == ["c", "c", "c"]
    assert sorted(order(gw, "c")) == ["a", "b", "c"]


def test_fallback_walks_the_ranking() -> None:
    a = Scripted("a")
    b = Scripted("b", [InternalServerError("x", status_code=500)])
    gw = gateway(a, b, strategy=lambda deps: list(reversed(deps)))
    resp = gw(messages="hi")
    assert [h["model_name"] for h in resp.metadata.gateway["history"]] == ["b", "a"]


def test_custom_strategy_may_leave_deployments_out() -> None:
    def only_c(deps: Sequence[Deployment]) -> list[Deployment]:
        return [d for d in deps if d.name == "c"]

    gw = gateway(*models("a", "b", "c"), strategy=only_c)
    assert order(gw) == ["c", "a", "b"]


def test_custom_strategy_must_return_given_deployments() -> None:
    gw = gateway(*models("a", "b"), strategy=lambda deps: [Scripted("x")])
    with pytest.raises(ValueError, match="not one of the eligible deployments"):
        gw(messages="hi")


def test_group_first_ranks_the_fallbacks_last() -> None:
    def dep(name: str, weight: float, in_flight: int) -> Any:
        return SimpleNamespace(name=name, weight=weight, stats=SimpleNamespace(in_flight=in_flight))

    least_busy = GroupFirst(LeastBusy())
    deps = [dep("a", 1, 5), dep("b", 1, 1), dep("fb1", 0, 0), dep("fb2", 0, 0)]
    assert [d.name for d in least_busy(deps)] == ["b", "a", "fb1", "fb2"]
    # plain least_busy would have put the idle fallbacks first
    assert [d.name for d in least_busy(deps[:2])] == ["b", "a"]
    assert GroupFirst(LeastLatency()).name == "least_latency_then_fallbacks"


@pytest.mark.parametrize("name", ["least_busy_then_fallbacks", "least_latency_then_fallbacks"])
def test_group_first_strategies_are_named(name: str) -> None:
    a, b, fallback = models("a", "b", "fallback")
    deployments = [
        {"model_name": "a", "model": a},
        {"model_name": "b", "model": b},
        {"model_name": "fallback", "model": fallback, "weight": 0},
    ]
    gw = ModelGateway(deployments, strategy=name, clock=ManualClock())
    assert gw.stats()["strategy"] == name
    assert order(gw)[-1] == "fallback"
    # each gateway gets its own instance (bound to its own clock)
    first, _ = resolve_strategy(name, ManualClock())
    second, _ = resolve_strategy(name, ManualClock())
    assert isinstance(first, GroupFirst) and first is not second


@pytest.mark.parametrize(("value", "error"), [("fastest", ValueError), (42, TypeError)])
def test_strategy_is_validated(value: Any, error: type) -> None:
    with pytest.raises(error, match="strategy must be one of 'ordered', 'round_robin'"):
        gateway(Scripted("a"), strategy=value)


async def test_strategies_apply_to_acall() -> None:
    a, b = models("a", "b")
    gw = gateway(a, b, strategy="round_robin")
    for _ in range(4):
        await gw.acall(messages="hi")
    assert len(a.calls) == len(b.calls) == 2
