"""What the gateway remembers between calls, behind one small store interface.

Per deployment the gateway keeps breaker state, the failure-rate window, rpm/tpm windows and
in-flight leases: a :class:`DeploymentState` of plain numbers and lists. Two coarse operations
change it, each atomic and each one round trip for a shared store:

* ``admit(candidates, now)``, before an attempt: walk the ranked candidates, skip the ones
  whose breaker is open (or whose probe slot is taken) or that are at a limit, and admit the
  first one that has room, taking what it needs (an rpm slot, a concurrency lease, a probe
  slot) in the same step. The answer lists the skips, so a skipped primary and an admitted
  fallback still cost one round trip.
* ``settle(settlement)``, after it: give back the lease and the probe slot, count reported
  tokens, and apply the breaker transition, as the :class:`Settlement` says. An ``IGNORED``
  outcome (a hedge loser, a cancelled call, a bad request) only gives back what was taken.

Times are epoch seconds from ``Clock.time()`` so that processes sharing a store agree. The
transitions are the pure functions :func:`admit_first` and :func:`settle_state` (built from
``breaker.py`` and ``limits.py``): :class:`MemoryStore` runs them under a lock, and a
Redis store runs the same logic inside one script per operation.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from msgflux.models.gateway.breaker import (
    CLOSED,
    OPEN,
    REASON_OPEN,
    STATE_NAMES,
    Breaker,
    breaker_check,
    breaker_settle,
    breaker_take,
    window_counts,
)
from msgflux.models.gateway.limits import (
    limits_check,
    limits_release,
    limits_take,
    tokens_used,
)

__all__ = [
    "FAILURE",
    "IGNORED",
    "SUCCESS",
    "Admission",
    "DeploymentState",
    "MemoryStore",
    "Policy",
    "Settlement",
    "Skip",
    "StateStore",
    "admit_first",
    "settle_state",
    "snapshot_state",
]

SUCCESS = 0
"""The call answered."""
FAILURE = 1
"""The call failed in a way that counts against the deployment's breaker."""
IGNORED = 2
"""The call ended without saying anything about the provider's health."""


@dataclasses.dataclass(frozen=True, eq=False)
class Policy:
    """A deployment's identity and the rules a store applies to it. Immutable; never secret.

    ``key`` (``"model_name|provider/model_id"``) names the deployment's state in a store;
    gateways sharing a store share the state of deployments with the same key.
    """

    name: str
    provider: str
    model_id: str
    breaker: Breaker | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    lease: float = 600.0
    """Seconds an admitted call may stay unsettled before its concurrency slot is reclaimed."""
    key: str = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.name}|{self.provider}/{self.model_id}")

    @property
    def active(self) -> bool:
        """False when there is nothing to track (no breaker and no limit)."""
        return (
            self.breaker is not None
            or self.rpm is not None
            or self.tpm is not None
            or self.max_concurrency is not None
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Skip:
    """A candidate that was not called: its index in the candidate list, why, until when."""

    index: int
    reason: str
    retry_at: float | None


@dataclasses.dataclass(frozen=True, slots=True)
class Admission:
    """The answer to ``admit``: which candidate may be called, and who was skipped before it.

    ``index`` is -1 when no candidate was admitted (then ``skips`` covers them all).
    ``probe`` says the call holds a half-open probe slot; ``token`` is store-defined data
    (the memory store's concurrency lease) that ``settle`` needs back.
    """

    index: int
    probe: bool = False
    skips: tuple[Skip, ...] = ()
    token: Any = 0.0


NOBODY = Admission(-1)
FIRST = Admission(0)
"""Shared instance for the common answer: the first candidate, nothing taken, no skips."""


@dataclasses.dataclass(slots=True)
class Settlement:
    """How an admitted call ended: what ``settle`` records for ``policy``.

    ``admission`` is what ``admit`` answered for the call; ``outcome`` is ``SUCCESS``,
    ``FAILURE`` or ``IGNORED``; ``now`` is epoch seconds. ``tokens`` are the tokens the call
    reported (counted against ``tpm``), ``retry_after`` the provider's Retry-After in seconds
    (0: none; it can lengthen an opening breaker), ``duration`` the call's seconds (for
    ``Breaker.slow_call_duration``).

    Treat it as immutable. It is not ``frozen=True`` because it is built on every gateway
    call: a frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``,
    which costs about 0.5 µs more per call on CPython 3.11 (the same reason the gateway
    passes the fields positionally).
    """

    policy: Policy
    admission: Admission
    outcome: int
    now: float
    tokens: int = 0
    retry_after: float = 0.0
    duration: float = 0.0


@dataclasses.dataclass(slots=True)
class DeploymentState:
    """Everything stored for one deployment, as plain numbers and lists.

    ``win_*`` is the failure-rate window (a ring of ``breaker.BUCKETS`` buckets: bucket
    number, calls, failures); ``requests`` the rpm log (admission times, oldest first);
    ``tok_*`` the tpm ring (one bucket per second over 60 s); ``leases`` the expiry times of
    the admitted, unsettled calls (tracked only with ``max_concurrency``).
    """

    state: int = CLOSED
    consecutive: int = 0
    open_until: float = 0.0
    open_for: float = 0.0
    """The open duration before any Retry-After extension (doubles per failed probe)."""
    probes: int = 0
    probe_until: float = 0.0
    win_ids: list[int] = dataclasses.field(default_factory=list)
    win_calls: list[int] = dataclasses.field(default_factory=list)
    win_fails: list[int] = dataclasses.field(default_factory=list)
    requests: deque[float] = dataclasses.field(default_factory=deque)
    tok_ids: list[int] = dataclasses.field(default_factory=list)
    tok_vals: list[int] = dataclasses.field(default_factory=list)
    leases: list[float] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable data (what a shared store persists)."""
        out = dataclasses.asdict(self)
        out["requests"] = list(self.requests)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeploymentState:
        data = dict(data)
        data["requests"] = deque(data.get("requests", ()))
        return cls(**data)


# -- the transitions, shared by every store ----------------------------------------------------
def admit_first(
    state_of: Callable[[Policy], DeploymentState],
    candidates: Sequence[Policy],
    now: float,
    probe_when_all_open: bool = False,
) -> Admission:
    """Admit the first candidate with room; see the module docstring. Mutates only the state
    of the admitted candidate (and the expired-entry purges of those it looked at).

    With ``probe_when_all_open``, when *every* candidate was skipped because its breaker is
    open, the one that reopens first is admitted as a half-open probe right away.
    """
    skips: list[Skip] | None = None
    for i, policy in enumerate(candidates):
        if not policy.active:
            return FIRST if i == 0 else Admission(i, skips=tuple(skips or ()))
        st = state_of(policy)
        cfg = policy.breaker
        reason: str | None = None
        retry_at: float | None = None
        if cfg is not None and st.state != CLOSED:
            reason, retry_at = breaker_check(cfg, st, now)
        if reason is None:
            reason, retry_at = limits_check(policy, st, now)
        if reason is None:
            probe = cfg is not None and breaker_take(cfg, st, now)
            token = limits_take(policy, st, now)
            if i == 0 and not probe and not token:
                return FIRST
            return Admission(i, probe, tuple(skips or ()), token)
        if skips is None:
            skips = []
        skips.append(Skip(i, reason, retry_at))
    if not skips:
        return NOBODY
    if probe_when_all_open and all(s.reason == REASON_OPEN for s in skips):
        first = min(skips, key=lambda s: s.retry_at or 0.0)
        policy = candidates[first.index]
        cfg = policy.breaker
        assert cfg is not None
        st = state_of(policy)
        if limits_check(policy, st, now)[0] is None:
            breaker_take(cfg, st, now)
            token = limits_take(policy, st, now)
            rest = tuple(s for s in skips if s.index < first.index)
            return Admission(first.index, True, rest, token)
    return Admission(-1, skips=tuple(skips))


def settle_state(st: DeploymentState, s: Settlement) -> None:
    """Record how an admitted call ended in its deployment's state ``st`` (give back its lease
    and probe slot, count tokens, apply the breaker transition)."""
    policy = s.policy
    if policy.max_concurrency is not None or policy.tpm is not None:
        limits_release(policy, st, s.admission.token, s.now, s.tokens)
    cfg = policy.breaker
    if cfg is not None:
        breaker_settle(cfg, st, s.outcome, s.now, s.admission.probe, s.retry_after, s.duration)


def snapshot_state(policy: Policy, st: DeploymentState, now: float) -> dict[str, Any]:
    """A JSON-serializable view for ``gateway.stats()``."""
    cfg = policy.breaker
    state = st.state
    # An open breaker past its reopen time is half-open in effect: the next admission probes.
    state_name = "half_open" if state == OPEN and now >= st.open_until else STATE_NAMES[state]
    out: dict[str, Any] = {
        "breaker": state_name if cfg is not None else "disabled",
        "reopens_at": st.open_until if state == OPEN else None,
        "consecutive_failures": st.consecutive,
    }
    if cfg is not None:
        calls, failures = window_counts(cfg, st, now)
        out["window_calls"] = calls
        out["window_failures"] = failures
    if policy.rpm is not None:
        cutoff = now - 60.0
        out["rpm_used"] = sum(1 for t in st.requests if t > cutoff)
    if policy.tpm is not None:
        out["tpm_used"] = tokens_used(st, now)
    if policy.max_concurrency is not None:
        out["leases"] = sum(1 for t in st.leases if t > now)
    return out


# -- the interface -----------------------------------------------------------------------------
@runtime_checkable
class StateStore(Protocol):
    """Where deployment state lives. One instance may serve several gateways.

    Each method is one atomic operation (one round trip for a remote store). Implementations
    must apply :func:`admit_first`, :func:`settle_state` and :func:`snapshot_state` semantics
    (``tests/store_contract.py`` holds the shared tests).
    """

    def register(self, policies: Sequence[Policy]) -> None:
        """Called once per gateway with its deployments' policies, before any call."""
        ...

    def admit(
        self, candidates: Sequence[Policy], now: float, probe_when_all_open: bool = False
    ) -> Admission: ...

    async def aadmit(
        self, candidates: Sequence[Policy], now: float, probe_when_all_open: bool = False
    ) -> Admission: ...

    def settle(self, s: Settlement) -> None:
        """Record how an admitted call ended (:func:`settle_state`)."""
        ...

    async def asettle(self, s: Settlement) -> None: ...

    def snapshot(self, policies: Sequence[Policy], now: float) -> list[dict[str, Any]]:
        """One :func:`snapshot_state` dict per policy, in order."""
        ...

    def info(self) -> dict[str, Any]:
        """``{"backend": str, "shared": bool, "healthy": bool, ...}`` for ``gateway.stats()``."""
        ...

    def reset(self, policies: Sequence[Policy] | None = None) -> None:
        """Forget the state of these deployments (all of them when None)."""
        ...

    def close(self) -> None: ...


class MemoryStore:
    """The default store: this process's memory, one lock, no I/O.

    >>> ModelGateway(deployments, state=MemoryStore())   # share it between gateways if wanted
    """

    never_suspends = True
    """Its async methods run to completion without awaiting anything."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, DeploymentState] = {}

    def _state(self, policy: Policy) -> DeploymentState:
        st = self._states.get(policy.key)
        if st is None:
            st = self._states[policy.key] = DeploymentState()
        return st

    def register(self, policies: Sequence[Policy]) -> None:
        with self._lock:
            for policy in policies:
                self._state(policy)

    def admit(
        self, candidates: Sequence[Policy], now: float, probe_when_all_open: bool = False
    ) -> Admission:
        with self._lock:
            return admit_first(self._state, candidates, now, probe_when_all_open)

    async def aadmit(
        self, candidates: Sequence[Policy], now: float, probe_when_all_open: bool = False
    ) -> Admission:
        return self.admit(candidates, now, probe_when_all_open)

    def settle(self, s: Settlement) -> None:
        with self._lock:
            settle_state(self._state(s.policy), s)

    async def asettle(self, s: Settlement) -> None:
        self.settle(s)

    def snapshot(self, policies: Sequence[Policy], now: float) -> list[dict[str, Any]]:
        with self._lock:
            return [snapshot_state(p, self._state(p), now) for p in policies]

    def state(self, policy: Policy) -> DeploymentState:
        """The live state of one deployment (for tests and debugging)."""
        with self._lock:
            return self._state(policy)

    def info(self) -> dict[str, Any]:
        return {"backend": "memory", "shared": False, "healthy": True}

    def reset(self, policies: Sequence[Policy] | None = None) -> None:
        with self._lock:
            if policies is None:
                self._states.clear()
            else:
                for p in policies:
                    self._states.pop(p.key, None)

    def close(self) -> None:
        """Nothing to release."""


def resolve_store(value: Any) -> StateStore:
    """``state=`` of the gateway: None (a new MemoryStore), a store, or a ``redis://`` URL."""
    if value is None:
        return MemoryStore()
    if isinstance(value, str):
        if value.startswith(
            ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
        ):
            try:
                redis = importlib.import_module("msgflux.models.gateway.redis")
            except ImportError as exc:  # pragma: no cover - depends on the extra
                raise ImportError(
                    'state="redis://..." needs the Redis store: install "msgflux-gateway[redis]"'
                ) from exc
            store: StateStore = redis.RedisState(value)
            return store
        scheme = value.partition("://")[0] if "://" in value else value[:20]
        raise ValueError(
            "state must be a StateStore, None (process memory) or a redis://, rediss://, "
            f"unix:// or redis+cluster:// URL, got a {scheme!r} string"
        )
    for name in ("admit", "aadmit", "settle", "asettle", "snapshot", "info"):
        if not callable(getattr(value, name, None)):
            raise TypeError(
                f"state must be a StateStore (with admit/aadmit/settle/asettle/snapshot/info), "
                f"None or a 'redis://' URL; {type(value).__name__} has no {name}()"
            )
    return value  # type: ignore[no-any-return]
