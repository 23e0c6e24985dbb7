"""A state store on Redis, so that many gateway processes share one view of each deployment.

>>> gateway = ModelGateway(deployments, state="redis://127.0.0.1:6379/0")
>>> gateway = ModelGateway(deployments, state=RedisState(url, namespace="prod", timeout=0.05))

Why it is built this way:

* **Same transitions, other persistence.** :mod:`~msgflux.models.gateway.state` defines the
  transitions as pure functions (``admit_first``, ``settle_state``). Redis cannot run Python,
  so the two scripts below are a line-by-line Lua transcription of them over the same data
  (``DeploymentState``'s fields in a hash, the rpm log and the concurrency leases in sorted
  sets). ``tests/test_redis_state.py`` runs both against one table of vectors, so the copies
  cannot drift apart unnoticed.
* **Atomic and cheap.** Each gateway operation is one ``EVALSHA``: ``admit`` walks the ranked
  candidates and takes the probe slot, rpm slot and lease of the one it admits; ``settle``
  applies the outcome. Redis runs a script without interleaving, so two processes can never
  both take the last rpm slot or the single half-open probe, and a call costs one round trip
  before the attempt and one after. Scripts are loaded once per server (on ``NOSCRIPT``).
* **Bounded.** Keys are ``{namespace}:<kind>:<model_name>|<provider>/<model_id>`` (no URL, no
  key): the braces put a namespace in one Redis Cluster slot, which a multi-candidate script
  needs. Every write refreshes a TTL longer than anything the state remembers (windows, open
  times, leases), the rpm log never holds more than ``rpm`` entries, leases never more than
  ``max_concurrency``, rings have fixed sizes.
* **Redis trouble never fails a call.** Commands time out after ``timeout`` seconds (no client
  retries). On any Redis error the store switches to a process-local :class:`MemoryStore`,
  logs at most one WARNING per minute, and a background thread PINGs Redis until it answers;
  then shared state resumes. Calls admitted by one side are settled on the same side.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import math
import os
import re
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast
from urllib.parse import urlsplit

try:
    import redis
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import NoScriptError, RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.retry import Retry
except ImportError as _exc:  # pragma: no cover - depends on the extra
    raise ImportError(
        'The Redis state store needs the redis extra: pip install "msgflux-gateway[redis]"'
    ) from _exc

from msgflux.models.gateway.breaker import CLOSED, OPEN, REASON_HALF_OPEN, REASON_OPEN, Breaker
from msgflux.models.gateway.limits import REASON_CONCURRENCY, REASON_RPM, REASON_TPM
from msgflux.models.gateway.state import (
    FIRST,
    NOBODY,
    Admission,
    DeploymentState,
    MemoryStore,
    Policy,
    Skip,
    snapshot_state,
)

__all__ = ["RedisState"]

logger = logging.getLogger("msgflux.gateway")

WARNING_INTERVAL = 60.0
"""Seconds between two 'Redis unavailable' warnings (the first one is logged at once)."""

_REASONS = ("", REASON_OPEN, REASON_HALF_OPEN, REASON_CONCURRENCY, REASON_RPM, REASON_TPM)
_NAMESPACE = re.compile(r"^[A-Za-z0-9_.:/\-]{1,128}$")
_SCHEMES = ("redis://", "rediss://", "unix://")
_FIELDS = ("s", "c", "ou", "of", "p", "pu", "wi", "wc", "wf", "ti", "tv")
_EMPTY_SLOT = -(2**62)
_KEY_MARGIN = 60.0
"""Extra seconds of key TTL beyond the longest time the state remembers anything."""

# -- Lua ----------------------------------------------------------------------------------------
# A transcription of breaker.py / limits.py / state.py. Times are epoch seconds given by the
# caller (so a test clock works and processes agree); floats travel as "%.17g" strings, which
# round-trip exactly, and integers as "%d". Config per candidate: see _config_args().
_LUA_COMMON = r"""
local CLOSED, OPEN, HALF = 0, 1, 2
local BUCKETS, TPM_BUCKETS, MINUTE = 10, 60, 60.0
local EMPTY = -4611686018427387904
local R_OPEN, R_HALF, R_CONC, R_RPM, R_TPM = 1, 2, 3, 4, 5
local NCFG = 15

local function fmt(x) return string.format('%.17g', x) end

local function floordiv(a, b) -- Python's float // (b > 0), bit for bit
  local mod = math.fmod(a, b)
  local div = (a - mod) / b
  if mod < 0 then div = div - 1 end
  if div == 0 then return 0 end
  local f = math.floor(div)
  if div - f > 0.5 then f = f + 1 end
  return f
end

local function split(s)
  local t = {}
  if s then
    for v in string.gmatch(s, '[^,]+') do t[#t + 1] = tonumber(v) end
  end
  return t
end

local function join(t)
  local parts = {}
  for i = 1, #t do parts[i] = string.format('%d', t[i]) end
  return table.concat(parts, ',')
end

local function config(base)
  local function num(k) return tonumber(ARGV[base + k]) end
  return {
    breaker = ARGV[base + 1] == '1', threshold = num(2), rate = num(3), minimum_calls = num(4),
    window = num(5), open_for = num(6), max_open_for = num(7), half_open_probes = num(8),
    slow = num(9), probe_timeout = num(10), rpm = num(11), tpm = num(12),
    max_concurrency = num(13), lease = num(14), ttl = ARGV[base + 15],
  }
end

local function load(key)
  local v = redis.call('HMGET', key, 's', 'c', 'ou', 'of', 'p', 'pu', 'wi', 'wc', 'wf', 'ti', 'tv')
  return {
    state = tonumber(v[1]) or CLOSED, consecutive = tonumber(v[2]) or 0,
    open_until = tonumber(v[3]) or 0, open_for = tonumber(v[4]) or 0,
    probes = tonumber(v[5]) or 0, probe_until = tonumber(v[6]) or 0,
    raw_w = {v[7], v[8], v[9]}, raw_t = {v[10], v[11]}, dirty = false,
  }
end

local function win(st)
  if not st.win_ids then
    local w = st.raw_w
    st.win_ids, st.win_calls, st.win_fails = split(w[1]), split(w[2]), split(w[3])
  end
end

local function tok(st)
  if not st.tok_ids then st.tok_ids, st.tok_vals = split(st.raw_t[1]), split(st.raw_t[2]) end
end

local function save(key, st, ttl)
  redis.call('HSET', key, 's', st.state, 'c', st.consecutive, 'ou', fmt(st.open_until),
    'of', fmt(st.open_for), 'p', st.probes, 'pu', fmt(st.probe_until))
  if st.win_ids then
    if #st.win_ids == 0 then
      redis.call('HDEL', key, 'wi', 'wc', 'wf')
    else
      redis.call('HSET', key, 'wi', join(st.win_ids), 'wc', join(st.win_calls),
        'wf', join(st.win_fails))
    end
  end
  if st.tok_ids and #st.tok_ids > 0 then
    redis.call('HSET', key, 'ti', join(st.tok_ids), 'tv', join(st.tok_vals))
  end
  redis.call('PEXPIRE', key, ttl)
end

-- breaker.py ---------------------------------------------------------------------------------
local function window_counts(c, st, now)
  win(st)
  if #st.win_ids == 0 then return 0, 0 end
  local current = floordiv(now * BUCKETS, c.window)
  local calls, failures = 0, 0
  for i = 1, BUCKETS do
    if current - st.win_ids[i] < BUCKETS then
      calls = calls + st.win_calls[i]
      failures = failures + st.win_fails[i]
    end
  end
  return calls, failures
end

local function window_add(c, st, now, failed)
  win(st)
  if #st.win_ids == 0 then
    for i = 1, BUCKETS do st.win_ids[i], st.win_calls[i], st.win_fails[i] = EMPTY, 0, 0 end
  end
  local bucket = floordiv(now * BUCKETS, c.window)
  local slot = bucket % BUCKETS + 1
  if st.win_ids[slot] ~= bucket then
    st.win_ids[slot], st.win_calls[slot], st.win_fails[slot] = bucket, 0, 0
  end
  st.win_calls[slot] = st.win_calls[slot] + 1
  if failed then st.win_fails[slot] = st.win_fails[slot] + 1 end
end

local function open(c, st, now, base, retry_after)
  st.state = OPEN
  st.open_for = base
  local extended = base
  if retry_after > base then extended = retry_after end
  st.open_until = now + math.min(extended, c.max_open_for)
  st.consecutive = 0
  st.probes = 0
  st.win_ids, st.win_calls, st.win_fails = {}, {}, {}
end

local function breaker_check(c, st, now)
  if st.state == CLOSED then return nil, nil end
  if st.state == OPEN then
    if now >= st.open_until then return nil, nil end
    return R_OPEN, st.open_until
  end
  if st.probes < c.half_open_probes or now >= st.probe_until then return nil, nil end
  return R_HALF, st.probe_until
end

local function breaker_take(c, st, now)
  if st.state == CLOSED then return false end
  if st.state == OPEN or now >= st.probe_until then
    st.state = HALF
    st.probes = 0
  end
  st.probes = st.probes + 1
  st.probe_until = now + c.probe_timeout
  st.dirty = true
  return true
end

local function breaker_settle(c, st, outcome, now, probe, retry_after, duration)
  if probe and st.probes > 0 then
    st.probes = st.probes - 1
    st.dirty = true
  end
  if outcome == 2 then return end
  local failed = outcome == 1
  if not failed and c.slow >= 0 and duration > c.slow then failed = true end
  if st.state == HALF then
    if not probe then return end
    if failed then
      open(c, st, now, math.min(math.max(st.open_for, c.open_for) * 2.0, c.max_open_for),
        retry_after)
    else
      st.state, st.open_for, st.open_until, st.probes, st.consecutive = CLOSED, 0, 0, 0, 0
    end
    st.dirty = true
    return
  end
  if st.state == OPEN then return end
  if c.rate >= 0 then
    window_add(c, st, now, failed)
    st.dirty = true
  end
  if not failed then
    if st.consecutive ~= 0 then
      st.consecutive = 0
      st.dirty = true
    end
    return
  end
  st.consecutive = st.consecutive + 1
  st.dirty = true
  if c.threshold >= 0 and st.consecutive >= c.threshold then
    open(c, st, now, c.open_for, retry_after)
    return
  end
  if c.rate >= 0 then
    local calls, failures = window_counts(c, st, now)
    if calls >= c.minimum_calls and failures >= c.rate * calls then
      open(c, st, now, c.open_for, retry_after)
    end
  end
end

-- limits.py ----------------------------------------------------------------------------------
local function tokens_used(st, now)
  tok(st)
  if #st.tok_ids == 0 then return 0 end
  local current = math.floor(now)
  local total = 0
  for i = 1, TPM_BUCKETS do
    if current - st.tok_ids[i] < TPM_BUCKETS then total = total + st.tok_vals[i] end
  end
  return total
end

local function tpm_retry_at(c, st, now)
  local current = math.floor(now)
  local live = {}
  for i = 1, TPM_BUCKETS do
    if current - st.tok_ids[i] < TPM_BUCKETS then
      live[#live + 1] = {st.tok_ids[i], st.tok_vals[i]}
    end
  end
  table.sort(live, function(a, b) return a[1] < b[1] end)
  local total = 0
  for i = 1, #live do total = total + live[i][2] end
  for i = 1, #live do
    total = total - live[i][2]
    if total < c.tpm then return live[i][1] + TPM_BUCKETS end
  end
  return current + TPM_BUCKETS
end
"""

_LUA_ADMIT = (
    _LUA_COMMON
    + r"""
-- KEYS: per candidate (state hash, rpm log, leases); ARGV: now, probe_when_all_open, token,
-- n, then NCFG config values per candidate. Returns {index, probe, leased, (skip index,
-- reason, retry_at)...}.
local now, force, token, n = tonumber(ARGV[1]), ARGV[2] == '1', ARGV[3], tonumber(ARGV[4])

local function limits_check(c, st, rkey, lkey)
  if c.max_concurrency >= 0 then
    redis.call('ZREMRANGEBYSCORE', lkey, '-inf', fmt(now))
    if redis.call('ZCARD', lkey) >= c.max_concurrency then return R_CONC, nil end
  end
  if c.rpm >= 0 then
    redis.call('ZREMRANGEBYSCORE', rkey, '-inf', fmt(now - MINUTE))
    if redis.call('ZCARD', rkey) >= c.rpm then
      local first = redis.call('ZRANGE', rkey, 0, 0, 'WITHSCORES')
      return R_RPM, tonumber(first[2]) + MINUTE
    end
  end
  if c.tpm >= 0 and tokens_used(st, now) >= c.tpm then return R_TPM, tpm_retry_at(c, st, now) end
  return nil, nil
end

local function limits_take(c, rkey, lkey)
  if c.rpm >= 0 then
    redis.call('ZADD', rkey, fmt(now), token)
    redis.call('PEXPIRE', rkey, c.ttl)
  end
  if c.max_concurrency >= 0 then
    redis.call('ZADD', lkey, fmt(now + c.lease), token)
    redis.call('PEXPIRE', lkey, c.ttl)
    return 1
  end
  return 0
end

local function admitted(i, c, st, probe, skips, upto)
  local leased = limits_take(c, KEYS[3 * i - 1], KEYS[3 * i])
  if st.dirty then save(KEYS[3 * i - 2], st, c.ttl) end
  local out = {i - 1, probe and 1 or 0, leased}
  for k = 1, #skips, 3 do
    if skips[k] < upto then
      out[#out + 1], out[#out + 2], out[#out + 3] = skips[k], skips[k + 1], skips[k + 2]
    end
  end
  return out
end

local skips, seen, all_open = {}, {}, true
for i = 1, n do
  local c = config(4 + (i - 1) * NCFG)
  local st = load(KEYS[3 * i - 2])
  local reason, retry_at = nil, nil
  if c.breaker and st.state ~= CLOSED then reason, retry_at = breaker_check(c, st, now) end
  if not reason then reason, retry_at = limits_check(c, st, KEYS[3 * i - 1], KEYS[3 * i]) end
  if not reason then
    local probe = c.breaker and breaker_take(c, st, now)
    return admitted(i, c, st, probe, skips, i - 1)
  end
  skips[#skips + 1], skips[#skips + 2] = i - 1, reason
  skips[#skips + 1] = retry_at and fmt(retry_at) or ''
  seen[i] = {c, st, retry_at or 0}
  if reason ~= R_OPEN then all_open = false end
end
if force and n > 0 and all_open then
  local best = 1
  for i = 2, n do
    if seen[i][3] < seen[best][3] then best = i end
  end
  local c, st = seen[best][1], seen[best][2]
  if not limits_check(c, st, KEYS[3 * best - 1], KEYS[3 * best]) then
    breaker_take(c, st, now)
    return admitted(best, c, st, true, skips, best - 1)
  end
end
local out = {-1, 0, 0}
for k = 1, #skips do out[#out + 1] = skips[k] end
return out
"""
)

_LUA_SETTLE = (
    _LUA_COMMON
    + r"""
-- KEYS: state hash, leases; ARGV: now, outcome, probe, token, tokens, retry_after, duration,
-- then the NCFG config values.
local now, outcome, probe = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
local token, tokens = ARGV[4], tonumber(ARGV[5])
local retry_after, duration = tonumber(ARGV[6]), tonumber(ARGV[7])
local c = config(7)
local st = load(KEYS[1])
if c.max_concurrency >= 0 or c.tpm >= 0 then
  if token ~= '' then redis.call('ZREM', KEYS[2], token) end
  if tokens > 0 and c.tpm >= 0 then
    tok(st)
    if #st.tok_ids == 0 then
      for i = 1, TPM_BUCKETS do st.tok_ids[i], st.tok_vals[i] = EMPTY, 0 end
    end
    local second = math.floor(now)
    local slot = second % TPM_BUCKETS + 1
    if st.tok_ids[slot] ~= second then st.tok_ids[slot], st.tok_vals[slot] = second, 0 end
    st.tok_vals[slot] = st.tok_vals[slot] + tokens
    st.dirty = true
  end
end
if c.breaker then breaker_settle(c, st, outcome, now, probe, retry_after, duration) end
if st.dirty then save(KEYS[1], st, c.ttl) end
if c.breaker then return {st.state, fmt(st.open_until), fmt(st.open_for)} end
return 0
"""
)


class _Script:
    """A Lua script called by SHA; loaded into a server the first time it says NOSCRIPT."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


_ADMIT = _Script(_LUA_ADMIT)
_SETTLE = _Script(_LUA_SETTLE)


# -- configuration ------------------------------------------------------------------------------
def _num(value: float | int | None) -> str:
    return "-1" if value is None else repr(value)


def _ttl_ms(policy: Policy) -> int:
    """Longer than anything the state remembers, so expiry only forgets forgotten things."""
    longest = 60.0  # the rpm and tpm windows
    cfg = policy.breaker
    if cfg is not None:
        longest = max(longest, cfg.window, cfg.max_open_for, cfg.probe_timeout)
    if policy.max_concurrency is not None:
        longest = max(longest, policy.lease)
    return math.ceil((longest + _KEY_MARGIN) * 1000)


def _config_args(policy: Policy) -> list[str]:
    cfg = policy.breaker or Breaker()
    return [
        "1" if policy.breaker is not None else "0",
        _num(cfg.failure_threshold),
        _num(cfg.failure_rate),
        _num(cfg.minimum_calls),
        _num(cfg.window),
        _num(cfg.open_for),
        _num(cfg.max_open_for),
        _num(cfg.half_open_probes),
        _num(cfg.slow_call_duration),
        _num(cfg.probe_timeout),
        _num(policy.rpm),
        _num(policy.tpm),
        _num(policy.max_concurrency),
        _num(policy.lease),
        str(_ttl_ms(policy)),
    ]


class _Compiled:
    """What a policy sends with every call: its three keys and its config as script args."""

    __slots__ = ("args", "keys", "needs_token")

    def __init__(self, prefix: str, policy: Policy) -> None:
        self.keys = (
            f"{prefix}s:{policy.key}",
            f"{prefix}r:{policy.key}",
            f"{prefix}l:{policy.key}",
        )
        self.args = _config_args(policy)
        self.needs_token = policy.rpm is not None or policy.max_concurrency is not None


def _validate(url: Any, namespace: Any, timeout: Any, retry_interval: Any) -> None:
    if not isinstance(url, str):
        raise TypeError(f"RedisState url must be a str such as 'redis://host:6379/0', got {url!r}")
    if not url.startswith(_SCHEMES):
        raise ValueError(
            f"RedisState url must start with one of {', '.join(_SCHEMES)}, got {_redact(url)!r}"
        )
    if not isinstance(namespace, str):
        raise TypeError(f"RedisState namespace must be a str, got {namespace!r}")
    if not _NAMESPACE.match(namespace):
        raise ValueError(
            "RedisState namespace must be 1-128 characters among letters, digits and "
            f"'_.:/-', got {namespace!r}"
        )
    for field, value in (("timeout", timeout), ("retry_interval", retry_interval)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"RedisState {field} must be a number of seconds > 0, got {value!r}")
        if not value > 0 or math.isinf(value):
            raise ValueError(f"RedisState {field} must be a number of seconds > 0, got {value!r}")


def _redact(url: str) -> str:
    """The URL without credentials, for logs and stats."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"
    except ValueError:
        return url.split("://", 1)[0] + "://?"


def _parse_admission(raw: list[Any], token: str) -> Admission:
    index, probe, leased = int(raw[0]), raw[1] == 1, raw[2] == 1
    skips = tuple(
        Skip(int(raw[k]), _REASONS[int(raw[k + 1])], float(raw[k + 2]) if raw[k + 2] else None)
        for k in range(3, len(raw), 3)
    )
    return Admission(index, probe, skips, token if leased else "")


# -- the store ----------------------------------------------------------------------------------
class _LocalState(MemoryStore):
    """The fallback store, kept up to date with the last breaker state Redis reported.

    When Redis goes away, this process then keeps skipping the deployments that were open for
    everyone instead of rediscovering, one failure at a time, that they are down.
    """

    def learn(self, policy: Policy, state: int, open_until: float, open_for: float | None) -> None:
        """Copy the shared breaker's state (``open_for`` None: keep the local one)."""
        with self._lock:
            st = self._state(policy)
            if st.state == state and st.open_until == open_until:
                return
            st.state = state
            st.open_until = open_until
            if open_for is not None:
                st.open_for = open_for
            st.probes = 0
            st.probe_until = 0.0
            st.consecutive = 0


class RedisState:
    """Deployment state in Redis, shared by every gateway using the same ``namespace``.

    ``timeout`` (seconds) bounds what one Redis operation may add to a call; past it, or
    when Redis is down, the store serves from process memory and keeps retrying Redis every
    ``retry_interval`` seconds in the background. See the module docstring for the design.

    >>> store = RedisState("redis://127.0.0.1:6379/0", namespace="prod", timeout=0.05)
    >>> gateway = ModelGateway(deployments, state=store)
    """

    shared = True
    """Gateways in other processes using the same namespace see this state."""

    def __init__(
        self,
        url: str,
        namespace: str = "msgflux",
        timeout: float = 0.05,
        *,
        retry_interval: float = 1.0,
    ) -> None:
        _validate(url, namespace, timeout, retry_interval)
        self.url = url
        self.namespace = namespace
        self.timeout = float(timeout)
        self.retry_interval = float(retry_interval)
        self._prefix = f"{{{namespace}}}:"
        self._local = _LocalState()
        self._compiled: weakref.WeakKeyDictionary[Policy, _Compiled] = weakref.WeakKeyDictionary()
        self._ids = itertools.count(1)
        self._instance = os.urandom(6).hex()
        self._lock = threading.Lock()
        self._sync: redis.Redis | None = None
        self._async: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}
        self._closers: dict[asyncio.AbstractEventLoop, AsyncIterator[None]] = {}
        self._healthy = True
        self._unhealthy_since: float | None = None
        self._outages = 0
        self._local_calls = 0
        self._last_error: str | None = None
        self._last_warning = -math.inf
        self._timeouts = 0
        self._watching = False
        self._closed = threading.Event()

    def __repr__(self) -> str:
        return (
            f"RedisState({_redact(self.url)!r}, namespace={self.namespace!r}, "
            f"timeout={self.timeout!r})"
        )

    # -- clients ----------------------------------------------------------------------------
    def _client_options(self) -> dict[str, Any]:
        """Timeouts bound every operation; no retry except one on a broken connection.

        That one retry is what replaces a pooled connection that Redis closed (a restart): the
        asyncio pool hands those out without noticing. Timeouts are never retried, so an
        operation still costs at most ``timeout`` (plus a refused connect, which is instant).
        """
        return {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            "health_check_interval": 0,
        }

    def _client(self) -> redis.Redis:
        client = self._sync
        if client is None:
            with self._lock:
                client = self._sync
                if client is None:
                    client = self._sync = redis.Redis.from_url(
                        self.url,
                        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
                        **self._client_options(),
                    )
        return client

    async def _aclient(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            client = self._async[loop] = aioredis.Redis.from_url(
                self.url,
                retry=AsyncRetry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
                **self._client_options(),
            )
            closer = self._close_at_shutdown(loop, client)
            self._closers[loop] = closer
            await closer.__anext__()
        return client

    async def _close_at_shutdown(
        self, loop: asyncio.AbstractEventLoop, client: aioredis.Redis
    ) -> AsyncIterator[None]:
        """Parked async generator: the loop's ``shutdown_asyncgens()`` resumes it to close."""
        try:
            yield
        finally:
            if self._async.get(loop) is client:
                del self._async[loop]
            self._closers.pop(loop, None)
            await client.aclose()

    # -- health -----------------------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        """True while state is read from and written to Redis."""
        return self._healthy

    def _failed(self, exc: BaseException) -> None:
        """A Redis operation failed and this call was served locally; decide what it means.

        A timeout may be this process's own event loop lagging under load rather than Redis
        being slow, so it is verified first (one PING from a thread, which no loop delays);
        only a failed check, or any other error, switches the store to local state.
        """
        if isinstance(exc, RedisTimeoutError) and self._healthy:
            with self._lock:
                self._timeouts += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
                self._watch_in_background(verify=True)
            return
        self._down(exc)

    def _down(self, exc: BaseException) -> None:
        """Redis failed us: serve locally, warn (rate-limited), retry in the background."""
        now = time.monotonic()
        with self._lock:
            self._last_error = f"{type(exc).__name__}: {exc}"
            if self._healthy:
                self._healthy = False
                self._unhealthy_since = time.time()
                self._outages += 1
            warn = now - self._last_warning >= WARNING_INTERVAL
            if warn:
                self._last_warning = now
            self._watch_in_background(verify=False)
        if warn:
            logger.warning(
                "Redis state store %s (namespace %r) unavailable (%s); gateways in this process "
                "use process-local state until it answers again (retrying every %gs)",
                _redact(self.url),
                self.namespace,
                self._last_error,
                self.retry_interval,
            )

    def _watch_in_background(self, verify: bool) -> None:
        """Start the watcher thread unless it runs already (call with ``_lock`` held)."""
        if self._watching or self._closed.is_set():
            return
        self._watching = True
        threading.Thread(
            target=self._watch, args=(verify,), name="msgflux-redis-state", daemon=True
        ).start()

    def _watch(self, verify: bool) -> None:
        """Verify a suspected timeout, or PING every ``retry_interval`` until Redis is back."""
        if verify:
            try:
                self._client().ping()
            except (RedisError, OSError) as exc:
                self._down(exc)
            else:
                with self._lock:
                    if self._healthy:
                        self._watching = False
                        return
        while not self._closed.wait(self.retry_interval):
            try:
                self._client().ping()
            except (RedisError, OSError):
                continue
            with self._lock:
                self._healthy = True
                self._unhealthy_since = None
                self._watching = False
            logger.info(
                "Redis state store %s is reachable again; sharing state again",
                _redact(self.url),
            )
            return
        with self._lock:
            self._watching = False

    # -- per-call plumbing --------------------------------------------------------------------
    def _compile(self, policy: Policy) -> _Compiled:
        compiled = self._compiled.get(policy)
        if compiled is None:
            compiled = self._compiled[policy] = _Compiled(self._prefix, policy)
        return compiled

    def _admit_request(
        self, candidates: Sequence[Policy], probe_when_all_open: bool
    ) -> tuple[int, list[str], list[str], str]:
        """(index of the first inactive candidate or -1, keys, args, token) for the script."""
        keys: list[str] = []
        cfgs: list[str] = []
        needs_token = False
        stop = -1
        for i, policy in enumerate(candidates):
            if not policy.active:
                stop = i
                break
            c = self._compile(policy)
            keys.extend(c.keys)
            cfgs.extend(c.args)
            needs_token = needs_token or c.needs_token
        token = f"{self._instance}:{next(self._ids)}" if needs_token else ""
        force = "1" if probe_when_all_open and stop < 0 else "0"
        n = len(keys) // 3
        return stop, keys, ["", force, token, str(n), *cfgs], token

    def _finish_admit(
        self, candidates: Sequence[Policy], raw: list[Any], token: str, stop: int
    ) -> Admission:
        adm = _parse_admission(raw, token)
        for skip in adm.skips:
            if skip.reason == REASON_OPEN and skip.retry_at is not None:
                self._local.learn(candidates[skip.index], OPEN, skip.retry_at, None)
        if adm.index >= 0 and not adm.probe:
            policy = candidates[adm.index]
            if policy.breaker is not None:
                self._local.learn(policy, CLOSED, 0.0, 0.0)
        if adm.index < 0 and stop >= 0:
            return Admission(stop, skips=adm.skips)
        return adm

    def _learn_settle(self, policy: Policy, raw: Any) -> None:
        if isinstance(raw, list):
            self._local.learn(policy, int(raw[0]), float(raw[1]), float(raw[2]))

    def _settle_request(
        self,
        policy: Policy,
        admission: Admission,
        outcome: int,
        now: float,
        tokens: int,
        retry_after: float,
        duration: float,
    ) -> tuple[list[str], list[str]]:
        c = self._compile(policy)
        args = [
            repr(float(now)),
            str(outcome),
            "1" if admission.probe else "0",
            admission.token,
            str(int(tokens)),
            repr(float(retry_after)),
            repr(float(duration)),
            *c.args,
        ]
        return [c.keys[0], c.keys[2]], args

    @staticmethod
    def _run(client: redis.Redis, script: _Script, keys: list[str], args: list[str]) -> Any:
        execute: Callable[..., Any] = client.execute_command
        try:
            return execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            execute("SCRIPT", "LOAD", script.source)
            return execute("EVALSHA", script.sha, len(keys), *keys, *args)

    @staticmethod
    async def _arun(
        client: aioredis.Redis, script: _Script, keys: list[str], args: list[str]
    ) -> Any:
        execute = cast(Callable[..., Awaitable[Any]], client.execute_command)
        try:
            return await execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await execute("SCRIPT", "LOAD", script.source)
            return await execute("EVALSHA", script.sha, len(keys), *keys, *args)

    def _local_admit(
        self, candidates: Sequence[Policy], now: float, probe_when_all_open: bool
    ) -> Admission:
        self._local_calls += 1
        return self._local.admit(candidates, now, probe_when_all_open)

    # -- the StateStore protocol ------------------------------------------------------------
    def register(self, policies: Sequence[Policy]) -> None:
        """Prepare each policy's keys and script arguments once (no I/O)."""
        self._local.register(policies)
        for policy in policies:
            self._compile(policy)

    def admit(
        self, candidates: Sequence[Policy], now: float, probe_when_all_open: bool = False
    ) -> Admission:
        """One atomic script: skip, then admit the first candidate with room."""
        if not candidates:
            return NOBODY
        if not candidates[0].active:
            return FIRST
        if not self._healthy:
            return self._local_admit(candidates, now, probe_when_all_open)
        stop, keys, args, token = self._admit_request(candidates, probe_when_all_open)
        args[0] = repr(float(now))
        try:
            raw = self._run(self._client(), _ADMIT, keys, args)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return self._local_admit(candidates, now, probe_when_all_open)
        return self._finish_admit(candidates, raw, token, stop)

    async def aadmit(
        self, candidates: Sequence[Policy], now: float, probe_when_all_open: bool = False
    ) -> Admission:
        """Async :meth:`admit` (redis.asyncio; one client per event loop)."""
        if not candidates:
            return NOBODY
        if not candidates[0].active:
            return FIRST
        if not self._healthy:
            return self._local_admit(candidates, now, probe_when_all_open)
        stop, keys, args, token = self._admit_request(candidates, probe_when_all_open)
        args[0] = repr(float(now))
        try:
            raw = await self._arun(await self._aclient(), _ADMIT, keys, args)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return self._local_admit(candidates, now, probe_when_all_open)
        return self._finish_admit(candidates, raw, token, stop)

    def settle(
        self,
        policy: Policy,
        admission: Admission,
        outcome: int,
        now: float,
        *,
        tokens: int = 0,
        retry_after: float = 0.0,
        duration: float = 0.0,
    ) -> None:
        """One atomic script: free the lease and probe slot, count tokens, move the breaker."""
        if not policy.active:
            return
        if isinstance(admission.token, str) and self._healthy:
            keys, args = self._settle_request(
                policy, admission, outcome, now, tokens, retry_after, duration
            )
            try:
                self._learn_settle(policy, self._run(self._client(), _SETTLE, keys, args))
                return
            except (RedisError, OSError) as exc:
                self._failed(exc)
        self._local.settle(
            policy,
            _as_local(admission),
            outcome,
            now,
            tokens=tokens,
            retry_after=retry_after,
            duration=duration,
        )

    async def asettle(
        self,
        policy: Policy,
        admission: Admission,
        outcome: int,
        now: float,
        *,
        tokens: int = 0,
        retry_after: float = 0.0,
        duration: float = 0.0,
    ) -> None:
        """Async :meth:`settle`."""
        if not policy.active:
            return
        if isinstance(admission.token, str) and self._healthy:
            keys, args = self._settle_request(
                policy, admission, outcome, now, tokens, retry_after, duration
            )
            try:
                raw = await self._arun(await self._aclient(), _SETTLE, keys, args)
                self._learn_settle(policy, raw)
                return
            except (RedisError, OSError) as exc:
                self._failed(exc)
        self._local.settle(
            policy,
            _as_local(admission),
            outcome,
            now,
            tokens=tokens,
            retry_after=retry_after,
            duration=duration,
        )

    def snapshot(self, policies: Sequence[Policy], now: float) -> list[dict[str, Any]]:
        """Per policy, :func:`snapshot_state` of its shared state (local while degraded)."""
        if self._healthy:
            try:
                states = self._read(policies)
            except (RedisError, OSError) as exc:
                self._failed(exc)
            else:
                return [snapshot_state(p, st, now) for p, st in zip(policies, states, strict=True)]
        return self._local.snapshot(policies, now)

    def state(self, policy: Policy) -> DeploymentState:
        """The shared state of one deployment as a :class:`DeploymentState` (tests, debugging).

        Raises the Redis error when Redis cannot be read.
        """
        return self._read([policy])[0]

    def _read(self, policies: Sequence[Policy]) -> list[DeploymentState]:
        pipe = self._client().pipeline(transaction=True)
        for policy in policies:
            keys = self._compile(policy).keys
            pipe.hmget(keys[0], _FIELDS)
            pipe.zrange(keys[1], 0, -1, withscores=True)
            pipe.zrange(keys[2], 0, -1, withscores=True)
        replies = pipe.execute()
        return [_decode_state(*replies[i : i + 3]) for i in range(0, len(replies), 3)]

    def info(self) -> dict[str, Any]:
        """Backend, whether state is shared and healthy right now, and outage counters."""
        return {
            "backend": "redis",
            "shared": self.shared,
            "healthy": self._healthy,
            "serving": "redis" if self._healthy else "local",
            "url": _redact(self.url),
            "namespace": self.namespace,
            "timeout": self.timeout,
            "unhealthy_since": self._unhealthy_since,
            "outages": self._outages,
            "timeouts": self._timeouts,
            "local_admissions": self._local_calls,
            "last_error": self._last_error,
        }

    def reset(self, policies: Sequence[Policy] | None = None) -> None:
        """Forget these deployments' state (the whole namespace when None), here and in Redis."""
        self._local.reset(policies)
        if policies is None:
            self.clear()
            return
        keys = [k for p in policies for k in self._compile(p).keys]
        if keys:
            self._client().delete(*keys)

    def clear(self) -> int:
        """Delete every key of this namespace (other namespaces are untouched); returns how many.

        Raises the Redis error when Redis cannot be reached.
        """
        client = self._client()
        deleted = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{self._prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(client.unlink(*batch))
                batch = []
        if batch:
            deleted += int(client.unlink(*batch))
        return deleted

    def keys(self) -> list[str]:
        """Every key of this namespace (for operators and tests)."""
        return sorted(
            k.decode() for k in self._client().scan_iter(match=f"{self._prefix}*", count=1000)
        )

    def close(self) -> None:
        """Stop the background pinger and close the sync connection pool.

        Async clients close with their event loop (or call :meth:`aclose` inside it).
        """
        self._closed.set()
        client, self._sync = self._sync, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close this event loop's async client (and, with it, the store for this loop)."""
        loop = asyncio.get_running_loop()
        client = self._async.pop(loop, None)
        closer = self._closers.pop(loop, None)
        if client is not None:
            await client.aclose()
        if closer is not None:
            await closer.aclose()  # type: ignore[attr-defined]


def _as_local(admission: Admission) -> Admission:
    """An admission of Redis's, settled locally: nothing of the local leases is held."""
    if isinstance(admission.token, str):
        return Admission(admission.index, admission.probe, admission.skips, 0.0)
    return admission


def _decode_state(
    fields: list[bytes | None],
    requests: list[tuple[bytes, float]],
    leases: list[tuple[bytes, float]],
) -> DeploymentState:
    def num(i: int) -> float:
        value = fields[i]
        return float(value) if value is not None else 0.0

    def ring(i: int) -> list[int]:
        value = fields[i]
        return [int(v) for v in value.split(b",")] if value else []

    return DeploymentState(
        state=int(num(0)),
        consecutive=int(num(1)),
        open_until=num(2),
        open_for=num(3),
        probes=int(num(4)),
        probe_until=num(5),
        win_ids=ring(6),
        win_calls=ring(7),
        win_fails=ring(8),
        requests=deque(score for _, score in requests),
        tok_ids=ring(9),
        tok_vals=ring(10),
        leases=[score for _, score in leases],
    )


assert _EMPTY_SLOT == -4611686018427387904  # the Lua EMPTY constant
