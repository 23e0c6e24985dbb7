"""Strict readers of a Gemini request's fields, for :mod:`.request_decode` and
:mod:`.config_decode`.

Gemini's REST API reads every field in camelCase or snake_case: :func:`obj` gives an object
with its keys in camelCase. Each reader raises ``ValueError`` whose message starts with the
field's path (``contents.1.parts.0.text: must be a string, got null``).
"""

from __future__ import annotations

from typing import Any

from msgflux.formats.common import fail, integer, kind_of
from msgflux.formats.policy import Translation

__all__ = [
    "TARGET",
    "camel",
    "drop",
    "fail",
    "integer",
    "kind_of",
    "non_empty",
    "number",
    "obj",
    "string",
]

TARGET = "the deployment's API"
"""Who cannot take a dropped Gemini field: any family but Gemini's."""


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def obj(value: Any, where: str) -> dict[str, Any]:
    """``value`` (an object) with its keys in camelCase, as Gemini reads them."""
    if type(value) is not dict:
        raise fail(where, f"must be an object, got {kind_of(value)}")
    if not any("_" in key for key in value):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = camel(key)
        if name in out:
            raise fail(f"{where}.{name}", "is given twice (in camelCase and snake_case)")
        out[name] = item
    return out


def non_empty(value: Any, where: str, what: str) -> list[Any]:
    if type(value) is not list or not value:
        raise fail(where, f"must be a non-empty array of {what}, got {kind_of(value)}")
    return value


def string(value: Any, where: str, *, empty: bool = True) -> str:
    if type(value) is not str:
        raise fail(where, f"must be a string, got {kind_of(value)}")
    if not empty and not value:
        raise fail(where, "must not be empty")
    return value


def number(value: Any, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise fail(where, f"must be a number between {low:g} and {high:g}", value)
    return value


def drop(ctx: Translation, feature: str, field: str) -> None:
    ctx.lose(feature, field, TARGET, f"take Gemini's {field}")
