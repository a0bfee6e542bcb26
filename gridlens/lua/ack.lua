-- Jobs are done: acknowledge and delete their entries, count them, read new
-- entries for the slots they free, and read the queue's depth. One call
-- acknowledges every job that committed while the consumer's previous call was
-- out (consumer/acks.py).
--
-- KEYS[1] stream   KEYS[2] errors (hash)   KEYS[3] completed (counter)
-- KEYS[4] reads ingested in this second (counter)   KEYS[5] reservations
-- ARGV[1] consumer group   ARGV[2] counter TTL, s   ARGV[3] reads inserted by these jobs
-- ARGV[4] consumer   ARGV[5] new entries to read for it (0: none)   ARGV[6..] entry ids
--
-- Returns {waiting, pending, delayed, delayed reads, new entries} after both; the new
-- entries as XREADGROUP gives them ({{id, {field, value, …}}, …}; {} when none).
local ids = {unpack(ARGV, 6)}
redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
redis.call('XDEL', KEYS[1], unpack(ids))
redis.call('HDEL', KEYS[2], unpack(ids))
redis.call('INCRBY', KEYS[3], #ids)
if tonumber(ARGV[3]) > 0 then
  redis.call('INCRBY', KEYS[4], ARGV[3])
  redis.call('EXPIRE', KEYS[4], ARGV[2])
end
local fresh = {}
if tonumber(ARGV[5]) > 0 then
  local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[4], 'COUNT', ARGV[5],
                           'STREAMS', KEYS[1], '>')
  if reply then
    fresh = reply[1][2]
  end
end
local depth = {queue_depth(KEYS[1], KEYS[5], ARGV[1], server_time_us(), false)}
depth[#depth + 1] = fresh
return depth
