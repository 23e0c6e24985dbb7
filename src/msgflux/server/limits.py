"""Per-key admission: ``rpm``, ``tpm``, ``max_concurrency`` and budgets, before a request runs.

A request whose key has limits is admitted first (:meth:`Limiter.admit`), after it was read
and validated and before the gateway sees it, so a refused request never reaches a deployment
and never counts against one. The answer is a :class:`Ticket` (admitted: it holds an rpm slot
and a concurrency lease) or a :class:`Rejection` (a 429: :meth:`Rejection.error`). After the
answer (a stream: at its end; also when the client hung up) the ticket is settled exactly once:
the lease is released, and the tokens (``tpm``) and the cost (the budget) are counted.

The windows are the gateway's own (:mod:`msgflux.models.gateway.limits`: an exact rpm log
over 60 s, tokens in 1-second buckets over 60 s, leases that expire after :data:`LEASE`
seconds so a dead process cannot hold a slot forever); this module's :class:`MemoryLimiter`
runs those pure functions on one process's memory. Tokens and cost are only known after a
call, so ``tpm`` and the budget stop the *next* calls once they are reached, never the call
that crosses them. A budget is spend per UTC calendar period (:func:`.key_limits.period_bounds`);
a new period starts from zero.

:class:`~msgflux.server.limits_redis.RedisLimiter` keeps the same counters in Redis (one
atomic script per admission), which makes them exact across workers and instances.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from datetime import datetime, timezone
from typing import Any, Protocol

from msgflux._time import Clock
from msgflux.models.gateway.limits import (
    REASON_CONCURRENCY,
    REASON_RPM,
    REASON_TPM,
    limits_check,
    limits_release,
    limits_take,
    tokens_used,
)
from msgflux.models.gateway.state import DeploymentState, Policy
from msgflux.server.errors import HTTPError
from msgflux.server.key_limits import KeyLimits, period_bounds

__all__ = [
    "BUDGET",
    "CONCURRENCY",
    "LEASE",
    "RPM",
    "TPM",
    "Limiter",
    "MemoryLimiter",
    "Rejection",
    "Ticket",
    "policy_of",
    "usage_of",
    "utc",
]

LEASE = 600.0
"""Seconds an admitted request holds its concurrency slot at most (a process that dies
mid-request cannot hold it longer; a stream longer than this no longer counts)."""

RPM, TPM, CONCURRENCY, BUDGET = "rpm", "tpm", "max_concurrency", "budget"
"""Rejection reasons (also the ``reason`` label of the rejection metric)."""
_GATEWAY_REASONS = {REASON_RPM: RPM, REASON_TPM: TPM, REASON_CONCURRENCY: CONCURRENCY}


def utc(epoch: float) -> str:
    """``2026-01-02T00:00:00Z``."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(frozen=True, slots=True)
class Rejection:
    """A request refused for its key: why, and when there may be room again (epoch s)."""

    key: str
    reason: str
    limits: KeyLimits
    now: float
    retry_at: float | None = None
    spent: float = 0.0

    @property
    def retry_after(self) -> int:
        """Whole seconds until a slot frees (at least 1; 1 when it cannot be known)."""
        if self.retry_at is None:
            return 1
        return max(1, math.ceil(self.retry_at - self.now))

    def error(self) -> HTTPError:
        """The 429 for the client, with ``Retry-After``."""
        limits = self.limits
        who = f"API key `{self.key}`"
        wait = f"retry in {self.retry_after} s"
        if self.reason == BUDGET:
            budget = limits.budget
            assert budget is not None and self.retry_at is not None
            message = (
                f"{who} has spent its budget of ${budget.usd:.2f} per {budget.period} "
                f"(spent ${self.spent:.4f}); it resets at {utc(self.retry_at)} (UTC)"
            )
            code, kind = "budget_exceeded", "insufficient_quota"
        elif self.reason == RPM:
            message = f"{who} is over its limit of {limits.rpm} requests per minute; {wait}"
            code, kind = "rate_limit_exceeded", "requests"
        elif self.reason == TPM:
            message = f"{who} is over its limit of {limits.tpm} tokens per minute; {wait}"
            code, kind = "rate_limit_exceeded", "tokens"
        else:
            message = (
                f"{who} has {limits.max_concurrency} requests in flight, its max_concurrency; "
                "retry when one has finished"
            )
            code, kind = "rate_limit_exceeded", "requests"
        return HTTPError(
            429,
            message,
            code=code,
            type=kind,
            headers=[(b"retry-after", str(self.retry_after).encode())],
        )


class Ticket:
    """An admitted request's hold on its key's counters; :meth:`settle` it once."""

    __slots__ = ("_settle", "lease", "limits", "name", "token")

    def __init__(
        self, settle: _Settle, name: str, limits: KeyLimits, token: str, lease: float
    ) -> None:
        self._settle: _Settle | None = settle
        self.name = name
        self.limits = limits
        self.token = token
        self.lease = lease

    def settle(self, tokens: int, cost: float | None) -> None:
        """Release the lease and count ``tokens`` and ``cost`` (USD); later calls do nothing.
        Never raises and never blocks (a shared store's update runs in the background)."""
        settle, self._settle = self._settle, None
        if settle is not None:
            settle(self, max(0, tokens), cost if cost is not None and cost > 0 else 0.0)


class _Settle(Protocol):
    def __call__(self, ticket: Ticket, tokens: int, cost: float) -> None: ...


class Limiter(Protocol):
    """Where the counters live: :class:`MemoryLimiter` or ``RedisLimiter``."""

    shared: bool
    """Counters are shared by every process using the same store."""

    async def admit(self, name: str, limits: KeyLimits) -> Ticket | Rejection: ...

    async def usage(self, name: str, limits: KeyLimits) -> dict[str, Any]:
        """What key ``name`` uses now of its limits (see :func:`usage_of`)."""
        ...

    def healthy(self) -> bool: ...

    async def aclose(self) -> None: ...


def usage_of(
    limits: KeyLimits,
    requests: int | None,
    tokens: int | None,
    in_flight: int | None,
    spent: float | None,
) -> dict[str, Any]:
    """A key's use against its limits, as the admin API shows it. A count is None where the
    key has no such limit (it is then not kept)."""
    budget = limits.budget
    return {
        "requests_last_minute": requests if limits.rpm is not None else None,
        "tokens_last_minute": tokens if limits.tpm is not None else None,
        "in_flight": in_flight if limits.max_concurrency is not None else None,
        "spent_usd": (spent or 0.0) if budget is not None else None,
        "remaining_usd": max(0.0, budget.usd - (spent or 0.0)) if budget is not None else None,
    }


def policy_of(name: str, limits: KeyLimits) -> Policy:
    """The gateway's limit policy for a key (its rpm, tpm and concurrency windows)."""
    return Policy(
        name, "key", "client", None, limits.rpm, limits.tpm, limits.max_concurrency, LEASE
    )


class MemoryLimiter:
    """This process's counters (one worker; also the fallback of the Redis limiter)."""

    shared = False

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self._lock = threading.Lock()
        self._states: dict[str, DeploymentState] = {}
        self._spent: dict[str, tuple[float, float]] = {}
        """key name -> (start of the budget period, USD spent in it)."""
        self._policies: dict[tuple[str, KeyLimits], Policy] = {}

    def _policy(self, name: str, limits: KeyLimits) -> Policy:
        policy = self._policies.get((name, limits))
        if policy is None:
            if len(self._policies) > 4096:  # reloads with ever new limits: only bound it
                self._policies.clear()
            policy = self._policies[(name, limits)] = policy_of(name, limits)
        return policy

    def spent(self, name: str, period: str, now: float) -> float:
        """USD spent by key ``name`` in the ``period`` holding ``now``."""
        start, _ = period_bounds(period, now)
        entry = self._spent.get(name)
        return entry[1] if entry is not None and entry[0] == start else 0.0

    def admit_now(self, name: str, limits: KeyLimits) -> Ticket | Rejection:
        now = self.clock.time()
        with self._lock:
            budget = limits.budget
            if budget is not None:
                spent = self.spent(name, budget.period, now)
                if spent >= budget.usd:
                    end = period_bounds(budget.period, now)[1]
                    return Rejection(name, BUDGET, limits, now, end, spent)
            policy = self._policy(name, limits)
            st = self._states.get(name)
            if st is None:
                st = self._states[name] = DeploymentState()
            reason, retry_at = limits_check(policy, st, now)
            if reason is not None:
                return Rejection(name, _GATEWAY_REASONS[reason], limits, now, retry_at)
            lease = limits_take(policy, st, now)
        return Ticket(self._release, name, limits, "", lease)

    async def admit(self, name: str, limits: KeyLimits) -> Ticket | Rejection:
        return self.admit_now(name, limits)

    def usage_now(self, name: str, limits: KeyLimits) -> dict[str, Any]:
        now = self.clock.time()
        with self._lock:
            st = self._states.get(name)
            requests = tokens = leases = 0
            if st is not None:
                requests = sum(1 for t in st.requests if t > now - 60.0)
                tokens = tokens_used(st, now)
                leases = sum(1 for t in st.leases if t > now)
            budget = limits.budget
            spent = self.spent(name, budget.period, now) if budget is not None else None
        return usage_of(limits, requests, tokens, leases, spent)

    async def usage(self, name: str, limits: KeyLimits) -> dict[str, Any]:
        return self.usage_now(name, limits)

    def _release(self, ticket: Ticket, tokens: int, cost: float) -> None:
        now = self.clock.time()
        limits = ticket.limits
        with self._lock:
            st = self._states.get(ticket.name)
            if st is not None:
                limits_release(self._policy(ticket.name, limits), st, ticket.lease, now, tokens)
            if cost and limits.budget is not None:
                start, _ = period_bounds(limits.budget.period, now)
                entry = self._spent.get(ticket.name)
                before = entry[1] if entry is not None and entry[0] == start else 0.0
                self._spent[ticket.name] = (start, before + cost)

    def healthy(self) -> bool:
        return True

    async def aclose(self) -> None:
        """Nothing to release."""
