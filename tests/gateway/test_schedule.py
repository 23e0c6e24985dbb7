"""Time windows: blackouts with inclusive minute edges, midnight crossing, time zones and DST."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msgflux._time import ManualClock
from msgflux.exceptions import ModelRouterError
from msgflux.models.gateway import ModelGateway
from msgflux.models.gateway.schedule import in_blackout, parse_windows
from tests.fakes import Scripted

UTC = timezone.utc
minutes = st.integers(0, 24 * 60 - 1)


def hhmm(m: int) -> str:
    return f"{m // 60:02d}:{m % 60:02d}"


def at(minute: int, second: int = 0, tz: Any = UTC) -> datetime:
    return datetime(2026, 3, 10, minute // 60, minute % 60, second, tzinfo=tz)


@given(start=minutes, end=minutes, now=minutes, second=st.integers(0, 59))
def test_blackout_matches_the_minute_set_definition(
    start: int, end: int, now: int, second: int
) -> None:
    windows = parse_windows([(hhmm(start), hhmm(end))], "m")
    covered = (
        set(range(start, end + 1))
        if start <= end
        else set(range(start, 1440)) | set(range(0, end + 1))
    )
    assert in_blackout(windows, at(now, second), None) == (now in covered)


@given(start=minutes, end=minutes)
def test_both_edges_are_inclusive_to_the_last_second(start: int, end: int) -> None:
    windows = parse_windows([(hhmm(start), hhmm(end))], "m")
    assert in_blackout(windows, at(start, 0), None)
    assert in_blackout(windows, at(end, 59), None)


def test_window_crossing_midnight() -> None:
    windows = parse_windows([("23:00", "07:00")], "m")
    assert in_blackout(windows, at(23 * 60), None)
    assert in_blackout(windows, at(0), None)
    assert in_blackout(windows, at(7 * 60, 59), None)
    assert not in_blackout(windows, at(7 * 60 + 1), None)
    assert not in_blackout(windows, at(22 * 60 + 59, 59), None)


@given(
    instant=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
    ),
    start=minutes,
    end=minutes,
)
def test_timezone_compares_local_wall_time_including_dst(
    instant: datetime, start: int, end: int
) -> None:
    tz = ZoneInfo("Europe/Berlin")
    windows = parse_windows([(hhmm(start), hhmm(end))], "m")
    local = instant.astimezone(tz)
    expected = in_blackout(windows, local.replace(tzinfo=UTC), None)
    assert in_blackout(windows, instant, tz) == expected


def test_dst_shift_moves_the_window_with_local_time() -> None:
    tz = ZoneInfo("Europe/Berlin")
    windows = parse_windows([("09:00", "09:30")], "m")
    winter = datetime(2026, 1, 15, 8, 15, tzinfo=UTC)  # 09:15 CET
    summer = datetime(2026, 7, 15, 7, 15, tzinfo=UTC)  # 09:15 CEST
    assert in_blackout(windows, winter, tz) and in_blackout(windows, summer, tz)
    assert not in_blackout(windows, winter + timedelta(hours=-1), tz)


def gateway_at(now: datetime, **options: Any) -> ModelGateway:
    return ModelGateway(
        [
            {
                "model_name": "night-off",
                "model": Scripted("a"),
                "time_constraints": [("23:00", "07:00")],
            },
            {"model_name": "always", "model": Scripted("b")},
        ],
        clock=lambda: now,
        **options,
    )


def test_deployment_in_blackout_is_not_used() -> None:
    resp = gateway_at(datetime(2026, 1, 1, 3, 0, tzinfo=UTC))(messages="hi")
    assert resp.metadata.gateway["model_name"] == "always"
    resp = gateway_at(datetime(2026, 1, 1, 12, 0, tzinfo=UTC))(messages="hi")
    assert resp.metadata.gateway["model_name"] == "night-off"


def test_gateway_timezone_applies_to_windows() -> None:
    noon_utc = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)  # 23:00 in Sydney (AEDT)
    resp = gateway_at(noon_utc, timezone="Australia/Sydney")(messages="hi")
    assert resp.metadata.gateway["model_name"] == "always"


def test_per_deployment_timezone_overrides_the_gateway() -> None:
    noon_utc = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    gateway = ModelGateway(
        [
            {
                "model_name": "a",
                "model": Scripted("a"),
                "time_constraints": [("11:30", "12:30")],
                "timezone": "UTC",
            },
            {"model_name": "b", "model": Scripted("b")},
        ],
        timezone="Asia/Tokyo",
        clock=lambda: noon_utc,
    )
    assert gateway(messages="hi").metadata.gateway["model_name"] == "b"


def test_no_deployment_available_raises_the_documented_error() -> None:
    gateway = ModelGateway(
        [{"model_name": "a", "model": Scripted("a"), "time_constraints": [("00:00", "23:59")]}],
        clock=ManualClock(),
    )
    with pytest.raises(ModelRouterError, match="No model available due to time constraints"):
        gateway(messages="hi")


async def test_async_path_respects_windows() -> None:
    resp = await gateway_at(datetime(2026, 1, 1, 6, 59, tzinfo=UTC)).acall(messages="hi")
    assert resp.metadata.gateway["model_name"] == "always"


def test_clock_must_return_an_aware_datetime() -> None:
    gateway = gateway_at(datetime(2026, 1, 1, 3, 0))  # naive
    with pytest.raises(TypeError, match="aware datetime"):
        gateway(messages="hi")
