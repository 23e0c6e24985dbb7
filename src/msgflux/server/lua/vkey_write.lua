-- Write one virtual key record if it is still what the writer read, bump the version every
-- process polls, and append the change to the audit stream, atomically
-- (msgflux.server.keystore). The three keys share the hash tag {msgflux:vkeys}: one slot.
--
-- KEYS: records (hash: name -> JSON), version (integer), audit (stream).
-- ARGV: name, new record JSON, the record JSON the writer read ('' when it expects none),
--   audit entry JSON.
-- Returns the new version, or 0 when the record changed meanwhile (or exists, for a create).
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[3] == '' then
  if current then return 0 end
elseif current ~= ARGV[3] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local version = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], '*', 'entry', ARGV[4])
return version
