"""The response cache: a :class:`~msgflux.models.gateway.wrappers.Wrapper` that answers a
request it has answered before, from memory or Redis, without calling any deployment.

One call, in order:

1. *plan* (pure): the call's controls (:mod:`.control`), whether it may be cached at all
   (:func:`.key.bypass_reason`), its key (:func:`.key.request_key`);
2. *read*: the entry under the key, judged by :meth:`ResponseCache.judge` (pure): younger than
   its ttl and than the caller's ``max-age`` is a **hit**, answered by replaying the stored
   canonical answer in the call's path and API family (a stream as the family's events), with
   no attempt and a cost of 0; a corrupted or oversized entry is a miss and is deleted;
3. *miss*: the call goes on to the deployments and its answer is kept (:mod:`.capture`): a
   whole answer at once, a stream once it finished cleanly (never a broken one, never an
   error).

Every answer says what happened in ``metadata.gateway["cache"]`` (``"hit"``, ``"miss"`` or
``"bypass"``), with ``cache_age`` (seconds) and ``cost_saved`` on a hit; so do the call's
record and ``gateway.stats()["cache"]``. A store that fails (Redis down) is skipped: the call
goes upstream, nothing fails. Two processes missing the same key at once both answer from
upstream and both write the entry; the last write stays.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from msgflux._secrets import scrub
from msgflux._time import Clock
from msgflux.models.gateway.cache.capture import EventCapture, PairCapture, whole
from msgflux.models.gateway.cache.control import OPTIONS, Controls, NotCached, controls
from msgflux.models.gateway.cache.entry import Entry, decode, encode
from msgflux.models.gateway.cache.key import bypass_reason, request_key, scope_of
from msgflux.models.gateway.cache.stores import CacheStore, MemoryCache
from msgflux.models.gateway.raw import RawStream
from msgflux.models.gateway.wrappers import AsyncHandler, Call, Handler, Wrapper
from msgflux.models.native import NativeStream
from msgflux.models.request import CHAT
from msgflux.models.response import ModelStreamResponse

__all__ = ["DEFAULT_MAX_ENTRY_BYTES", "DEFAULT_TTL", "INFLATE_RATIO", "ResponseCache"]

logger = logging.getLogger("msgflux.gateway")

DEFAULT_TTL = 3600.0
"""Seconds an entry is kept unless the cache (``ttl=``) or the call (``cache_ttl=``) says."""
DEFAULT_MAX_ENTRY_BYTES = 1 << 20
"""1 MiB: the largest entry stored (compressed); a larger answer is not cached."""
INFLATE_RATIO = 16
"""An entry's JSON may be at most this many times ``max_entry_bytes`` (what a read inflates
at most, whatever a shared store holds)."""

Cost = Callable[[str, Any], "float | None"]
"""What an answer's usage costs on a deployment (the gateway's prices)."""


class _Plan(NamedTuple):
    key: str
    controls: Controls
    ttl: float


_PROCESS = [secrets.token_hex(6)]
_SERIAL = itertools.count(1)
if hasattr(os, "register_at_fork"):  # forked workers must not repeat each other's ids
    os.register_at_fork(after_in_child=lambda: _PROCESS.__setitem__(0, secrets.token_hex(6)))


def _fresh_id(old: Any) -> str:
    """A new id for a replayed answer, in the style of the stored one (``chatcmpl-``,
    ``msg_``...): every answer has its own (this process's random prefix, then a count)."""
    tail = f"{_PROCESS[0]}{next(_SERIAL):08x}"
    if isinstance(old, str):
        for sep in ("-", "_"):
            head, found, _ = old.partition(sep)
            if found and head.isalpha():
                return f"{head}{sep}{tail}"
    return f"chatcmpl-{tail}"


def _seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
    if value == float("inf"):
        raise ValueError(f"{name} must be finite")
    return float(value)


class ResponseCache(Wrapper):
    """Exact-match answers from ``store`` (see the module docstring). One cache serves one
    gateway; gateways share a store, each keeping its own keys.

    ``ttl``: seconds an entry is kept; ``cache_sampled``: cache sampled requests too
    (``temperature > 0`` without ``seed``); ``max_entry_bytes``: the largest entry kept.

    >>> gateway = ModelGateway(models, cache=ResponseCache(ttl=600))  # doctest: +SKIP
    >>> gateway(messages="hi", temperature=0).metadata.gateway["cache"]  # doctest: +SKIP
    'miss'
    """

    options = OPTIONS

    def __init__(
        self,
        store: CacheStore | None = None,
        *,
        ttl: float = DEFAULT_TTL,
        cache_sampled: bool = False,
        max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
    ) -> None:
        if store is None:
            store = MemoryCache()
        for method in ("get", "put", "delete", "aget", "aput", "adelete", "info", "close"):
            if not callable(getattr(store, method, None)):
                raise TypeError(
                    f"store must be a CacheStore (MemoryCache, RedisCache or your own); "
                    f"{type(store).__name__} has no {method}()"
                )
        if cache_sampled is not True and cache_sampled is not False:
            raise TypeError(f"cache_sampled must be True or False, got {cache_sampled!r}")
        if (
            isinstance(max_entry_bytes, bool)
            or not isinstance(max_entry_bytes, int)
            or max_entry_bytes <= 0
        ):
            raise ValueError(f"max_entry_bytes must be an int > 0, got {max_entry_bytes!r}")
        self.store = store
        self._io: bool = getattr(store, "io", True)
        """The store waits on the network (its async methods are used, a stream's entry is
        written in a task); else its sync methods serve async calls too."""
        self.ttl = _seconds(ttl, "ttl")
        self.cache_sampled = cache_sampled
        self.max_entry_bytes = max_entry_bytes
        self._max_inflated = max_entry_bytes * INFLATE_RATIO
        self.bound = False
        self._scope = b""
        self._temperature: float | None = None
        self._clock = Clock()
        self._cost: Cost = lambda deployment, usage: None
        self._tasks: set[asyncio.Task[None]] = set()
        self.hits = self.misses = self.bypasses = self.stored = 0
        self.too_big = self.dropped = self.errors = 0
        self.bytes_read = self.bytes_written = 0
        self.cost_saved = 0.0

    def bind(
        self,
        name: str | None,
        deployments: Sequence[tuple[str, Any]],
        temperature: float | None,
        clock: Clock,
        cost: Cost,
    ) -> None:
        """Serve the gateway called ``name`` over ``deployments`` (``(model_name, settings)``
        pairs; what the keys cover), whose models sample at ``temperature`` when a request
        sets none (None: the API's default), on ``clock``, priced by ``cost``. The gateway
        calls it (again when a model setting changes)."""
        self._scope = scope_of(name, deployments)
        self._temperature = temperature
        self._clock = clock
        self._cost = cost
        self.bound = True

    # -- the call -------------------------------------------------------------------------------
    def wrap(self, call: Call, next: Handler) -> Any:
        plan = self._plan(call)
        if plan is None:
            return next(call)
        key = plan.key
        if plan.controls.read:
            data = self._get(key)
            entry, drop = self.judge(data, plan.controls)
            if drop:
                self._delete(key)
            if entry is not None:
                assert data is not None
                answer = self._hit(call, entry, len(data))
                if answer is not None:
                    return answer
        self._missed(call, plan)
        result = next(call)
        if plan.controls.write:
            data = self._keep(plan, result, self._put)
            if data is not None:
                self._put(key, data, plan.ttl)
        return result

    async def awrap(self, call: Call, next: AsyncHandler) -> Any:
        plan = self._plan(call)
        if plan is None:
            return await next(call)
        key = plan.key
        if plan.controls.read:
            data = await self._aget(key)
            entry, drop = self.judge(data, plan.controls)
            if drop:
                await self._adelete(key)
            if entry is not None:
                assert data is not None
                answer = self._hit(call, entry, len(data))
                if answer is not None:
                    return answer
        self._missed(call, plan)
        result = await next(call)
        if plan.controls.write:
            data = self._keep(plan, result, self._put_soon)
            if data is not None:
                await self._aput(key, data, plan.ttl)
        return result

    # -- the decisions (pure but for the counters) --------------------------------------------
    def _plan(self, call: Call) -> _Plan | None:
        """The call's key and controls; None when it bypasses the cache."""
        ctl = controls(call.options)
        req = None if ctl.bypass else call.request
        if (
            req is None
            or req.kind != CHAT
            or bypass_reason(req, self._temperature, self.cache_sampled or ctl.sampled)
        ):
            if ctl.only_cached:
                raise NotCached("only-if-cached: this request is never cached")
            call.meta["cache"] = "bypass"
            self.bypasses += 1
            return None
        return _Plan(request_key(self._scope, req), ctl, ctl.ttl or self.ttl)

    def judge(self, data: bytes | None, ctl: Controls) -> tuple[Entry | None, bool]:
        """``(the entry to answer with or None, whether to delete what is stored)`` for the
        bytes a store gave: a corrupted, oversized or expired entry is deleted; one older
        than the caller's ``max-age`` only goes unused."""
        if data is None:
            return None, False
        entry = decode(data, self._max_inflated) if len(data) <= self.max_entry_bytes else None
        if entry is None:
            self.dropped += 1
            return None, True
        now = self._clock.time()
        if entry.usable(now, ctl.max_age):
            return entry, False
        return None, entry.age(now) >= entry.ttl

    def _hit(self, call: Call, entry: Entry, size: int) -> Any:
        completion = entry.completion
        completion["id"] = _fresh_id(completion.get("id"))
        usage = completion.get("usage")
        saved = self._cost(entry.deployment, usage) if usage else None
        call.meta.update(cache="hit", cache_age=entry.age(self._clock.time()), cost_saved=saved)
        try:
            answer = call.answer(completion, entry.deployment)
        except Exception as exc:  # an entry this call cannot read: answer from upstream
            logger.warning("response cache: an entry could not be replayed: %r", exc)
            for name in ("cache", "cache_age", "cost_saved"):
                call.meta.pop(name, None)
            return None
        self.hits += 1
        self.bytes_read += size
        self.cost_saved += saved or 0.0
        return answer

    def _missed(self, call: Call, plan: _Plan) -> None:
        if plan.controls.only_cached:
            self.misses += 1
            raise NotCached("only-if-cached: the cache has no answer for this request")
        if plan.controls.read:
            call.meta["cache"] = "miss"
            self.misses += 1
        else:
            call.meta["cache"] = "bypass"
            self.bypasses += 1

    def _entry(self, completion: dict[str, Any], deployment: str, ttl: float) -> bytes | None:
        data = encode(Entry(completion, deployment, self._clock.time(), ttl), self._max_inflated)
        if data is None or len(data) > self.max_entry_bytes:
            self.too_big += 1
            return None
        return data

    def _keep(
        self, plan: _Plan, result: Any, later: Callable[[str, bytes, float], None]
    ) -> bytes | None:
        """The entry of a whole answer, to store now; a stream is tapped instead, and
        ``later`` stores its entry once it finished cleanly."""
        target = result.response if isinstance(result, RawStream) else result
        if isinstance(target, (NativeStream, ModelStreamResponse)):
            self._tap(plan, target, later)
            return None
        try:
            found = whole(result)
        except Exception as exc:  # an answer the family cannot make canonical
            logger.debug("response cache: an answer not kept: %r", exc)
            return None
        return None if found is None else self._entry(*found, plan.ttl)

    def _tap(
        self,
        plan: _Plan,
        stream: NativeStream | ModelStreamResponse,
        later: Callable[[str, bytes, float], None],
    ) -> None:
        def done(completion: dict[str, Any]) -> None:
            gateway = (stream.metadata or {}).get("gateway") or {}
            data = self._entry(completion, gateway["model_name"], plan.ttl)
            if data is not None:
                later(plan.key, data, plan.ttl)

        if isinstance(stream, NativeStream):
            events = EventCapture(stream.family, stream.who, self._max_inflated, done)
            stream.tap(events.event, events.end)
        else:
            pairs = PairCapture(stream, self._max_inflated, done)
            try:
                stream.tap(pairs.pair, pairs.end)
            except TypeError:  # a stream pushed by a user-written model: not kept
                return

    # -- the store: its trouble is never the call's ------------------------------------------
    def _failed(self, what: str, exc: Exception) -> None:
        self.errors += 1
        logger.debug("response cache: %s failed: %s", what, scrub(repr(exc)))

    def _get(self, key: str) -> bytes | None:
        try:
            return self.store.get(key)
        except Exception as exc:
            self._failed("a read", exc)
            return None

    async def _aget(self, key: str) -> bytes | None:
        if not self._io:
            return self._get(key)
        try:
            return await self.store.aget(key)
        except Exception as exc:
            self._failed("a read", exc)
            return None

    def _put(self, key: str, data: bytes, ttl: float) -> None:
        try:
            self.store.put(key, data, ttl)
        except Exception as exc:
            self._failed("a write", exc)
            return
        self.stored += 1
        self.bytes_written += len(data)

    async def _aput(self, key: str, data: bytes, ttl: float) -> None:
        if not self._io:
            self._put(key, data, ttl)
            return
        try:
            await self.store.aput(key, data, ttl)
        except Exception as exc:
            self._failed("a write", exc)
            return
        self.stored += 1
        self.bytes_written += len(data)

    def _put_soon(self, key: str, data: bytes, ttl: float) -> None:
        """Store a stream's entry from its end: at once in a store without I/O, else in a
        task of the event loop that reads the stream."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or not self._io:
            self._put(key, data, ttl)
            return
        task = loop.create_task(self._aput(key, data, ttl))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _delete(self, key: str) -> None:
        try:
            self.store.delete(key)
        except Exception as exc:
            self._failed("a delete", exc)

    async def _adelete(self, key: str) -> None:
        if not self._io:
            self._delete(key)
            return
        try:
            await self.store.adelete(key)
        except Exception as exc:
            self._failed("a delete", exc)

    # -- what it did ---------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Plain data for ``gateway.stats()["cache"]``."""
        try:
            info = dict(self.store.info())
        except Exception as exc:
            info = {"healthy": False, "error": scrub(repr(exc))}
        return {
            "store": getattr(self.store, "kind", type(self.store).__name__),
            "ttl": self.ttl,
            "cache_sampled": self.cache_sampled,
            "hits": self.hits,
            "misses": self.misses,
            "bypasses": self.bypasses,
            "stored": self.stored,
            "too_big": self.too_big,
            "dropped": self.dropped,
            "errors": self.errors,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "cost_saved": self.cost_saved,
            **info,
        }

    def __repr__(self) -> str:
        return f"ResponseCache({self.store!r}, ttl={self.ttl:g})"


def as_cache(value: Any) -> tuple[ResponseCache | None, bool]:
    """``cache=`` of a gateway as ``(the cache or None, whether the gateway made its store)``:
    None/False (no cache), True (this process's memory), a ``redis://`` URL, a
    :class:`~.stores.CacheStore`, a :class:`ResponseCache`, or a dict of
    ``{ttl, store ("memory" or a URL), max_bytes, max_entry_bytes, cache_sampled}``."""
    if value is None or value is False:
        return None, False
    if value is True:
        return ResponseCache(), True
    if isinstance(value, ResponseCache):
        if value.bound:
            raise ValueError(
                "cache: this ResponseCache already serves another gateway; give each "
                "gateway its own (they may share a store: ResponseCache(store))"
            )
        return value, False
    if isinstance(value, str):
        return ResponseCache(_redis(value)), True
    if isinstance(value, Mapping):
        return _from_mapping(value)
    if all(callable(getattr(value, m, None)) for m in ("get", "put", "aget", "aput")):
        return ResponseCache(value), False
    raise TypeError(
        "cache must be True, a redis:// URL, a CacheStore (MemoryCache, RedisCache), a "
        f"ResponseCache or a dict of its settings, got {type(value).__name__}"
    )


_SETTINGS = ("ttl", "store", "max_bytes", "max_entry_bytes", "cache_sampled")


def _redis(url: str) -> CacheStore:
    from msgflux.models.gateway.cache.redis_store import RedisCache

    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"cache: a store URL must be redis://, rediss:// or unix://, got {url!r}")
    return RedisCache(url)


def _from_mapping(spec: Mapping[str, Any]) -> tuple[ResponseCache, bool]:
    """The cache of a settings dict, and whether its store was made here (``store``: the
    name ``"memory"``, a URL, or a store object the caller keeps)."""
    unknown = [k for k in spec if k not in _SETTINGS]
    if unknown:
        raise ValueError(
            f"cache has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(_SETTINGS)}"
        )
    store: Any = spec.get("store", "memory")
    max_bytes = spec.get("max_bytes")
    made = isinstance(store, str)
    if store == "memory":
        store = MemoryCache() if max_bytes is None else MemoryCache(max_bytes)
    elif max_bytes is not None:
        raise ValueError("cache.max_bytes bounds a new memory store only")
    elif isinstance(store, str):
        store = _redis(store)
    options = {k: spec[k] for k in ("ttl", "max_entry_bytes", "cache_sampled") if k in spec}
    try:
        return ResponseCache(store, **options), made
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"cache: {exc}") from None
