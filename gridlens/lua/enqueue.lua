-- Enqueue one job if the shared rate limit allows it now, by the Redis server's clock.
--
-- Two rules, both by server time, shared by every API process:
--   * the hard cap: the reads enqueued in the last `window` µs, plus these, stay within
--     `cap` (the window is a millisecond longer than a second, so that any 1-second
--     window of stream entry ids also holds at most `cap` reads);
--   * even pacing: after n reads the next job waits n / cap seconds.
-- The check, the XADD and the bookkeeping are one atomic step.
--
-- KEYS[1] stream   KEYS[2] rate log (zset)   KEYS[3] next allowed time   KEYS[4] reservations
-- KEYS[5] reads enqueued by second (hash: unix second -> reads, for the live page)
-- ARGV[1] entry field   ARGV[2] entry   ARGV[3] reads in the entry   ARGV[4] cap (reads/s)
-- ARGV[5] window, µs   ARGV[6] publish id   ARGV[7] reads reserved for this job   ARGV[8] lease, µs
-- ARGV[9] 1: a written job settles its reservation (0: a copy of one that may have done so)
-- ARGV[10] seconds KEYS[5] keeps
--
-- Returns {1, entry id, server time in µs} when enqueued, {0, µs to wait} when not yet.
local now = server_time_us()
local reads = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local lease = tonumber(ARGV[8])

-- The reservation of this publish: refresh its lease; on success, one job fewer.
local function settle(done)
  local value = redis.call('HGET', KEYS[4], ARGV[6])
  if not value then return end
  local jobs, reserved = string.match(value, '^(%d+):(%d+):%d+$')
  jobs, reserved = tonumber(jobs), tonumber(reserved)
  if done then
    jobs = jobs - 1
    reserved = reserved - tonumber(ARGV[7])
  end
  if jobs <= 0 then
    redis.call('HDEL', KEYS[4], ARGV[6])
  else
    redis.call('HSET', KEYS[4], ARGV[6], jobs .. ':' .. math.max(reserved, 0) .. ':' .. string.format('%d', now + lease))
    redis.call('PEXPIRE', KEYS[4], math.ceil(lease / 1000))
  end
end

-- This job's reads in its second's count; older seconds are trimmed once a minute's
-- worth have piled up, not on every job.
local function count_second()
  local keep = tonumber(ARGV[10])
  local second = math.floor(now / 1000000)
  redis.call('HINCRBY', KEYS[5], second, reads)
  if redis.call('HLEN', KEYS[5]) > keep + 60 then
    for _, field in ipairs(redis.call('HKEYS', KEYS[5])) do
      if tonumber(field) <= second - keep then redis.call('HDEL', KEYS[5], field) end
    end
  end
  redis.call('EXPIRE', KEYS[5], keep)
end

local next_allowed = tonumber(redis.call('GET', KEYS[3]) or '0')
if now < next_allowed then
  settle(false)
  return {0, next_allowed - now}
end

redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
local recent = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
local total = 0
for i = 1, #recent, 2 do
  total = total + tonumber(string.match(recent[i], '^(%d+):'))
end
if total + reads > cap then
  -- Wait until enough of the oldest reads have left the window.
  local excess, freed = total + reads - cap, 0
  for i = 1, #recent, 2 do
    freed = freed + tonumber(string.match(recent[i], '^(%d+):'))
    if freed >= excess then
      settle(false)
      return {0, tonumber(recent[i + 1]) + window - now + 1}
    end
  end
  settle(false)
  return {0, window}
end

local id = redis.call('XADD', KEYS[1], '*', ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now, reads .. ':' .. id)
redis.call('PEXPIRE', KEYS[2], math.ceil(window / 1000) + 1000)
local spacing = math.floor(reads * 1000000 / cap)
redis.call('SET', KEYS[3], string.format('%d', now + spacing), 'PX', math.ceil(spacing / 1000) + 1000)
settle(ARGV[9] == '1')
count_second()
return {1, id, now}
