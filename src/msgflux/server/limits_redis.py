"""Per-key counters in Redis (``server.state``): exact across workers and instances.

Each admission is one script call (``lua/key_admit.lua``), one round trip, run by Redis
without interleaving, so two processes can never both take a key's last rpm slot or
concurrency lease; each settlement is one more (``lua/key_settle.lua``), sent after the
answer without holding the request up. The connections are the gateway store's
(:class:`~msgflux.models.gateway.redis.pipe.AsyncPipe`: one auto-pipelined connection per event
loop and Redis node; on a Redis Cluster, the node of each key's slot, see
:mod:`~msgflux.models.gateway.redis.cluster`) and URLs are read by its
:func:`~msgflux.models.gateway.redis.url.parse_url`, which never shows a password.

Keys, one Redis Cluster slot per client key: ``{msgflux:key:<name>}:rpm`` (the rpm log),
``:leases``, ``:tokens`` and ``:spend:<period>:<start>`` (USD spent in the budget period that
began at epoch ``start``; it expires a day after the period ends). Times are the server's
clock (:class:`msgflux._time.Clock`), so the processes sharing a Redis need synchronized
clocks, as the gateway's shared state does.

Redis trouble never fails a request: when Redis cannot be reached (or does not answer within
``timeout``), admission uses this process's memory (:class:`~.limits.MemoryLimiter`) and
Redis is tried again after ``retry_interval`` seconds; :meth:`RedisLimiter.healthy` says which.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import math
import os
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError, RedisError

from msgflux._secrets import scrub
from msgflux._time import Clock
from msgflux.models.gateway.redis.cluster import Connector
from msgflux.models.gateway.redis.url import parse_url
from msgflux.server.key_limits import KeyLimits, period_bounds
from msgflux.server.limits import (
    BUDGET,
    CONCURRENCY,
    LEASE,
    RPM,
    TPM,
    MemoryLimiter,
    Rejection,
    Ticket,
    usage_of,
)

__all__ = ["SPEND_MARGIN", "RedisLimiter", "key_names", "spend_key"]

logger = logging.getLogger("msgflux.server")

SPEND_MARGIN = 86400.0
"""Seconds a period's spend is kept after the period ended (``msgflux keys usage``)."""
_REASONS = (None, BUDGET, CONCURRENCY, RPM, TPM)


def _script(name: str) -> tuple[str, str]:
    text = resources.files(__package__).joinpath("lua").joinpath(f"{name}.lua").read_text("utf-8")
    return text, hashlib.sha1(text.encode()).hexdigest()


ADMIT, ADMIT_SHA = _script("key_admit")
SETTLE, SETTLE_SHA = _script("key_settle")


def key_names(name: str) -> tuple[str, str, str]:
    """The rpm log, leases and tokens keys of client key ``name``."""
    base = f"{{msgflux:key:{name}}}"
    return f"{base}:rpm", f"{base}:leases", f"{base}:tokens"


def spend_key(name: str, period: str, start: float) -> str:
    return f"{{msgflux:key:{name}}}:spend:{period}:{int(start)}"


def _num(value: float | int | None) -> str:
    return "-1" if value is None else repr(value)


class RedisLimiter:
    """Key counters in Redis at ``url`` (see the module docstring)."""

    shared = True

    def __init__(
        self,
        url: str,
        *,
        clock: Clock | None = None,
        timeout: float = 0.1,
        retry_interval: float = 1.0,
    ) -> None:
        parsed = parse_url(url)
        self.url = parsed.redacted
        self.clock = clock or Clock()
        self.local = MemoryLimiter(self.clock)
        """Where admissions go while Redis is unreachable."""
        self.retry_interval = retry_interval
        self._connector = Connector(parsed, timeout, self.clock)
        self._down_until = float("-inf")
        self._instance = os.urandom(6).hex()
        self._ids = itertools.count(1)
        self._pending: set[asyncio.Task[None]] = set()

    def healthy(self) -> bool:
        return self._down_until < self.clock.perf()

    async def _eval(
        self, script: str, sha: str, keys: tuple[str, ...], args: tuple[str, ...]
    ) -> Any:
        pipe = self._connector.apipe(keys[0])  # on a cluster, the node of the key's slot
        try:
            return await pipe.call("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            await pipe.call("SCRIPT", "LOAD", script)
            return await pipe.call("EVALSHA", sha, len(keys), *keys, *args)

    def _failed(self, what: str, exc: BaseException) -> None:
        if self.healthy():
            logger.warning(
                "key limits: Redis %s failed (%s); counting in this process's memory, retrying "
                "Redis in %gs",
                what,
                scrub(f"{type(exc).__name__}: {exc}"),
                self.retry_interval,
            )
        self._down_until = self.clock.perf() + self.retry_interval

    async def admit(self, name: str, limits: KeyLimits) -> Ticket | Rejection:
        if not self.healthy():
            return self.local.admit_now(name, limits)
        now = self.clock.time()
        budget = limits.budget
        start = end = 0.0
        if budget is not None:
            start, end = period_bounds(budget.period, now)
        # With no budget the script never reads the spend key: any key of the same slot will
        # do (on a Redis Cluster every key of one call must share a slot).
        keys = key_names(name)
        spend = spend_key(name, budget.period, start) if budget is not None else keys[0]
        needs_token = limits.rpm is not None or limits.max_concurrency is not None
        token = f"{self._instance}:{next(self._ids)}" if needs_token else ""
        args = (
            repr(now),
            token,
            _num(limits.rpm),
            _num(limits.tpm),
            _num(limits.max_concurrency),
            repr(LEASE),
            _num(budget.usd if budget is not None else None),
        )
        try:
            raw = await self._eval(ADMIT, ADMIT_SHA, (*keys, spend), args)
        except (RedisError, OSError) as exc:
            self._failed("admission", exc)
            return self.local.admit_now(name, limits)
        code = int(raw[0])
        if code == 0:
            lease = 1.0 if limits.max_concurrency is not None else 0.0
            return Ticket(self._settle, name, limits, token, lease)
        reason = _REASONS[code]
        assert reason is not None
        retry_at = end if reason == BUDGET else float(raw[1]) if raw[1] else None
        return Rejection(name, reason, limits, now, retry_at, float(raw[2]))

    async def usage(self, name: str, limits: KeyLimits) -> dict[str, Any]:
        """Key ``name``'s counters in Redis (this process's while Redis is unreachable)."""
        if not self.healthy():
            return self.local.usage_now(name, limits)
        now = self.clock.time()
        rpm, leases, tokens = key_names(name)
        budget = limits.budget
        pipe = self._connector.apipe(rpm)
        calls = [
            pipe.call("ZCOUNT", rpm, f"({now - 60.0!r}", "+inf"),
            pipe.call("ZCOUNT", leases, f"({now!r}", "+inf"),
            pipe.call("HGETALL", tokens),
        ]
        if budget is not None:
            calls.append(
                pipe.call(
                    "GET", spend_key(name, budget.period, period_bounds(budget.period, now)[0])
                )
            )
        try:
            replies = await asyncio.gather(*calls)
        except (RedisError, OSError) as exc:
            self._failed("read", exc)
            return self.local.usage_now(name, limits)
        buckets = replies[2]
        second = math.floor(now)
        used = sum(
            int(buckets[i + 1]) for i in range(0, len(buckets), 2) if second - int(buckets[i]) < 60
        )
        spent = float(replies[3] or 0.0) if budget is not None else None
        return usage_of(limits, int(replies[0]), used, int(replies[1]), spent)

    def _settle(self, ticket: Ticket, tokens: int, cost: float) -> None:
        limits = ticket.limits
        if not ticket.lease and not (tokens and limits.tpm) and not (cost and limits.budget):
            return
        task = asyncio.ensure_future(self._asettle(ticket, tokens, cost))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _asettle(self, ticket: Ticket, tokens: int, cost: float) -> None:
        limits = ticket.limits
        now = self.clock.time()
        budget = limits.budget
        spend, ttl = "", 0
        if budget is not None:
            start, end = period_bounds(budget.period, now)
            spend = spend_key(ticket.name, budget.period, start)
            ttl = math.ceil((end - now + SPEND_MARGIN) * 1000)
        _, leases, counts = key_names(ticket.name)
        args = (
            repr(now),
            ticket.token if ticket.lease else "",
            str(tokens if limits.tpm is not None else 0),
            repr(cost if budget is not None else 0.0),
            str(ttl),
        )
        try:
            await self._eval(SETTLE, SETTLE_SHA, (leases, counts, spend or leases), args)
        except (RedisError, OSError) as exc:
            self._failed("settlement", exc)

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait (at most ``timeout`` s) for the settlements still on their way to Redis."""
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=timeout)

    async def aclose(self) -> None:
        await self.drain()
        await self._connector.aclose()
