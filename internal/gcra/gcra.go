// Package gcra implements the generic cell rate algorithm (GCRA) behind
// ulule/limiter's Store interface, twice: in memory (bounded) and in Redis
// (one Lua script per decision, on the server's clock).
//
// A rate of Limit per Period allows one request every Period/Limit (the
// emission interval) with a burst of Limit, and never the double burst of a
// fixed window at its edges: in any span of time w it admits at most
// Limit + w/(Period/Limit) requests.
//
// Semantics of the limiter.Context it returns:
//   - Get / Increment: Reached is true when the request was denied; a denied
//     request consumes nothing.
//   - Peek: Remaining is what could be spent now; Reached is true when a
//     request now would be denied.
//   - Reset (the field) is the Unix second, rounded up, at which the full
//     burst is available again.
package gcra

import (
	"context"
	"time"

	"github.com/ulule/limiter/v3"
)

// Decision is a store's answer with the precise wait before the next request
// would be admitted.
type Decision struct {
	limiter.Context
	// RetryAfter is how long until a request of the same count would be
	// admitted; zero unless Reached.
	RetryAfter time.Duration
}

// Decider is implemented by the stores that know the precise retry-after;
// the middleware prefers it to limiter.Store.Increment.
type Decider interface {
	Decide(ctx context.Context, key string, count int64, rate limiter.Rate) (Decision, error)
}

// params returns the emission interval and the tolerance (burst × interval)
// in units of unit, or ok=false for a rate that admits nothing.
func params(rate limiter.Rate, unit time.Duration) (interval, tau int64, ok bool) {
	if rate.Limit <= 0 || rate.Period <= 0 {
		return 0, 0, false
	}
	interval = int64(rate.Period/unit) / rate.Limit
	if interval < 1 {
		interval = 1
	}
	return interval, interval * rate.Limit, true
}

// decide is the algorithm. now and tat are in units of unit; tat is the stored
// theoretical arrival time (0 when absent). It returns the decision and the
// new tat to store (store=false: leave the state alone).
func decide(now, tat, interval, tau, count int64, limit int64, unit time.Duration) (d Decision, newTat int64, store bool) {
	if tat < now {
		tat = now
	}
	d.Limit = limit
	if count <= 0 { // peek
		d.Remaining = (now + tau - tat) / interval
		d.Reached = d.Remaining <= 0
		d.Reset = ceilUnix(tat, unit)
		if d.Reached {
			d.RetryAfter = time.Duration(tat+interval-tau-now) * unit
		}
		return d, tat, false
	}
	next := tat + interval*count
	if next-now > tau {
		d.Reached = true
		d.Remaining = max(0, (now+tau-tat)/interval)
		d.Reset = ceilUnix(tat, unit)
		d.RetryAfter = time.Duration(next-tau-now) * unit
		return d, tat, false
	}
	d.Remaining = (now + tau - next) / interval
	d.Reset = ceilUnix(next, unit)
	return d, next, true
}

func ceilUnix(t int64, unit time.Duration) int64 {
	per := int64(time.Second / unit)
	return (t + per - 1) / per
}

// denied is the decision for a rate that admits nothing.
func denied(rate limiter.Rate) Decision {
	return Decision{
		Context:    limiter.Context{Limit: rate.Limit, Reached: true, Reset: time.Now().Add(time.Second).Unix()},
		RetryAfter: time.Second,
	}
}
