"""The one module that reads clocks and sleeps.

Everything that needs the time takes a :class:`Clock`; tests pass a :class:`ManualClock`
so time windows, backoff, cooldowns and breakers run instantly and deterministically.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

__all__ = ["Clock", "ManualClock", "as_clock"]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Clock:
    """Real time: wall clock for schedules, epoch seconds for shared state, a perf counter."""

    def now(self) -> datetime:
        """Aware wall-clock time (used by time windows)."""
        return _utcnow()

    def time(self) -> float:
        """Seconds since the epoch (used for state shared across processes)."""
        return time.time()

    def perf(self) -> float:
        """Monotonic seconds with high resolution (used to measure durations)."""
        return time.perf_counter()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


class _WallClock(Clock):
    """Real time except the wall clock, which comes from the user's callable."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self._now = now

    def now(self) -> datetime:
        value = self._now()
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise TypeError(f"clock must return an aware datetime (with tzinfo), got {value!r}")
        return value


class ManualClock(Clock):
    """A clock that only moves when told to (or when something sleeps on it).

    >>> clock = ManualClock(datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc))
    >>> clock.advance(90); clock.now().minute
    1
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime(2026, 1, 1, tzinfo=timezone.utc)
        if self._start.tzinfo is None:
            raise TypeError("ManualClock start must be an aware datetime")
        self._elapsed = 0.0
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._elapsed += seconds

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    def time(self) -> float:
        return self._start.timestamp() + self._elapsed

    def perf(self) -> float:
        return self._elapsed

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(max(seconds, 0.0))

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(max(seconds, 0.0))
        await asyncio.sleep(0)


_REAL = Clock()


def as_clock(clock: Clock | Callable[[], datetime] | None) -> Clock:
    """Accept a Clock, a callable returning an aware datetime (msgflux style) or None."""
    if clock is None:
        return _REAL
    if isinstance(clock, Clock):
        return clock
    if callable(clock):
        return _WallClock(clock)
    raise TypeError(
        f"clock must be a msgflux Clock or a callable returning an aware datetime, got {clock!r}"
    )
