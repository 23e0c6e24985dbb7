"""Hedged requests: cut tail latency by racing a second deployment when the first is slow.

If the first attempt has not answered (for a stream: produced its first chunk) within the
hedge delay, the next eligible deployment is started in parallel; the first success wins and
the others are cancelled (connections closed, results discarded, not counted against their
breakers). This is the "hedged request" of Dean and Barroso's *The Tail at Scale*: with the
delay at the deployment's own p95, about one call in twenty pays for a second request, and
the slowest few percent of calls stop setting the user's latency.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from msgflux.models.gateway.deployment import Deployment

__all__ = ["Hedge"]

_PERCENTILES = {"p50": 1, "p95": 2, "p99": 3}


@dataclasses.dataclass(frozen=True)
class Hedge:
    """When to start a parallel attempt on the next eligible deployment.

    >>> ModelGateway(deployments, hedge=Hedge(delay=0.5))      # fixed half a second
    >>> ModelGateway(deployments, hedge=Hedge(delay="p95"))    # the deployment's recent p95
    """

    delay: float | str = "p95"
    """Seconds, or ``"p50"``/``"p95"``/``"p99"`` of the first deployment's recent latency
    (time to first chunk for streams)."""
    max_hedges: int = 1
    """Parallel attempts started at most per call, one more each ``delay``."""
    min_samples: int = 20
    """A percentile delay needs this many recent samples; before that ``initial_delay``."""
    initial_delay: float | None = None
    """Delay while a percentile is not known yet (None: do not hedge until it is)."""
    min_delay: float = 0.0
    """Floor under a percentile delay (keeps a very fast deployment from hedging noise)."""

    def __post_init__(self) -> None:
        d = self.delay
        if isinstance(d, str):
            if d not in _PERCENTILES:
                raise ValueError(
                    f"Hedge.delay must be seconds > 0 or one of {', '.join(_PERCENTILES)}, "
                    f"got {d!r}"
                )
        elif isinstance(d, bool) or not isinstance(d, (int, float)):
            raise TypeError(
                f"Hedge.delay must be seconds > 0 or one of {', '.join(_PERCENTILES)}, got {d!r}"
            )
        elif not (d > 0 and math.isfinite(d)):
            raise ValueError(f"Hedge.delay must be seconds > 0, got {d!r}")
        if isinstance(self.max_hedges, bool) or not isinstance(self.max_hedges, int):
            raise TypeError(f"Hedge.max_hedges must be an int >= 1, got {self.max_hedges!r}")
        if self.max_hedges < 1:
            raise ValueError(f"Hedge.max_hedges must be an int >= 1, got {self.max_hedges!r}")
        if isinstance(self.min_samples, bool) or not isinstance(self.min_samples, int):
            raise TypeError(f"Hedge.min_samples must be an int >= 1, got {self.min_samples!r}")
        if self.min_samples < 1:
            raise ValueError(f"Hedge.min_samples must be an int >= 1, got {self.min_samples!r}")
        for name in ("initial_delay", "min_delay"):
            value = getattr(self, name)
            if value is None and name == "initial_delay":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"Hedge.{name} must be a number of seconds >= 0, got {value!r}")
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"Hedge.{name} must be a number of seconds >= 0, got {value!r}")

    def delay_for(self, dep: Deployment, stream: bool, now: float) -> float | None:
        """Seconds to wait for ``dep`` before hedging, or None for no hedge on this call."""
        d = self.delay
        if not isinstance(d, str):
            return float(d)
        q = dep.stats.time_to_first_chunk(now) if stream else dep.stats.latency(now)
        if q[0] < self.min_samples:
            return self.initial_delay
        value: float = q[_PERCENTILES[d]]
        return max(value, self.min_delay)

    def as_dict(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name == "delay" or getattr(self, f.name) != f.default
        }

    @classmethod
    def coerce(cls, value: Any) -> Hedge | None:
        """Accept a Hedge, a dict of its settings, seconds, a percentile name, or None."""
        if value is None or value is False:
            return None
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls(**value)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return cls(delay=value)
        raise TypeError(
            f"hedge must be a Hedge, a dict of Hedge settings, seconds, 'p50'/'p95'/'p99' or "
            f"None, got {value!r}"
        )
