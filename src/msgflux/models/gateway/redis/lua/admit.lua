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
