"""Circuit breaker: its configuration and its state transitions, free of I/O.

A deployment's breaker is *closed* (calls flow), *open* (calls skip it until ``open_until``)
or *half-open* (up to ``half_open_probes`` calls test it; a success closes it, a failure
re-opens it for twice as long). It opens after ``failure_threshold`` consecutive failures or
when the failure rate over the last ``window`` seconds reaches ``failure_rate`` with at least
``minimum_calls`` calls in that window.

The transitions below read and write only the plain numbers of a
:class:`~msgflux.models.gateway.state.DeploymentState` and take the time as an argument
(epoch seconds, so several processes agree). That is what lets a shared store (Redis) run the
very same transitions atomically, and what lets tests drive every transition with a clock
that only moves when told to.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from msgflux.exceptions import ProviderError

if TYPE_CHECKING:
    from msgflux.models.gateway.state import DeploymentState

__all__ = [
    "BUCKETS",
    "CLOSED",
    "HALF_OPEN",
    "OPEN",
    "STATE_NAMES",
    "Breaker",
    "breaker_check",
    "breaker_settle",
    "breaker_take",
    "counts_as_failure",
    "window_counts",
]

CLOSED = 0
OPEN = 1
HALF_OPEN = 2
STATE_NAMES = ("closed", "open", "half_open")

BUCKETS = 10
"""The failure-rate window is a ring of this many buckets of ``window / BUCKETS`` seconds."""

REASON_OPEN = "circuit open"
REASON_HALF_OPEN = "circuit half-open, probe in flight"


def _number(value: Any, field: str, *, minimum: float, strict: bool, allow_none: bool) -> Any:
    if value is None and allow_none:
        return None
    op = ">" if strict else ">="
    accepted = f"a number {op} {minimum:g}" + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TypeError(f"Breaker.{field} must be {accepted}, got {value!r}")
    if value < minimum or (strict and value == minimum) or math.isinf(value):
        raise ValueError(f"Breaker.{field} must be {accepted}, got {value!r}")
    return value


def _integer(value: Any, field: str, *, allow_none: bool) -> Any:
    if value is None and allow_none:
        return None
    accepted = "an int >= 1" + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Breaker.{field} must be {accepted}, got {value!r}")
    if value < 1:
        raise ValueError(f"Breaker.{field} must be {accepted}, got {value!r}")
    return value


def provider_failure(exc: BaseException) -> bool:
    """The default ``failure_on``: 429, 408, 5xx, timeouts and connection errors.

    Errors that say the *request* was wrong (400, 401, 404, ...) say nothing about the
    provider's health, so they never trip a breaker. Plain ``TimeoutError``/``ConnectionError``
    count too, since user-written models raise those for the same provider-side trouble.
    """
    if isinstance(exc, ProviderError):
        return exc.transient
    return isinstance(exc, (TimeoutError, ConnectionError))


@dataclasses.dataclass(frozen=True)
class Breaker:
    """Circuit-breaker settings for a gateway or one deployment.

    >>> ModelGateway(deployments, breaker=Breaker(failure_threshold=3, open_for=10))
    >>> ModelGateway(deployments, breaker=None)            # no breakers at all
    """

    failure_threshold: int | None = 5
    """Consecutive failures that open the breaker (None: only the failure rate counts)."""
    failure_rate: float | None = 0.5
    """Failure ratio over ``window`` that opens it (None: only consecutive failures count).
    Judged each time a failure is recorded (a success can only lower the ratio)."""
    minimum_calls: int = 10
    """Calls the window must hold before ``failure_rate`` is judged."""
    window: float = 60.0
    """Seconds of history behind ``failure_rate``."""
    open_for: float = 30.0
    """Seconds an opened breaker skips the deployment before letting a probe through."""
    max_open_for: float = 300.0
    """Cap on the open duration, after doubling and after a ``Retry-After`` extension."""
    half_open_probes: int = 1
    """Calls admitted at once while half-open; everyone else skips the deployment."""
    slow_call_duration: float | None = None
    """A success slower than this counts as a failure (None: off)."""
    probe_timeout: float = 120.0
    """A probe not settled within this many seconds frees its slot (a crashed process)."""
    failure_on: Callable[[BaseException], bool] = provider_failure
    """Which errors count against the breaker; see :func:`provider_failure`."""

    def __post_init__(self) -> None:
        _integer(self.failure_threshold, "failure_threshold", allow_none=True)
        if self.failure_rate is not None:
            _number(self.failure_rate, "failure_rate", minimum=0, strict=True, allow_none=False)
            if self.failure_rate > 1:
                raise ValueError(
                    f"Breaker.failure_rate must be a ratio in (0, 1] or None, "
                    f"got {self.failure_rate!r}"
                )
        if self.failure_threshold is None and self.failure_rate is None:
            raise ValueError(
                "Breaker needs failure_threshold or failure_rate (or both); "
                "to switch breakers off pass breaker=None"
            )
        _integer(self.minimum_calls, "minimum_calls", allow_none=False)
        _number(self.window, "window", minimum=0, strict=True, allow_none=False)
        _number(self.open_for, "open_for", minimum=0, strict=True, allow_none=False)
        _number(self.max_open_for, "max_open_for", minimum=0, strict=True, allow_none=False)
        if self.max_open_for < self.open_for:
            raise ValueError(
                f"Breaker.max_open_for ({self.max_open_for!r}) must be >= open_for "
                f"({self.open_for!r})"
            )
        _integer(self.half_open_probes, "half_open_probes", allow_none=False)
        _number(
            self.slow_call_duration,
            "slow_call_duration",
            minimum=0,
            strict=True,
            allow_none=True,
        )
        _number(self.probe_timeout, "probe_timeout", minimum=0, strict=True, allow_none=False)
        if not callable(self.failure_on):
            raise TypeError(
                f"Breaker.failure_on must be a callable taking the exception and returning "
                f"bool, got {self.failure_on!r}"
            )

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain data (``failure_on`` only when it is the default)."""
        out = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "failure_on" and getattr(self, f.name) != f.default
        }
        return out

    @classmethod
    def coerce(cls, value: Any, field: str) -> Breaker | None:
        """Accept a Breaker, a dict of its settings, True (defaults), or None/False (off)."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            names = {f.name for f in dataclasses.fields(cls)}
            unknown = [k for k in value if k not in names]
            if unknown:
                raise ValueError(
                    f"{field} has unknown setting(s) {', '.join(map(repr, unknown))}; "
                    f"accepted: {', '.join(sorted(names))}"
                )
            return cls(**value)
        raise TypeError(
            f"{field} must be a Breaker, a dict of Breaker settings, True (defaults) or "
            f"None/False (no breaker), got {value!r}"
        )


def counts_as_failure(cfg: Breaker, exc: BaseException) -> bool:
    """True when ``exc`` is evidence that the provider is unhealthy."""
    try:
        return bool(cfg.failure_on(exc))
    except Exception:
        return False


# -- transitions over plain data ---------------------------------------------------------------
def window_counts(cfg: Breaker, st: DeploymentState, now: float) -> tuple[int, int]:
    """(calls, failures) in the last ``cfg.window`` seconds."""
    if not st.win_ids:
        return 0, 0
    current = int(now * BUCKETS // cfg.window)
    calls = failures = 0
    for i in range(BUCKETS):
        if current - st.win_ids[i] < BUCKETS:
            calls += st.win_calls[i]
            failures += st.win_fails[i]
    return calls, failures


def _window_add(cfg: Breaker, st: DeploymentState, now: float, failed: bool) -> None:
    if not st.win_ids:
        st.win_ids = [-(2**62)] * BUCKETS
        st.win_calls = [0] * BUCKETS
        st.win_fails = [0] * BUCKETS
    bucket = int(now * BUCKETS // cfg.window)
    slot = bucket % BUCKETS
    if st.win_ids[slot] != bucket:
        st.win_ids[slot] = bucket
        st.win_calls[slot] = 0
        st.win_fails[slot] = 0
    st.win_calls[slot] += 1
    if failed:
        st.win_fails[slot] += 1


def _open(cfg: Breaker, st: DeploymentState, now: float, base: float, retry_after: float) -> None:
    st.state = OPEN
    st.open_for = base
    extended = retry_after if retry_after > base else base
    st.open_until = now + min(extended, cfg.max_open_for)
    st.consecutive = 0
    st.probes = 0
    st.win_ids = []
    st.win_calls = []
    st.win_fails = []


def breaker_check(cfg: Breaker, st: DeploymentState, now: float) -> tuple[str | None, float | None]:
    """May a call go through now? Returns (skip reason or None, retry_at). Changes nothing."""
    state = st.state
    if state == CLOSED:
        return None, None
    if state == OPEN:
        if now >= st.open_until:
            return None, None
        return REASON_OPEN, st.open_until
    if st.probes < cfg.half_open_probes or now >= st.probe_until:
        return None, None
    return REASON_HALF_OPEN, st.probe_until


def breaker_take(cfg: Breaker, st: DeploymentState, now: float) -> bool:
    """Commit an admission that :func:`breaker_check` allowed; True when it is a probe."""
    if st.state == CLOSED:
        return False
    if st.state == OPEN or now >= st.probe_until:
        st.state = HALF_OPEN
        st.probes = 0
    st.probes += 1
    st.probe_until = now + cfg.probe_timeout
    return True


def breaker_settle(
    cfg: Breaker,
    st: DeploymentState,
    outcome: int,
    now: float,
    probe: bool,
    retry_after: float = 0.0,
    duration: float = 0.0,
) -> None:
    """Apply one call's outcome (``state.SUCCESS``/``FAILURE``/``IGNORED``).

    Results of calls admitted before the breaker opened ("late" results) do not move an open
    or half-open breaker: only the probes decide its fate.
    """
    if probe and st.probes > 0:
        st.probes -= 1
    if outcome == 2:  # IGNORED: the call says nothing about the provider
        return
    failed = outcome == 1
    if not failed and cfg.slow_call_duration is not None and duration > cfg.slow_call_duration:
        failed = True
    state = st.state
    if state == HALF_OPEN:
        if not probe:
            return
        if failed:
            base = min(max(st.open_for, cfg.open_for) * 2.0, cfg.max_open_for)
            _open(cfg, st, now, base, retry_after)
        else:
            st.state = CLOSED
            st.open_for = 0.0
            st.open_until = 0.0
            st.probes = 0
            st.consecutive = 0
        return
    if state == OPEN:
        return
    if cfg.failure_rate is not None:
        _window_add(cfg, st, now, failed)
    if not failed:
        st.consecutive = 0
        return
    st.consecutive += 1
    threshold = cfg.failure_threshold
    if threshold is not None and st.consecutive >= threshold:
        _open(cfg, st, now, cfg.open_for, retry_after)
        return
    rate = cfg.failure_rate
    if rate is not None:
        calls, failures = window_counts(cfg, st, now)
        if calls >= cfg.minimum_calls and failures >= rate * calls:
            _open(cfg, st, now, cfg.open_for, retry_after)
