"""Live, process-local statistics per deployment: counts, errors, in-flight, latency.

Latency and time-to-first-chunk are kept in fixed rings of the most recent samples (no
allocation per call, bounded memory) and only samples younger than ``window`` seconds count.
Percentiles use the nearest-rank method and are cached: re-sorting a ring on every read would
cost more than the whole call, so a cached value is refreshed once enough new samples arrived
(1/16 of the ring) or a second has passed.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from msgflux._secrets import scrub

__all__ = ["DeploymentStats", "percentile"]


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty list (``q`` in [0, 1])."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class _Ring:
    """The last ``size`` (time, value) samples, with cached p50/p95/p99 over the live ones."""

    __slots__ = ("_at", "_cached_at", "_cached_n", "_i", "_n", "_quantiles", "_values", "window")

    def __init__(self, size: int, window: float) -> None:
        self._values = [0.0] * size
        self._at = [0.0] * size
        self._i = 0
        self._n = 0
        self.window = window
        self._cached_n = -1
        self._cached_at = -math.inf
        self._quantiles: tuple[int, float, float, float] = (0, 0.0, 0.0, 0.0)

    def add(self, value: float, at: float) -> None:
        i = self._i
        self._values[i] = value
        self._at[i] = at
        self._i = (i + 1) % len(self._values)
        self._n += 1

    def quantiles(self, now: float) -> tuple[int, float, float, float]:
        """(live sample count, p50, p95, p99)."""
        size = len(self._values)
        fresh = self._n - self._cached_n
        if fresh == 0 and now - self._cached_at < 1.0:
            return self._quantiles
        if fresh < max(1, min(self._n, size) >> 4) and now - self._cached_at < 1.0:
            return self._quantiles
        cutoff = now - self.window
        count = min(self._n, size)
        live = sorted(
            v for v, t in zip(self._values[:count], self._at[:count], strict=True) if t >= cutoff
        )
        if live:
            q = (
                len(live),
                percentile(live, 0.50),
                percentile(live, 0.95),
                percentile(live, 0.99),
            )
        else:
            q = (0, 0.0, 0.0, 0.0)
        self._quantiles = q
        self._cached_n = self._n
        self._cached_at = now
        return q


class DeploymentStats:
    """Counters and latency rings of one deployment in this process.

    The gateway updates it around every attempt; strategies read ``in_flight`` and
    :meth:`p50`; ``Hedge(delay="p95")`` reads :meth:`p95`. All methods are thread-safe.
    """

    __slots__ = (
        "_latency",
        "_lock",
        "_ttft",
        "calls",
        "cancelled",
        "consecutive_failures",
        "cost",
        "failures",
        "hedges_started",
        "hedges_won",
        "in_flight",
        "last_error",
        "rejected_requests",
        "skips",
        "successes",
        "tokens",
        "unpriced",
    )

    def __init__(self, size: int = 256, window: float = 300.0) -> None:
        self._lock = threading.Lock()
        self._latency = _Ring(size, window)
        self._ttft = _Ring(size, window)
        self.calls = 0
        self.successes = 0
        self.cancelled = 0
        self.failures: dict[str, int] = {}
        self.skips: dict[str, int] = {}
        self.in_flight = 0
        self.consecutive_failures = 0
        self.last_error: tuple[str, str, float] | None = None
        self.hedges_started = 0
        self.hedges_won = 0
        self.rejected_requests = 0
        self.tokens = [0, 0, 0]
        """Input, output and cached input tokens of the answers that reported usage."""
        self.cost = 0.0
        """USD of the answers whose cost is known."""
        self.unpriced = 0
        """Answers that reported usage but whose deployment has no known price."""

    # -- updates -----------------------------------------------------------------------------
    def started(self, hedge: bool = False) -> None:
        with self._lock:
            self.calls += 1
            self.in_flight += 1
            if hedge:
                self.hedges_started += 1

    def answered(self, latency: float, now: float, hedge: bool = False) -> None:
        """An attempt answered after ``latency`` seconds (``now`` is a perf-clock time)."""
        with self._lock:
            self.in_flight -= 1
            self.successes += 1
            self.consecutive_failures = 0
            self._latency.add(latency, now)
            if hedge:
                self.hedges_won += 1

    def spent(self, input_tokens: int, output_tokens: int, cached: int, cost: float | None) -> None:
        """An answer (a stream: once it ended) reported usage; ``cost`` None: no price."""
        with self._lock:
            tokens = self.tokens
            tokens[0] += input_tokens
            tokens[1] += output_tokens
            tokens[2] += cached
            if cost is None:
                self.unpriced += 1
            else:
                self.cost += cost

    def first_chunk(self, ttft: float, now: float) -> None:
        """A stream produced its first chunk ``ttft`` seconds after the attempt started."""
        with self._lock:
            self._ttft.add(ttft, now)

    def failed(self, exc: BaseException, wall: float) -> None:
        with self._lock:
            self.in_flight -= 1
            name = type(exc).__name__
            self.failures[name] = self.failures.get(name, 0) + 1
            self.consecutive_failures += 1
            self.last_error = (name, scrub(str(exc))[:500], wall)

    def rejected(self, exc: BaseException, wall: float) -> None:
        """The attempt failed because of the request (400/422, or a feature the provider
        cannot express): counted, but it says nothing against the deployment's health."""
        with self._lock:
            self.in_flight -= 1
            name = type(exc).__name__
            self.failures[name] = self.failures.get(name, 0) + 1
            self.rejected_requests += 1

    def abandoned(self, elapsed: float | None = None, now: float = 0.0) -> None:
        """The attempt was cancelled (hedge loser, caller gone). ``elapsed``, when given, is a
        lower bound of its latency worth remembering: an attempt that lost to a hedge started
        *after* it was slow, and forgetting it would hide the very tail hedging exists for."""
        with self._lock:
            self.in_flight -= 1
            self.cancelled += 1
            if elapsed is not None:
                self._latency.add(elapsed, now)

    def skipped(self, reason: str) -> None:
        with self._lock:
            self.skips[reason] = self.skips.get(reason, 0) + 1

    def interrupted(self, exc: BaseException, wall: float) -> None:
        """A committed stream broke after its first chunk; it is no longer in flight."""
        with self._lock:
            self.in_flight -= 1
            name = type(exc).__name__
            self.failures[name] = self.failures.get(name, 0) + 1
            self.consecutive_failures += 1
            self.last_error = (name, scrub(str(exc))[:500], wall)

    # -- reads -------------------------------------------------------------------------------
    def latency(self, now: float) -> tuple[int, float, float, float]:
        """(samples, p50, p95, p99) of the recent latencies, in seconds."""
        with self._lock:
            return self._latency.quantiles(now)

    def time_to_first_chunk(self, now: float) -> tuple[int, float, float, float]:
        with self._lock:
            return self._ttft.quantiles(now)

    def p50(self, now: float) -> float | None:
        """Recent median latency, or None before the first sample."""
        n, p50, _, _ = self.latency(now)
        return p50 if n else None

    def as_dict(self, now: float) -> dict[str, Any]:
        with self._lock:
            lat = self._latency.quantiles(now)
            ttft = self._ttft.quantiles(now)
            last = self.last_error
            return {
                "calls": self.calls,
                "successes": self.successes,
                "failures": dict(self.failures),
                "failed": sum(self.failures.values()),
                "cancelled": self.cancelled,
                "skips": dict(self.skips),
                "in_flight": self.in_flight,
                "consecutive_failures": self.consecutive_failures,
                "latency": _quantile_dict(lat),
                "time_to_first_chunk": _quantile_dict(ttft),
                "last_error": None
                if last is None
                else {"type": last[0], "message": last[1], "at": last[2]},
                "hedges": {"started": self.hedges_started, "won": self.hedges_won},
                "rejected_requests": self.rejected_requests,
                "tokens": {
                    "input": self.tokens[0],
                    "output": self.tokens[1],
                    "cached_input": self.tokens[2],
                },
                "cost": self.cost,
                "unpriced": self.unpriced,
            }


def _quantile_dict(q: tuple[int, float, float, float]) -> dict[str, Any]:
    n, p50, p95, p99 = q
    if not n:
        return {"samples": 0, "p50": None, "p95": None, "p99": None}
    return {"samples": n, "p50": p50, "p95": p95, "p99": p99}
