-- A transcription of breaker.py / limits.py / state.py (see tests/gateway/test_redis_state.py,
-- which drives both with one table of vectors). Times are epoch seconds given by the caller
-- (so a test clock works and processes agree); floats travel as "%.17g" strings, which
-- round-trip exactly, and integers as "%d".

-- Constants filled in from Python (msgflux.models.gateway.redis.scripts), so the two copies of
-- the logic cannot disagree on them.
local CLOSED, OPEN, HALF = {CLOSED}, {OPEN}, {HALF}
local BUCKETS, TPM_BUCKETS, MINUTE = {BUCKETS}, {TPM_BUCKETS}, {MINUTE}
local EMPTY = {EMPTY}
local R_OPEN, R_HALF, R_CONC, R_RPM, R_TPM = {R_OPEN}, {R_HALF}, {R_CONC}, {R_RPM}, {R_TPM}
local NCFG = {NCFG}

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
