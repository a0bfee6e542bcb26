-- Admission of a publish, atomically: backpressure check, job reservation, cursor claim.
--
-- KEYS[1] stream   KEYS[2] reservations (hash)   KEYS[3] the tenant's cursor
-- ARGV[1] consumer group   ARGV[2] publish id   ARGV[3] jobs   ARGV[4] reads
-- ARGV[5] max depth (waiting + delayed above this refuses)   ARGV[6] lease, µs
-- ARGV[7] the cursor the plan was made from ("" when unset)   ARGV[8] the cursor after it
--
-- Returns {1, waiting, delayed} when admitted, {0, waiting, delayed} when refused,
-- {2, current cursor} when another publish moved the cursor (re-plan and retry).
-- A publish admitted already (its admission is being confirmed again) stays admitted; its
-- lease is refreshed, a write of its own that the caller's WAIT then waits for.
local now = server_time_us()
local lease = tonumber(ARGV[6])

local held = redis.call('HGET', KEYS[2], ARGV[2])
if held then
  local jobs, reads = string.match(held, '^(%d+):(%d+):%d+$')
  redis.call('HSET', KEYS[2], ARGV[2], jobs .. ':' .. reads .. ':' .. string.format('%d', now + lease))
  redis.call('PEXPIRE', KEYS[2], math.ceil(lease / 1000))
  local waiting, _, delayed = queue_depth(KEYS[1], KEYS[2], ARGV[1], now, false)
  return {1, waiting, delayed - tonumber(jobs)}
end

local cursor = redis.call('GET', KEYS[3]) or ''
if cursor ~= ARGV[7] then
  return {2, cursor}
end

local waiting, _, delayed = queue_depth(KEYS[1], KEYS[2], ARGV[1], now, true)
if waiting + delayed > tonumber(ARGV[5]) then
  return {0, waiting, delayed}
end

redis.call('HSET', KEYS[2], ARGV[2], ARGV[3] .. ':' .. ARGV[4] .. ':' .. string.format('%d', now + lease))
redis.call('PEXPIRE', KEYS[2], math.ceil(lease / 1000))
if ARGV[8] == '1' then
  redis.call('DEL', KEYS[3])
else
  redis.call('SET', KEYS[3], ARGV[8])
end
return {1, waiting, delayed}
