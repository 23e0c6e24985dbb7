"""The gateway's options: validated once, frozen, read by ``__init__``, ``serialize()`` and
``stats()``, so each default is written in exactly one place (the field's default here).

Every numeric option is checked for its type, for NaN and infinity, and for a sane range; a
mistake raises ``TypeError``/``ValueError`` naming the option and what it accepts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from msgflux.formats.policy import check_overrides
from msgflux.models.gateway.breaker import Breaker
from msgflux.models.gateway.hedge import Hedge
from msgflux.retry import RetryPolicy, RetryState, retry_if_transient, stop_never
from msgflux.retry import wait_exponential_jitter as _jitter

__all__ = [
    "MAX_RETRIES",
    "MID_STREAM",
    "WHEN_ALL_OPEN",
    "GatewayConfig",
    "as_predicate",
    "check_count",
    "check_seconds",
]

MID_STREAM = ("raise", "continue")
WHEN_ALL_OPEN = ("fail", "probe")
MAX_RETRIES = 100
DAY = 86_400.0
WEEK = 7 * DAY

ErrorMatcher = Callable[[BaseException], bool]


def check_seconds(
    value: Any,
    field: str,
    *,
    high: float,
    allow_zero: bool = False,
    allow_none: bool = True,
) -> float | None:
    """A finite number of seconds in ``(0, high]`` (``[0, high]`` with ``allow_zero``)."""
    low = ">= 0" if allow_zero else "> 0"
    accepted = f"a number of seconds {low} and <= {high:g}" + (" or None" if allow_none else "")
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field} must be {accepted}, got {value!r}")
    if not math.isfinite(value) or value > high or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{field} must be {accepted}, got {value!r}")
    return float(value)


def check_count(
    value: Any, field: str, *, low: int, high: int, allow_none: bool = True
) -> int | None:
    accepted = f"an int between {low} and {high}" + (" or None" if allow_none else "")
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be {accepted}, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{field} must be {accepted}, got {value!r}")
    return value


MAX_BYTES = 1 << 34
"""16 GiB: a cap beyond it is a mistake (and would not bound anything)."""


def check_bytes(value: Any, field: str) -> int | None:
    """A byte cap: an int between 1 and 16 GiB, or None."""
    return check_count(value, field, low=1, high=MAX_BYTES)


def as_predicate(value: Any, field: str) -> ErrorMatcher | None:
    """Turn exception types, predicates or a list mixing them into one predicate."""
    if value is None:
        return None
    items = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
    types: list[type[BaseException]] = []
    funcs: list[ErrorMatcher] = []
    for item in items:
        if isinstance(item, type) and issubclass(item, BaseException):
            types.append(item)
        elif callable(item) and not isinstance(item, type):
            funcs.append(item)
        else:
            raise TypeError(
                f"{field} accepts exception types, predicates (callables taking the exception "
                f"and returning bool) or a list of them; got {item!r}"
            )
    type_tuple = tuple(types)

    def predicate(exc: BaseException) -> bool:
        return isinstance(exc, type_tuple) or any(f(exc) for f in funcs)

    return predicate


@dataclasses.dataclass(frozen=True)
class GatewayConfig:
    """Every ``ModelGateway`` option with its default (see the README's configuration table)."""

    max_retries: int = 0
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    retry_after_cap: float = 30.0
    retry: Callable[[BaseException], bool] | None = None
    wait: Callable[[RetryState], float] | None = None
    stop: Callable[[RetryState], bool] | None = None
    fallback_on: Any = None
    raise_on: Any = None
    max_attempts: int | None = None
    timeout: float | None = None
    deadline: float | None = None
    first_chunk_timeout: float | None = None
    idle_timeout: float | None = None
    max_response_bytes: int | None = None
    max_event_bytes: int | None = None
    timezone: str | None = None
    mid_stream: str = "raise"
    breaker: Breaker | dict[str, Any] | bool | None = True
    strategy: Any = "ordered"
    hedge: Hedge | float | str | dict[str, Any] | None = None
    when_all_open: str = "fail"
    stats_window: float = 300.0
    fallback: bool = True
    name: str | None = None
    translation: Mapping[str, str] | None = None

    # derived, filled in by __post_init__
    retry_policy: RetryPolicy = dataclasses.field(init=False, repr=False, compare=False)
    fallback_match: ErrorMatcher | None = dataclasses.field(init=False, repr=False, compare=False)
    raise_match: ErrorMatcher | None = dataclasses.field(init=False, repr=False, compare=False)
    default_breaker: Breaker | None = dataclasses.field(init=False, repr=False, compare=False)
    hedge_policy: Hedge | None = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.fallback, bool):
            raise TypeError("`fallback` must be a bool")
        check_name(self.name)
        check_count(self.max_retries, "max_retries", low=0, high=MAX_RETRIES, allow_none=False)
        check_seconds(
            self.backoff_base, "backoff_base", high=3600, allow_zero=True, allow_none=False
        )
        check_seconds(self.backoff_cap, "backoff_cap", high=DAY, allow_zero=True, allow_none=False)
        check_seconds(
            self.retry_after_cap, "retry_after_cap", high=DAY, allow_zero=True, allow_none=False
        )
        check_count(self.max_attempts, "max_attempts", low=1, high=10_000)
        for name in ("timeout", "first_chunk_timeout", "idle_timeout"):
            check_seconds(getattr(self, name), name, high=DAY)
        check_seconds(self.deadline, "deadline", high=WEEK)
        check_bytes(self.max_response_bytes, "max_response_bytes")
        check_bytes(self.max_event_bytes, "max_event_bytes")
        check_seconds(self.stats_window, "stats_window", high=WEEK, allow_none=False)
        if self.mid_stream not in MID_STREAM:
            raise ValueError(f"mid_stream must be one of {MID_STREAM}, got {self.mid_stream!r}")
        if self.when_all_open not in WHEN_ALL_OPEN:
            raise ValueError(
                f"when_all_open must be one of {WHEN_ALL_OPEN}, got {self.when_all_open!r}"
            )
        for name in ("retry", "wait", "stop"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be a callable or None, got {value!r}")
        if self.wait is not None and (self.backoff_base, self.backoff_cap) != (0.5, 8.0):
            raise ValueError(
                "wait= replaces the backoff computed from backoff_base/backoff_cap; "
                "pass wait= or backoff_base/backoff_cap, not both"
            )
        set_ = object.__setattr__
        set_(
            self,
            "retry_policy",
            RetryPolicy(
                max_retries=self.max_retries,
                wait=self.wait
                if self.wait is not None
                else _jitter(self.backoff_base, self.backoff_cap),
                retry=self.retry if self.retry is not None else retry_if_transient,
                stop=self.stop if self.stop is not None else stop_never,
                retry_after_cap=self.retry_after_cap,
            ),
        )
        set_(self, "fallback_match", as_predicate(self.fallback_on, "fallback_on"))
        set_(self, "raise_match", as_predicate(self.raise_on, "raise_on"))
        set_(self, "default_breaker", Breaker.coerce(self.breaker, "breaker"))
        set_(self, "hedge_policy", Hedge.coerce(self.hedge))
        set_(self, "translation", check_overrides(self.translation))

    @classmethod
    def options(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.init)

    def changed(self) -> dict[str, Any]:
        """The options that differ from their defaults, as given (what ``serialize`` keeps)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.init and getattr(self, f.name) != f.default:
                out[f.name] = getattr(self, f.name)
        return out


def check_name(value: Any) -> None:
    """A gateway ``name``: None, or 1 to 200 printable characters (it labels metrics,
    traces and records)."""
    accepted = "a non-empty str of at most 200 printable characters, or None"
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"name must be {accepted}, got {type(value).__name__}")
    if not value or len(value) > 200 or not value.isprintable() or value != value.strip():
        raise ValueError(f"name must be {accepted} (no surrounding spaces), got {value!r}")


def deployment_seconds(spec: dict[str, Any], key: str, name: str) -> float | None:
    """A per-deployment timeout option, checked like the gateway's."""
    return check_seconds(spec.get(key), f"{key} of deployment {name!r}", high=DAY)


def names(items: Sequence[Any]) -> str:
    return ", ".join(str(i) for i in items)
