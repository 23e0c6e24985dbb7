"""Where virtual keys live: this process's memory, or Redis next to their usage.

A store holds the records (:class:`~.vkeys.VirtualKey`, digests only), a version number that
every change increments (what each process polls to know its copy is current) and the
append-only audit record of the changes. A write is a compare-and-set: it applies only if the
record is still the one the writer read (or, for a create, there is none), so two admins
changing one key at once cannot silently undo each other.

* :class:`MemoryKeyStore`: without ``server.state``. One process only; nothing survives a
  restart (the API says so in every answer). Its audit keeps the last
  :data:`MEMORY_AUDIT` entries.
* :class:`RedisKeyStore`: with ``server.state``. Keys ``{msgflux:vkeys}:records`` (a hash of
  JSON records), ``:version`` and ``:audit`` (a stream, never trimmed); one hash slot, so the
  write (``lua/vkey_write.lua``: check, write, bump, append) is atomic on a Redis Cluster too.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any, Protocol

import orjson

from msgflux.server.vkeys import VirtualKey

__all__ = ["MEMORY_AUDIT", "KeyStore", "MemoryKeyStore", "RedisKeyStore", "encode", "make_keystore"]

MEMORY_AUDIT = 10_000
"""Audit entries a memory store keeps (the oldest are dropped past it)."""


def encode(record: VirtualKey) -> bytes:
    """The stored JSON of ``record`` (canonical: the compare-and-set compares these bytes)."""
    return orjson.dumps(record.to_json(), option=orjson.OPT_SORT_KEYS)


class _Decoded:
    """The records of the last load, by name with their stored bytes: a reload parses only
    the records that changed (a change reloads every record in every process; with 10,000
    keys, parsing them all took 60 ms of the event loop, reusing them 10 ms)."""

    def __init__(self) -> None:
        self._last: dict[bytes, tuple[bytes, VirtualKey]] = {}

    def __call__(self, pairs: Iterable[tuple[bytes, bytes]]) -> list[VirtualKey]:
        last = self._last
        seen: dict[bytes, tuple[bytes, VirtualKey]] = {}
        for name, raw in pairs:
            found = last.get(name)
            if found is None or found[0] != raw:
                found = (raw, VirtualKey.from_json(orjson.loads(raw)))
            seen[name] = found
        self._last = seen
        return [record for _, record in seen.values()]


class KeyStore(Protocol):
    """Records, version and audit (see the module docstring)."""

    shared: bool
    """Other processes see the same keys."""

    async def version(self) -> int: ...

    async def load(self) -> tuple[int, list[VirtualKey]]:
        """The version and every record, read together."""
        ...

    async def get(self, name: str) -> VirtualKey | None: ...

    async def write(
        self, record: VirtualKey, expected: VirtualKey | None, entry: Mapping[str, Any]
    ) -> int:
        """Store ``record`` if the stored one is still ``expected`` (None: no record yet) and
        append ``entry`` to the audit; the new version, or 0 when it was not."""
        ...

    async def audit(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` audit entries, newest first."""
        ...

    async def aclose(self) -> None: ...


class MemoryKeyStore:
    """This process's keys (see the module docstring)."""

    shared = False

    def __init__(self) -> None:
        self._records: dict[str, bytes] = {}
        self._version = 0
        self._audit: collections.deque[dict[str, Any]] = collections.deque(maxlen=MEMORY_AUDIT)
        self._ids = itertools.count(1)
        self._decoded = _Decoded()

    async def version(self) -> int:
        return self._version

    async def load(self) -> tuple[int, list[VirtualKey]]:
        return self._version, self._decoded((k.encode(), v) for k, v in self._records.items())

    async def get(self, name: str) -> VirtualKey | None:
        raw = self._records.get(name)
        return None if raw is None else VirtualKey.from_json(orjson.loads(raw))

    async def write(
        self, record: VirtualKey, expected: VirtualKey | None, entry: Mapping[str, Any]
    ) -> int:
        current = self._records.get(record.name)
        if (current is None) != (expected is None):
            return 0
        if expected is not None and current != encode(expected):
            return 0
        self._records[record.name] = encode(record)
        self._version += 1
        self._audit.append({"id": str(next(self._ids)), **entry})
        return self._version

    async def audit(self, limit: int) -> list[dict[str, Any]]:
        return list(itertools.islice(reversed(self._audit), limit))

    async def aclose(self) -> None:
        """Nothing to release (and nothing is kept)."""


def _script() -> tuple[str, str]:
    text = resources.files(__package__).joinpath("lua").joinpath("vkey_write.lua")
    source = text.read_text("utf-8")
    return source, hashlib.sha1(source.encode()).hexdigest()


class RedisKeyStore:
    """The keys in Redis at ``url`` (see the module docstring). Errors are redis-py's."""

    shared = True
    RECORDS = "{msgflux:vkeys}:records"
    VERSION = "{msgflux:vkeys}:version"
    AUDIT = "{msgflux:vkeys}:audit"

    def __init__(self, url: str, timeout: float = 1.0) -> None:
        from msgflux.models.gateway.redis.cluster import Connector
        from msgflux.models.gateway.redis.url import parse_url

        parsed = parse_url(url)
        self.url = parsed.redacted
        self._connector = Connector(parsed, timeout)
        self._pipe = self._connector.apipe(self.RECORDS)
        self._script, self._sha = _script()
        self._decoded = _Decoded()

    async def version(self) -> int:
        raw = await self._pipe.call("GET", self.VERSION)
        return int(raw) if raw is not None else 0

    async def load(self) -> tuple[int, list[VirtualKey]]:
        # The version first: a change landing in between makes the records newer than the
        # version, so the next poll reads them again (never the other way round).
        version = await self._pipe.call("GET", self.VERSION)
        raw = await self._pipe.call("HGETALL", self.RECORDS)
        records = self._decoded(zip(raw[::2], raw[1::2], strict=True))
        return (int(version) if version is not None else 0), records

    async def get(self, name: str) -> VirtualKey | None:
        raw = await self._pipe.call("HGET", self.RECORDS, name)
        return None if raw is None else VirtualKey.from_json(orjson.loads(raw))

    async def write(
        self, record: VirtualKey, expected: VirtualKey | None, entry: Mapping[str, Any]
    ) -> int:
        from redis.exceptions import NoScriptError

        args = (
            "3",
            self.RECORDS,
            self.VERSION,
            self.AUDIT,
            record.name,
            encode(record),
            b"" if expected is None else encode(expected),
            orjson.dumps(dict(entry)),
        )
        try:
            return int(await self._pipe.call("EVALSHA", self._sha, *args))
        except NoScriptError:  # a fresh node (or a promoted replica): load it there
            await self._pipe.call("SCRIPT", "LOAD", self._script)
            return int(await self._pipe.call("EVALSHA", self._sha, *args))

    async def audit(self, limit: int) -> list[dict[str, Any]]:
        rows = await self._pipe.call("XREVRANGE", self.AUDIT, "+", "-", "COUNT", str(limit))
        out = []
        for entry_id, fields in rows:
            values = dict(zip(fields[::2], fields[1::2], strict=True))
            out.append({"id": entry_id.decode(), **orjson.loads(values[b"entry"])})
        return out

    async def aclose(self) -> None:
        await self._connector.aclose()


def make_keystore(state: str | None) -> KeyStore:
    """Redis when ``server.state`` is set, else this process's memory."""
    if state is None:
        return MemoryKeyStore()
    return RedisKeyStore(state)
