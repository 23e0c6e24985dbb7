"""Requests, errors and spend per minute over the last hour, per gateway and per client key, and
the last requests whose attempts failed: what the dashboard charts.

:class:`~.operations.Operations` counts each finished request that reached a gateway
(:meth:`Activity.record`). Counts live in one bucket per minute; the last :data:`MINUTES` are
kept. With ``server.state`` they are shared through Redis: each process adds what it counted to
``{msgflux:activity}:m:<minute>`` (one hash a minute, kept two hours) every :data:`FLUSH`
seconds and pushes failures onto ``{msgflux:activity}:errors`` (the newest :data:`ERRORS`), and
:meth:`Activity.read` reads Redis, so the dashboard shows every worker and instance. Without it,
each process shows its own. While Redis cannot be reached, what could not be added is kept and
added later; reads show this process's counts meanwhile.

No content is kept: a request is counted by gateway, key, outcome and cost; a failure entry
holds the error types, statuses and durations of its attempts, never a message (an upstream's
message may quote the prompt).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
from collections.abc import Sequence
from typing import Any

import orjson

from msgflux._secrets import scrub
from msgflux._time import Clock
from msgflux.exceptions import Attempt

__all__ = ["ERRORS", "FLUSH", "MINUTES", "Activity", "failure_entry"]

logger = logging.getLogger("msgflux.server")

MINUTES = 60
ERRORS = 50
FLUSH = 2.0
"""Seconds between two additions to Redis (what a dashboard may lag behind)."""
_PREFIX = "{msgflux:activity}"
_KEEP_MS = 2 * 3600 * 1000

Counts = dict[str, list[float]]
"""``g:<gateway>`` / ``k:<key>`` -> [requests, errors, USD]."""


def failure_entry(
    at: float, gateway: str, key: str, status: int, error: str | None, attempts: Sequence[Attempt]
) -> dict[str, Any]:
    """A request some attempt of which failed (``error`` None: another attempt answered)."""
    return {
        "at": at,
        "gateway": gateway,
        "key": key,
        "status": status,
        "error": error,
        "attempts": [
            {
                "deployment": a.model_name,
                "attempt": a.attempt,
                "error": None if a.exception is None else type(a.exception).__name__,
                "status": getattr(a.exception, "status_code", None),
                "skipped": a.skipped,
                "duration_ms": round(a.duration * 1000, 1),
            }
            for a in attempts
        ],
    }


class Activity:
    """See the module docstring. ``state``: the ``server.state`` URL, or None."""

    def __init__(self, state: str | None = None, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self._minutes: dict[int, Counts] = {}
        self._errors: collections.deque[dict[str, Any]] = collections.deque(maxlen=ERRORS)
        self._unsent: dict[int, Counts] = {}
        self._unsent_errors: list[bytes] = []
        self._connector: Any = None
        self._pipe: Any = None
        self._flusher: asyncio.Task[None] | None = None
        if state is not None:
            from msgflux.models.gateway.redis.cluster import Connector
            from msgflux.models.gateway.redis.url import parse_url

            self._connector = Connector(parse_url(state), 1.0)
            self._pipe = self._connector.apipe(_PREFIX)

    @property
    def shared(self) -> bool:
        return self._pipe is not None

    # -- counting ------------------------------------------------------------------------------
    def record(
        self, gateway: str, key: str, failed: bool, cost: float, failure: dict[str, Any] | None
    ) -> None:
        minute = int(self.clock.time() // 60)
        for table in (self._minutes, self._unsent) if self.shared else (self._minutes,):
            bucket = table.setdefault(minute, {})
            for field in (f"g:{gateway}", f"k:{key}"):
                counts = bucket.setdefault(field, [0, 0, 0.0])
                counts[0] += 1
                counts[1] += 1 if failed else 0
                counts[2] += cost
        if len(self._minutes) > MINUTES + 1:
            for old in sorted(self._minutes)[: -(MINUTES + 1)]:
                del self._minutes[old]
        if failure is not None:
            self._errors.appendleft(failure)
            if self.shared:
                self._unsent_errors.append(orjson.dumps(failure))
                del self._unsent_errors[:-ERRORS]

    # -- reading -------------------------------------------------------------------------------
    def local(self) -> dict[str, Any]:
        """This process's series and failures."""
        return _series(self._minutes, self._now_minute(), list(self._errors), shared=False)

    async def read(self) -> dict[str, Any]:
        """The series and failures of every process sharing ``server.state`` (this process's
        when it has none, or Redis cannot be read)."""
        if not self.shared:
            return self.local()
        current = self._now_minute()
        minutes = range(current - MINUTES + 1, current + 1)
        pipe = self._pipe
        try:
            replies = await asyncio.gather(
                *(pipe.call("HGETALL", f"{_PREFIX}:m:{m}") for m in minutes),
                pipe.call("LRANGE", f"{_PREFIX}:errors", "0", str(ERRORS - 1)),
            )
        except Exception as exc:
            logger.debug("activity: Redis read failed: %s", scrub(str(exc)))
            return self.local()
        table: dict[int, Counts] = {}
        for minute, raw in zip(minutes, replies[:-1], strict=True):
            bucket: Counts = {}
            for i in range(0, len(raw), 2):
                field, _, part = raw[i].decode().rpartition("|")
                counts = bucket.setdefault(field, [0, 0, 0.0])
                counts[("r", "e", "usd").index(part)] += float(raw[i + 1])
            table[minute] = bucket
        errors = [orjson.loads(e) for e in replies[-1]]
        return _series(table, current, errors, shared=True)

    def _now_minute(self) -> int:
        return int(self.clock.time() // 60)

    # -- sharing -------------------------------------------------------------------------------
    async def flush(self) -> None:
        """Add the unsent counts and failures to Redis (kept for later when it fails)."""
        unsent, self._unsent = self._unsent, {}
        errors, self._unsent_errors = self._unsent_errors, []
        if not unsent and not errors:
            return
        pipe = self._pipe
        calls = []
        for minute, bucket in unsent.items():
            key = f"{_PREFIX}:m:{minute}"
            for field, (requests, failed, usd) in bucket.items():
                calls.append(pipe.call("HINCRBY", key, f"{field}|r", int(requests)))
                if failed:
                    calls.append(pipe.call("HINCRBY", key, f"{field}|e", int(failed)))
                if usd:
                    calls.append(pipe.call("HINCRBYFLOAT", key, f"{field}|usd", repr(usd)))
            calls.append(pipe.call("PEXPIRE", key, _KEEP_MS))
        if errors:
            key = f"{_PREFIX}:errors"
            calls += [
                pipe.call("LPUSH", key, *errors),
                pipe.call("LTRIM", key, "0", str(ERRORS - 1)),
                pipe.call("PEXPIRE", key, _KEEP_MS),
            ]
        try:
            await asyncio.gather(*calls)
        except Exception as exc:  # counted again next time (a partial add may count twice)
            logger.debug("activity: Redis write failed: %s", scrub(str(exc)))
            oldest = self._now_minute() - MINUTES
            for minute, bucket in unsent.items():
                if minute > oldest:
                    _merge(self._unsent.setdefault(minute, {}), bucket)
            self._unsent_errors = (errors + self._unsent_errors)[-ERRORS:]

    async def _flush_forever(self) -> None:
        while True:
            await self.clock.asleep(FLUSH)
            await self.flush()

    def start(self) -> None:
        """In the event loop: add to Redis every :data:`FLUSH` seconds (when shared)."""
        if self.shared and self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush_forever())

    async def aclose(self) -> None:
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        if self.shared:
            await self.flush()
            await self._connector.aclose()


def _merge(into: Counts, bucket: Counts) -> None:
    for field, counts in bucket.items():
        mine = into.setdefault(field, [0, 0, 0.0])
        for i in range(3):
            mine[i] += counts[i]


def _series(
    table: dict[int, Counts], current: int, errors: list[dict[str, Any]], *, shared: bool
) -> dict[str, Any]:
    """Per gateway and per key: requests, errors and spend (USD) in each of the last
    :data:`MINUTES` minutes, oldest first."""
    minutes = list(range(current - MINUTES + 1, current + 1))
    out: dict[str, dict[str, dict[str, list[float]]]] = {"gateways": {}, "keys": {}}
    for i, minute in enumerate(minutes):
        for field, (requests, failed, usd) in table.get(minute, {}).items():
            kind, _, name = field.partition(":")
            group = out["gateways" if kind == "g" else "keys"]
            series = group.get(name)
            if series is None:
                series = group[name] = {
                    "requests": [0] * MINUTES,
                    "errors": [0] * MINUTES,
                    "spend": [0.0] * MINUTES,
                }
            series["requests"][i] += int(requests)
            series["errors"][i] += int(failed)
            series["spend"][i] = round(series["spend"][i] + usd, 9)
    return {
        "start": minutes[0] * 60,
        "step": 60,
        "shared": shared,
        **out,
        "failures": errors,
        "spend_total": round(math.fsum(sum(s["spend"]) for s in out["gateways"].values()), 9),
    }
