"""Argument checks shared by the canonical request builders and the providers.

Each check raises ``TypeError`` for a value of the wrong type and ``ValueError`` for one out
of range, naming the argument and what it accepts. The ``minimum``/``maximum`` bounds are the
caller's: they are provider facts (OpenAI takes ``top_p=0``, llama.cpp does not).
"""

from __future__ import annotations

import math
from typing import Any, Literal, overload

__all__ = [
    "check_int",
    "check_number",
    "check_stop",
    "check_str",
    "check_timeout",
    "type_name",
]


def type_name(value: Any) -> str:
    return type(value).__name__


def check_int(name: str, value: Any, *, minimum: int, optional: bool = False) -> int | None:
    """*value* when it is an int (not a bool) ``>= minimum``, or None when *optional*."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        accepted = "an int or None" if optional else "an int"
        raise TypeError(f"{name} must be {accepted}, got {type_name(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
) -> float | None:
    """*value* as a float when it is a number within the bounds (never NaN), or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number or None, got {type_name(value)}")
    number = float(value)
    too_low = number <= minimum if exclusive_minimum else number < minimum
    if too_low or (maximum is not None and number > maximum) or math.isnan(number):
        low = f"> {minimum:g}" if exclusive_minimum else f">= {minimum:g}"
        high = f" and <= {maximum:g}" if maximum is not None else ""
        raise ValueError(f"{name} must be {low}{high}, got {number:g}")
    return number


@overload
def check_str(name: str, value: Any, *, optional: Literal[False]) -> str: ...
@overload
def check_str(name: str, value: Any, *, optional: bool = True) -> str | None: ...
def check_str(name: str, value: Any, *, optional: bool = True) -> str | None:
    """*value* when it is a str, or None when *optional*."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        accepted = "a str or None" if optional else "a str"
        raise TypeError(f"{name} must be {accepted}, got {type_name(value)}")
    return value


def check_timeout(value: Any, name: str = "timeout") -> float | None:
    """*value* when it is a finite number of seconds > 0 (an int stays an int), or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a positive number of seconds or None, got {value!r}")
    if not (value > 0 and math.isfinite(value)):  # also rejects NaN
        raise ValueError(f"{name} must be a positive number of seconds (finite), got {value}")
    return value


def check_stop(value: Any) -> list[str] | None:
    """*value* (a str, or a list or tuple of str) as a new list, or None."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(s, str) for s in items):
        raise TypeError(f"stop must be a str, a list of str or None, got {value!r}")
    return list(items)
