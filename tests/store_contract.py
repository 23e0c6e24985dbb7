"""Behaviour every state store must have, written once and run against each store.

Subclass :class:`StoreContract` and provide a ``store`` fixture (see ``test_state.py`` for the
memory store). Times are explicit epoch seconds, so no clock is needed.
"""

from __future__ import annotations

from typing import Any

import pytest

from msgflux.models.gateway import Breaker, Policy
from msgflux.models.gateway.state import FAILURE, IGNORED, SUCCESS, Admission, Settlement

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def policy(name: str = "a", **kw: Any) -> Policy:
    kw.setdefault("breaker", Breaker())
    return Policy(name, "mock", f"m-{name}", **kw)


class StoreContract:
    """Shared tests; ``store`` is a fresh, empty store per test."""

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def fail(store: Any, p: Policy, now: float, n: int = 1, retry_after: float = 0.0) -> None:
        for _ in range(n):
            adm = store.admit([p], now)
            assert adm.index == 0, adm
            store.settle(Settlement(p, adm, FAILURE, now, retry_after=retry_after))

    @staticmethod
    def succeed(store: Any, p: Policy, now: float, n: int = 1) -> None:
        for _ in range(n):
            adm = store.admit([p], now)
            assert adm.index == 0, adm
            store.settle(Settlement(p, adm, SUCCESS, now))

    @staticmethod
    def snap(store: Any, p: Policy, now: float) -> dict[str, Any]:
        (out,) = store.snapshot([p], now)
        return dict(out)

    # -- admission basics ----------------------------------------------------------------------
    def test_fresh_deployment_is_admitted(self, store: Any) -> None:
        p = policy()
        store.register([p])
        adm = store.admit([p], T0)
        assert adm.index == 0 and not adm.probe and adm.skips == ()

    def test_inactive_policy_is_admitted_without_state(self, store: Any) -> None:
        p = policy(breaker=None)
        assert store.admit([p], T0).index == 0

    def test_info_says_whether_state_is_shared_and_healthy(self, store: Any) -> None:
        info = store.info()
        assert isinstance(info["shared"], bool) and isinstance(info["healthy"], bool)
        assert isinstance(info["backend"], str)

    # -- breaker: consecutive failures ---------------------------------------------------------
    def test_opens_after_consecutive_failures(self, store: Any) -> None:
        p = policy(breaker=Breaker(failure_threshold=3, failure_rate=None, open_for=30))
        self.fail(store, p, T0, 2)
        assert self.snap(store, p, T0)["breaker"] == "closed"
        self.fail(store, p, T0 + 1)
        s = self.snap(store, p, T0 + 1)
        assert s["breaker"] == "open" and s["reopens_at"] == pytest.approx(T0 + 31)
        adm = store.admit([p], T0 + 2)
        assert adm.index == -1
        assert adm.skips[0].reason == "circuit open"
        assert adm.skips[0].retry_at == pytest.approx(T0 + 31)

    def test_success_resets_the_consecutive_count(self, store: Any) -> None:
        p = policy(breaker=Breaker(failure_threshold=3, failure_rate=None))
        self.fail(store, p, T0, 2)
        self.succeed(store, p, T0)
        self.fail(store, p, T0, 2)
        assert self.snap(store, p, T0)["breaker"] == "closed"

    def test_ignored_outcomes_never_trip(self, store: Any) -> None:
        p = policy(breaker=Breaker(failure_threshold=1, failure_rate=None))
        for _ in range(5):
            adm = store.admit([p], T0)
            store.settle(Settlement(p, adm, IGNORED, T0))
        assert self.snap(store, p, T0)["breaker"] == "closed"

    # -- breaker: failure rate -----------------------------------------------------------------
    def test_failure_rate_needs_minimum_calls(self, store: Any) -> None:
        b = Breaker(failure_threshold=None, failure_rate=0.5, minimum_calls=10, window=60)
        p = policy(breaker=b)
        for i in range(9):
            (self.fail if i % 2 else self.succeed)(store, p, T0 + i)
        assert self.snap(store, p, T0 + 9)["breaker"] == "closed"  # 4/9 failed, 9 < 10 calls
        self.fail(store, p, T0 + 9)  # 5/10
        assert self.snap(store, p, T0 + 9)["breaker"] == "open"

    def test_failure_rate_window_slides(self, store: Any) -> None:
        b = Breaker(failure_threshold=None, failure_rate=0.5, minimum_calls=4, window=10)
        p = policy(breaker=b)
        self.fail(store, p, T0, 3)
        # 20 s later the three failures have left the 10 s window.
        self.succeed(store, p, T0 + 20, 2)
        self.fail(store, p, T0 + 20)
        s = self.snap(store, p, T0 + 20)
        assert (s["window_calls"], s["window_failures"]) == (3, 1)
        assert s["breaker"] == "closed"
        self.fail(store, p, T0 + 21)  # 2/4 within the window
        assert self.snap(store, p, T0 + 21)["breaker"] == "open"

    # -- breaker: open, half-open, probes ------------------------------------------------------
    def _opened(self, store: Any, **kw: Any) -> Policy:
        cfg = {"failure_threshold": 1, "failure_rate": None, "open_for": 10, **kw}
        p = policy(breaker=Breaker(**cfg))
        self.fail(store, p, T0)
        return p

    def test_half_open_admits_one_probe_then_skips(self, store: Any) -> None:
        p = self._opened(store)
        assert store.admit([p], T0 + 9.9).index == -1
        probe = store.admit([p], T0 + 10)
        assert probe.index == 0 and probe.probe
        other = store.admit([p], T0 + 10.5)
        assert other.index == -1
        assert other.skips[0].reason == "circuit half-open, probe in flight"
        store.settle(Settlement(p, probe, SUCCESS, T0 + 11))
        assert self.snap(store, p, T0 + 11)["breaker"] == "closed"
        assert not store.admit([p], T0 + 11).probe

    def test_failed_probe_doubles_open_for_capped(self, store: Any) -> None:
        p = self._opened(store, max_open_for=35)
        now = T0 + 10
        for expected in (20, 35, 35):
            probe = store.admit([p], now)
            assert probe.probe
            store.settle(Settlement(p, probe, FAILURE, now))
            s = self.snap(store, p, now)
            assert s["breaker"] == "open"
            assert s["reopens_at"] == pytest.approx(now + expected)
            now += expected
        probe = store.admit([p], now)
        store.settle(Settlement(p, probe, SUCCESS, now))
        # closed again: the next opening starts from open_for once more
        self.fail(store, p, now)
        assert self.snap(store, p, now)["reopens_at"] == pytest.approx(now + 10)

    def test_retry_after_extends_open_for_capped(self, store: Any) -> None:
        p = policy(breaker=Breaker(failure_threshold=1, open_for=10, max_open_for=100))
        self.fail(store, p, T0, retry_after=45)
        assert self.snap(store, p, T0)["reopens_at"] == pytest.approx(T0 + 45)
        store.reset([p])
        self.fail(store, p, T0, retry_after=5000)
        assert self.snap(store, p, T0)["reopens_at"] == pytest.approx(T0 + 100)
        store.reset([p])
        self.fail(store, p, T0, retry_after=3)  # shorter than open_for: no effect
        assert self.snap(store, p, T0)["reopens_at"] == pytest.approx(T0 + 10)

    def test_ignored_probe_frees_the_slot(self, store: Any) -> None:
        p = self._opened(store)
        probe = store.admit([p], T0 + 10)
        store.settle(Settlement(p, probe, IGNORED, T0 + 10))
        again = store.admit([p], T0 + 10)
        assert again.probe and again.index == 0

    def test_lost_probe_slot_expires(self, store: Any) -> None:
        p = self._opened(store, probe_timeout=5)
        assert store.admit([p], T0 + 10).probe
        assert store.admit([p], T0 + 14).index == -1
        assert store.admit([p], T0 + 15).probe

    def test_several_probe_slots(self, store: Any) -> None:
        p = self._opened(store, half_open_probes=2)
        a = store.admit([p], T0 + 10)
        b = store.admit([p], T0 + 10)
        assert a.probe and b.probe
        assert store.admit([p], T0 + 10).index == -1
        store.settle(Settlement(p, a, FAILURE, T0 + 10))
        assert self.snap(store, p, T0 + 10)["breaker"] == "open"
        # a late probe cannot close a re-opened breaker
        store.settle(Settlement(p, b, SUCCESS, T0 + 10))
        assert self.snap(store, p, T0 + 10)["breaker"] == "open"

    def test_late_results_do_not_move_an_open_breaker(self, store: Any) -> None:
        p = policy(breaker=Breaker(failure_threshold=1, open_for=10))
        early = store.admit([p], T0)
        self.fail(store, p, T0)
        store.settle(Settlement(p, early, SUCCESS, T0 + 1))
        assert self.snap(store, p, T0 + 1)["breaker"] == "open"

    def test_slow_success_counts_as_failure(self, store: Any) -> None:
        p = policy(breaker=Breaker(failure_threshold=2, slow_call_duration=1.0))
        for _ in range(2):
            adm = store.admit([p], T0)
            store.settle(Settlement(p, adm, SUCCESS, T0, duration=1.5))
        assert self.snap(store, p, T0)["breaker"] == "open"

    # -- several candidates --------------------------------------------------------------------
    def test_skips_open_candidates_in_one_call(self, store: Any) -> None:
        a = policy("a", breaker=Breaker(failure_threshold=1, open_for=10))
        b = policy("b")
        self.fail(store, a, T0)
        adm = store.admit([a, b], T0 + 1)
        assert adm.index == 1
        assert [(s.index, s.reason) for s in adm.skips] == [(0, "circuit open")]

    def test_probe_when_all_open_picks_the_earliest(self, store: Any) -> None:
        a = policy("a", breaker=Breaker(failure_threshold=1, open_for=20))
        b = policy("b", breaker=Breaker(failure_threshold=1, open_for=10))
        self.fail(store, a, T0)
        self.fail(store, b, T0)
        adm = store.admit([a, b], T0 + 1)
        assert adm.index == -1 and {s.retry_at for s in adm.skips} == {T0 + 20, T0 + 10}
        adm = store.admit([a, b], T0 + 1, probe_when_all_open=True)
        assert adm.index == 1 and adm.probe
        assert [s.index for s in adm.skips] == [0]
        assert self.snap(store, b, T0 + 1)["breaker"] == "half_open"

    # -- limits --------------------------------------------------------------------------------
    def test_rpm_sliding_window(self, store: Any) -> None:
        p = policy(breaker=None, rpm=3)
        for t in (0, 10, 20):
            assert store.admit([p], T0 + t).index == 0
        adm = store.admit([p], T0 + 30)
        assert adm.index == -1
        assert adm.skips[0].reason == "rpm limit"
        assert adm.skips[0].retry_at == pytest.approx(T0 + 60)
        assert store.admit([p], T0 + 59.9).index == -1
        assert store.admit([p], T0 + 60).index == 0
        assert store.admit([p], T0 + 60.5).index == -1
        assert self.snap(store, p, T0 + 60.5)["rpm_used"] == 3

    def test_tpm_counts_reported_tokens(self, store: Any) -> None:
        p = policy(breaker=None, tpm=1000)
        adm = store.admit([p], T0)
        store.settle(Settlement(p, adm, SUCCESS, T0, tokens=600))
        adm = store.admit([p], T0 + 5)
        assert adm.index == 0
        store.settle(Settlement(p, adm, SUCCESS, T0 + 5, tokens=500))
        skip = store.admit([p], T0 + 6)
        assert skip.index == -1 and skip.skips[0].reason == "tpm limit"
        assert skip.skips[0].retry_at == pytest.approx(T0 + 60)
        assert self.snap(store, p, T0 + 6)["tpm_used"] == 1100
        assert store.admit([p], T0 + 60).index == 0

    def test_max_concurrency_leases(self, store: Any) -> None:
        p = policy(breaker=None, max_concurrency=2, lease=30)
        a = store.admit([p], T0)
        b = store.admit([p], T0)
        assert a.index == b.index == 0
        full = store.admit([p], T0)
        assert full.index == -1 and full.skips[0].reason == "max_concurrency reached"
        store.settle(Settlement(p, a, IGNORED, T0 + 1))
        c = store.admit([p], T0 + 1)
        assert c.index == 0
        assert store.admit([p], T0 + 1).index == -1
        # leases expire (a process died mid-call)
        assert store.admit([p], T0 + 31).index == 0

    def test_limit_skip_then_fallback(self, store: Any) -> None:
        a = policy("a", breaker=None, rpm=1)
        b = policy("b", breaker=None)
        assert store.admit([a, b], T0).index == 0
        adm = store.admit([a, b], T0)
        assert adm.index == 1 and adm.skips[0].reason == "rpm limit"

    def test_rate_limited_deployment_does_not_take_the_probe(self, store: Any) -> None:
        p = policy(breaker=Breaker(failure_threshold=1, open_for=10), rpm=1)
        self.fail(store, p, T0)  # uses the one rpm slot and opens the breaker
        adm = store.admit([p], T0 + 10)
        assert adm.index == -1 and adm.skips[0].reason == "rpm limit"
        assert self.snap(store, p, T0 + 10)["breaker"] == "half_open"
        assert store.admit([p], T0 + 60).probe

    def test_reset_forgets(self, store: Any) -> None:
        p = self._opened(store)
        store.reset()
        assert store.admit([p], T0 + 1).index == 0

    async def test_async_methods(self, store: Any) -> None:
        p = policy(breaker=Breaker(failure_threshold=1))
        adm = await store.aadmit([p], T0)
        assert isinstance(adm, Admission) and adm.index == 0
        await store.asettle(Settlement(p, adm, FAILURE, T0))
        adm = await store.aadmit([p], T0)
        assert adm.index == -1
