-- The end of a publish: drop its reservation; if it failed part-way, give the tenant's
-- cursor back (unless another publish has moved it since).
--
-- KEYS[1] reservations   KEYS[2] the tenant's cursor
-- ARGV[1] publish id   ARGV[2] cursor this publish set ("" = none to give back)
-- ARGV[3] cursor to restore ("" = unset)
redis.call('HDEL', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then
  local current = redis.call('GET', KEYS[2]) or '1'
  if current == ARGV[2] then
    if ARGV[3] == '' then
      redis.call('DEL', KEYS[2])
    else
      redis.call('SET', KEYS[2], ARGV[3])
    end
  end
end
return 1
