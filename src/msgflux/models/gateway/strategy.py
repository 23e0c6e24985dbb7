"""Routing strategies: the order in which a call tries the eligible deployments.

A strategy only *ranks*: fallback still walks the ranked list, skipping deployments whose
breaker is open or that are at a limit. It is any callable taking the eligible deployments
(each with ``.name``, ``.weight`` and live ``.stats``) and returning them in the order to try;
deployments it leaves out are tried last, in their original order.

>>> ModelGateway(deployments, strategy="least_latency")
>>> ModelGateway(deployments, strategy=lambda deps: sorted(deps, key=lambda d: -d.weight))
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from msgflux._time import Clock

if TYPE_CHECKING:
    from msgflux.models.gateway.deployment import Deployment

__all__ = [
    "STRATEGIES",
    "GroupFirst",
    "LeastBusy",
    "LeastLatency",
    "Ordered",
    "RoundRobin",
    "Strategy",
    "Weighted",
    "resolve_strategy",
]

Ranking = Callable[[Sequence["Deployment"]], Sequence["Deployment"]]


class Strategy:
    """Base class of the built-in strategies (plain callables work as well)."""

    name = "custom"
    clock: Clock | None = None

    def bind(self, clock: Clock) -> Strategy:
        """Give the strategy the gateway's clock (for stats windows)."""
        self.clock = clock
        return self

    def __call__(self, deployments: Sequence[Deployment]) -> Sequence[Deployment]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Ordered(Strategy):
    """The deployments' own order (the preferred one first): msgflux's behaviour."""

    name = "ordered"

    def __call__(self, deployments: Sequence[Deployment]) -> Sequence[Deployment]:
        return deployments


class RoundRobin(Strategy):
    """Each call starts one deployment further along, spreading load evenly."""

    name = "round_robin"

    def __init__(self) -> None:
        self._counter = itertools.count()

    def __call__(self, deployments: Sequence[Deployment]) -> Sequence[Deployment]:
        n = len(deployments)
        if n < 2:
            return deployments
        k = next(self._counter) % n  # itertools.count is atomic under the GIL
        return [*deployments[k:], *deployments[:k]]


class Weighted(Strategy):
    """Random order where a deployment comes first with probability ``weight / total``.

    Uses Efraimidis-Spirakis keys (``u ** (1 / weight)``), so the whole ranking, not only the
    first pick, respects the weights. Pass ``rng`` (a ``random.Random``) for reproducibility.
    """

    name = "weighted"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._random = (rng or random.Random()).random

    def __call__(self, deployments: Sequence[Deployment]) -> Sequence[Deployment]:
        if len(deployments) < 2:
            return deployments
        rand = self._random
        keyed = [(rand() ** (1.0 / d.weight) if d.weight > 0 else -1.0, d) for d in deployments]
        keyed.sort(key=lambda kd: kd[0], reverse=True)
        return [d for _, d in keyed]


class LeastLatency(Strategy):
    """Lowest recent median latency first; deployments with no samples yet come first of all,
    so a new or recovered deployment gets measured instead of being starved."""

    name = "least_latency"

    def __call__(self, deployments: Sequence[Deployment]) -> Sequence[Deployment]:
        if len(deployments) < 2:
            return deployments
        now = self.clock.perf() if self.clock is not None else 0.0

        def key(d: Deployment) -> float:
            p50 = d.stats.p50(now)
            return -1.0 if p50 is None else p50

        return sorted(deployments, key=key)


class LeastBusy(Strategy):
    """Fewest calls in flight (from this process) first; ties keep the deployments' order."""

    name = "least_busy"

    def __call__(self, deployments: Sequence[Deployment]) -> Sequence[Deployment]:
        if len(deployments) < 2:
            return deployments
        return sorted(deployments, key=lambda d: d.stats.in_flight)


class GroupFirst(Strategy):
    """Rank the group's own deployments (``weight > 0``) with ``inner``, then the fallback
    deployments (``weight: 0``) in their order.

    A LiteLLM model group routes within itself (least busy, lowest latency) and moves to its
    fallback groups only once it has failed; ``least_busy``/``least_latency`` alone would rank
    a fallback deployment first as soon as it is idler or unmeasured. The LiteLLM importer
    (:mod:`msgflux.tools.litellm_import`) names ``least_busy_then_fallbacks`` or
    ``least_latency_then_fallbacks`` for a gateway with several deployments of its own and
    fallbacks.
    """

    def __init__(self, inner: Strategy) -> None:
        self.inner = inner
        self.name = f"{inner.name}_then_fallbacks"

    def bind(self, clock: Clock) -> GroupFirst:
        self.inner.bind(clock)
        self.clock = clock
        return self

    def __call__(self, deployments: Sequence[Deployment]) -> Sequence[Deployment]:
        rest = [d for d in deployments if d.weight <= 0]
        if not rest:
            return self.inner(deployments)
        own = [d for d in deployments if d.weight > 0]
        return [*self.inner(own), *rest]

    def __repr__(self) -> str:
        return f"GroupFirst({self.inner!r})"


STRATEGIES: dict[str, Callable[[], Strategy]] = {
    "ordered": Ordered,
    "round_robin": RoundRobin,
    "weighted": Weighted,
    "least_latency": LeastLatency,
    "least_busy": LeastBusy,
    "least_busy_then_fallbacks": lambda: GroupFirst(LeastBusy()),
    "least_latency_then_fallbacks": lambda: GroupFirst(LeastLatency()),
}
"""Strategies a gateway (or a config file) may name: name -> a new instance."""


def resolve_strategy(value: Any, clock: Clock) -> tuple[Ranking | None, str]:
    """(ranking callable or None for "ordered", name for serialization)."""
    if value is None or value == "ordered" or isinstance(value, Ordered):
        return None, "ordered"
    if isinstance(value, str):
        make = STRATEGIES.get(value)
        if make is None:
            raise ValueError(
                f"strategy must be one of {', '.join(map(repr, STRATEGIES))} or a callable "
                f"ranking the deployments, got {value!r}"
            )
        return make().bind(clock), value
    if isinstance(value, Strategy):
        return value.bind(clock), value.name
    if callable(value):
        return value, "custom"
    raise TypeError(
        f"strategy must be one of {', '.join(map(repr, STRATEGIES))} or a callable ranking "
        f"the deployments, got {value!r}"
    )


def apply_ranking(ranking: Ranking, deployments: Sequence[Deployment]) -> Sequence[Deployment]:
    """Run a ranking and make its answer safe: known deployments, each once, none lost."""
    ranked = ranking(deployments)
    if ranked is deployments:
        return deployments
    out: list[Deployment] = []
    seen: set[int] = set()
    allowed = {id(d) for d in deployments}
    for d in ranked:
        if id(d) not in allowed:
            raise ValueError(
                f"strategy returned {d!r}, which is not one of the eligible deployments it "
                "was given; a strategy may only reorder them"
            )
        if id(d) not in seen:
            seen.add(id(d))
            out.append(d)
    if len(out) < len(deployments):
        out.extend(d for d in deployments if id(d) not in seen)
    return out
