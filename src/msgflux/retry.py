"""Retry policies as small composable callables, in the style of tenacity.

A *wait* maps the failed attempt to a delay (``wait_exponential_jitter() + wait_fixed(0.1)``),
a *stop* says when to give up (``stop_after_attempt(3) | stop_after_delay(10)``) and a
*retry* predicate says which errors are worth another try. Plain callables work everywhere.

:func:`next_delay` is the pure decision both loops (sync and async, model and gateway) use:
it returns the seconds to sleep before the next attempt, or ``None`` to stop.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from msgflux._time import Clock, as_clock
from msgflux.exceptions import is_transient

__all__ = [
    "RetryPolicy",
    "RetryState",
    "Stop",
    "Wait",
    "acall_with_retries",
    "call_with_retries",
    "next_delay",
    "retry_if_exception_type",
    "retry_if_transient",
    "stop_after_attempt",
    "stop_after_delay",
    "stop_never",
    "wait_exponential_jitter",
    "wait_fixed",
]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class RetryState:
    """What a policy sees: the attempt that just failed (1-based) and how long we have spent."""

    attempt: int
    exception: BaseException
    elapsed: float = 0.0


class Wait:
    """A delay policy; ``a + b`` adds two delays."""

    def __call__(self, state: RetryState) -> float:
        raise NotImplementedError

    def __add__(self, other: Callable[[RetryState], float]) -> Wait:
        return _WaitSum(self, other)

    def __radd__(self, other: Callable[[RetryState], float]) -> Wait:
        return _WaitSum(other, self)


@dataclasses.dataclass(frozen=True)
class _WaitSum(Wait):
    a: Callable[[RetryState], float]
    b: Callable[[RetryState], float]

    def __call__(self, state: RetryState) -> float:
        return self.a(state) + self.b(state)


@dataclasses.dataclass(frozen=True)
class wait_fixed(Wait):
    """Always wait ``seconds``."""

    seconds: float

    def __call__(self, state: RetryState) -> float:
        return self.seconds


@dataclasses.dataclass(frozen=True)
class wait_exponential_jitter(Wait):
    """Full jitter: uniform in ``[0, min(cap, base * 2**(attempt-1))]`` (AWS's recommendation).

    Spreading retries over the whole interval keeps many clients from hitting a recovering
    provider in lock-step.
    """

    base: float = 0.5
    cap: float = 8.0
    rng: Callable[[], float] | None = None
    """Uniform [0, 1) source; None: ``random.random``, looked up on each call."""

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ValueError(
                f"wait_exponential_jitter: base and cap must be >= 0, got {self.base}, {self.cap}"
            )

    def ceiling(self, attempt: int) -> float:
        return min(self.cap, self.base * 2.0 ** min(attempt - 1, 62))

    def __call__(self, state: RetryState) -> float:
        rng = self.rng if self.rng is not None else random.random
        return rng() * self.ceiling(state.attempt)


class Stop:
    """A stop condition; ``a | b`` stops when either does."""

    def __call__(self, state: RetryState) -> bool:
        raise NotImplementedError

    def __or__(self, other: Callable[[RetryState], bool]) -> Stop:
        return _StopAny(self, other)

    def __and__(self, other: Callable[[RetryState], bool]) -> Stop:
        return _StopAll(self, other)


@dataclasses.dataclass(frozen=True)
class _StopAny(Stop):
    a: Callable[[RetryState], bool]
    b: Callable[[RetryState], bool]

    def __call__(self, state: RetryState) -> bool:
        return self.a(state) or self.b(state)


@dataclasses.dataclass(frozen=True)
class _StopAll(Stop):
    a: Callable[[RetryState], bool]
    b: Callable[[RetryState], bool]

    def __call__(self, state: RetryState) -> bool:
        return self.a(state) and self.b(state)


@dataclasses.dataclass(frozen=True)
class stop_after_attempt(Stop):
    """Stop once ``attempts`` attempts have been made."""

    attempts: int

    def __call__(self, state: RetryState) -> bool:
        return state.attempt >= self.attempts


@dataclasses.dataclass(frozen=True)
class stop_after_delay(Stop):
    """Stop once ``seconds`` have passed since the first attempt started."""

    seconds: float

    def __call__(self, state: RetryState) -> bool:
        return state.elapsed >= self.seconds


class _StopNever(Stop):
    def __call__(self, state: RetryState) -> bool:
        return False


stop_never = _StopNever()


def retry_if_transient(exc: BaseException) -> bool:
    """Retry 429, 408, 409, 5xx, timeouts and connection errors."""
    return is_transient(exc)


def retry_if_exception_type(*types: type[BaseException]) -> Callable[[BaseException], bool]:
    """Retry only errors of the given types."""

    def predicate(exc: BaseException) -> bool:
        return isinstance(exc, types)

    return predicate


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How one deployment is retried: which errors, how long to wait, when to stop.

    ``max_retries`` retries follow the first attempt. The provider's ``Retry-After`` wins over
    the computed wait when it is longer, up to ``retry_after_cap`` seconds.
    """

    max_retries: int = 0
    wait: Callable[[RetryState], float] = wait_exponential_jitter()
    retry: Callable[[BaseException], bool] = retry_if_transient
    stop: Callable[[RetryState], bool] = stop_never
    retry_after_cap: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_retries, int) or isinstance(self.max_retries, bool):
            raise TypeError(f"max_retries must be an int >= 0, got {self.max_retries!r}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {self.max_retries}")
        for name in ("wait", "retry", "stop"):
            if not callable(getattr(self, name)):
                raise TypeError(f"{name} must be callable, got {getattr(self, name)!r}")
        if self.retry_after_cap < 0:
            raise ValueError(f"retry_after_cap must be >= 0, got {self.retry_after_cap}")


def next_delay(policy: RetryPolicy, state: RetryState) -> float | None:
    """Seconds to wait before retrying after ``state``, or None when we should not retry."""
    if state.attempt > policy.max_retries or not policy.retry(state.exception):
        return None
    if policy.stop(state):
        return None
    delay = max(float(policy.wait(state)), 0.0)
    retry_after = getattr(state.exception, "retry_after", None)
    if isinstance(retry_after, (int, float)) and retry_after > delay:
        delay = min(float(retry_after), policy.retry_after_cap)
    return delay


def call_with_retries(
    fn: Callable[[], T],
    *,
    max_retries: int,
    clock: Clock | None = None,
    wait: Callable[[RetryState], float] | None = None,
) -> T:
    """Call ``fn`` and retry transient errors up to ``max_retries`` times (sync)."""
    policy = RetryPolicy(max_retries, wait) if wait is not None else RetryPolicy(max_retries)
    clk = as_clock(clock)
    start = clk.perf()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:
            delay = next_delay(policy, RetryState(attempt, exc, clk.perf() - start))
            if delay is None:
                raise
        clk.sleep(delay)


async def acall_with_retries(
    fn: Callable[[], Awaitable[T]],
    *,
    max_retries: int,
    clock: Clock | None = None,
    wait: Callable[[RetryState], float] | None = None,
) -> T:
    """Async form of :func:`call_with_retries`."""
    policy = RetryPolicy(max_retries, wait) if wait is not None else RetryPolicy(max_retries)
    clk = as_clock(clock)
    start = clk.perf()
    attempt = 0
    while True:
        attempt += 1
        try:
            return await fn()
        except Exception as exc:
            delay = next_delay(policy, RetryState(attempt, exc, clk.perf() - start))
            if delay is None:
                raise
        await clk.asleep(delay)
