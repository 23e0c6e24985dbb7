"""The one module that reads clocks, sleeps and waits.

Everything that needs the time takes a :class:`Clock`; tests pass a :class:`ManualClock`
so time windows, backoff, cooldowns, breakers, hedging races and timeouts run instantly and
deterministically. The waits of races and timeouts go through the clock too
(:meth:`Clock.wait_first`, :meth:`Clock.wait_event`), which is what lets a manual clock
decide when a timeout fires.

The transport's I/O bounds are the exception: they bound real sockets, so they use real
monotonic time (:data:`monotonic`), which no manual clock can move.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = ["Clock", "ManualClock", "as_clock", "monotonic"]

monotonic = time.monotonic
"""Real monotonic seconds, for the transport's I/O bounds (which no manual clock can move)."""


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Clock:
    """Real time: wall clock for schedules, epoch seconds for shared state, a perf counter,
    and the sleeps and waits built on them."""

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

    def wait_event(self, event: threading.Event, timeout: float | None) -> bool:
        """Wait for ``event`` at most ``timeout`` seconds; True when it was set."""
        return event.wait(timeout)

    async def wait_first(
        self, aws: Iterable[asyncio.Future[Any]], timeout: float | None
    ) -> set[asyncio.Future[Any]]:
        """The futures among ``aws`` done when the first finishes or ``timeout`` passes."""
        done: set[asyncio.Future[Any]]
        done, _ = await asyncio.wait(aws, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        return done


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
    """A clock that only moves when told to, or when everything is waiting on it.

    ``advance(s)`` moves it. A sync ``sleep(s)`` moves it at once. Async sleeps and the
    timeouts of :meth:`wait_first` are virtual timers: once the event loop has run what it
    can (a few turns), the earliest timer fires and the clock jumps to it, so a race between
    a slow fake model and a hedge delay resolves in order of virtual time, instantly.

    >>> clock = ManualClock(datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc))
    >>> clock.advance(90); clock.now().minute
    1
    """

    _SETTLE_TURNS = 20
    """Event-loop turns given to runnable tasks before the next virtual timer fires."""

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime(2026, 1, 1, tzinfo=timezone.utc)
        if self._start.tzinfo is None:
            raise TypeError("ManualClock start must be an aware datetime")
        self._elapsed = 0.0
        self._lock = threading.Lock()
        self.sleeps: list[float] = []
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._jumper: asyncio.Task[None] | None = None

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
        await self._timer(max(seconds, 0.0))

    def wait_event(self, event: threading.Event, timeout: float | None) -> bool:
        """Real wait for ``event`` (a thread is doing real work), judged in virtual time: set
        after the clock moved past ``timeout`` counts as not set in time."""
        started = self._elapsed
        event.wait()
        return timeout is None or self._elapsed - started <= timeout

    async def wait_first(
        self, aws: Iterable[asyncio.Future[Any]], timeout: float | None
    ) -> set[asyncio.Future[Any]]:
        futures: set[asyncio.Future[Any]] = set(aws)
        done: set[asyncio.Future[Any]]
        if timeout is None:
            done, _ = await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
            return done
        timer: asyncio.Future[Any] = asyncio.ensure_future(self._timer(max(timeout, 0.0)))
        try:
            done, _ = await asyncio.wait(futures | {timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
        return done - {timer}

    async def _timer(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._timers, (self._elapsed + seconds, next(self._seq), fut))
        if self._jumper is None or self._jumper.done():
            self._jumper = loop.create_task(self._jump())
        await fut

    async def _jump(self) -> None:
        while self._timers:
            for _ in range(self._SETTLE_TURNS):
                await asyncio.sleep(0)
            if not self._timers:
                break
            at, _, fut = heapq.heappop(self._timers)
            if fut.done():  # its waiter was cancelled
                continue
            with self._lock:
                self._elapsed = max(self._elapsed, at)
            fut.set_result(None)


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
