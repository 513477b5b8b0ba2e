"""The Lua scripts the Redis store decides with: each one round trip, atomic on the server,
timed by the server's own clock (``TIME``). ``redis_store`` says what they are for."""

# KEYS: the idempotency key (or the prefix alone when there is none), then the windows:
#       the customer's first, the budgets last.
# ARGV: number of windows, number of customer windows, fingerprint, in-flight µs, ttl ms,
#       a unique id for this request's entries, then limit and length in µs for each window;
#       then, with coin budgets (coins.py), their number and limit, length in µs and coins
#       reserved for each, whose KEYS follow the windows': a sorted set of "<id>:<coins>"
#       members scored by time, and a counter of their coins.
# Returns {0, remaining1, reset1_us, ...} when admitted, {1, wait_us, remaining1, reset1_us, ...}
#       when a customer window is full, {2, wait_us} budget spent, {3, answer} replay,
#       {4, wait_us} in flight, {5} key reused, {6} lost, {7, wait_us} a coin budget spent.
ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- Lua 5.1's tostring keeps 14 digits; microsecond times need 16.
local function int(x) return string.format('%.0f', x) end
local n, ncust = tonumber(ARGV[1]), tonumber(ARGV[2])
local claim = ARGV[3] ~= ''
if claim then
  local rec = redis.call('HMGET', KEYS[1], 'f', 's', 'd', 'a')
  if rec[1] then
    if rec[1] ~= ARGV[3] then return {5} end
    if rec[2] == 'done' then return {3, rec[4]} end
    local deadline = tonumber(rec[3])
    if now < deadline then return {4, deadline - now} end
    return {6}
  end
end
local counts, waits, oldest = {}, {}, {}
local cwait, bwait = 0, 0
for i = 1, n do
  local key, limit, len = KEYS[i + 1], tonumber(ARGV[5 + 2 * i]), tonumber(ARGV[6 + 2 * i])
  -- Entries at or before now - len have left the window; the set never holds more than limit.
  redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now - len))
  local c = redis.call('ZCARD', key)
  local old, w = now, 0
  if c > 0 then
    old = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2])
    if c >= limit then w = old + len - now end
  end
  counts[i], waits[i], oldest[i] = c, w, old
  if i <= ncust then
    if w > cwait then cwait = w end
  elseif w > bwait then bwait = w end
end
if cwait > 0 then
  local out = {1, cwait}
  for i = 1, ncust do
    local limit, len = tonumber(ARGV[5 + 2 * i]), tonumber(ARGV[6 + 2 * i])
    local reset = waits[i]
    if reset == 0 then reset = oldest[i] + len - now end
    out[#out + 1] = math.max(0, limit - counts[i])
    out[#out + 1] = reset
  end
  return out
end
local nk = tonumber(ARGV[7 + 2 * n]) or 0
local kwait = 0
for j = 1, nk do
  local zkey, skey = KEYS[n + 2 * j], KEYS[n + 2 * j + 1]
  local at = 7 + 2 * n + 3 * j
  local limit, len, want = tonumber(ARGV[at - 2]), tonumber(ARGV[at - 1]), tonumber(ARGV[at])
  local gone = redis.call('ZRANGEBYSCORE', zkey, '-inf', int(now - len))
  if #gone > 0 then
    local freed = 0
    for _, m in ipairs(gone) do freed = freed + tonumber(string.match(m, ':(%d+)$')) end
    redis.call('DECRBY', skey, freed)
    redis.call('ZREMRANGEBYSCORE', zkey, '-inf', int(now - len))
  end
  local excess = tonumber(redis.call('GET', skey) or '0') + want - limit
  if excess > 0 then
    -- The wait is until enough of the oldest entries leave the window: read oldest first,
    -- a page at a time, at most ten pages (past them, the window's whole length: never early).
    local w, from = len, 0
    while excess > 0 and from < 1000 do
      local page = redis.call('ZRANGE', zkey, from, from + 99, 'WITHSCORES')
      if #page == 0 then break end
      for i = 1, #page, 2 do
        excess = excess - tonumber(string.match(page[i], ':(%d+)$'))
        if excess <= 0 then w = tonumber(page[i + 1]) + len - now; break end
      end
      from = from + 100
    end
    if w > kwait then kwait = w end
  end
end
if kwait > 0 then return {7, kwait} end
if bwait > 0 then return {2, bwait} end
local out = {0}
local member = ARGV[6]
for j = 1, nk do
  local zkey, skey = KEYS[n + 2 * j], KEYS[n + 2 * j + 1]
  local at = 7 + 2 * n + 3 * j
  local ttl = math.ceil(tonumber(ARGV[at - 1]) / 1000)
  redis.call('ZADD', zkey, int(now), member .. ':' .. ARGV[at])
  redis.call('INCRBY', skey, ARGV[at])
  redis.call('PEXPIRE', zkey, ttl)
  redis.call('PEXPIRE', skey, ttl)
end
for i = 1, n do
  local key, limit, len = KEYS[i + 1], tonumber(ARGV[5 + 2 * i]), tonumber(ARGV[6 + 2 * i])
  redis.call('ZADD', key, int(now), member)
  if counts[i] + 1 > limit then redis.call('ZREMRANGEBYRANK', key, 0, counts[i] - limit) end
  redis.call('PEXPIRE', key, math.ceil(len / 1000))
  if i <= ncust then
    out[#out + 1] = limit - counts[i] - 1
    out[#out + 1] = oldest[i] + len - now
  end
end
if claim then
  redis.call('HSET', KEYS[1], 'f', ARGV[3], 's', 'run', 'd', int(now + tonumber(ARGV[4])))
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
return out
"""

# KEYS: the idempotency key. Returns ADMIT's answer for a used key, {-1} for a fresh one.
RECALL = """
local rec = redis.call('HMGET', KEYS[1], 'f', 's', 'd', 'a')
if not rec[1] then return {-1} end
if rec[1] ~= ARGV[1] then return {5} end
if rec[2] == 'done' then return {3, rec[4]} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local deadline = tonumber(rec[3])
if now < deadline then return {4, deadline - now} end
return {6}
"""

# KEYS: each coin budget's sorted set and counter. ARGV: the request's id (its ticket), the
# coins it reserved, the coins paid ('' to release the reservation).
SETTLE = """
local old = ARGV[1] .. ':' .. ARGV[2]
for i = 1, #KEYS, 2 do
  local score = redis.call('ZSCORE', KEYS[i], old)
  if score then
    redis.call('ZREM', KEYS[i], old)
    local paid = 0
    if ARGV[3] ~= '' then
      paid = tonumber(ARGV[3])
      redis.call('ZADD', KEYS[i], score, ARGV[1] .. ':' .. ARGV[3])
    end
    redis.call('DECRBY', KEYS[i + 1], tonumber(ARGV[2]) - paid)
  end
end
return 0
"""

# KEYS: the idempotency key. ARGV: fingerprint, answer, ttl ms.
FINISH = """
if redis.call('HGET', KEYS[1], 'f') == ARGV[1] then
  redis.call('HSET', KEYS[1], 's', 'done', 'a', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 0
"""

# KEYS: the idempotency key (or the prefix alone), then every window the request spent.
# ARGV: the request's member in the windows (its ticket), the fingerprint ('' for no claim).
RELEASE = """
for i = 2, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
if ARGV[2] ~= '' then
  local rec = redis.call('HMGET', KEYS[1], 'f', 's')
  if rec[1] == ARGV[2] and rec[2] == 'run' then redis.call('DEL', KEYS[1]) end
end
return 0
"""

# KEYS: a read's fill lock. ARGV: the token that took it. Only its holder drops it.
UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""
