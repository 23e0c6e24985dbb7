"""Cache entries in Redis, shared by every process and instance that uses the same URL.

One Redis key per entry, ``msgflux:cache:<key>``, written with ``SET ... PX <ttl>``: every
entry expires by itself and nothing else is kept (no index, no set of keys), so a Redis with
``maxmemory`` and an ``allkeys-lru`` or ``volatile-*`` policy can evict any entry at any
time, which the cache reads as a miss. Commands go over the gateway's lean Redis pipes
(:mod:`msgflux.models.gateway.redis.pipe`: one auto-pipelined connection per event loop, a
small pool of sockets for sync calls).

Redis trouble never fails a call: each command is bounded by ``timeout``, and after a failure
the store answers :class:`CacheUnavailable` at once for ``retry_after`` seconds (real time)
instead of waiting on Redis again, then tries again; one warning is logged per outage.
"""

from __future__ import annotations

import logging
from typing import Any

from msgflux._secrets import scrub
from msgflux._time import monotonic

__all__ = ["PREFIX", "CacheUnavailable", "RedisCache"]

logger = logging.getLogger("msgflux.gateway")

PREFIX = "msgflux:cache:"


class CacheUnavailable(Exception):
    """The store did not answer (or failed less than ``retry_after`` seconds ago)."""


class RedisCache:
    """Entries in the Redis at ``url`` (``redis://``, ``rediss://`` or ``unix://``).

    >>> ModelGateway([...], cache=RedisCache("redis://localhost:6379/0"))  # doctest: +SKIP
    """

    kind = "redis"
    io = True

    def __init__(self, url: str, *, timeout: float = 0.5, retry_after: float = 2.0) -> None:
        try:
            from msgflux.models.gateway.redis.pipe import AsyncPipe, SyncPipe, endpoint
            from msgflux.models.gateway.redis.url import parse_url
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise ImportError(
                'cache="redis://..." needs Redis: install "msgflux-gateway[redis]"'
            ) from exc
        if not isinstance(url, str):
            raise TypeError(f"url must be a redis:// URL, got {type(url).__name__}")
        parsed = parse_url(url)
        if getattr(parsed, "cluster", False):
            raise ValueError("the response cache takes one Redis, not a Redis Cluster URL")
        for name, value in (("timeout", timeout), ("retry_after", retry_after)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
        self.url = parsed.redacted
        ep = endpoint(parsed.normalized)
        self._sync = SyncPipe(ep, timeout)
        self._async = AsyncPipe(ep, timeout)
        self._retry_after = float(retry_after)
        self._down_until = 0.0

    # -- an outage: fail fast, say it once ----------------------------------------------------
    def _check(self) -> None:
        if self._down_until and monotonic() < self._down_until:
            raise CacheUnavailable(f"Redis at {self.url} failed recently")

    def _failed(self, exc: Exception) -> CacheUnavailable:
        if not self._down_until:
            logger.warning(
                "response cache: Redis at %s failed (%s); calls go on without the cache",
                self.url,
                scrub(f"{type(exc).__name__}: {exc}"),
            )
        self._down_until = monotonic() + self._retry_after
        return CacheUnavailable(scrub(f"{type(exc).__name__}: {exc}"))

    def _answered(self) -> None:
        if self._down_until:
            self._down_until = 0.0
            logger.warning("response cache: Redis at %s answers again", self.url)

    # -- sync ---------------------------------------------------------------------------------
    def _call(self, *args: Any) -> Any:
        self._check()
        try:
            reply = self._sync.call(*args)
        except Exception as exc:
            raise self._failed(exc) from None
        self._answered()
        return reply

    def get(self, key: str) -> bytes | None:
        reply = self._call("GET", PREFIX + key)
        return reply if isinstance(reply, bytes) else None

    def put(self, key: str, data: bytes, ttl: float) -> None:
        self._call("SET", PREFIX + key, data, "PX", max(int(ttl * 1000), 1))

    def delete(self, key: str) -> None:
        self._call("DEL", PREFIX + key)

    # -- async --------------------------------------------------------------------------------
    async def _acall(self, *args: Any) -> Any:
        self._check()
        try:
            reply = await self._async.call(*args)
        except Exception as exc:
            raise self._failed(exc) from None
        self._answered()
        return reply

    async def aget(self, key: str) -> bytes | None:
        reply = await self._acall("GET", PREFIX + key)
        return reply if isinstance(reply, bytes) else None

    async def aput(self, key: str, data: bytes, ttl: float) -> None:
        await self._acall("SET", PREFIX + key, data, "PX", max(int(ttl * 1000), 1))

    async def adelete(self, key: str) -> None:
        await self._acall("DEL", PREFIX + key)

    def info(self) -> dict[str, Any]:
        return {"url": self.url, "healthy": not self._down_until}

    def close(self) -> None:
        self._sync.close()

    def __repr__(self) -> str:
        return f"RedisCache({self.url!r})"
