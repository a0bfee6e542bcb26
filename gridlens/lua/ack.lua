-- A job is done: acknowledge and delete its entry, count it, and read the queue's depth.
--
-- KEYS[1] stream   KEYS[2] errors (hash)   KEYS[3] completed (counter)
-- KEYS[4] reads ingested in this second (counter)   KEYS[5] reservations
-- ARGV[1] consumer group   ARGV[2] entry id   ARGV[3] reads inserted   ARGV[4] counter TTL, s
--
-- Returns {waiting, pending, delayed, delayed reads} after the acknowledgement.
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('INCR', KEYS[3])
if tonumber(ARGV[3]) > 0 then
  redis.call('INCRBY', KEYS[4], ARGV[3])
  redis.call('EXPIRE', KEYS[4], ARGV[4])
end
return {queue_depth(KEYS[1], KEYS[5], ARGV[1], server_time_us(), false)}
