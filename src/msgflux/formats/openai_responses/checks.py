"""The checks a Responses request is read with: a malformed field raises ``ValueError`` or
``TypeError`` whose message starts with the field's path (``input.3.content.0.type: ...``)
and says what is accepted, the way OpenAI's own 400s name the parameter."""

from __future__ import annotations

from typing import Any

from msgflux.formats.common import fail, integer, kind_of, one_of
from msgflux.formats.policy import Translation

__all__ = [
    "TARGET",
    "boolean",
    "drop",
    "fail",
    "integer",
    "kind_of",
    "number",
    "obj",
    "one_of",
    "string",
]

TARGET = "the deployment's API"
"""Who cannot take a dropped Responses field: any family but OpenAI's Responses API."""


def obj(value: Any, where: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise TypeError(f"{where}: must be an object, got {kind_of(value)}")
    return value


def string(value: Any, where: str, *, empty: bool = True) -> str:
    if type(value) is not str:
        raise TypeError(f"{where}: must be a string, got {kind_of(value)}")
    if not empty and not value:
        raise fail(where, "must not be empty")
    return value


def boolean(value: Any, where: str) -> bool:
    if type(value) is not bool:
        raise TypeError(f"{where}: must be a boolean, got {kind_of(value)}")
    return value


def number(value: Any, where: str, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high:
        raise fail(where, f"must be a number between 0 and {high:g}", value)
    return value


def drop(ctx: Translation, feature: str, field: str) -> None:
    """``field`` has no canonical form: lost through ``ctx`` under ``feature``."""
    ctx.lose(feature, field, TARGET, f"take the Responses API's {field}")
