package quota

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-go/sluice"
)

// TestLocalLimits: a NewLocal limiter (no Redis at all) still limits: the
// burst goes, the next request is refused with the exact wait, a canceled
// reservation hands its slot back, and no decision counts as degraded.
func TestLocalLimits(t *testing.T) {
	l := NewLocal("local", Config{Requests: 2, Per: time.Hour, Burst: 2})
	defer l.Close()
	ctx := context.Background()
	var rs []*Reservation
	for i := range 2 {
		r, err := l.Reserve(ctx, 0)
		if err != nil {
			t.Fatalf("reserve %d: %v", i, err)
		}
		if r.Degraded() {
			t.Fatal("a local decision reported Degraded")
		}
		rs = append(rs, r)
	}
	_, err := l.Reserve(ctx, 0)
	e := sluice.ErrorOf(err)
	if e == nil || e.Layer != sluice.LayerGlobalRateLimiter || e.Reason != sluice.ReasonRateLimited {
		t.Fatalf("third reserve: %v; want global_rate_limiter/rate_limited", err)
	}
	if e.RetryAfter < 20*time.Minute || e.RetryAfter > 30*time.Minute {
		t.Errorf("RetryAfter = %v; want about 30m (one slot of 2/hour)", e.RetryAfter)
	}
	if err := rs[1].Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve(ctx, 0); err != nil {
		t.Fatalf("after Cancel: %v; want the refunded slot", err)
	}
}

// TestLocalCooldown: a local cooldown refuses with vendor_cooldown.
func TestLocalCooldown(t *testing.T) {
	l := NewLocal("local", Config{Requests: 100, Per: time.Second, Burst: 10, MaxCooldown: 2 * time.Hour})
	defer l.Close()
	ctx := context.Background()
	if err := l.Cooldown(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	_, err := l.Reserve(ctx, 0)
	if e := sluice.ErrorOf(err); e == nil || e.Reason != sluice.ReasonVendorCooldown || e.RetryAfter < 59*time.Minute {
		t.Fatalf("reserve during cooldown: %v; want vendor_cooldown with about 1h", err)
	}
}

// TestLocalConcurrentNeverOveradmits: callers racing for the local buckets
// are never admitted beyond burst + rate × elapsed. The clock used to be read
// before the buckets' lock, so goroutines queued on it handed the buckets
// times out of order; x/time/rate rewinds to an older time and credits the
// span again, and the fleet's LocalShare fallback let through several times
// its share under CPU contention (TestFleetRedisOutage, issue 13).
func TestLocalConcurrentNeverOveradmits(t *testing.T) {
	const run = 500 * time.Millisecond
	for name, cfg := range map[string]Config{
		"requests": {Requests: 100, Per: time.Second, Burst: 2},
		"cost":     {Cost: 100, CostPer: time.Second, CostBurst: 2},
	} {
		t.Run(name, func(t *testing.T) {
			l := NewLocal("local", cfg)
			defer l.Close()
			ctx, cancel := context.WithTimeout(context.Background(), run)
			defer cancel()
			var admitted atomic.Int64
			var wg sync.WaitGroup
			start := time.Now()
			for range 4 * runtime.GOMAXPROCS(0) {
				wg.Go(func() {
					for ctx.Err() == nil {
						if _, err := l.Reserve(ctx, 1); err == nil {
							admitted.Add(1)
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			// Both quotas are 100 per second with a burst of 2; +1 for
			// float rounding in the buckets.
			limit := int64(2 + 100*elapsed.Seconds() + 1)
			if n := admitted.Load(); n > limit {
				t.Fatalf("admitted %d in %v; the quota allows at most %d", n, elapsed, limit)
			}
		})
	}
}
