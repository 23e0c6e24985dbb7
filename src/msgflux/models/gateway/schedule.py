"""Time windows during which a deployment must not be used ("blackouts").

A window ``("23:00", "07:00")`` covers every minute from 23:00 to 07:00 inclusive; windows
whose end is before their start cross midnight. Minutes are compared in the deployment's
time zone (UTC unless told otherwise), so DST shifts move the window with local time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["Window", "in_blackout", "parse_timezone", "parse_windows", "window_times"]

_HHMM = re.compile(r"^(\d{1,2}):(\d{1,2})$")

Window = tuple[int, int]
"""(start minute, end minute) of the day, both inclusive."""


def _minute(text: str, where: str, pair: Any) -> int:
    match = _HHMM.match(text)
    if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(
            f"Invalid format in time_constraints: Invalid time format in {where}. Use 'HH:MM' "
            f"(00:00 to 23:59). Error parsing `{pair[0]}` or `{pair[1]}`: {text!r} is not a time"
        )
    return int(match.group(1)) * 60 + int(match.group(2))


def parse_windows(value: Any, model_name: str) -> tuple[Window, ...]:
    """Validate ``[("HH:MM", "HH:MM"), ...]`` and return the windows as minutes of the day.

    Hours may have one digit (``"7:00"``), as in msgflux.
    """
    if not isinstance(value, (list, tuple)):
        raise TypeError(
            f"time_constraints: Constraints for `{model_name}` must be a list of tuples "
            f"(start, end). Given: `{type(value).__name__}`"
        )
    windows = []
    for i, pair in enumerate(value, 1):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise TypeError(
                f"time_constraints: Interval #{i} for `{model_name}` must be a tuple/list of two "
                f"strings (start_time_str, end_time_str). Given: `{pair!r}`"
            )
        start, end = pair
        if not isinstance(start, str) or not isinstance(end, str):
            raise TypeError(
                f"time_constraints: Start and end times in range #{i} for `{model_name}` must be "
                f"strings. Given: `({type(start).__name__}, {type(end).__name__})`"
            )
        where = f"range #{i} for `{model_name}`"
        windows.append((_minute(start, where, pair), _minute(end, where, pair)))
    return tuple(windows)


def window_times(windows: Sequence[Window]) -> list[tuple[time, time]]:
    """The windows as ``(start, end)`` naive ``datetime.time`` pairs (msgflux's parsed form)."""
    return [(time(s // 60, s % 60), time(e // 60, e % 60)) for s, e in windows]


def parse_timezone(value: Any, field: str = "timezone") -> ZoneInfo | None:
    """``None`` (UTC) or an IANA zone name such as ``"Europe/Berlin"``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(
            f"{field} must be an IANA time zone name like 'Europe/Berlin', got {value!r}"
        )
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{field} {value!r} is not a known IANA time zone (e.g. 'UTC', 'Europe/Berlin')"
        ) from None


def in_blackout(windows: Sequence[Window], now: datetime, tz: ZoneInfo | None) -> bool:
    """True when ``now`` (aware) falls inside any window, in time zone ``tz`` (UTC if None)."""
    local = now.astimezone(tz) if tz is not None else now.astimezone(_UTC)
    minute = local.hour * 60 + local.minute
    for start, end in windows:
        if start <= end:
            if start <= minute <= end:
                return True
        elif minute >= start or minute <= end:
            return True
    return False


_UTC = ZoneInfo("UTC")
