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
