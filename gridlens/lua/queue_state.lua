-- The queue's depth, read-only.
-- KEYS[1] stream   KEYS[2] reservations   ARGV[1] consumer group
-- Returns {waiting, pending, delayed, delayed reads}.
return {queue_depth(KEYS[1], KEYS[2], ARGV[1], server_time_us(), false)}
