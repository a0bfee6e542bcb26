-- Shared functions, prepended to every script of this folder when it is loaded.
--
-- waiting: entries in the stream not yet delivered to the group. Acknowledged entries
-- are deleted, so the stream holds exactly the waiting and the pending ones (no XINFO
-- "lag" needed, which Redis 6.2 lacks).
-- pending: delivered to a consumer, not yet acknowledged.
-- delayed: jobs reserved by publishes in progress whose lease is live, and their reads.
local function stream_depth(stream, group)
  local length = redis.call('XLEN', stream)
  local pending = 0
  local summary = redis.pcall('XPENDING', stream, group)
  if type(summary) == 'table' and summary.err == nil then
    pending = tonumber(summary[1])
  end
  return math.max(length - pending, 0), pending
end

local function queue_depth(stream, reservations, group, now, drop_expired)
  local waiting, pending = stream_depth(stream, group)
  local delayed, delayed_reads = 0, 0
  local entries = redis.call('HGETALL', reservations)
  for i = 1, #entries, 2 do
    local jobs, reads, expires = string.match(entries[i + 1], '^(%d+):(%d+):(%d+)$')
    if tonumber(expires) < now then
      if drop_expired then redis.call('HDEL', reservations, entries[i]) end
    else
      delayed = delayed + tonumber(jobs)
      delayed_reads = delayed_reads + tonumber(reads)
    end
  end
  return waiting, pending, delayed, delayed_reads
end

local function server_time_us()
  local clock = redis.call('TIME')
  return tonumber(clock[1]) * 1000000 + tonumber(clock[2])
end
