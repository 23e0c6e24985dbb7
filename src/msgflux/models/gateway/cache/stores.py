"""Where cache entries live: bytes by key, sync and async, and this process's memory store.

A :class:`CacheStore` holds opaque entry bytes (:mod:`.entry`) by key. It judges nothing: the
cache reads an entry's age from the entry itself, so expiry is exact on any clock (a manual
one in tests) and the same for every store; a store's own expiry (``ttl``) only frees space.
A store raises when it cannot answer (Redis down); the cache then goes on without it.

:class:`MemoryCache` keeps entries in this process, least recently used dropped first past a
byte budget. :class:`~.redis_store.RedisCache` shares them between processes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Protocol, runtime_checkable

__all__ = ["DEFAULT_MAX_BYTES", "CacheStore", "MemoryCache"]

DEFAULT_MAX_BYTES = 64 << 20
"""64 MiB: a memory cache's default budget (compressed entries)."""


@runtime_checkable
class CacheStore(Protocol):
    """Entry bytes by key (see the module docstring). ``kind`` names the store in stats;
    ``io`` says its calls wait on the network (a stream's entry is then written in a task;
    without it, when the stream ends)."""

    kind: str
    io: bool

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, data: bytes, ttl: float) -> None: ...

    def delete(self, key: str) -> None: ...

    async def aget(self, key: str) -> bytes | None: ...

    async def aput(self, key: str, data: bytes, ttl: float) -> None: ...

    async def adelete(self, key: str) -> None: ...

    def info(self) -> dict[str, Any]:
        """Plain data for ``stats()`` (entries and bytes held, when the store knows them)."""
        ...

    def close(self) -> None: ...


class MemoryCache:
    """This process's entries, at most ``max_bytes`` of them (compressed), least recently used
    dropped first. Thread-safe; no I/O, so its async methods never wait.

    >>> gateway = ModelGateway([...], cache=MemoryCache(max_bytes=256 << 20))  # doctest: +SKIP
    """

    kind = "memory"
    io = False

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ValueError(f"max_bytes must be an int > 0 (bytes), got {max_bytes!r}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            data = self._entries.get(key)
            if data is not None:
                self._entries.move_to_end(key)
            return data

    def put(self, key: str, data: bytes, ttl: float) -> None:
        if len(data) > self.max_bytes:
            return
        with self._lock:
            entries = self._entries
            old = entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            entries[key] = data
            self._bytes += len(data)
            while self._bytes > self.max_bytes:
                _, dropped = entries.popitem(last=False)
                self._bytes -= len(dropped)

    def delete(self, key: str) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old)

    async def aget(self, key: str) -> bytes | None:
        return self.get(key)

    async def aput(self, key: str, data: bytes, ttl: float) -> None:
        self.put(key, data, ttl)

    async def adelete(self, key: str) -> None:
        self.delete(key)

    def info(self) -> dict[str, Any]:
        return {"entries": len(self._entries), "bytes": self._bytes, "max_bytes": self.max_bytes}

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def close(self) -> None:
        self.clear()

    def __repr__(self) -> str:
        return f"MemoryCache(max_bytes={self.max_bytes})"
