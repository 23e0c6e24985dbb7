-- Admit one request of a client key, atomically (msgflux.server.limits_redis). The windows are
-- the gateway's (models/gateway/limits.py, redis/lua/admit.lua): an exact rpm log, tokens in
-- 1-second buckets over 60 s, concurrency leases that expire; plus the spend of the budget's
-- period. tests/server/test_key_limits.py replays one table of steps on this and on the
-- Python of msgflux.server.limits and compares every answer.
--
-- KEYS: rpm log (zset: token -> admit time), leases (zset: token -> expiry), tokens (hash:
--   second -> tokens), spend of the current period (string, USD).
-- ARGV: now, token, rpm, tpm, max_concurrency, lease, budget usd (-1: no such limit).
-- Returns {0} (admitted), or {reason, retry_at ('' when unknown), spent}, reason 1 budget,
-- 2 max_concurrency, 3 rpm, 4 tpm.
local now, token = tonumber(ARGV[1]), ARGV[2]
local rpm, tpm, conc = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local lease, budget = tonumber(ARGV[6]), tonumber(ARGV[7])
local MINUTE, MARGIN = 60.0, 60000

local function fmt(x) return string.format('%.17g', x) end

if budget >= 0 then
  local spent = tonumber(redis.call('GET', KEYS[4]) or '0')
  if spent >= budget then return {1, '', fmt(spent)} end
end
if conc >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', fmt(now))
  if redis.call('ZCARD', KEYS[2]) >= conc then return {2, '', '0'} end
end
if rpm >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now - MINUTE))
  if redis.call('ZCARD', KEYS[1]) >= rpm then
    local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {3, fmt(tonumber(first[2]) + MINUTE), '0'}
  end
end
if tpm >= 0 then
  local all = redis.call('HGETALL', KEYS[3])
  local current = math.floor(now)
  local live, stale, total = {}, {}, 0
  for i = 1, #all, 2 do
    local second, count = tonumber(all[i]), tonumber(all[i + 1])
    if current - second < 60 then
      live[#live + 1] = {second, count}
      total = total + count
    else
      stale[#stale + 1] = all[i]
    end
  end
  if #stale > 0 then redis.call('HDEL', KEYS[3], unpack(stale)) end
  if total >= tpm then
    table.sort(live, function(a, b) return a[1] < b[1] end)
    local retry_at = current + 60
    for i = 1, #live do
      total = total - live[i][2]
      if total < tpm then
        retry_at = live[i][1] + 60
        break
      end
    end
    return {4, fmt(retry_at), '0'}
  end
end
if rpm >= 0 then
  redis.call('ZADD', KEYS[1], fmt(now), token)
  redis.call('PEXPIRE', KEYS[1], MINUTE * 1000 + MARGIN)
end
if conc >= 0 then
  redis.call('ZADD', KEYS[2], fmt(now + lease), token)
  redis.call('PEXPIRE', KEYS[2], math.ceil(lease * 1000) + MARGIN)
end
return {0}
