package quota

import (
	"context"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Status is a quota's state for the status page.
type Status struct {
	// Redis: the numbers are the fleet's, read from Redis; false: this
	// process's own buckets (a NewLocal limiter, or Redis unreachable).
	Redis bool
	// Healthy is the Redis health breaker's state (true without Redis).
	Healthy bool
	// RequestsRemaining and TokensRemaining are the unused bursts, valid
	// when the quota has requests (HasRequests) or cost (HasCost).
	RequestsRemaining, TokensRemaining int64
	HasRequests, HasCost               bool
	// NextFree is how long until a call of cost 1 could go without waiting.
	NextFree time.Duration
	// CooldownUntil is the end of a vendor cooldown in force (zero: none).
	CooldownUntil time.Time
	// Members is the last known process count.
	Members int
}

// statusScript reads, without writing, what reserveScript decides on.
// KEYS: req TAT, cost TAT, cooldown. Returns {now µs, req TAT or -1, cost TAT
// or -1, cooldown PTTL ms}.
var statusScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local r = tonumber(redis.call('GET', KEYS[1])) or -1
local c = tonumber(redis.call('GET', KEYS[2])) or -1
return {now, string.format('%.0f', r), string.format('%.0f', c), redis.call('PTTL', KEYS[3])}
`)

// Status reads the quota's state: from Redis (one read-only script, bounded by
// the guard's timeout) when it has one and it answers, else from the local
// buckets. It changes nothing.
func (l *Limiter) Status(ctx context.Context) Status {
	s := Status{Healthy: true, Members: l.Members(), HasRequests: l.hasReq, HasCost: l.hasCost}
	if l.g != nil {
		s.Healthy = l.g.Healthy()
		if s.Healthy {
			if res, err := l.g.Run(ctx, statusScript, l.keys); err == nil {
				if a, ok := res.([]any); ok && len(a) == 4 {
					now, _ := a[0].(int64)
					rt, _ := strconv.ParseFloat(str(a[1]), 64)
					ct, _ := strconv.ParseFloat(str(a[2]), 64)
					cd, _ := a[3].(int64)
					l.fromRedis(&s, float64(now), rt, ct, cd)
					return s
				}
			}
			s.Healthy = l.g.Healthy()
		}
	}
	l.fromLocal(&s)
	return s
}

func str(v any) string { s, _ := v.(string); return s }

// fromRedis fills s from the stored TATs (µs; negative: none) at now (µs).
func (l *Limiter) fromRedis(s *Status, now, reqTat, costTat float64, cooldownMs int64) {
	s.Redis = true
	earliest := now
	if cooldownMs > 0 {
		earliest = now + float64(cooldownMs)*1000
		s.CooldownUntil = time.Now().Add(time.Duration(cooldownMs) * time.Millisecond)
	}
	wait := math.Max(0, earliest-now)
	burst := func(tat, interval, offset float64, n float64) (int64, float64) {
		if tat < earliest {
			tat = earliest
		}
		// The request may go at tat + n·interval - offset.
		w := math.Max(0, tat+n*interval-offset-now)
		left := math.Floor((now + offset - tat) / interval)
		if cooldownMs > 0 {
			left = 0 // nothing goes before the cooldown ends
		}
		return int64(math.Max(0, left)), w
	}
	if l.hasReq {
		t, _ := strconv.ParseFloat(l.reqT, 64)
		off, _ := strconv.ParseFloat(l.reqOff, 64)
		var w float64
		s.RequestsRemaining, w = burst(reqTat, t, off, 1)
		wait = math.Max(wait, w)
	}
	if l.hasCost {
		off, _ := strconv.ParseFloat(l.costOff, 64)
		var w float64
		s.TokensRemaining, w = burst(costTat, l.costTf, off, 1)
		wait = math.Max(wait, w)
	}
	s.NextFree = time.Duration(math.Ceil(wait)) * time.Microsecond
}

// fromLocal fills s from this process's buckets and local cooldown.
func (l *Limiter) fromLocal(s *Status) {
	now := time.Now()
	var wait time.Duration
	if cd := time.Unix(0, l.cooldown.Load()); cd.After(now) {
		s.CooldownUntil = cd
		wait = cd.Sub(now)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.hasReq {
		tok := l.reqLim.TokensAt(now)
		s.RequestsRemaining = int64(math.Max(0, math.Floor(tok)))
		if tok < 1 && l.reqLim.Limit() > 0 {
			wait = max(wait, time.Duration((1-tok)/float64(l.reqLim.Limit())*float64(time.Second)))
		}
	}
	if l.hasCost {
		tok := l.costLim.TokensAt(now)
		s.TokensRemaining = int64(math.Max(0, math.Floor(tok)))
		if tok < 1 && l.costLim.Limit() > 0 {
			wait = max(wait, time.Duration((1-tok)/float64(l.costLim.Limit())*float64(time.Second)))
		}
	}
	s.NextFree = wait
}

// HasRedis reports whether the limiter shares its quota through Redis.
func (l *Limiter) HasRedis() bool { return l.g != nil }
