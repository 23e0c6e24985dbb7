"""The gateway's decisions, free of I/O: given what happened, what to do next.

A :class:`CallState` is created per gateway call with the deployments eligible for it, in the
order to try them. The drivers feed it what happened (the store's admission, an attempt's
error or answer, a broken stream, a slow attempt in a race) and it answers with a
:class:`Step` whose :class:`Action` says what to do: **attempt** a deployment (after sleeping
``delay``), **hedge** (start another deployment beside the running one), **cancel** the
losers of a race, **return** the answer, or **raise**. A step also carries the
:class:`~msgflux.models.gateway.state.Settlement` the store must record (``settle``), so the
drivers never judge an outcome themselves: classification and settlements are the pure
functions of :mod:`.outcome`.

It never reads a clock, sleeps, logs or calls a model: every time it needs is passed in, which
keeps it deterministic and shared by both drivers (see ``tests/gateway/test_engine.py`` for
its table of cases).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

from msgflux.exceptions import (
    Attempt,
    ModelRouterError,
    StreamInterruptedError,
    UnsupportedFeatureError,
)
from msgflux.models.gateway.deployment import Deployment
from msgflux.models.gateway.hedge import Hedge
from msgflux.models.gateway.outcome import counted, settlement
from msgflux.models.gateway.state import (
    FAILURE,
    FIRST,
    IGNORED,
    SUCCESS,
    Admission,
    Policy,
    Settlement,
)
from msgflux.retry import RetryState, next_delay

__all__ = ["Action", "CallConfig", "CallState", "Lease", "Step"]


class Action(enum.Enum):
    """What the driver does next."""

    ATTEMPT = "attempt"
    """Call ``step.deployment``, after sleeping ``step.delay`` seconds."""
    HEDGE = "hedge"
    """Start ``step.deployment`` beside the attempts already running."""
    CANCEL = "cancel"
    """An attempt of a race answered: cancel the others, then return its answer."""
    RETURN = "return"
    """The call succeeded with ``step.result``."""
    RAISE = "raise"
    """The call failed with ``step.error``."""


ATTEMPT, HEDGE, CANCEL, RETURN, RAISE = (
    Action.ATTEMPT,
    Action.HEDGE,
    Action.CANCEL,
    Action.RETURN,
    Action.RAISE,
)


class CallConfig:
    """The gateway-wide rules a call follows (from :class:`~.config.GatewayConfig`)."""

    __slots__ = ("deadline", "fallback_on", "hedge", "max_attempts", "mid_stream", "raise_on")

    def __init__(
        self,
        max_attempts: int | None = None,
        deadline: float | None = None,
        fallback_on: Any = None,
        raise_on: Any = None,
        mid_stream: str = "raise",
        hedge: Hedge | None = None,
    ) -> None:
        self.max_attempts = max_attempts
        self.deadline = deadline
        self.fallback_on = fallback_on
        self.raise_on = raise_on
        self.mid_stream = mid_stream
        self.hedge = hedge


class Step:
    """One decision of the engine (see :class:`Action`)."""

    __slots__ = (
        "action",
        "delay",
        "deployment",
        "error",
        "fallback_from",
        "hedge",
        "number",
        "pos",
        "result",
        "settle",
        "ticket",
        "timeout",
    )

    def __init__(
        self,
        action: Action,
        deployment: Deployment | None = None,
        number: int = 0,
        delay: float = 0.0,
        timeout: float | None = None,
        pos: int = 0,
        hedge: bool = False,
        error: BaseException | None = None,
    ) -> None:
        self.action = action
        self.deployment = deployment
        self.number = number
        """Attempt number on this deployment, 1-based."""
        self.delay = delay
        self.timeout = timeout
        """Seconds the attempt may take (per-attempt timeout, clipped to the deadline)."""
        self.pos = pos
        """Index of ``deployment`` in the call's ranked list."""
        self.hedge = hedge
        self.error = error
        self.fallback_from: Deployment | None = None
        """Set when this step moves to another deployment after a failure or skip."""
        self.ticket: Admission | None = None
        """The store's admission for this attempt, handed back when it is settled."""
        self.settle: Settlement | None = None
        """What the store must record before the driver goes on (None: nothing)."""
        self.result: Any = None

    def __repr__(self) -> str:
        name = self.deployment.name if self.deployment is not None else None
        return f"Step({self.action.value}, {name!r}, number={self.number}, delay={self.delay:g})"


class Lease:
    """A committed stream's admission, held until the stream ends."""

    __slots__ = ("began", "deployment", "hedge", "ticket")

    def __init__(self, deployment: Deployment, ticket: Admission | None, began: float, hedge: bool):
        self.deployment = deployment
        self.ticket = ticket
        self.began = began
        self.hedge = hedge


class CallState:
    """Bookkeeping and decisions of one gateway call (see the module docstring)."""

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
        "winner",
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
        self.lease: Lease | None = None
        """A committed stream's admission, settled when the stream ends."""
        self.winner: Attempt | None = None
        """The record of the attempt that answered (cancelled losers may come after it)."""

    # -- the plan ---------------------------------------------------------------------------
    def begin(self, now: float) -> Step:
        """The first step of the call."""
        return self._open(now, None)

    def remaining(self, now: float) -> float | None:
        """Seconds left before the call's deadline (None: no deadline)."""
        return None if self._deadline_at is None else max(self._deadline_at - now, 0.0)

    def candidates(self, step: Step) -> Sequence[Policy]:
        """The policies the store may admit for ``step``: its deployment and those after it."""
        pos = step.pos
        return self.policies if pos == 0 else self.policies[pos:]

    def admitted(self, adm: Admission, step: Step, now: float, wall: float) -> Step:
        """The store answered ``adm`` for ``step``: record skips, move to the admitted one."""
        if adm is FIRST or (adm.index == 0 and not adm.skips):
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
        new = Step(ATTEMPT, dep, 1, 0.0, self._timeout(dep, now), pos=pos)
        new.ticket = adm
        new.fallback_from = step.deployment
        return new

    # -- outcomes ---------------------------------------------------------------------------
    def failed(
        self,
        exc: BaseException,
        began: float,
        now: float,
        wall: float,
        step: Step,
        racing: bool = False,
    ) -> tuple[Step | None, Settlement | None]:
        """The attempt ``step`` raised ``exc`` (``began``/``now`` perf times, ``wall`` epoch).

        Returns the next step and what the store records for the attempt. ``racing`` says
        other attempts are still running: the next step is then None (wait for them) unless
        the error must be raised at once. A provider that cannot express the request
        (:class:`UnsupportedFeatureError`) is recorded as a skip, not an attempt.
        """
        if step.pos != self._pos:
            self._pos = step.pos
            self._number = step.number
            self._dep_started = began
        dep = self.deployments[self._pos]
        cfg = self._cfg
        skipped = isinstance(exc, UnsupportedFeatureError)
        self.attempts.append(
            Attempt(
                dep.name,
                dep.provider,
                dep.model_id,
                0 if skipped else self._number,
                None if skipped else exc,
                wall if skipped else wall - (now - began),
                0.0 if skipped else now - began,
                f"unsupported: {exc}" if skipped else None,
                hedge=step.hedge,
            )
        )
        outcome = FAILURE if counted(dep.policy, exc, cfg.raise_on) else IGNORED
        settle = settlement(dep.policy, step.ticket, outcome, wall, now - began, exc=exc)
        if skipped:
            self.total -= 1
            return (None if racing else self._next(now, dep)), settle
        if (cfg.raise_on is not None and cfg.raise_on(exc)) or (
            cfg.fallback_on is not None and not cfg.fallback_on(exc)
        ):
            return Step(RAISE, error=exc), settle
        if racing:
            return None, settle
        delay = next_delay(dep.retry, RetryState(self._number, exc, now - self._dep_started))
        if delay is not None and self._budget_allows(now + delay):
            return self._attempt(dep, now + delay, delay), settle
        return self._next(now, dep), settle

    def answered(
        self, step: Step, result: Any, began: float, now: float, wall: float, stream: bool
    ) -> Step:
        """The attempt ``step`` answered (a stream: produced its first content)."""
        self._pos = step.pos
        self._number = step.number
        dep = self.deployments[self._pos]
        self.winner = Attempt(
            dep.name,
            dep.provider,
            dep.model_id,
            self._number,
            None,
            wall,
            now - began,
            hedge=step.hedge,
        )
        self.attempts.append(self.winner)
        step.action = RETURN
        step.result = result
        step.settle = None
        if stream:
            self.lease = Lease(dep, step.ticket, began, step.hedge)
        elif step.ticket is not None:
            step.settle = settlement(
                dep.policy, step.ticket, SUCCESS, wall, now - began, result=result
            )
        return step

    def cancelled(self, step: Step, began: float, now: float, wall: float) -> Settlement | None:
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
                wall - (now - began),
                now - began,
                hedge=step.hedge,
                cancelled=True,
            )
        )
        return settlement(dep.policy, step.ticket, IGNORED, wall, now - began)

    def abandoned(self, step: Step, wall: float, duration: float) -> Settlement | None:
        """The caller went away mid-attempt (cancelled, interrupted): release, judge nothing."""
        dep = step.deployment
        assert dep is not None
        return settlement(dep.policy, step.ticket, IGNORED, wall, duration)

    # -- streams ----------------------------------------------------------------------------
    def stream_ended(
        self, how: BaseException | None, cancelled: bool, result: Any, now: float, wall: float
    ) -> Settlement | None:
        """A committed stream finished (``how`` None), broke (``how``) or its reader left
        (``cancelled``): what the store records for its admission. Idempotent."""
        lease = self.lease
        if lease is None:
            return None
        self.lease = None
        policy = lease.deployment.policy
        if cancelled:
            outcome = IGNORED
        elif how is None:
            outcome = SUCCESS
        else:
            outcome = FAILURE if counted(policy, how, self._cfg.raise_on) else IGNORED
        return settlement(
            policy, lease.ticket, outcome, wall, now - lease.began, exc=how, result=result
        )

    def interrupted(
        self, exc: BaseException, partial: str, began: float, now: float, wall: float
    ) -> Step:
        """A committed stream broke after ``partial``: raise :class:`StreamInterruptedError`,
        or with ``mid_stream="continue"`` attempt the next deployment (no retry of this one)."""
        dep = self.deployments[self._pos]
        if self._cfg.mid_stream != "continue":
            return Step(RAISE, error=self.broken(partial, exc, f"{type(exc).__name__}: {exc}"))
        winner = self.winner
        if winner is not None and winner in self.attempts:
            began = min(began, now - winner.duration)
            self.attempts.remove(winner)
            self.winner = None
        self.attempts.append(
            Attempt(
                dep.name,
                dep.provider,
                dep.model_id,
                self._number,
                exc,
                wall - (now - began),
                now - began,
            )
        )
        return self._next(now, dep)

    def broken(self, partial: str | None, cause: BaseException, why: str) -> StreamInterruptedError:
        """The error of a committed stream that broke (``partial``: the text it had sent,
        None on a native lane, which relays events without reading their text)."""
        name = next((a.model_name for a in reversed(self.attempts) if a.skipped is None), None)
        after = "its first event" if partial is None else f"{len(partial)} characters"
        return StreamInterruptedError(
            f"stream from {name!r} broke after {after}: {why}",
            partial=partial or "",
            model_name=name,
            cause=cause,
        )

    # -- hedging ----------------------------------------------------------------------------
    def hedge_delay(self, step: Step, stream: bool, now: float) -> float | None:
        """Seconds before racing another deployment against ``step``, or None (no hedge)."""
        hedge = self._cfg.hedge
        if hedge is None or step.pos + 1 >= len(self.deployments):
            return None
        dep = step.deployment
        assert dep is not None
        return hedge.delay_for(dep, stream, now)

    def hedge(self, now: float) -> Step | None:
        """A parallel attempt on the next deployment not tried yet, or None (none left, or the
        budget of attempts or time is spent)."""
        pos = self._hi + 1
        if pos >= len(self.deployments) or not self._budget_allows(now):
            return None
        self.total += 1
        self._hi = pos
        dep = self.deployments[pos]
        return Step(HEDGE, dep, 1, 0.0, self._timeout(dep, now), pos=pos, hedge=True)

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
            step = Step(HEDGE, dep, 1, 0.0, self._timeout(dep, now), pos=pos, hedge=True)
        step.ticket = adm
        return step

    def won(self, step: Step) -> Step:
        """An attempt of a race answered: the others are cancelled before its answer is
        recorded (:meth:`answered`) and returned."""
        done = Step(CANCEL, step.deployment, step.number, pos=step.pos, hedge=step.hedge)
        return done

    # -- helpers ----------------------------------------------------------------------------
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
            return Step(RAISE, error=self.error(now))
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
        deadline_passed = (
            self._deadline_at is not None and now is not None and now >= self._deadline_at - 1e-3
        )
        if deadline_passed:
            # Also when the deadline cut the last attempt short (it failed as a timeout).
            message = (
                f"Deadline of {cfg.deadline:g}s exceeded after {self.total} attempt(s) "
                f"on {n} available model(s)"
            )
        elif self._pos < n and now is not None:
            message = (
                f"max_attempts={cfg.max_attempts} reached after {self.total} attempt(s) "
                f"on {n} available model(s)"
            )
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
