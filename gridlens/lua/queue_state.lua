-- The queue's depth, read-only.
-- KEYS[1] stream   KEYS[2] reservations   ARGV[1] consumer group
-- Returns {waiting, delayed, delayed reads}.
local waiting, delayed, delayed_reads = queue_depth(KEYS[1], KEYS[2], ARGV[1], server_time_us(), false)
return {waiting, delayed, delayed_reads}
