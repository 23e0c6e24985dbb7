"""What a client key may use: ``rpm``, ``tpm``, ``max_concurrency`` and a spend ``budget``.

A ``server.keys`` entry may set any of them::

    server:
      keys:
        - name: team-a
          key: ${TEAM_A_KEY}
          models: "*"
          rpm: 600                         # requests in any 60-second window
          tpm: 200000                      # tokens (input + output) in any 60-second window
          max_concurrency: 20              # requests in flight at once
          budget: {usd: 100, period: day}  # spend per UTC day, week (from Monday) or month

This module holds the validated values (:class:`KeyLimits`, :class:`Budget`), their parsing
(errors name the field, e.g. ``server.keys[0].budget.period``) and the calendar arithmetic of
budget periods (:func:`period_bounds`), which is pure: the caller passes the time.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from msgflux.server.config_checks import ConfigError, as_int, as_mapping, closest, only_keys, typed

__all__ = ["LIMIT_KEYS", "PERIODS", "Budget", "KeyLimits", "parse_key_limits", "period_bounds"]

PERIODS = ("day", "week", "month")
LIMIT_KEYS = ("rpm", "tpm", "max_concurrency", "budget")
BUDGET_KEYS = ("usd", "period")
MAX_COUNT = 10**9


@dataclasses.dataclass(frozen=True)
class Budget:
    """At most ``usd`` of spend per ``period`` (UTC calendar day, ISO week or month)."""

    usd: float
    period: str


@dataclasses.dataclass(frozen=True)
class KeyLimits:
    """One key's limits (None: no limit of that kind)."""

    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    budget: Budget | None = None

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.rpm, self.tpm, self.max_concurrency, self.budget))


NO_LIMITS = KeyLimits()


def period_bounds(period: str, now: float) -> tuple[float, float]:
    """(start, end) in epoch seconds of the UTC ``period`` holding ``now``."""
    moment = datetime.fromtimestamp(now, timezone.utc)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start, end = day, day + timedelta(days=1)
    elif period == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif period == "month":
        start = day.replace(day=1)
        carry, month = divmod(start.month, 12)
        end = start.replace(year=start.year + carry, month=month + 1)
    else:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, got {period!r}")
    return start.timestamp(), end.timestamp()


def _count(value: Any, path: str) -> int:
    return as_int(value, path, 1, MAX_COUNT)


def _budget(raw: Any, path: str) -> Budget:
    spec = as_mapping(raw, path, "a mapping {usd: 100, period: day|week|month}")
    only_keys(spec, BUDGET_KEYS, path)
    for key in BUDGET_KEYS:
        if spec.get(key) is None:
            raise ConfigError(f"{path}.{key}", "required")
    usd = typed(spec["usd"], "")
    if isinstance(usd, bool) or not isinstance(usd, (int, float)):
        raise ConfigError(f"{path}.usd", f"must be a number of US dollars > 0, got {usd!r}")
    if not (usd > 0 and math.isfinite(usd)):
        raise ConfigError(f"{path}.usd", f"must be a finite number of US dollars > 0, got {usd}")
    period = typed(spec["period"], "period")
    if not isinstance(period, str) or period not in PERIODS:
        hint = closest(period, PERIODS) if isinstance(period, str) else "accepted: day, week, month"
        raise ConfigError(f"{path}.period", f"unknown period {period!r}; {hint}")
    return Budget(float(usd), period)


def parse_key_limits(spec: Mapping[str, Any], path: str) -> KeyLimits:
    """The limits of one ``server.keys`` entry at ``path`` (raises ``ConfigError``)."""
    values: dict[str, Any] = {}
    for key in ("rpm", "tpm", "max_concurrency"):
        if spec.get(key) is not None:
            values[key] = _count(spec[key], f"{path}.{key}")
    if spec.get("budget") is not None:
        values["budget"] = _budget(spec["budget"], f"{path}.budget")
    return KeyLimits(**values) if values else NO_LIMITS
