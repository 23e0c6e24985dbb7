"""A shared store's safety net: when it fails, calls go on with process-local state.

:class:`LocalFallback` wraps any :class:`SharedStore` (Redis is one) into a
:class:`~msgflux.models.gateway.state.StateStore`. A shared-store error never fails a call:
the call is admitted and settled by a process-local :class:`~.state.MemoryStore` instead,
which is kept up to date with the last breaker state the shared store reported (so this
process goes on skipping deployments that were open for everyone instead of rediscovering,
one failure at a time, that they are down). The wrapper logs at most one WARNING a minute,
checks the shared store in the background every ``retry_interval`` seconds, and shares state
again as soon as it answers. A call is always settled on the side that admitted it.

A timeout may be this process's own event loop lagging under load rather than the store being
slow, so a timeout is first verified (one ping from a thread, which no loop delays); only a
failed check, or any other error, switches to local state.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from msgflux._secrets import scrub
from msgflux.models.gateway.breaker import CLOSED, OPEN, REASON_OPEN
from msgflux.models.gateway.state import (
    FIRST,
    NOBODY,
    Admission,
    MemoryStore,
    Policy,
    Settlement,
)

__all__ = ["WARNING_INTERVAL", "Learned", "LocalFallback", "SharedStore"]

logger = logging.getLogger("msgflux.gateway")

WARNING_INTERVAL = 60.0
"""Seconds between two 'store unavailable' warnings (the first one is logged at once)."""

Learned = tuple[int, float, float]
"""A breaker state the shared store reported: (state, open_until, open_for)."""


class SharedStore(Protocol):
    """What :class:`LocalFallback` needs of a store other processes share.

    Its operations raise one of ``errors`` when the store is unavailable; everything else is
    :class:`~.state.StateStore`'s contract.
    """

    errors: tuple[type[BaseException], ...]

    def is_timeout(self, exc: BaseException) -> bool: ...

    def ping(self) -> None:
        """Raise one of ``errors`` unless the store answers (called from a thread)."""
        ...

    def owns(self, admission: Admission) -> bool:
        """True for an admission this store granted (not the local fallback)."""
        ...

    def register(self, policies: Sequence[Policy]) -> None: ...

    def admit(
        self, candidates: Sequence[Policy], now: float, probe_when_all_open: bool
    ) -> Admission: ...

    async def aadmit(
        self, candidates: Sequence[Policy], now: float, probe_when_all_open: bool
    ) -> Admission: ...

    def settle(self, s: Settlement) -> Learned | None: ...

    async def asettle(self, s: Settlement) -> Learned | None: ...

    def snapshot(self, policies: Sequence[Policy], now: float) -> list[dict[str, Any]]: ...

    def info(self) -> dict[str, Any]: ...

    def reset(self, policies: Sequence[Policy] | None = None) -> None: ...

    def close(self) -> None: ...


class _LocalState(MemoryStore):
    """The fallback store, kept up to date with the last breaker state the shared one reported."""

    def learn(self, policy: Policy, state: int, open_until: float, open_for: float | None) -> None:
        """Copy the shared breaker's state (``open_for`` None: keep the local one)."""
        known = self._states.get(policy.key)
        if known is not None and known.state == state and known.open_until == open_until:
            return  # the common case, read without the lock (a stale read only costs the lock)
        with self._lock:
            st = self._state(policy)
            if st.state == state and st.open_until == open_until:
                return
            st.state = state
            st.open_until = open_until
            if open_for is not None:
                st.open_for = open_for
            st.probes = 0
            st.probe_until = 0.0
            st.consecutive = 0


def _as_local(s: Settlement) -> Settlement:
    """A settlement of the shared store's admission, settled locally: nothing of the local
    leases is held."""
    adm = s.admission
    local = Admission(adm.index, adm.probe, adm.skips, 0.0)
    return Settlement(s.policy, local, s.outcome, s.now, s.tokens, s.retry_after, s.duration)


class LocalFallback:
    """A :class:`~.state.StateStore` over a shared store, with local state as its safety net
    (see the module docstring). ``label`` names the store in log lines (never a secret)."""

    def __init__(self, shared: SharedStore, *, retry_interval: float, label: str) -> None:
        self.shared = shared
        self.retry_interval = retry_interval
        self._label = label
        self._local = _LocalState()
        self._lock = threading.RLock()  # re-entrant: settle() may run from a GC finalizer
        self._healthy = True
        self._unhealthy_since: float | None = None
        self._outages = 0
        self._local_calls = 0
        self._timeouts = 0
        self._last_error: str | None = None
        self._last_warning = -math.inf
        self._watching = False
        self._closed = threading.Event()

    # -- health -----------------------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        """True while state is read from and written to the shared store."""
        return self._healthy

    def _failed(self, exc: BaseException) -> None:
        """A shared operation failed and this call was served locally: decide what it means."""
        if self.shared.is_timeout(exc) and self._healthy:
            with self._lock:
                self._timeouts += 1
                self._last_error = scrub(f"{type(exc).__name__}: {exc}")
                self._watch_in_background(verify=True)
            return
        self._down(exc)

    def _down(self, exc: BaseException) -> None:
        """The shared store failed us: serve locally, warn (rate-limited), retry in the
        background."""
        now = time.monotonic()
        with self._lock:
            self._last_error = scrub(f"{type(exc).__name__}: {exc}")
            if self._healthy:
                self._healthy = False
                self._unhealthy_since = time.time()
                self._outages += 1
            warn = now - self._last_warning >= WARNING_INTERVAL
            if warn:
                self._last_warning = now
            self._watch_in_background(verify=False)
        if warn:
            logger.warning(
                "%s unavailable (%s); gateways in this process use process-local state until "
                "it answers again (retrying every %gs)",
                self._label,
                self._last_error,
                self.retry_interval,
            )

    def _watch_in_background(self, verify: bool) -> None:
        """Start the watcher thread unless it runs already (call with ``_lock`` held)."""
        if self._watching or self._closed.is_set():
            return
        self._watching = True
        threading.Thread(
            target=self._watch, args=(verify,), name="msgflux-shared-state", daemon=True
        ).start()

    def _watch(self, verify: bool) -> None:
        """Verify a suspected timeout, or ping every ``retry_interval`` until the store is back."""
        errors = self.shared.errors
        if verify:
            try:
                self.shared.ping()
            except errors as exc:
                self._down(exc)
            else:
                with self._lock:
                    if self._healthy:
                        self._watching = False
                        return
        while not self._closed.wait(self.retry_interval):
            try:
                self.shared.ping()
            except errors:
                continue
            with self._lock:
                self._healthy = True
                self._unhealthy_since = None
                self._watching = False
            logger.info("%s is reachable again; sharing state again", self._label)
            return
        with self._lock:
            self._watching = False

    # -- learning from the shared store ------------------------------------------------------
    def _learned(self, candidates: Sequence[Policy], adm: Admission) -> Admission:
        local = self._local
        for skip in adm.skips:
            if skip.reason == REASON_OPEN and skip.retry_at is not None:
                local.learn(candidates[skip.index], OPEN, skip.retry_at, None)
        if adm.index >= 0 and not adm.probe:
            policy = candidates[adm.index]
            if policy.breaker is not None:
                local.learn(policy, CLOSED, 0.0, 0.0)
        return adm

    def _local_admit(
        self, candidates: Sequence[Policy], now: float, probe_when_all_open: bool
    ) -> Admission:
        self._local_calls += 1
        return self._local.admit(candidates, now, probe_when_all_open)

    # -- the StateStore protocol ------------------------------------------------------------
    def register(self, policies: Sequence[Policy]) -> None:
        self._local.register(policies)
        self.shared.register(policies)

    def admit(
        self, candidates: Sequence[Policy], now: float, probe_when_all_open: bool = False
    ) -> Admission:
        if not candidates:
            return NOBODY
        if not candidates[0].active:
            return FIRST
        if self._healthy:
            try:
                adm = self.shared.admit(candidates, now, probe_when_all_open)
            except self.shared.errors as exc:
                self._failed(exc)
            else:
                return self._learned(candidates, adm)
        return self._local_admit(candidates, now, probe_when_all_open)

    async def aadmit(
        self, candidates: Sequence[Policy], now: float, probe_when_all_open: bool = False
    ) -> Admission:
        if not candidates:
            return NOBODY
        if not candidates[0].active:
            return FIRST
        if self._healthy:
            try:
                adm = await self.shared.aadmit(candidates, now, probe_when_all_open)
            except self.shared.errors as exc:
                self._failed(exc)
            else:
                return self._learned(candidates, adm)
        return self._local_admit(candidates, now, probe_when_all_open)

    def settle(self, s: Settlement) -> None:
        policy = s.policy
        if not policy.active:
            return
        if self.shared.owns(s.admission):
            if self._healthy:
                try:
                    learned = self.shared.settle(s)
                except self.shared.errors as exc:
                    self._failed(exc)
                else:
                    if learned is not None:
                        self._local.learn(policy, *learned)
                    return
            s = _as_local(s)
        self._local.settle(s)

    async def asettle(self, s: Settlement) -> None:
        policy = s.policy
        if not policy.active:
            return
        if self.shared.owns(s.admission):
            if self._healthy:
                try:
                    learned = await self.shared.asettle(s)
                except self.shared.errors as exc:
                    self._failed(exc)
                else:
                    if learned is not None:
                        self._local.learn(policy, *learned)
                    return
            s = _as_local(s)
        self._local.settle(s)

    def snapshot(self, policies: Sequence[Policy], now: float) -> list[dict[str, Any]]:
        """The shared state's view (the local one while the shared store is unavailable)."""
        if self._healthy:
            try:
                return self.shared.snapshot(policies, now)
            except self.shared.errors as exc:
                self._failed(exc)
        return self._local.snapshot(policies, now)

    def info(self) -> dict[str, Any]:
        info = self.shared.info()
        return {
            **info,
            "shared": True,
            "healthy": self._healthy,
            "serving": info.get("backend", "shared") if self._healthy else "local",
            "unhealthy_since": self._unhealthy_since,
            "outages": self._outages,
            "timeouts": self._timeouts,
            "local_admissions": self._local_calls,
            "last_error": self._last_error,
        }

    def reset(self, policies: Sequence[Policy] | None = None) -> None:
        """Forget these deployments' state here and in the shared store (raises its error
        when it cannot be reached; the local state is reset anyway)."""
        self._local.reset(policies)
        self.shared.reset(policies)

    def close(self) -> None:
        """Stop the background watcher and close the shared store's connections."""
        self._closed.set()
        self.shared.close()
