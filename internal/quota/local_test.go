package quota

import (
	"context"
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
	l := NewLocal("local", Config{Requests: 100, Per: time.Second, Burst: 10})
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
