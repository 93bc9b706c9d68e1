package quota

import (
	"context"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/redistest"
	"github.com/sluice-go/sluice/internal/redisx"
	"github.com/sluice-go/sluice/internal/rkey"
)

// hostileCfg is 100,000 tokens per minute: a token every 600µs, burst and
// MaxCost one minute's worth.
var hostileCfg = Config{Cost: 100_000, CostPer: time.Minute, Fallback: FailClosed}

// The documented bounds for hostileCfg: no key outlives the cost burst window
// plus the MaxCost window (2m), no RetryAfter exceeds MaxCooldown plus twice
// the MaxCost window (1m + 2m).
const (
	hostileTTLBound   = 2*time.Minute + time.Millisecond
	hostileRetryBound = 3*time.Minute + time.Millisecond
)

// checkTTLs fails the test for a key of name with no TTL or one above bound.
func checkTTLs(t *testing.T, c *redis.Client, name string, bound time.Duration) {
	t.Helper()
	for _, kind := range []string{KindRequests, KindCost, KindCooldown, KindMembers} {
		key := rkey.Key(name, kind)
		ttl, err := c.PTTL(context.Background(), key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl == -2*time.Nanosecond {
			continue // no such key
		}
		if ttl < 0 || ttl > bound {
			t.Errorf("key %s: TTL %v; want within [0, %v]", key, ttl, bound)
		}
	}
}

// checkRetry fails the test unless err is a global_rate_limiter refusal with
// a RetryAfter within (0, bound].
func checkRetry(t *testing.T, err error, bound time.Duration) {
	t.Helper()
	e := asErr(t, err)
	if e.RetryAfter <= 0 || e.RetryAfter > bound {
		t.Errorf("%v: RetryAfter %v; want within (0, %v]", err, e.RetryAfter, bound)
	}
}

// TestHostileSurchargesBounded (issue 11, finding 1): ten admitted requests
// each reconciled with an absurd usage (1e9 .. MaxInt64 tokens against
// 100,000 per minute) put the bucket at most one MaxCost into debt: the next
// request's RetryAfter is positive and about one minute, and the cost key
// lives at most two. On Redis and in-process.
func TestHostileSurchargesBounded(t *testing.T) {
	for _, claim := range []int64{1e9, 1e15, 1e17, 1e18, math.MaxInt64} {
		for _, redisMode := range []bool{true, false} {
			t.Run(strconv.FormatInt(claim, 10)+map[bool]string{true: "/redis", false: "/in-process"}[redisMode], func(t *testing.T) {
				var l *Limiter
				var c *redis.Client
				name := "local"
				if redisMode {
					s := redistest.New(t)
					c, name = s.Client(), s.Prefix
					l = newLimiter(t, redisx.New(c, redisx.Options{}), name, hostileCfg)
				} else {
					l = NewLocal(name, hostileCfg)
					t.Cleanup(func() { _ = l.Close() })
				}
				ctx := context.Background()
				var rs []*Reservation
				for i := range 10 {
					r, err := l.Reserve(ctx, 1)
					if err != nil {
						t.Fatalf("reserve %d: %v", i, err)
					}
					rs = append(rs, r)
				}
				for _, r := range rs {
					if err := r.Reconcile(ctx, claim); err != nil {
						t.Fatalf("Reconcile(%d): %v", claim, err)
					}
				}
				_, err := l.Reserve(ctx, 1)
				checkRetry(t, err, hostileRetryBound)
				if e := sluice.ErrorOf(err); e != nil && e.RetryAfter < 50*time.Second {
					t.Errorf("RetryAfter %v: the surcharges were not charged (want about 1m)", e.RetryAfter)
				}
				if c != nil {
					checkTTLs(t, c, name, hostileTTLBound)
				}
			})
		}
	}
}

// TestHostileStaleStateCutBack (issue 11, finding 1): a cost key and a
// cooldown key that a Limiter with these bounds never writes (a TAT 1e20µs
// ahead that lives two million years, a cooldown of a century, as an older
// version could leave them) are cut back to the bounds at the first decision:
// RetryAfter positive and bounded, TTLs within the bounds, and the quota
// usable again after them rather than locked.
func TestHostileStaleStateCutBack(t *testing.T) {
	s := redistest.New(t)
	c := s.Client()
	ctx := context.Background()
	now, err := c.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	tat := strconv.FormatFloat(float64(now.UnixMicro())+1e20, 'f', 0, 64)
	twoMillionYearsMs := int64(2_000_000 * 365 * 24 * 3600 * 1000)
	if err := c.Do(ctx, "SET", rkey.Key(s.Prefix, KindCost), tat, "PX", twoMillionYearsMs).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, rkey.Key(s.Prefix, KindCooldown), "1", 100*365*24*time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	l := newLimiter(t, redisx.New(c, redisx.Options{}), s.Prefix, hostileCfg)
	_, err = l.Reserve(ctx, 1)
	checkRetry(t, err, hostileRetryBound)
	if e := sluice.ErrorOf(err); e.Reason != sluice.ReasonVendorCooldown {
		t.Errorf("%v: want vendor_cooldown", err)
	}
	checkTTLs(t, c, s.Prefix, hostileTTLBound)
	t.Logf("after stale keys: %v", err)
}

// TestHostileCooldownCapped (issue 11, finding 1): Cooldown never pauses the
// quota (nor sets a key) for longer than MaxCooldown.
func TestHostileCooldownCapped(t *testing.T) {
	s := redistest.New(t)
	c := s.Client()
	cfg := hostileCfg
	cfg.MaxCooldown = 10 * time.Second
	ctx := context.Background()
	for name, l := range map[string]*Limiter{
		"redis":      newLimiter(t, redisx.New(c, redisx.Options{}), s.Prefix, cfg),
		"in-process": NewLocal("local", cfg),
	} {
		if err := l.Cooldown(ctx, 1000*time.Hour); err != nil {
			t.Fatal(err)
		}
		_, err := l.Reserve(ctx, 1)
		checkRetry(t, err, 10*time.Second)
		if e := sluice.ErrorOf(err); e.Reason != sluice.ReasonVendorCooldown {
			t.Errorf("%s: %v: want vendor_cooldown", name, err)
		}
		_ = l.Close()
	}
	checkTTLs(t, c, s.Prefix, 10*time.Second)
}

// TestHostileLocalRefunds (issue 11, finding 2): a NewLocal limiter refunds
// like Redis: with 250 per hour, reservations of 100 reconciled to 10 let a
// dozen requests through, Cancel hands back the rest, and a surcharge is
// charged.
func TestHostileLocalRefunds(t *testing.T) {
	l := NewLocal("local", Config{Cost: 250, CostPer: time.Hour})
	defer l.Close()
	ctx := context.Background()
	for i := range 12 {
		r, err := l.Reserve(ctx, 100)
		if err != nil {
			t.Fatalf("reserve %d: %v (not refunded)", i+1, err)
		}
		if err := r.Reconcile(ctx, 10); err != nil {
			t.Fatal(err)
		}
	}
	r, err := l.Reserve(ctx, 100) // 120 + 100 of 250
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	r, err = l.Reserve(ctx, 100) // the canceled 100 is back
	if err != nil {
		t.Fatalf("after Cancel: %v", err)
	}
	if err := r.Reconcile(ctx, 130); err != nil { // 120 + 130 = 250: empty
		t.Fatal(err)
	}
	if _, err := l.Reserve(ctx, 1); err == nil {
		t.Fatal("a surcharge to the whole quota was not charged")
	}
}
