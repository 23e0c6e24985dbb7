"""The gateway's decision logic, free of I/O.

A :class:`CallState` is created per gateway call with the deployments that are eligible, in
the order to try them. The drivers (sync ``__call__`` and async ``acall``) feed it what
happened (an error, a skip) and it answers with the next :class:`Step`: attempt deployment X
(after sleeping S seconds, within T seconds), or raise. It never reads a clock, sleeps,
logs or calls a model: every time it needs is passed in, which keeps it deterministic and
shared by both drivers.

Health-aware routing adds two inputs. Before each attempt the driver asks the state store to
admit one of the candidates from the current position on (:meth:`CallState.candidates`) and
hands the answer to :meth:`CallState.admitted`, which records the skipped deployments and
moves on to the admitted one (or raises, with ``retry_after``, when none has room). With
hedging, :meth:`CallState.hedge` names the next deployment to race against the running
attempt; several attempts are then in flight and each :class:`Step` carries its position.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from msgflux.exceptions import Attempt, ModelRouterError
from msgflux.models.gateway.deployment import Deployment
from msgflux.models.gateway.state import Admission, Policy
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
    pos: int = 0
    """Index of ``deployment`` in the call's ranked list."""
    hedge: bool = False
    """Started in parallel with a slower attempt (see hedge.py)."""
    ticket: Admission | None = None
    """The store's admission for this attempt, handed back when it is settled."""


class CallState:
    """Bookkeeping of one gateway call (see the module docstring)."""

    __slots__ = (
        "_cfg",
        "_deadline_at",
        "_dep_started",
        "_hi",
        "_number",
        "_pos",
        "attempts",
        "deployments",
        "lease",
        "policies",
        "retry_after",
        "started",
        "total",
    )

    def __init__(
        self,
        cfg: CallConfig,
        deployments: Sequence[Deployment],
        started: float,
        policies: Sequence[Policy] | None = None,
    ):
        self._cfg = cfg
        self.deployments = deployments
        self.policies: Sequence[Policy] = (
            policies if policies is not None else [d.policy for d in deployments]
        )
        self.started = started
        self._deadline_at = None if cfg.deadline is None else started + cfg.deadline
        self._pos = 0
        self._hi = 0
        self._number = 0
        self._dep_started = started
        self.total = 0
        self.attempts: list[Attempt] = []
        self.retry_after: float | None = None
        """Seconds until the earliest skipped deployment is usable again (from the skips)."""
        self.lease: Any = None
        """The driver's record of a committed stream's admission, settled when it ends."""

    # -- steps --------------------------------------------------------------------------------
    def begin(self, now: float) -> Step:
        """The first step of the call."""
        return self._open(now, None)

    def candidates(self, step: Step) -> Sequence[Policy]:
        """The policies the store may admit for ``step``: its deployment and those after it."""
        pos = step.pos
        return self.policies if pos == 0 else self.policies[pos:]

    def admitted(self, adm: Admission, step: Step, now: float, wall: float) -> Step:
        """The store answered ``adm`` for ``step``: record skips, move to the admitted one."""
        if adm.index == 0 and not adm.skips:
            step.ticket = adm
            return step
        base = step.pos
        self._skips(adm, base, wall)
        if adm.index < 0:
            self._number -= 1
            self.total -= 1
            self._pos = self._hi = len(self.deployments)
            return Step(RAISE, error=self.error())
        if adm.index == 0:
            step.ticket = adm
            return step
        pos = base + adm.index
        dep = self.deployments[pos]
        self._pos = pos
        self._hi = max(self._hi, pos)
        self._number = 1
        self._dep_started = now
        new = Step(ATTEMPT, dep, 1, 0.0, self._timeout(dep, now), pos=pos, ticket=adm)
        new.fallback_from = step.deployment
        return new

    def hedge(self, now: float) -> Step | None:
        """A parallel attempt on the next deployment not tried yet, or None (none left, or the
        budget of attempts or time is spent)."""
        pos = self._hi + 1
        if pos >= len(self.deployments) or not self._budget_allows(now):
            return None
        self.total += 1
        self._hi = pos
        dep = self.deployments[pos]
        return Step(ATTEMPT, dep, 1, 0.0, self._timeout(dep, now), pos=pos, hedge=True)

    def hedge_admitted(self, adm: Admission, step: Step, now: float, wall: float) -> Step | None:
        """Like :meth:`admitted` for a hedge; None when no deployment had room for it."""
        if adm.skips:
            self._skips(adm, step.pos, wall)
        if adm.index < 0:
            self.total -= 1
            self._hi = len(self.deployments)
            return None
        if adm.index:
            pos = step.pos + adm.index
            dep = self.deployments[pos]
            self._hi = pos
            step = Step(ATTEMPT, dep, 1, 0.0, self._timeout(dep, now), pos=pos, hedge=True)
        step.ticket = adm
        return step

    def failed(
        self,
        exc: BaseException,
        began: float,
        now: float,
        wall: float,
        step: Step | None = None,
        racing: bool = False,
    ) -> Step | None:
        """An attempt raised ``exc``; ``began``/``now`` are perf times, ``wall`` epoch.

        ``step`` names the attempt when several run at once; ``racing`` says others are still
        running, in which case the answer is None (wait for them) unless the error must be
        raised at once.
        """
        if step is not None and step.pos != self._pos:
            self._pos = step.pos
            self._number = step.number
            self._dep_started = began
        dep = self.deployments[self._pos]
        hedge = step is not None and step.hedge
        self.attempts.append(
            Attempt(
                dep.name,
                dep.provider,
                dep.model_id,
                self._number,
                exc,
                wall,
                now - began,
                hedge=hedge,
            )
        )
        cfg = self._cfg
        if cfg.raise_on is not None and cfg.raise_on(exc):
            return Step(RAISE, error=exc)
        if cfg.fallback_on is not None and not cfg.fallback_on(exc):
            return Step(RAISE, error=exc)
        if racing:
            return None
        delay = next_delay(dep.retry, RetryState(self._number, exc, now - self._dep_started))
        if delay is not None and self._budget_allows(now + delay):
            return self._attempt(dep, now + delay, delay)
        return self._next(now, dep)

    def succeeded(
        self, began: float, now: float, wall: float, hedge: bool = False, step: Step | None = None
    ) -> Deployment:
        """The current attempt (or ``step``) answered; returns the deployment that did."""
        if step is not None:
            self._pos = step.pos
            self._number = step.number
            hedge = step.hedge
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

    def cancelled(self, step: Step, began: float, now: float, wall: float) -> None:
        """A parallel attempt was cancelled because another one answered first."""
        dep = step.deployment
        assert dep is not None
        self.attempts.append(
            Attempt(
                dep.name,
                dep.provider,
                dep.model_id,
                step.number,
                None,
                wall,
                now - began,
                hedge=step.hedge,
                cancelled=True,
            )
        )

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

    def _skips(self, adm: Admission, base: int, wall: float) -> None:
        deployments = self.deployments
        for skip in adm.skips:
            dep = deployments[base + skip.index]
            self.attempts.append(
                Attempt(
                    dep.name,
                    dep.provider,
                    dep.model_id,
                    0,
                    None,
                    wall,
                    0.0,
                    skip.reason,
                    skip.retry_at,
                )
            )
            if skip.retry_at is not None:
                wait = max(skip.retry_at - wall, 0.0)
                if self.retry_after is None or wait < self.retry_after:
                    self.retry_after = wait

    def _timeout(self, dep: Deployment, at: float) -> float | None:
        timeout = dep.timeout
        if self._deadline_at is not None:
            left = self._deadline_at - at
            timeout = left if timeout is None else min(timeout, left)
        return timeout

    def _next(self, now: float, failed: Deployment) -> Step:
        self._pos = self._hi + 1
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
        pos = self._pos
        if pos > self._hi:
            self._hi = pos
        return Step(ATTEMPT, dep, self._number, delay, self._timeout(dep, at), pos=pos)

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
        elif not failures and self.attempts:
            reasons: dict[str, list[str]] = {}
            for a in self.attempts:
                if a.skipped is not None and a.model_name not in reasons.get(a.skipped, ()):
                    reasons.setdefault(a.skipped, []).append(a.model_name)
            why = "; ".join(f"{r}: {', '.join(names)}" for r, names in reasons.items())
            message = f"No model available: all {n} deployments skipped ({why})"
            if self.retry_after is not None:
                message += f"; retry after {self.retry_after:.3g}s"
        else:
            message = f"All {n} available models failed"
        return ModelRouterError(
            [f[2] for f in failures],
            failures,
            message,
            attempts=self.attempts,
            retry_after=self.retry_after,
        )
