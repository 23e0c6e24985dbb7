"""One cache entry as stored: the canonical answer, who gave it, when and for how long.

An entry is a format byte, then the entry's JSON: compressed when it is over
:data:`COMPRESS_OVER` bytes (raw deflate, a 4 KiB window and a small memory level), as it is
below. Measured on this machine: zlib's default settings cost ~55 µs per entry in their setup
alone, these ~8 µs for an answer of a few hundred bytes, which they shrink by a third; a small
answer is kept as it is, so a miss stays cheap and a hit skips the inflate. Reading an entry is
bounded: it never inflates past the size it is given, so a corrupted (or hostile) entry in a
shared store costs at most that much memory, and reads as no entry. Pure: no I/O, no clock.
"""

from __future__ import annotations

import zlib
from typing import Any, NamedTuple

import orjson

__all__ = ["COMPRESS_OVER", "Entry", "decode", "encode"]

COMPRESS_OVER = 1024
"""Bytes of JSON past which an entry is compressed."""
_DEFLATED = b"\x01"
_PLAIN = b"\x02"
_WBITS = -12
_MEM_LEVEL = 4


class Entry(NamedTuple):
    """A stored answer: the canonical ``completion`` that ``deployment`` gave at epoch
    ``created``, kept ``ttl`` seconds."""

    completion: dict[str, Any]
    deployment: str
    created: float
    ttl: float

    def age(self, now: float) -> float:
        return max(now - self.created, 0.0)

    def usable(self, now: float, max_age: float | None) -> bool:
        """Younger than its ttl and, when the caller set one, not older than ``max_age``."""
        age = self.age(now)
        return age < self.ttl and (max_age is None or age <= max_age)


def encode(entry: Entry, max_inflated: int) -> bytes | None:
    """The stored bytes of ``entry`` (None: its JSON is over ``max_inflated`` bytes)."""
    data = orjson.dumps(
        {
            "completion": entry.completion,
            "deployment": entry.deployment,
            "created": entry.created,
            "ttl": entry.ttl,
        }
    )
    if len(data) > max_inflated:
        return None
    if len(data) <= COMPRESS_OVER:
        return _PLAIN + data
    packer = zlib.compressobj(1, zlib.DEFLATED, _WBITS, _MEM_LEVEL)
    return _DEFLATED + packer.compress(data) + packer.flush()


def decode(data: bytes, max_inflated: int) -> Entry | None:
    """The entry stored as ``data``; None when it is not one (corrupted, another format,
    inflating past ``max_inflated`` bytes)."""
    head = data[:1]
    try:
        if head == _PLAIN:
            if len(data) > max_inflated + 1:
                return None
            value = orjson.loads(memoryview(data)[1:])
        elif head == _DEFLATED:
            inflater = zlib.decompressobj(_WBITS)
            text = inflater.decompress(memoryview(data)[1:], max_inflated)
            if inflater.unconsumed_tail or not inflater.eof:
                return None
            value = orjson.loads(text)
        else:
            return None
    except (zlib.error, orjson.JSONDecodeError):
        return None
    if type(value) is not dict:
        return None
    completion = value.get("completion")
    deployment = value.get("deployment")
    created = value.get("created")
    ttl = value.get("ttl")
    if (
        type(completion) is not dict
        or type(deployment) is not str
        or not isinstance(created, (int, float))
        or not isinstance(ttl, (int, float))
        or not isinstance(completion.get("choices"), list)
        or not completion["choices"]
    ):
        return None
    return Entry(completion, deployment, float(created), float(ttl))
