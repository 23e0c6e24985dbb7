"""The gateway's decision logic, free of I/O.

A :class:`CallState` is created per gateway call with the deployments that are eligible, in
the order to try them. The drivers (sync ``__call__`` and async ``acall``) feed it what
happened (an error, a skip) and it answers with the next :class:`Step`: attempt deployment X
(after sleeping S seconds, within T seconds), or raise. It never reads a clock, sleeps,
logs or calls a model: every time it needs is passed in, which keeps it deterministic and
shared by both drivers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from msgflux.exceptions import Attempt, ModelRouterError
from msgflux.models.gateway.deployment import Deployment
from msgflux.retry import RetryState, next_delay

__all__ = ["ATTEMPT", "RAISE", "CallConfig", "CallState", "Step", "as_predicate"]

ATTEMPT = 0
RAISE = 1

ErrorMatcher = Callable[[BaseException], bool]


def as_predicate(value: Any, field: str) -> ErrorMatcher | None:
    """Turn exception types, predicates or a list mixing them into one predicate."""
    if value is None:
        return None
    items = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
    types: list[type[BaseException]] = []
    funcs: list[ErrorMatcher] = []
    for item in items:
        if isinstance(item, type) and issubclass(item, BaseException):
            types.append(item)
        elif callable(item):
            funcs.append(item)
        else:
            raise TypeError(
                f"{field} accepts exception types, predicates (callables taking the exception "
                f"and returning bool) or a list of them; got {item!r}"
            )
    type_tuple = tuple(types)

    def predicate(exc: BaseException) -> bool:
        return isinstance(exc, type_tuple) or any(f(exc) for f in funcs)

    predicate.spec = items  # type: ignore[attr-defined]
    return predicate


@dataclasses.dataclass(frozen=True)
class CallConfig:
    """Gateway-wide limits for one call."""

    max_attempts: int | None = None
    deadline: float | None = None
    fallback_on: ErrorMatcher | None = None
    raise_on: ErrorMatcher | None = None


@dataclasses.dataclass(slots=True)
class Step:
    """What the driver does next."""

    kind: int
    deployment: Deployment | None = None
    number: int = 0
    """Attempt number on this deployment, 1-based."""
    delay: float = 0.0
    """Seconds to sleep before the attempt."""
    timeout: float | None = None
    """Seconds the attempt may take (per-attempt timeout, clipped to the deadline)."""
    error: BaseException | None = None
    fallback_from: Deployment | None = None
    """Set when this step moves to another deployment after a failure or skip."""


class CallState:
    """Bookkeeping of one gateway call (see the module docstring)."""

    __slots__ = (
        "_cfg",
        "_deadline_at",
        "_dep_started",
        "_number",
        "_pos",
        "attempts",
        "deployments",
        "started",
        "total",
    )

    def __init__(self, cfg: CallConfig, deployments: Sequence[Deployment], started: float):
        self._cfg = cfg
        self.deployments = deployments
        self.started = started
        self._deadline_at = None if cfg.deadline is None else started + cfg.deadline
        self._pos = 0
        self._number = 0
        self._dep_started = started
        self.total = 0
        self.attempts: list[Attempt] = []

    # -- steps --------------------------------------------------------------------------------
    def begin(self, now: float) -> Step:
        """The first step of the call."""
        return self._open(now, None)

    def failed(self, exc: BaseException, began: float, now: float, wall: float) -> Step:
        """The current attempt raised ``exc``; ``began``/``now`` are perf times, ``wall`` epoch."""
        dep = self.deployments[self._pos]
        self.attempts.append(
            Attempt(dep.name, dep.provider, dep.model_id, self._number, exc, wall, now - began)
        )
        cfg = self._cfg
        if cfg.raise_on is not None and cfg.raise_on(exc):
            return Step(RAISE, error=exc)
        if cfg.fallback_on is not None and not cfg.fallback_on(exc):
            return Step(RAISE, error=exc)
        delay = next_delay(dep.retry, RetryState(self._number, exc, now - self._dep_started))
        if delay is not None and self._budget_allows(now + delay):
            return self._attempt(dep, now + delay, delay)
        return self._next(now, dep)

    def skipped(self, reason: str, now: float, wall: float, retry_at: float | None = None) -> Step:
        """The current deployment was not called (circuit open, rate limit, ...)."""
        dep = self.deployments[self._pos]
        self.attempts.append(
            Attempt(dep.name, dep.provider, dep.model_id, 0, None, wall, 0.0, reason, retry_at)
        )
        self._number -= 1
        self.total -= 1
        return self._next(now, dep)

    def succeeded(self, began: float, now: float, wall: float, hedge: bool = False) -> Deployment:
        """The current attempt answered; returns the deployment that did."""
        dep = self.deployments[self._pos]
        self.attempts.append(
            Attempt(
                dep.name,
                dep.provider,
                dep.model_id,
                self._number,
                None,
                wall,
                now - began,
                hedge=hedge,
            )
        )
        return dep

    def interrupted(self, exc: BaseException, began: float, now: float, wall: float) -> Step:
        """A committed stream broke; continue on the next deployment (no retry of this one)."""
        dep = self.deployments[self._pos]
        if self.attempts and self.attempts[-1].exception is None:
            began = min(began, now - self.attempts[-1].duration)
            self.attempts.pop()
        self.attempts.append(
            Attempt(dep.name, dep.provider, dep.model_id, self._number, exc, wall, now - began)
        )
        return self._next(now, dep)

    # -- helpers ------------------------------------------------------------------------------
    def _budget_allows(self, at: float) -> bool:
        cfg = self._cfg
        if cfg.max_attempts is not None and self.total >= cfg.max_attempts:
            return False
        return self._deadline_at is None or at < self._deadline_at

    def _next(self, now: float, failed: Deployment) -> Step:
        self._pos += 1
        self._number = 0
        self._dep_started = now
        return self._open(now, failed)

    def _open(self, now: float, previous: Deployment | None) -> Step:
        if self._pos >= len(self.deployments):
            return Step(RAISE, error=self.error())
        if not self._budget_allows(now):
            return Step(RAISE, error=self.error(now))
        step = self._attempt(self.deployments[self._pos], now, 0.0)
        step.fallback_from = previous
        return step

    def _attempt(self, dep: Deployment, at: float, delay: float) -> Step:
        self._number += 1
        self.total += 1
        timeout = dep.timeout
        if self._deadline_at is not None:
            left = self._deadline_at - at
            timeout = left if timeout is None else min(timeout, left)
        return Step(ATTEMPT, dep, self._number, delay, timeout)

    def error(self, now: float | None = None) -> ModelRouterError:
        """The ModelRouterError describing every attempt so far."""
        failures = [
            (a.model_name, a.provider, a.exception)
            for a in self.attempts
            if a.exception is not None
        ]
        n = len(self.deployments)
        cfg = self._cfg
        if self._pos < n and now is not None:
            if self._deadline_at is not None and now >= self._deadline_at - 1e-9:
                message = f"Deadline of {cfg.deadline:g}s exceeded after {self.total} attempt(s)"
            else:
                message = f"max_attempts={cfg.max_attempts} reached after {self.total} attempt(s)"
            message += f" on {n} available model(s)"
        else:
            message = f"All {n} available models failed"
        return ModelRouterError(
            [f[2] for f in failures],
            failures,
            message,
            attempts=self.attempts,
        )
