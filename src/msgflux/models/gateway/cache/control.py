"""What one call asks of the cache: its per-call options, checked. Pure: no I/O.

Library calls take ``cache=False`` (neither read nor write the cache), ``cache=True`` (cache
this call even if it is sampled), ``cache_ttl=`` (seconds this call's answer is kept) and
``cache_control=``, the HTTP ``Cache-Control`` request header's vocabulary, which the server
passes on from its clients:

* ``no-cache``: do not answer from the cache; the fresh answer replaces the entry;
* ``no-store``: do not store this call's answer;
* ``max-age=N``: accept only an entry at most N seconds old (an older one is a miss, and the
  fresh answer replaces it);
* ``only-if-cached``: answer from the cache or not at all (a miss raises :class:`NotCached`,
  no deployment is called).

Other directives are ignored, as HTTP caches do. A malformed option is the caller's mistake:
a ``TypeError``/``ValueError`` naming it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["OPTIONS", "Controls", "NotCached", "controls", "parse_cache_control"]

OPTIONS = frozenset({"cache", "cache_ttl", "cache_control"})
"""The per-call options the cache takes."""


class NotCached(LookupError):
    """A call said ``only-if-cached`` and the cache has no answer for it."""


@dataclasses.dataclass(frozen=True, slots=True)
class Controls:
    """One call's controls: read the cache? write it? the oldest entry accepted, the ttl of
    this call's entry (None: the cache's), whether a sampled call may be cached, and whether
    only a cached answer will do."""

    read: bool = True
    write: bool = True
    max_age: float | None = None
    ttl: float | None = None
    sampled: bool = False
    only_cached: bool = False

    @property
    def bypass(self) -> bool:
        return not self.read and not self.write


DEFAULT = Controls()


def _seconds(value: Any, name: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number of seconds, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a number of seconds {'>' if positive else '>='} 0")
    return float(value)


def parse_cache_control(text: str) -> tuple[bool, bool, float | None, bool]:
    """``(no_cache, no_store, max_age, only_if_cached)`` of a ``Cache-Control`` value."""
    no_cache = no_store = only = False
    max_age: float | None = None
    for part in text.split(","):
        name, _, value = part.strip().partition("=")
        name = name.strip().lower()
        if name == "no-cache":
            no_cache = True
        elif name == "no-store":
            no_store = True
        elif name == "only-if-cached":
            only = True
        elif name == "max-age":
            digits = value.strip().strip('"')
            if not digits.isdigit():
                raise ValueError(
                    f"cache-control: max-age must be a whole number of seconds, got {value!r}"
                )
            max_age = float(digits)
    return no_cache, no_store, max_age, only


def controls(options: Mapping[str, Any]) -> Controls:
    """The :class:`Controls` of a call's per-call options (see the module docstring)."""
    if not options:
        return DEFAULT
    read = write = True
    sampled = False
    enabled = options.get("cache")
    if enabled is not None:
        if enabled is not True and enabled is not False:
            raise TypeError(f"cache must be True or False, got {enabled!r}")
        read = write = sampled = enabled
    ttl = options.get("cache_ttl")
    if ttl is not None:
        ttl = _seconds(ttl, "cache_ttl", positive=True)
    max_age = None
    only = False
    header = options.get("cache_control")
    if header is not None:
        if not isinstance(header, str):
            raise TypeError(f"cache_control must be a str, got {type(header).__name__}")
        no_cache, no_store, max_age, only = parse_cache_control(header)
        read = read and not no_cache
        write = write and not no_store
    return Controls(read, write, max_age, ttl, sampled, only)
