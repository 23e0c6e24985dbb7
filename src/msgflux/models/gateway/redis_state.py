"""A state store on Redis, so that many gateway processes share one view of each deployment.

>>> gateway = ModelGateway(deployments, state="redis://127.0.0.1:6379/0")
>>> gateway = ModelGateway(deployments, state=RedisState(url, namespace="prod", timeout=0.05))

Why it is built this way:

* **Same transitions, other persistence.** :mod:`~msgflux.models.gateway.state` defines the
  transitions as pure functions (``admit_first``, ``settle_state``). Redis cannot run Python,
  so the Lua below is a line-by-line transcription of them over the same data
  (``DeploymentState``'s numbers in a hash, the rpm log and the concurrency leases in sorted
  sets). ``tests/gateway/test_redis_state.py`` drives both with one table of vectors (and random
  sequences) and compares every answer and the whole state after every step, so the two
  copies cannot drift apart unnoticed.
* **Atomic and cheap.** Each gateway operation is one Lua call: ``admit`` walks the ranked
  candidates and takes the probe slot, rpm slot and lease of the one it admits; ``settle``
  applies the outcome. Redis runs it without interleaving, so two processes can never both
  take the last rpm slot or the single half-open probe, and a call costs one round trip
  before the attempt and one after. On Redis 7+ the Lua is a function library loaded once
  (``FCALL``); elsewhere the same code runs as a script (``EVALSHA``). The per-call traffic
  goes over lean pipelined connections (:mod:`._redis_pipe`, measured ~4x cheaper in CPU
  than redis.asyncio); redis-py serves everything else.
* **Bounded.** Keys are ``{namespace}:<kind>:<model_name>|<provider>/<model_id>`` (no URL, no
  key): the braces put a namespace in one Redis Cluster slot, which a multi-candidate script
  needs. Writes keep a TTL longer than anything the state remembers (windows, open times,
  leases); the rpm log never holds more than ``rpm`` entries, the leases never more than
  ``max_concurrency``; the rings have fixed sizes.
* **Redis trouble never fails a call.** Operations time out after ``timeout`` seconds and are
  never retried (except once on a pooled connection that Redis had closed). On a Redis error
  the call goes on with a process-local :class:`MemoryStore` (kept up to date with the last
  breaker state Redis reported), the store logs at most one WARNING a minute, and a thread
  PINGs Redis until it answers; then shared state resumes. A call is settled on the side that
  admitted it.
"""

from __future__ import annotations

import asyncio
import functools
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
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

try:
    import hiredis  # noqa: F401  (the hot path parses replies with it)
    import redis
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import NoScriptError, RedisError, ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.retry import Retry

    from msgflux.models.gateway._redis_pipe import AsyncPipe, SyncPipe, bulk, endpoint, header
except ImportError as _exc:  # pragma: no cover - depends on the extra
    raise ImportError(
        'The Redis state store needs the redis extra: pip install "msgflux-gateway[redis]"'
    ) from _exc

from msgflux.models.gateway.breaker import (
    BUCKETS,
    CLOSED,
    OPEN,
    REASON_HALF_OPEN,
    REASON_OPEN,
    Breaker,
)
from msgflux.models.gateway.limits import REASON_CONCURRENCY, REASON_RPM, REASON_TPM
from msgflux.models.gateway.state import (
    FIRST,
    NOBODY,
    Admission,
    DeploymentState,
    MemoryStore,
    Policy,
    Settlement,
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

local function config(A, b)
  local num = tonumber
  return {
    breaker = A[b + 1] == '1', threshold = num(A[b + 2]), rate = num(A[b + 3]),
    minimum_calls = num(A[b + 4]), window = num(A[b + 5]), open_for = num(A[b + 6]),
    max_open_for = num(A[b + 7]), half_open_probes = num(A[b + 8]), slow = num(A[b + 9]),
    probe_timeout = num(A[b + 10]), rpm = num(A[b + 11]), tpm = num(A[b + 12]),
    max_concurrency = num(A[b + 13]), lease = num(A[b + 14]), ttl = A[b + 15],
  }
end

-- The failure-rate ring lives in per-slot hash fields (bucket id, calls, failures), so that
-- counting a call touches one slot instead of rewriting the ring.
local WI = {'wi0', 'wi1', 'wi2', 'wi3', 'wi4', 'wi5', 'wi6', 'wi7', 'wi8', 'wi9'}
local WC = {'wc0', 'wc1', 'wc2', 'wc3', 'wc4', 'wc5', 'wc6', 'wc7', 'wc8', 'wc9'}
local WF = {'wf0', 'wf1', 'wf2', 'wf3', 'wf4', 'wf5', 'wf6', 'wf7', 'wf8', 'wf9'}
local WALL = {}
for i = 1, BUCKETS do WALL[i], WALL[BUCKETS + i], WALL[2 * BUCKETS + i] = WI[i], WC[i], WF[i] end

local function load(key, slot_field)
  local v
  if slot_field then
    v = redis.call('HMGET', key, 's', 'c', 'ou', 'of', 'p', 'pu', slot_field)
  else
    v = redis.call('HMGET', key, 's', 'c', 'ou', 'of', 'p', 'pu')
  end
  return {
    key = key, state = tonumber(v[1]) or CLOSED, consecutive = tonumber(v[2]) or 0,
    open_until = tonumber(v[3]) or 0, open_for = tonumber(v[4]) or 0,
    probes = tonumber(v[5]) or 0, probe_until = tonumber(v[6]) or 0,
    dirty = false, touched = false, slot_field = slot_field, slot_id = tonumber(v[7]),
  }
end

local function slot_of(c, now)
  return floordiv(now * BUCKETS, c.window) % BUCKETS + 1
end

local function tok(st)
  if not st.tok_ids then
    local v = redis.call('HMGET', st.key, 'ti', 'tv')
    st.tok_ids, st.tok_vals = split(v[1]), split(v[2])
  end
end

local function save(st, ttl)
  if st.dirty then
    redis.call('HSET', st.key, 's', st.state, 'c', st.consecutive, 'ou', fmt(st.open_until),
      'of', fmt(st.open_for), 'p', st.probes, 'pu', fmt(st.probe_until))
  end
  if st.tok_dirty then
    redis.call('HSET', st.key, 'ti', join(st.tok_ids), 'tv', join(st.tok_vals))
  end
  if st.dirty or st.touched or st.tok_dirty then redis.call('PEXPIRE', st.key, ttl) end
end

-- breaker.py ---------------------------------------------------------------------------------
local function window_counts(c, st, now)
  local v = redis.call('HMGET', st.key, unpack(WALL))
  local current = floordiv(now * BUCKETS, c.window)
  local calls, failures = 0, 0
  for i = 1, BUCKETS do
    local id = tonumber(v[i])
    if id and current - id < BUCKETS then
      calls = calls + (tonumber(v[BUCKETS + i]) or 0)
      failures = failures + (tonumber(v[2 * BUCKETS + i]) or 0)
    end
  end
  return calls, failures
end

local function window_add(c, st, now, failed)
  local bucket = floordiv(now * BUCKETS, c.window)
  local slot = bucket % BUCKETS + 1
  local id
  if st.slot_field == WI[slot] then
    id = st.slot_id -- read with the rest of the state
  else
    id = tonumber(redis.call('HGET', st.key, WI[slot]))
  end
  if id ~= bucket then
    redis.call('HSET', st.key, WI[slot], string.format('%d', bucket), WC[slot], 1,
      WF[slot], failed and 1 or 0)
    -- A new slot every window/10 s refreshes the TTL; counting into a live slot need not.
    st.touched = true
  else
    redis.call('HINCRBY', st.key, WC[slot], 1)
    if failed then redis.call('HINCRBY', st.key, WF[slot], 1) end
  end
end

local function open(c, st, now, base, retry_after)
  st.state = OPEN
  st.open_for = base
  local extended = base
  if retry_after > base then extended = retry_after end
  st.open_until = now + math.min(extended, c.max_open_for)
  st.consecutive = 0
  st.probes = 0
  redis.call('HDEL', st.key, unpack(WALL))
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
  if c.rate >= 0 then window_add(c, st, now, failed) end
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

_LUA_ADMIT = r"""
-- KEYS: per candidate (state hash, rpm log, leases). Each admission answers {index, probe,
-- leased, (skip index, reason, retry_at)...}.
local function limits_check(c, st, rkey, lkey, now)
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

local function limits_take(c, rkey, lkey, now, token)
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

local function admitted(KEYS, i, c, st, probe, skips, now, token)
  local leased = limits_take(c, KEYS[3 * i - 1], KEYS[3 * i], now, token)
  save(st, c.ttl)
  local out = {i - 1, probe and 1 or 0, leased}
  for k = 1, #skips, 3 do
    if skips[k] < i - 1 then
      out[#out + 1], out[#out + 2], out[#out + 3] = skips[k], skips[k + 1], skips[k + 2]
    end
  end
  return out
end

local function admit_one(KEYS, cfg, n, now, force, token)
  local skips, seen, all_open = {}, {}, true
  for i = 1, n do
    local c = cfg(i)
    local st = load(KEYS[3 * i - 2])
    local reason, retry_at = nil, nil
    if c.breaker and st.state ~= CLOSED then reason, retry_at = breaker_check(c, st, now) end
    if not reason then
      reason, retry_at = limits_check(c, st, KEYS[3 * i - 1], KEYS[3 * i], now)
    end
    if not reason then
      local probe = c.breaker and breaker_take(c, st, now)
      return admitted(KEYS, i, c, st, probe, skips, now, token)
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
    if not limits_check(c, st, KEYS[3 * best - 1], KEYS[3 * best], now) then
      breaker_take(c, st, now)
      return admitted(KEYS, best, c, st, true, skips, now, token)
    end
  end
  local out = {-1, 0, 0}
  for k = 1, #skips do out[#out + 1] = skips[k] end
  return out
end

-- ARGV: m (admissions asked at once, answered in order), n (candidates), m x (now,
-- probe_when_all_open, token), then n x NCFG config values.
local function admit(KEYS, ARGV)
  local m, n = tonumber(ARGV[1]), tonumber(ARGV[2])
  local base, cfgs = 2 + 3 * m, {}
  local function cfg(i)
    local c = cfgs[i]
    if not c then
      c = config(ARGV, base + (i - 1) * NCFG)
      cfgs[i] = c
    end
    return c
  end
  local out = {}
  for j = 1, m do
    local o = 2 + 3 * (j - 1)
    out[j] = admit_one(KEYS, cfg, n, tonumber(ARGV[o + 1]), ARGV[o + 2] == '1', ARGV[o + 3])
  end
  return out
end
"""

_LUA_SETTLE = r"""
-- KEYS: state hash, leases. Returns the breaker's {state, open_until, open_for}, or 0.
local function settle_one(KEYS, c, now, outcome, probe, token, tokens, retry_after, duration)
  local st = load(KEYS[1], c.breaker and c.rate >= 0 and WI[slot_of(c, now)] or nil)
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
      st.tok_dirty = true
    end
  end
  if c.breaker then breaker_settle(c, st, outcome, now, probe, retry_after, duration) end
  save(st, c.ttl)
  if c.breaker and (st.dirty or st.state ~= CLOSED) then
    return {st.state, fmt(st.open_until), fmt(st.open_for)}
  end
  return 0
end

-- ARGV: m (outcomes, applied in order), m x (now, outcome, probe, token, tokens,
-- retry_after, duration), then the NCFG config values. Returns one answer per outcome.
local function settle(KEYS, ARGV)
  local m = tonumber(ARGV[1])
  local c = config(ARGV, 1 + 7 * m)
  local out = {}
  for j = 1, m do
    local o = 1 + 7 * (j - 1)
    out[j] = settle_one(KEYS, c, tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2]),
      ARGV[o + 3] == '1', ARGV[o + 4], tonumber(ARGV[o + 5]), tonumber(ARGV[o + 6]),
      tonumber(ARGV[o + 7]))
  end
  return out
end
"""

_LIBRARY_BODY = _LUA_COMMON + _LUA_ADMIT + _LUA_SETTLE
_VERSION = hashlib.sha1(_LIBRARY_BODY.encode()).hexdigest()[:16]
_LIBRARY = (
    f"#!lua name=msgflux_{_VERSION}\n"
    + _LIBRARY_BODY
    + f"redis.register_function('msgflux_admit_{_VERSION}', admit)\n"
    + f"redis.register_function('msgflux_settle_{_VERSION}', settle)\n"
)
"""Redis >= 7: one function library, loaded once; helpers are built at load, not per call.
The name carries a hash of the code, so gateways of different versions never run each other's
logic against one Redis."""


class _Script:
    """One operation, callable as a Redis function (``FCALL``) or a script (``EVALSHA``).

    Functions (Redis >= 7) skip rebuilding the helpers on every call; where FCALL is unknown
    or not allowed, the same code runs as a script, loaded the first time Redis says NOSCRIPT.
    """

    __slots__ = ("evalsha", "fcall", "source")

    def __init__(self, name: str, body: str) -> None:
        self.source = _LUA_COMMON + body + f"return {name}(KEYS, ARGV)\n"
        sha = hashlib.sha1(self.source.encode()).hexdigest()
        self.evalsha = bulk("EVALSHA") + bulk(sha)
        self.fcall = bulk("FCALL") + bulk(f"msgflux_{name}_{_VERSION}")


_INTS = [bulk(str(i)) for i in range(64)]
_EMPTY_BULK = bulk("")


def _int(value: int) -> bytes:
    return _INTS[value] if 0 <= value < 64 else bulk(str(value))


def _float(value: float) -> bytes:
    text = repr(float(value)).encode()
    return b"$%d\r\n%s\r\n" % (len(text), text)


_ADMIT = _Script("admit", _LUA_ADMIT)
_SETTLE = _Script("settle", _LUA_SETTLE)
_NCFG = 15
"""Config values per policy (the Lua NCFG)."""
_MAX_BATCH = 64
"""Most operations one Lua call carries (a batch holds Redis for a few µs per operation)."""


class _Shape:
    """The fixed part of one operation's command for given deployments, encoded once.

    ``FCALL name numkeys keys... m [n] ops... config...``: ``m`` operations of ``per_op``
    arguments each ride in one call and are applied in order, each atomically.
    """

    __slots__ = ("count", "middle", "per_op", "prefix", "suffix")

    def __init__(self, count: int, per_op: int, prefix: bytes, middle: bytes, suffix: bytes):
        self.count = count
        self.per_op = per_op
        self.prefix = prefix
        self.middle = middle
        self.suffix = suffix

    def frame(self, head: bytes, ops: Sequence[bytes]) -> bytes:
        m = len(ops)
        return b"".join(
            (
                header(self.count + self.per_op * m),
                head,
                self.prefix,
                _int(m),
                self.middle,
                *ops,
                self.suffix,
            )
        )


class _Reload(Exception):
    """Retry this operation alone, on the path that connects and loads the Lua if needed."""


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
    """What a policy sends with every call, encoded once: keys and config, in wire format."""

    __slots__ = ("admit_keys", "cfg", "keys", "needs_token", "settle")

    def __init__(self, prefix: str, policy: Policy) -> None:
        self.keys = (
            f"{prefix}s:{policy.key}",
            f"{prefix}r:{policy.key}",
            f"{prefix}l:{policy.key}",
        )
        self.admit_keys = b"".join(bulk(k) for k in self.keys)
        args = _config_args(policy)
        assert len(args) == _NCFG
        self.cfg = b"".join(bulk(a) for a in args)
        self.needs_token = policy.rpm is not None or policy.max_concurrency is not None
        settle_keys = _INTS[2] + bulk(self.keys[0]) + bulk(self.keys[2])
        self.settle = _Shape(2 + 1 + 2 + 1 + _NCFG, 7, settle_keys, b"", self.cfg)


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
        known = self._states.get(policy.key)
        if known is not None and known.state == state and known.open_until == open_until:
            return  # the common case, read without the lock (a stale read only costs the lock)
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
        self._lock = threading.RLock()  # re-entrant: settle() may run from a GC finalizer
        try:
            ep = endpoint(url)
        except ValueError as exc:
            raise ValueError(f"RedisState url {_redact(url)!r} is not usable: {exc}") from None
        self._pipe = SyncPipe(ep, self.timeout)
        self._apipe = AsyncPipe(ep, self.timeout)
        self._sync: redis.Redis | None = None
        self._healthy = True
        self._unhealthy_since: float | None = None
        self._outages = 0
        self._local_calls = 0
        self._last_error: str | None = None
        self._last_warning = -math.inf
        self._timeouts = 0
        self._shapes: dict[tuple[Policy, ...], tuple[int, _Shape, bool]] = {}
        self._pending: dict[
            asyncio.AbstractEventLoop,
            dict[_Shape, tuple[_Script, list[bytes], list[asyncio.Future[Any]]]],
        ] = {}
        self._functions = True
        """Call the Lua as Redis functions; False once FCALL proved unavailable here."""
        self._watching = False
        self._closed = threading.Event()

    def __repr__(self) -> str:
        return (
            f"RedisState({_redact(self.url)!r}, namespace={self.namespace!r}, "
            f"timeout={self.timeout!r})"
        )

    # -- clients ----------------------------------------------------------------------------
    def _client(self) -> redis.Redis:
        """redis-py, for what is not on the per-call path (snapshots, SCAN, deletes)."""
        client = self._sync
        if client is None:
            with self._lock:
                client = self._sync
                if client is None:
                    client = self._sync = redis.Redis.from_url(
                        self.url,
                        socket_timeout=self.timeout,
                        socket_connect_timeout=self.timeout,
                        health_check_interval=0,
                        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
                    )
        return client

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
                self._pipe.call("PING")
            except (RedisError, OSError) as exc:
                self._down(exc)
            else:
                with self._lock:
                    if self._healthy:
                        self._watching = False
                        return
        while not self._closed.wait(self.retry_interval):
            try:
                self._pipe.call("PING")
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

    def _admit_shape(self, candidates: Sequence[Policy]) -> tuple[int, _Shape, bool]:
        """(index of the first inactive candidate or -1, the command shape, needs a token)."""
        key = tuple(candidates)
        cached = self._shapes.get(key)
        if cached is not None:
            return cached
        keys: list[bytes] = []
        cfgs: list[bytes] = []
        needs_token = False
        stop = -1
        for i, policy in enumerate(candidates):
            if not policy.active:
                stop = i
                break
            c = self._compile(policy)
            keys.append(c.admit_keys)
            cfgs.append(c.cfg)
            needs_token = needs_token or c.needs_token
        n = len(keys)
        shape = _Shape(
            2 + 1 + 3 * n + 1 + 1 + _NCFG * n,
            3,
            _int(3 * n) + b"".join(keys),
            _int(n),
            b"".join(cfgs),
        )
        if len(self._shapes) >= 512:  # candidate orders are few; this only bounds the cache
            self._shapes.clear()
        self._shapes[key] = (stop, shape, needs_token)
        return stop, shape, needs_token

    def _admit_op(self, now: float, force: bool, needs_token: bool) -> tuple[bytes, str]:
        token = f"{self._instance}:{next(self._ids)}" if needs_token else ""
        op = b"".join(
            (_float(now), _INTS[1] if force else _INTS[0], bulk(token) if token else _EMPTY_BULK)
        )
        return op, token

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

    @staticmethod
    def _settle_op(s: Settlement) -> bytes:
        admission = s.admission
        token = admission.token
        retry_after = s.retry_after
        return b"".join(
            (
                _float(s.now),
                _int(s.outcome),
                _INTS[1] if admission.probe else _INTS[0],
                bulk(token) if token else _EMPTY_BULK,
                _int(int(s.tokens)),
                _float(retry_after) if retry_after else _INTS[0],
                _float(s.duration),
            )
        )

    def _functions_unusable(self, exc: ResponseError) -> bool:
        """Did FCALL fail because functions are missing here (True) or for another reason?"""
        message = str(exc)
        if "Function not found" in message:
            return True
        if "unknown command" in message.lower() or message.startswith("NOPERM"):
            self._functions = False  # Redis < 7, or an ACL without FUNCTION/FCALL
            return True
        return False

    def _run(self, script: _Script, shape: _Shape, ops: Sequence[bytes]) -> Any:
        """One Lua call, one round trip (a second and third only when loading the code)."""
        pipe = self._pipe
        if self._functions:
            try:
                return pipe.call_packed(shape.frame(script.fcall, ops))
            except ResponseError as exc:
                if not self._functions_unusable(exc):
                    raise
            if self._functions:
                try:
                    pipe.call("FUNCTION", "LOAD", "REPLACE", _LIBRARY)
                except ResponseError:
                    self._functions = False
                else:
                    return pipe.call_packed(shape.frame(script.fcall, ops))
        frame = shape.frame(script.evalsha, ops)
        try:
            return pipe.call_packed(frame)
        except NoScriptError:
            pipe.call("SCRIPT", "LOAD", script.source)
            return pipe.call_packed(frame)

    async def _arun(self, script: _Script, shape: _Shape, ops: Sequence[bytes]) -> Any:
        """Async :meth:`_run`."""
        pipe = self._apipe
        if self._functions:
            try:
                return await pipe.call_packed(shape.frame(script.fcall, ops))
            except ResponseError as exc:
                if not self._functions_unusable(exc):
                    raise
            if self._functions:
                try:
                    await pipe.call("FUNCTION", "LOAD", "REPLACE", _LIBRARY)
                except ResponseError:
                    self._functions = False
                else:
                    return await pipe.call_packed(shape.frame(script.fcall, ops))
        frame = shape.frame(script.evalsha, ops)
        try:
            return await pipe.call_packed(frame)
        except NoScriptError:
            await pipe.call("SCRIPT", "LOAD", script.source)
            return await pipe.call_packed(frame)

    async def _acall(self, script: _Script, shape: _Shape, op: bytes) -> Any:
        """One operation, sent together with the same operations on the same deployments
        that other tasks of this event loop start in the same loop iteration.

        One Lua call then applies them one after the other (each exactly as if sent alone;
        concurrent operations may be applied in any order), which saves Redis and this
        process the per-command work for all but the first.
        """
        loop = asyncio.get_running_loop()
        if not self._apipe.ready(loop):
            return (await self._arun(script, shape, (op,)))[0]
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = {}
            loop.call_soon(self._flush, loop, pending)
        batch = pending.get(shape)
        if batch is None:
            batch = pending[shape] = (script, [], [])
        fut: asyncio.Future[Any] = loop.create_future()
        batch[1].append(op)
        batch[2].append(fut)
        try:
            return await fut
        except _Reload:
            return (await self._arun(script, shape, (op,)))[0]

    def _flush(
        self,
        loop: asyncio.AbstractEventLoop,
        pending: dict[_Shape, tuple[_Script, list[bytes], list[asyncio.Future[Any]]]],
    ) -> None:
        if self._pending.get(loop) is pending:
            del self._pending[loop]
        proto = self._apipe.ready(loop)
        for shape, (script, ops, futures) in pending.items():
            for start in range(0, len(ops), _MAX_BATCH):
                waiting = futures[start : start + _MAX_BATCH]
                if proto is None:  # the connection dropped meanwhile: each goes alone
                    for fut in waiting:
                        if not fut.done():
                            fut.set_exception(_Reload())
                    continue
                head = script.fcall if self._functions else script.evalsha
                sent = proto.send(shape.frame(head, ops[start : start + _MAX_BATCH]))
                sent.add_done_callback(functools.partial(_distribute, waiting))
        if proto is not None:
            proto.flush()

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
        stop, shape, needs_token = self._admit_shape(candidates)
        op, token = self._admit_op(now, probe_when_all_open and stop < 0, needs_token)
        try:
            raw = self._run(_ADMIT, shape, (op,))[0]
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return self._local_admit(candidates, now, probe_when_all_open)
        return self._finish_admit(candidates, raw, token, stop)

    async def aadmit(
        self, candidates: Sequence[Policy], now: float, probe_when_all_open: bool = False
    ) -> Admission:
        """Async :meth:`admit` (one pipelined connection per event loop)."""
        if not candidates:
            return NOBODY
        if not candidates[0].active:
            return FIRST
        if not self._healthy:
            return self._local_admit(candidates, now, probe_when_all_open)
        stop, shape, needs_token = self._admit_shape(candidates)
        op, token = self._admit_op(now, probe_when_all_open and stop < 0, needs_token)
        try:
            raw = await self._acall(_ADMIT, shape, op)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return self._local_admit(candidates, now, probe_when_all_open)
        return self._finish_admit(candidates, raw, token, stop)

    def settle(self, s: Settlement) -> None:
        """One atomic script: free the lease and probe slot, count tokens, move the breaker."""
        policy = s.policy
        if not policy.active:
            return
        if isinstance(s.admission.token, str) and self._healthy:
            op = self._settle_op(s)
            try:
                raw = self._run(_SETTLE, self._compile(policy).settle, (op,))[0]
                self._learn_settle(policy, raw)
                return
            except (RedisError, OSError) as exc:
                self._failed(exc)
        self._local.settle(_as_local(s))

    async def asettle(self, s: Settlement) -> None:
        """Async :meth:`settle`."""
        policy = s.policy
        if not policy.active:
            return
        if isinstance(s.admission.token, str) and self._healthy:
            op = self._settle_op(s)
            try:
                raw = await self._acall(_SETTLE, self._compile(policy).settle, op)
                self._learn_settle(policy, raw)
                return
            except (RedisError, OSError) as exc:
                self._failed(exc)
        self._local.settle(_as_local(s))

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
            pipe.hgetall(keys[0])
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
        """Forget these deployments' state (the whole namespace when None), here and in Redis.

        Raises the Redis error when Redis cannot be reached (the local state is reset anyway).
        """
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
        """Stop the background watcher and close the sync connections.

        Async connections close with their event loop (or call :meth:`aclose` inside it).
        """
        self._closed.set()
        self._pipe.close()
        client, self._sync = self._sync, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close this event loop's connection (reopened if the store is used again)."""
        await self._apipe.aclose()


def _fail_all(futures: Sequence[asyncio.Future[Any]], error: BaseException) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_exception(error)


def _needs_loading(exc: BaseException) -> bool:
    if isinstance(exc, NoScriptError):
        return True
    if isinstance(exc, ResponseError):
        message = str(exc)
        return (
            "Function not found" in message
            or "unknown command" in message.lower()
            or message.startswith("NOPERM")
        )
    return False


def _distribute(futures: list[asyncio.Future[Any]], sent: asyncio.Future[Any]) -> None:
    """Hand each operation of a batch its own answer (or the batch's error)."""
    if sent.cancelled():
        _fail_all(futures, RedisConnectionError("Redis call cancelled"))
        return
    exc = sent.exception()
    if exc is not None:
        for fut in futures:
            if not fut.done():
                fut.set_exception(_Reload() if _needs_loading(exc) else exc)
        return
    for fut, answer in zip(futures, sent.result(), strict=False):
        if not fut.done():
            fut.set_result(answer)


def _as_local(s: Settlement) -> Settlement:
    """A settlement of an admission of Redis's, settled locally: nothing of the local leases
    is held."""
    adm = s.admission
    if not isinstance(adm.token, str):
        return s
    local = Admission(adm.index, adm.probe, adm.skips, 0.0)
    return Settlement(s.policy, local, s.outcome, s.now, s.tokens, s.retry_after, s.duration)


def _decode_state(
    fields: dict[bytes, bytes],
    requests: list[tuple[bytes, float]],
    leases: list[tuple[bytes, float]],
) -> DeploymentState:
    """The stored data as the :class:`DeploymentState` the pure functions work on."""

    def num(name: bytes) -> float:
        value = fields.get(name)
        return float(value) if value is not None else 0.0

    def ring(name: bytes) -> list[int]:
        value = fields.get(name)
        return [int(v) for v in value.split(b",")] if value else []

    win_ids: list[int] = []
    win_calls: list[int] = []
    win_fails: list[int] = []
    if any(b"wi%d" % i in fields for i in range(BUCKETS)):
        for i in range(BUCKETS):
            bucket = fields.get(b"wi%d" % i)
            win_ids.append(int(bucket) if bucket is not None else _EMPTY_SLOT)
            win_calls.append(int(fields.get(b"wc%d" % i, 0)))
            win_fails.append(int(fields.get(b"wf%d" % i, 0)))
    return DeploymentState(
        state=int(num(b"s")),
        consecutive=int(num(b"c")),
        open_until=num(b"ou"),
        open_for=num(b"of"),
        probes=int(num(b"p")),
        probe_until=num(b"pu"),
        win_ids=win_ids,
        win_calls=win_calls,
        win_fails=win_fails,
        requests=deque(score for _, score in requests),
        tok_ids=ring(b"ti"),
        tok_vals=ring(b"tv"),
        leases=[score for _, score in leases],
    )


assert _EMPTY_SLOT == -4611686018427387904  # the Lua EMPTY constant
