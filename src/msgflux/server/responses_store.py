"""Stored conversations of the Responses API: what ``previous_response_id`` continues.

A response created with ``store`` (true unless the client says ``false``, as OpenAI's default)
is kept, with the input items of its turn and the id of the response it continued, under its
client key's name: one key can never read, continue or delete another key's responses (its
ids are simply not there). Records expire after ``ttl`` seconds (30 days by default, as
OpenAI's), compressed (zlib) JSON.

Two stores, one interface: :class:`MemoryResponses` (one process; a byte budget, the oldest
records dropped first past it) and :class:`RedisResponses` (``server.state``: every worker and
instance reads what any of them stored; ``SET ... PX`` so Redis expires them, one key per
record, keys ``{msgflux:resp:<key name>}:<response id>``). Redis trouble never fails the
request that stores: the record is lost and a warning logged; a request that needs a record
from an unreachable Redis gets :class:`StoreUnavailable` (a 503).
"""

from __future__ import annotations

import logging
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from msgflux._secrets import scrub
from msgflux.server.config_specs import DEFAULT_RESPONSES_TTL

__all__ = [
    "DEFAULT_TTL",
    "MAX_CHAIN",
    "MemoryResponses",
    "RedisResponses",
    "ResponseStore",
    "StoreUnavailable",
    "history",
    "make_store",
]

logger = logging.getLogger("msgflux.server")

DEFAULT_TTL = DEFAULT_RESPONSES_TTL
"""Seconds a stored response is kept unless ``server.responses_ttl`` says otherwise."""
MAX_CHAIN = 1000
"""Responses a conversation may chain (``previous_response_id`` after ``previous_response_id``)."""


class StoreUnavailable(Exception):
    """The shared store could not be read (Redis down): the caller answers 503."""


class ResponseStore(Protocol):
    """Where stored responses live (see the module docstring)."""

    async def put(self, owner: str, response_id: str, record: dict[str, Any]) -> None: ...

    async def get(self, owner: str, response_id: str) -> dict[str, Any] | None: ...

    async def delete(self, owner: str, response_id: str) -> bool: ...

    async def aclose(self) -> None: ...


def _pack(record: dict[str, Any]) -> bytes:
    return zlib.compress(orjson.dumps(record), 1)


def _unpack(data: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(zlib.decompress(data))
    except (zlib.error, orjson.JSONDecodeError):
        return None  # a corrupted record is no record
    return value if isinstance(value, dict) else None


class MemoryResponses:
    """This process's stored responses: expiring after ``ttl`` seconds of ``clock``, at most
    ``max_bytes`` of compressed records (the oldest dropped first)."""

    def __init__(
        self,
        ttl: float = DEFAULT_TTL,
        max_bytes: int = 256 << 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._clock = clock
        self._records: OrderedDict[tuple[str, str], tuple[float, bytes]] = OrderedDict()
        self._bytes = 0

    async def put(self, owner: str, response_id: str, record: dict[str, Any]) -> None:
        if self.ttl <= 0:
            return
        data = _pack(record)
        if len(data) > self.max_bytes:
            return
        key = (owner, response_id)
        self._drop(key)
        self._records[key] = (self._clock() + self.ttl, data)
        self._bytes += len(data)
        while self._bytes > self.max_bytes:
            self._drop(next(iter(self._records)))

    def _drop(self, key: tuple[str, str]) -> None:
        entry = self._records.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[1])

    async def get(self, owner: str, response_id: str) -> dict[str, Any] | None:
        key = (owner, response_id)
        entry = self._records.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            self._drop(key)
            return None
        return _unpack(entry[1])

    async def delete(self, owner: str, response_id: str) -> bool:
        key = (owner, response_id)
        found = key in self._records and self._records[key][0] > self._clock()
        self._drop(key)
        return found

    async def aclose(self) -> None:
        self._records.clear()
        self._bytes = 0


class RedisResponses:
    """Stored responses in Redis (see the module docstring)."""

    def __init__(self, url: str, ttl: float = DEFAULT_TTL, timeout: float = 1.0) -> None:
        from msgflux.models.gateway.redis.cluster import Connector
        from msgflux.models.gateway.redis.url import parse_url

        self.ttl = ttl
        self._connector = Connector(parse_url(url), timeout)
        self._pipe = self._connector.apipe("{msgflux:resp:}")
        """The pipe of a single Redis (on a cluster each owner's key has its node's)."""

    @staticmethod
    def _key(owner: str, response_id: str) -> str:
        return f"{{msgflux:resp:{owner}}}:{response_id}"

    async def put(self, owner: str, response_id: str, record: dict[str, Any]) -> None:
        if self.ttl <= 0:
            return
        try:
            key = self._key(owner, response_id)
            await self._connector.apipe(key).call(
                "SET", key, _pack(record), "PX", int(self.ttl * 1000)
            )
        except Exception as exc:
            logger.warning("storing response %s failed: %s", response_id, scrub(str(exc)))

    async def get(self, owner: str, response_id: str) -> dict[str, Any] | None:
        try:
            key = self._key(owner, response_id)
            data = await self._connector.apipe(key).call("GET", key)
        except Exception as exc:
            raise StoreUnavailable(scrub(f"{type(exc).__name__}: {exc}")) from None
        if data is None:
            return None
        record = _unpack(data)
        if record is None:
            await self.delete(owner, response_id)
        return record

    async def delete(self, owner: str, response_id: str) -> bool:
        try:
            key = self._key(owner, response_id)
            return bool(await self._connector.apipe(key).call("DEL", key))
        except Exception as exc:
            raise StoreUnavailable(scrub(f"{type(exc).__name__}: {exc}")) from None

    async def aclose(self) -> None:
        await self._connector.aclose()


def make_store(state: str | None, ttl: float = DEFAULT_TTL) -> ResponseStore:
    """The store of a server: Redis when ``server.state`` is set, else this process's memory."""
    if state:
        return RedisResponses(state, ttl)
    return MemoryResponses(ttl)


async def history(
    store: ResponseStore, owner: str, response_id: str
) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
    """The conversation up to and including ``response_id``: every turn's input items then
    its output items, oldest first, and the last record; None when a response of the chain is
    not (or no longer) stored for ``owner``."""
    records: list[dict[str, Any]] = []
    current: str | None = response_id
    while current is not None:
        if len(records) >= MAX_CHAIN:
            raise ValueError(
                f"previous_response_id: the conversation chains over {MAX_CHAIN} responses"
            )
        record = await store.get(owner, current)
        if record is None:
            return None
        records.append(record)
        previous = record.get("previous")
        current = previous if isinstance(previous, str) else None
    items: list[dict[str, Any]] = []
    for record in reversed(records):
        items += record.get("input") or []
        items += (record.get("response") or {}).get("output") or []
    return items, records[0]
