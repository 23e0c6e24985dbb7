"""Routing strategies rank the eligible deployments; fallback still walks the ranking."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from msgflux import LeastBusy, LeastLatency, ManualClock, ModelGateway, RoundRobin, Weighted
from msgflux.exceptions import InternalServerError
from msgflux.models.gateway.deployment import Deployment
from tests.fakes import Scripted


def gateway(*models: Scripted, clock: ManualClock | None = None, **options: Any) -> ModelGateway:
    return ModelGateway(
        [{"model_name": m.model_id, "model": m} for m in models],
        clock=clock or ManualClock(),
        **options,
    )


def order(gw: ModelGateway, preference: str | None = None) -> list[str]:
    return [d.name for d in gw._plan(preference).deployments]


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
    a, b, c = models("a", "b", "c")
    gw = gateway(a, b, c, clock=clock, strategy="least_latency")
    deps = {d.name: d for d in gw._deployments}
    for latency, name in ((0.3, "a"), (0.1, "b")):
        for _ in range(5):
            deps[name].stats.started()
            deps[name].stats.answered(latency, clock.perf())
    assert order(gw) == ["c", "b", "a"]  # c has no samples yet: explored first
    for _ in range(5):
        deps["c"].stats.started()
        deps["c"].stats.answered(0.2, clock.perf())
    clock.advance(2)  # past the stats cache's refresh interval
    assert order(gw) == ["b", "c", "a"]


def test_least_latency_forgets_old_samples() -> None:
    clock = ManualClock()
    gw = gateway(*models("a", "b"), clock=clock, strategy=LeastLatency(), stats_window=60)
    a, b = gw._deployments
    a.stats.started()
    a.stats.answered(5.0, clock.perf())
    b.stats.started()
    b.stats.answered(1.0, clock.perf())
    assert order(gw) == ["b", "a"]
    clock.advance(61)
    b.stats.started()
    b.stats.answered(1.0, clock.perf())
    assert order(gw) == ["a", "b"]  # a's slow sample aged out: a is unknown again


def test_least_busy_prefers_fewest_in_flight() -> None:
    gw = gateway(*models("a", "b", "c"), strategy=LeastBusy())
    a, b, _ = gw._deployments
    a.stats.started()
    a.stats.started()
    b.stats.started()
    assert order(gw) == ["c", "b", "a"]
    a.stats.abandoned()
    a.stats.abandoned()
    assert order(gw) == ["a", "c", "b"]


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
    other = gateway(Scripted("x"))._deployments[0]
    gw = gateway(*models("a", "b"), strategy=lambda deps: [other])
    with pytest.raises(ValueError, match="not one of the eligible deployments"):
        gw(messages="hi")


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
