package quota

import "github.com/redis/go-redis/v9"

// reserveScript is the whole decision, atomically, on Redis's clock.
//
// KEYS: req TAT, cost TAT, cooldown.
// ARGV: req interval (µs per request, 0 = no request limit), req burst offset
// (µs), cost interval (µs per unit, 0 = no cost limit), cost burst offset (µs),
// cost, max wait (µs), req horizon (µs), cost horizon (µs), max cooldown (ms).
// Returns {status, µs}: {0, wait} admitted, the caller's turn comes after wait
// (the slot is reserved); {1, retry} over the limit, nothing reserved;
// {2, retry} vendor cooldown, nothing reserved.
//
// GCRA: tat = max(stored, earliest); new = tat + n*interval; the request may go
// at new - burst offset. During a cooldown earliest is the cooldown's end, so
// waiters resume in GCRA order (at most a burst at once), not as a herd.
//
// Bounds: the caller validates every argument to at most a year (quota.
// MaxWindow), so with now (~1.8e15 µs) every sum stays an exact integer in a
// double. A stored TAT beyond now + horizon, or a cooldown beyond its
// maximum, was not written by a Limiter with these bounds: it is cut back to
// the bound, and written back so that its key's TTL obeys it too.
var reserveScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local maxcd = tonumber(ARGV[9])
local cd = redis.call('PTTL', KEYS[3])
if cd > maxcd then
  cd = maxcd
  redis.call('PEXPIRE', KEYS[3], maxcd)
end
local earliest = now
if cd > 0 then earliest = now + cd * 1000 end
local maxwait = tonumber(ARGV[6])
local function plan(key, interval, offset, n, horizon)
  if interval <= 0 or n <= 0 then return nil, 0 end
  local tat = tonumber(redis.call('GET', key))
  if not tat or tat ~= tat then tat = now end
  if tat > now + horizon then
    tat = now + horizon
    redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil(horizon / 1000) + 1)
  end
  if tat < earliest then tat = earliest end
  local newtat = tat + n * interval
  local at = newtat - offset
  if at < earliest then at = earliest end
  return newtat, at - now
end
local rtat, rwait = plan(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), 1, tonumber(ARGV[7]))
local ctat, cwait = plan(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[8]))
local wait = math.max(rwait, cwait, earliest - now, 0)
if wait > maxwait then
  local st = 1
  if cd > 0 then st = 2 end
  return {st, math.max(math.ceil(wait), 1)}
end
if rtat then redis.call('SET', KEYS[1], string.format('%.0f', rtat), 'PX', math.ceil((rtat - now) / 1000) + 1) end
if ctat then redis.call('SET', KEYS[2], string.format('%.0f', ctat), 'PX', math.ceil((ctat - now) / 1000) + 1) end
return {0, math.ceil(wait)}
`)

// adjustScript moves TATs: a positive delta (µs) charges (from max(tat, now),
// which may push the TAT past the burst so later callers wait, but never
// past now + horizon: the debt beyond is forgiven), a negative one refunds.
//
// KEYS: req TAT, cost TAT. ARGV: req delta, cost delta, req horizon, cost
// horizon (µs; every value bounded by the caller to at most a year).
var adjustScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 1, 2 do
  local d = tonumber(ARGV[i])
  if d ~= 0 then
    local limit = now + tonumber(ARGV[i + 2])
    local tat = tonumber(redis.call('GET', KEYS[i]))
    if not tat or tat ~= tat then tat = now end
    if tat > limit then tat = limit end
    if d > 0 and tat < now then tat = now end
    tat = tat + d
    if tat > limit then tat = limit end
    if tat > now then
      redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
    else
      redis.call('DEL', KEYS[i])
    end
  end
end
return 0
`)

// cooldownScript sets the cooldown for ARGV[1] ms unless a longer one is set
// and, when ARGV[2] is not empty, publishes the cooldown's remaining ms on
// channel ARGV[2], so that lease-mode processes, which decide without Redis,
// pause at once.
var cooldownScript = redis.NewScript(`
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then
  redis.call('SET', KEYS[1], '1', 'PX', ms)
end
if ARGV[2] ~= '' then
  redis.call('PUBLISH', ARGV[2], redis.call('PTTL', KEYS[1]))
end
return 0
`)

// leaseScript is reserveScript for lease mode: it first hands back what a
// process returns (ARGV[12] requests, ARGV[13] cost units: an expired or
// surplus lease), then decides for one request costing ARGV[5] exactly as
// reserveScript does and, when that request may go now, leases up to
// ARGV[10] requests and ARGV[11] cost units in all (the request's own
// included), never more than the bucket holds now: a lease never waits and
// never goes into debt, so it takes nothing that GCRA would not admit at
// this instant.
//
// KEYS: req TAT, cost TAT, cooldown. ARGV 1-9 as reserveScript's, then want
// requests, want cost, return requests, return cost.
// Returns {status, µs, requests, cost, cooldown ms}: {0, 0, kr, kc, 0} a
// lease of kr requests and kc cost units (kr >= 1 with a request quota, kc
// >= the request's cost with a cost quota); {0, wait, 1, cost, 0} the
// request alone, its turn after wait (as reserveScript); {1, retry, 0, 0, 0}
// over the limit; {2, retry, 0, 0, cd} vendor cooldown, cd ms left (a
// queued turn behind a cooldown reports its cd too).
var leaseScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function refund(key, interval, n, horizon)
  if interval <= 0 or n <= 0 then return end
  local tat = tonumber(redis.call('GET', key))
  if not tat or tat ~= tat then return end
  if tat > now + horizon then tat = now + horizon end
  tat = tat - n * interval
  if tat > now then
    redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
  else
    redis.call('DEL', key)
  end
end
refund(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[12]), tonumber(ARGV[7]))
refund(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[13]), tonumber(ARGV[8]))
local maxcd = tonumber(ARGV[9])
local cd = redis.call('PTTL', KEYS[3])
if cd > maxcd then
  cd = maxcd
  redis.call('PEXPIRE', KEYS[3], maxcd)
end
local earliest = now
if cd > 0 then earliest = now + cd * 1000 end
local maxwait = tonumber(ARGV[6])
local function plan(key, interval, offset, n, horizon)
  if interval <= 0 then return nil, 0, 0 end
  local tat = tonumber(redis.call('GET', key))
  if not tat or tat ~= tat then tat = now end
  if tat > now + horizon then
    tat = now + horizon
    redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil(horizon / 1000) + 1)
  end
  if tat < earliest then tat = earliest end
  if n <= 0 then return tat, 0, tat end
  local newtat = tat + n * interval
  local at = newtat - offset
  if at < earliest then at = earliest end
  return newtat, at - now, tat
end
local reqT, costT = tonumber(ARGV[1]), tonumber(ARGV[3])
local cost = tonumber(ARGV[5])
local rtat, rwait, r0 = plan(KEYS[1], reqT, tonumber(ARGV[2]), 1, tonumber(ARGV[7]))
local ctat, cwait, c0 = plan(KEYS[2], costT, tonumber(ARGV[4]), cost, tonumber(ARGV[8]))
local wait = math.max(rwait, cwait, earliest - now, 0)
if wait > maxwait or (wait > 0 and maxwait <= 0) then
  if cd > 0 then return {2, math.max(math.ceil(wait), 1), 0, 0, cd} end
  return {1, math.max(math.ceil(wait), 1), 0, 0, 0}
end
local kr, kc = 0, 0
if wait > 0 then
  if rtat then kr = 1 end
  kc = cost
  if cost <= 0 then ctat = nil end
else
  if rtat then
    kr = math.floor((now + tonumber(ARGV[2]) - r0) / reqT)
    kr = math.max(1, math.min(kr, tonumber(ARGV[10])))
    rtat = r0 + kr * reqT
  end
  if ctat then
    kc = math.floor((now + tonumber(ARGV[4]) - c0) / costT)
    kc = math.max(cost, math.min(kc, tonumber(ARGV[11])))
    if kc > 0 then ctat = c0 + kc * costT else ctat = nil end
  end
end
if rtat then redis.call('SET', KEYS[1], string.format('%.0f', rtat), 'PX', math.ceil((rtat - now) / 1000) + 1) end
if ctat and ctat > now then redis.call('SET', KEYS[2], string.format('%.0f', ctat), 'PX', math.ceil((ctat - now) / 1000) + 1) end
return {0, math.ceil(wait), kr, kc, math.max(cd, 0)}
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
