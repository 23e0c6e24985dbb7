-- Settle one admitted request of a client key (msgflux.server.limits_redis): free its lease,
-- count its tokens in the current second's bucket and its cost in the period's spend.
--
-- KEYS: leases (zset), tokens (hash: second -> tokens), spend of the current period (string).
-- ARGV: now, token ('' when it holds no lease), tokens, cost (USD), spend ttl (ms).
local now, token = tonumber(ARGV[1]), ARGV[2]
local tokens, cost = tonumber(ARGV[3]), tonumber(ARGV[4])
if token ~= '' then redis.call('ZREM', KEYS[1], token) end
if tokens > 0 then
  redis.call('HINCRBY', KEYS[2], string.format('%d', math.floor(now)), tokens)
  redis.call('PEXPIRE', KEYS[2], 120000)
end
if cost > 0 then
  redis.call('INCRBYFLOAT', KEYS[3], ARGV[4])
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
end
return 0
