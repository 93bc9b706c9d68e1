package quota

import "github.com/redis/go-redis/v9"

// reserveScript is the whole decision, atomically, on Redis's clock.
//
// KEYS: req TAT, cost TAT, cooldown.
// ARGV: req interval (µs per request, 0 = no request limit), req burst offset
// (µs), cost interval (µs per unit, 0 = no cost limit), cost burst offset (µs),
// cost, max wait (µs).
// Returns {status, µs}: {0, wait} admitted, the caller's turn comes after wait
// (the slot is reserved); {1, retry} over the limit, nothing reserved;
// {2, retry} vendor cooldown, nothing reserved.
//
// GCRA: tat = max(stored, earliest); new = tat + n*interval; the request may go
// at new - burst offset. During a cooldown earliest is the cooldown's end, so
// waiters resume in GCRA order (at most a burst at once), not as a herd.
var reserveScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cd = redis.call('PTTL', KEYS[3])
local earliest = now
if cd > 0 then earliest = now + cd * 1000 end
local maxwait = tonumber(ARGV[6])
local function plan(key, interval, offset, n)
  if interval <= 0 or n <= 0 then return nil, 0 end
  local tat = tonumber(redis.call('GET', key)) or earliest
  if tat < earliest then tat = earliest end
  local newtat = tat + n * interval
  local at = newtat - offset
  if at < earliest then at = earliest end
  return newtat, at - now
end
local rtat, rwait = plan(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), 1)
local ctat, cwait = plan(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
local wait = math.max(rwait, cwait, earliest - now, 0)
if wait > maxwait then
  local st = 1
  if cd > 0 then st = 2 end
  return {st, math.ceil(wait)}
end
if rtat then redis.call('SET', KEYS[1], string.format('%.0f', rtat), 'PX', math.ceil((rtat - now) / 1000) + 1) end
if ctat then redis.call('SET', KEYS[2], string.format('%.0f', ctat), 'PX', math.ceil((ctat - now) / 1000) + 1) end
return {0, math.ceil(wait)}
`)

// adjustScript moves TATs: a positive delta (µs) charges (from max(tat, now),
// which may push the TAT past the burst so later callers wait), a negative one
// refunds.
//
// KEYS: req TAT, cost TAT. ARGV: req delta, cost delta.
var adjustScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 1, 2 do
  local d = tonumber(ARGV[i])
  if d ~= 0 then
    local tat = tonumber(redis.call('GET', KEYS[i])) or now
    if d > 0 and tat < now then tat = now end
    tat = tat + d
    if tat > now then
      redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
    else
      redis.call('DEL', KEYS[i])
    end
  end
end
return 0
`)

// cooldownScript sets the cooldown for ARGV[1] ms unless a longer one is set.
var cooldownScript = redis.NewScript(`
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then
  redis.call('SET', KEYS[1], '1', 'PX', ms)
end
return 0
`)

// membersScript records a heartbeat (ARGV[3] == "1") or a leave of member
// ARGV[1] in the ZSET KEYS[1] scored by Redis's clock (ms), drops members not
// seen within ARGV[2] ms and returns the live count.
var membersScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[3] ~= '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[2]))
return redis.call('ZCARD', KEYS[1])
`)
