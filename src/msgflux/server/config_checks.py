"""The field checks of a config file, and the error they raise.

Every check names the path of the value at fault (``gateways.chat.models[1].timeout``) and, for
an unknown key, the closest valid one. A value that came from a single ``${VAR}``
(:class:`FromEnv`) is typed here, when a check knows what it expects: ``port: ${PORT}`` is an
int, while a text key (names, URLs, import paths) keeps the variable's text as it is.

Separate from building the specs (:mod:`msgflux.server.config_build`) because the client keys'
limits (:mod:`msgflux.server.key_limits`) are checked the same way, and that module is in turn
imported by the builder: both import the checks, and neither imports the other's privates.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "IMPORTED_OPTIONS",
    "TEXT_KEYS",
    "ConfigError",
    "FromEnv",
    "as_bool",
    "as_int",
    "as_mapping",
    "as_seconds",
    "as_text",
    "closest",
    "join",
    "kind_of",
    "only_keys",
    "plain",
    "typed",
]

yaml: Any = importlib.import_module("yaml")


class ConfigError(ValueError):
    """A mistake in the config file; ``path`` names where (``gateways.chat.models[1].timeout``)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


IMPORTED_OPTIONS = (
    "retry",
    "wait",
    "stop",
    "on_attempt",
    "on_fallback",
    "on_success",
    "on_failure",
)
"""Gateway options whose value is code: given as an import path ``"package.module:name"``."""

TEXT_KEYS = frozenset(
    {
        "host",
        "state",
        "name",
        "key",
        "key_sha256",
        "model_name",
        "model",
        "base_url",
        "api_key",
        "description",
        "timezone",
        "type",
        "organization",
        "project",
        "strategy",
        "mid_stream",
        "when_all_open",
        *IMPORTED_OPTIONS,
    }
)
"""Keys whose ``${VAR}`` value stays text whatever it looks like."""


# -- values from the environment --------------------------------------------------------------
class FromEnv(str):
    """Text that came from a single ``${VAR}``: may still become a number for a numeric key."""

    __slots__ = ()


def typed(value: Any, key: str) -> Any:
    """A whole-value ``${VAR}`` as YAML would type its text, unless ``key`` is a text key."""
    if not isinstance(value, FromEnv):
        return value
    if key in TEXT_KEYS:
        return str(value)
    try:
        resolved = yaml.safe_load(str(value))
    except yaml.YAMLError:
        return str(value)
    return resolved if isinstance(resolved, (int, float, bool)) or resolved is None else str(value)


def plain(value: Any) -> Any:
    """``value`` with every ``${VAR}`` typed (for dicts passed on as they are)."""
    if isinstance(value, dict):
        return {k: plain(typed(v, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(typed(v, "")) for v in value]
    return typed(value, "")


# -- checks -----------------------------------------------------------------------------------
def join(path: str, key: str) -> str:
    """``path.key`` (``key`` alone at the top)."""
    return f"{path}.{key}" if path else key


def kind_of(value: Any) -> str:
    """What ``value`` is, in the words of an error message (``a mapping``, ``null``, ...)."""
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def closest(key: str, accepted: Sequence[str]) -> str:
    """``did you mean 'x'?``, or the list of what is accepted when nothing is close."""
    match = difflib.get_close_matches(key, accepted, n=1, cutoff=0.6)
    if match:
        return f"did you mean {match[0]!r}?"
    return "accepted: " + ", ".join(accepted)


def only_keys(mapping: Mapping[Any, Any], accepted: Sequence[str], path: str) -> None:
    """Refuse a key of ``mapping`` that is not in ``accepted``, naming the closest one."""
    for key in mapping:
        if key not in accepted:
            raise ConfigError(join(path, str(key)), f"unknown key; {closest(str(key), accepted)}")


def as_mapping(value: Any, path: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(path, f"must be {what}, got {kind_of(value)}")
    return value


def as_text(value: Any, path: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(path, f"must be a non-empty string, got {kind_of(value)}")
    return str(value)


def as_int(value: Any, path: str, low: int, high: int) -> int:
    value = typed(value, "")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"must be an integer between {low} and {high}, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(path, f"must be between {low} and {high}, got {value}")
    return value


def as_seconds(value: Any, path: str) -> float:
    value = typed(value, "")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigError(path, f"must be a number of seconds >= 0, got {value!r}")
    if value == float("inf"):
        raise ConfigError(path, "must be finite")
    return float(value)


def as_bool(value: Any, path: str) -> bool:
    value = typed(value, "")
    if not isinstance(value, bool):
        raise ConfigError(path, f"must be true or false, got {value!r}")
    return value
