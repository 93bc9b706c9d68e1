// Package health is a local breaker in front of a remote store: after a
// failure it skips the store for a period, then lets exactly one probe
// through, so an outage costs at most one timeout per period instead of one
// per request.
package health

import (
	"sync/atomic"
	"time"
)

// Breaker is safe for concurrent use. The zero value is not usable.
type Breaker struct {
	period    time.Duration
	openUntil atomic.Int64 // Unix ns; 0 = healthy
}

// New returns a healthy breaker that, after a failure, skips the store for period.
func New(period time.Duration) *Breaker {
	if period <= 0 {
		panic("health: the period must be positive")
	}
	return &Breaker{period: period}
}

// Allow reports whether a call may go to the store now. When the period after
// a failure has passed, exactly one caller is allowed (the probe) and the
// others are refused until the probe reports.
func (b *Breaker) Allow(now time.Time) bool {
	u := b.openUntil.Load()
	if u == 0 {
		return true
	}
	n := now.UnixNano()
	if n < u {
		return false
	}
	return b.openUntil.CompareAndSwap(u, n+int64(b.period))
}

// Success records a successful call: the store is healthy.
func (b *Breaker) Success() {
	if b.openUntil.Load() != 0 {
		b.openUntil.Store(0)
	}
}

// Failure records a failed call: skip the store for the period.
func (b *Breaker) Failure(now time.Time) {
	b.openUntil.Store(now.UnixNano() + int64(b.period))
}

// Healthy reports whether the breaker is closed.
func (b *Breaker) Healthy() bool { return b.openUntil.Load() == 0 }
