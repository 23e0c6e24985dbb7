"""What the dashboard charts and lists, without a server: :mod:`msgflux.server.activity` on a
manual clock (this process's counts, and counts shared through a real Redis by two processes'
worth of :class:`Activity`), and :func:`msgflux.server.dashboard.gateways` over a built runtime
(time windows, error rate, breaker). Served and in Chromium: ``test_admin_keys*.py`` and
``test_dashboard_browser.py``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from msgflux._time import ManualClock
from msgflux.exceptions import Attempt, InternalServerError
from msgflux.server import dashboard
from msgflux.server.activity import ERRORS, MINUTES, Activity, failure_entry
from msgflux.server.config import parse_config
from msgflux.server.runtime import build_runtime
from tests.redis_server import RedisServer, running_redis

PROMPT = "the secret plan is in the prompt"


def _failed_attempt(model_name: str = "d0") -> Attempt:
    exc = InternalServerError(f"upstream said: {PROMPT}", status_code=500)
    return Attempt(model_name, "openai", "m0", 1, exc, 1_767_225_600.0, 0.0123)


def test_requests_errors_and_spend_per_minute_over_the_last_hour() -> None:
    clock = ManualClock()
    activity = Activity(clock=clock)
    activity.record("chat", "team-a", failed=False, cost=0.25, failure=None)
    clock.advance(60)
    activity.record("chat", "team-a", failed=True, cost=0.0, failure=None)
    activity.record("chat", "team-b", failed=False, cost=0.5, failure=None)
    out = activity.local()
    assert out["step"] == 60 and out["shared"] is False
    chat = out["gateways"]["chat"]
    assert len(chat["requests"]) == MINUTES
    assert chat["requests"][-2:] == [1, 2] and chat["errors"][-2:] == [0, 1]
    assert chat["spend"][-2:] == [0.25, 0.5] and out["spend_total"] == 0.75
    assert sum(out["keys"]["team-a"]["requests"]) == 2
    assert sum(out["keys"]["team-b"]["spend"]) == 0.5
    assert out["start"] == (int(clock.time() // 60) - MINUTES + 1) * 60

    clock.advance(MINUTES * 60)  # an hour later, nothing of it is left
    later = activity.local()
    assert later["gateways"] == {} and later["keys"] == {} and later["spend_total"] == 0


def test_a_failure_entry_holds_types_and_durations_never_a_message() -> None:
    clock = ManualClock()
    activity = Activity(clock=clock)
    answered = Attempt("d1", "openai", "m1", 1, None, 1_767_225_600.0, 0.002)
    skipped = Attempt("d2", "openai", "m2", 0, None, 1_767_225_600.0, 0.0, skipped="circuit open")
    entry = failure_entry(
        clock.time(), "chat", "team-a", 200, None, [_failed_attempt(), answered, skipped]
    )
    activity.record("chat", "team-a", failed=False, cost=0.0, failure=entry)
    (shown,) = activity.local()["failures"]
    assert shown["error"] is None and shown["status"] == 200  # answered after a fallback
    assert shown["attempts"] == [
        {"deployment": "d0", "attempt": 1, "error": "InternalServerError", "status": 500,
         "skipped": None, "duration_ms": 12.3},
        {"deployment": "d1", "attempt": 1, "error": None, "status": None, "skipped": None,
         "duration_ms": 2.0},
        {"deployment": "d2", "attempt": 0, "error": None, "status": None,
         "skipped": "circuit open", "duration_ms": 0.0},
    ]  # fmt: skip
    assert PROMPT not in str(activity.local())
    for _ in range(ERRORS + 5):
        activity.record("chat", "k", failed=True, cost=0.0, failure=entry)
    assert len(activity.local()["failures"]) == ERRORS


# -- shared through Redis -------------------------------------------------------------------------
@pytest.mark.redis
async def test_every_process_counts_are_read_back_from_redis(redis_server: RedisServer) -> None:
    clock = ManualClock(datetime.now(timezone.utc))
    one, two = Activity(redis_server.url, clock), Activity(redis_server.url, clock)
    try:
        one.record("shared-gw", "k1", failed=False, cost=0.125, failure=None)
        two.record("shared-gw", "k2", failed=True, cost=0.0, failure=None)
        entry = failure_entry(clock.time(), "shared-gw", "k2", 502, "ModelRouterError", [])
        two.record("shared-gw", "k2", failed=True, cost=0.0, failure=entry)
        assert (await one.read())["gateways"].get("shared-gw") is None  # not added yet
        await one.flush()
        await two.flush()
        for reader in (one, two):
            out = await reader.read()
            gw = out["gateways"]["shared-gw"]
            assert out["shared"] is True
            assert (sum(gw["requests"]), sum(gw["errors"]), sum(gw["spend"])) == (3, 2, 0.125)
            assert sum(out["keys"]["k1"]["requests"]) == 1
            assert sum(out["keys"]["k2"]["errors"]) == 2
            assert [f["error"] for f in out["failures"] if f["gateway"] == "shared-gw"] == [
                "ModelRouterError"
            ]
    finally:
        await one.aclose()
        await two.aclose()


@pytest.mark.redis
async def test_counts_redis_missed_are_added_once_it_answers(tmp_path: Any) -> None:
    clock = ManualClock(datetime.now(timezone.utc))
    with running_redis() as redis:
        activity = Activity(redis.url, clock)
        activity.record("outage-gw", "k", failed=False, cost=0.0, failure=None)
        redis.kill()
        await activity.flush()  # fails: kept for later
        local = await activity.read()  # Redis unreadable: this process's counts
        assert local["shared"] is False and sum(local["gateways"]["outage-gw"]["requests"]) == 1
        redis.start()
        activity.record("outage-gw", "k", failed=False, cost=0.0, failure=None)
        await activity.flush()
        shared = await activity.read()
        assert shared["shared"] is True
        assert sum(shared["gateways"]["outage-gw"]["requests"]) == 2
        await activity.aclose()


# -- the dashboard's deployments ------------------------------------------------------------------
CONFIG = """
gateways:
  chat:
    breaker: {failure_threshold: 1, failure_rate: null, open_for: 60}
    models:
      - model_name: night
        model: openai_compatible/m0
        base_url: http://127.0.0.1:9/v1
        time_constraints: [["23:00", "07:00"]]
      - model_name: always
        model: openai_compatible/m1
        base_url: http://127.0.0.1:9/v1
"""


def test_each_deployment_shows_its_time_window_breaker_and_error_rate() -> None:
    runtime = build_runtime(parse_config(CONFIG, {}), shared_state=False)
    try:
        at_night = datetime(2026, 1, 1, 2, 0, tzinfo=timezone.utc)
        at_noon = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
        night, always = dashboard.gateways(runtime, at_night)["chat"]["deployments"]
        assert (night["name"], night["window"], always["window"]) == ("night", "blackout", None)
        assert dashboard.gateways(runtime, at_noon)["chat"]["deployments"][0]["window"] == "open"
        assert always["breaker"] == "closed" and always["error_rate"] is None
        assert always["in_flight"] == 0 and always["p50_ms"] is None

        gateway = runtime.routes["chat"].gateway
        with pytest.raises(Exception):  # noqa: B017 - nobody listens on port 9
            gateway(messages="hi")
        shown = {d["name"]: d for d in dashboard.gateways(runtime, at_noon)["chat"]["deployments"]}
        failed = [d for d in shown.values() if d["failed"]]
        assert failed and all(d["breaker"] == "open" and d["error_rate"] == 1.0 for d in failed)
        assert all(d["last_error"]["type"] for d in failed)
        assert set(failed[0]["last_error"]) == {"type", "at"}  # no message: it may quote a prompt
    finally:
        runtime.close()
