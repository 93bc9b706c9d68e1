package quota

import (
	"context"
	"errors"
	"math"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/redistest"
	"github.com/sluice-go/sluice/internal/redisx"
	"github.com/sluice-go/sluice/internal/rkey"
)

func guardFor(t testing.TB, url string, o redisx.Options) *redisx.Guard {
	t.Helper()
	opt, err := redisx.NewClientOptions(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return redisx.New(c, o)
}

func newLimiter(t testing.TB, g *redisx.Guard, name string, cfg Config) *Limiter {
	t.Helper()
	l := New(g, name, cfg)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func TestConfigPanics(t *testing.T) {
	g := redisx.New(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), redisx.Options{})
	defer g.Client().Close()
	for name, cfg := range map[string]Config{
		"empty":      {},
		"no per":     {Requests: 1},
		"no costper": {Cost: 1},
		"negative":   {Requests: 1, Per: time.Second, MaxWait: -1},
		"too fast":   {Requests: 2_000_000, Per: time.Second},
		"mode":       {Requests: 1, Per: time.Second, Fallback: 9},
		// Windows over MaxWindow would make the script's arithmetic inexact
		// or a RetryAfter overflow time.Duration.
		"cost too fine":     {Cost: 1 << 40, CostPer: time.Minute},
		"long per":          {Requests: 1, Per: MaxWindow + time.Hour},
		"long burst":        {Requests: 1, Per: time.Hour, Burst: 1 << 30},
		"long cost burst":   {Cost: 1, CostPer: time.Hour, CostBurst: 1 << 40},
		"long max cost":     {Cost: 100, CostPer: time.Minute, MaxCost: math.MaxInt64},
		"long max wait":     {Requests: 1, Per: time.Second, MaxWait: 400 * 24 * time.Hour},
		"negative max cost": {Cost: 1, CostPer: time.Second, MaxCost: -1},
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !startsWith(r, "quota: ") {
					t.Errorf("%s: recovered %v", name, r)
				}
			}()
			New(g, "x", cfg)
		}()
	}
}

func startsWith(r any, p string) bool {
	s, ok := r.(string)
	return ok && len(s) >= len(p) && s[:len(p)] == p
}

func asErr(t *testing.T, err error) *sluice.Error {
	t.Helper()
	e := sluice.ErrorOf(err)
	if e == nil {
		t.Fatalf("got %v, want *sluice.Error", err)
	}
	if e.Layer != sluice.LayerGlobalRateLimiter {
		t.Fatalf("layer %q", e.Layer)
	}
	return e
}

// The burst is admitted at once; the next request gets rate_limited with the
// exact retry-after (one interval), and is admitted once that has passed.
func TestBurstThenExactRetryAfter(t *testing.T) {
	s := redistest.New(t)
	l := newLimiter(t, guardFor(t, s.URL, redisx.Options{}), s.Prefix, Config{Requests: 10, Per: time.Second, Burst: 3, Fallback: FailClosed})
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := l.Reserve(ctx, 0); err != nil {
			t.Fatalf("burst %d: %v", i, err)
		}
	}
	_, err := l.Reserve(ctx, 0)
	e := asErr(t, err)
	if e.Reason != sluice.ReasonRateLimited || e.RetryAfter <= 0 || e.RetryAfter > 100*time.Millisecond {
		t.Fatalf("got %v", err)
	}
	time.Sleep(e.RetryAfter) // waiting out the advertised retry-after is the property under test
	if _, err := l.Reserve(ctx, 0); err != nil {
		t.Fatalf("after retry-after: %v", err)
	}
}

// With MaxWait the script reserves future slots: N requests at once get
// distinct turns spaced by the interval, and none is rejected.
func TestMaxWaitReservesTurns(t *testing.T) {
	s := redistest.New(t)
	l := newLimiter(t, guardFor(t, s.URL, redisx.Options{}), s.Prefix, Config{Requests: 20, Per: time.Second, MaxWait: 2 * time.Second, Fallback: FailClosed})
	ctx := context.Background()
	waits := make(chan time.Duration, 10)
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		go func() {
			r, err := l.Reserve(ctx, 0)
			errs <- err
			waits <- r.Wait()
		}()
	}
	var maxWait time.Duration
	for i := 0; i < 10; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		maxWait = max(maxWait, <-waits)
	}
	// 10 turns at 50ms spacing, the first immediate: the last waits ~450ms.
	if maxWait < 400*time.Millisecond || maxWait > 500*time.Millisecond {
		t.Fatalf("last turn after %v, want ~450ms", maxWait)
	}
}

// A wait that cannot finish before the deadline is never started.
func TestNoWaitPastDeadline(t *testing.T) {
	s := redistest.New(t)
	l := newLimiter(t, guardFor(t, s.URL, redisx.Options{}), s.Prefix, Config{Requests: 1, Per: time.Second, MaxWait: 5 * time.Second, Fallback: FailClosed})
	if _, err := l.Reserve(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := l.Reserve(ctx, 0)
	e := asErr(t, err)
	if e.Reason != sluice.ReasonQueueTimeout || e.RetryAfter < 500*time.Millisecond || ctx.Err() != nil {
		t.Fatalf("got %v (ctx %v): waited instead of failing at once", err, ctx.Err())
	}
}

// A caller that gives up while waiting refunds its slot: the next caller gets it.
func TestCanceledWaitRefunds(t *testing.T) {
	s := redistest.New(t)
	l := newLimiter(t, guardFor(t, s.URL, redisx.Options{}), s.Prefix, Config{Requests: 2, Per: time.Second, MaxWait: 5 * time.Second, Fallback: FailClosed})
	if _, err := l.Reserve(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { _, err := l.Reserve(ctx, 0); done <- err }()
	// Poll until the waiter's slot is reserved (the TAT moved a second ahead).
	key := rkey.Key(s.Prefix, KindRequests)
	c := s.Client()
	waitFor(t, func() bool { return c.PTTL(context.Background(), key).Val() > 600*time.Millisecond })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) || !errors.Is(err, sluice.ErrQueueTimeout) {
		t.Fatalf("got %v", err)
	}
	if d := c.PTTL(context.Background(), key).Val(); d > 600*time.Millisecond {
		t.Fatalf("slot not refunded: TAT still %v ahead", d)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond) // polling
	}
}

// Cost: a surcharge pushes later callers back, a refund lets them in. A
// MaxCost above the burst lets one request be charged more than the burst.
func TestReconcile(t *testing.T) {
	s := redistest.New(t)
	l := newLimiter(t, guardFor(t, s.URL, redisx.Options{}), s.Prefix, Config{Cost: 1000, CostPer: time.Second, CostBurst: 100,
		MaxCost: 400, Fallback: FailClosed})
	ctx := context.Background()
	r, err := l.Reserve(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Reconcile(ctx, 400); err != nil { // +300 tokens = +300ms
		t.Fatal(err)
	}
	_, err = l.Reserve(ctx, 100)
	if e := asErr(t, err); e.RetryAfter < 250*time.Millisecond || e.RetryAfter > 400*time.Millisecond {
		t.Fatalf("after surcharge: retry after %v, want ~300ms", e.RetryAfter)
	}
	if err := r.Reconcile(ctx, 0); err != nil { // refund all 400
		t.Fatal(err)
	}
	if _, err := l.Reserve(ctx, 100); err != nil {
		t.Fatalf("after refund: %v", err)
	}
}

// A cooldown set by one limiter stops another instance (another process in
// production) with vendor_cooldown; with MaxWait it waits it out.
func TestCooldownShared(t *testing.T) {
	s := redistest.New(t)
	a := newLimiter(t, guardFor(t, s.URL, redisx.Options{}), s.Prefix, Config{Requests: 1000, Per: time.Second, Fallback: FailClosed})
	b := newLimiter(t, guardFor(t, s.URL, redisx.Options{}), s.Prefix, Config{Requests: 1000, Per: time.Second, MaxWait: time.Second, Fallback: FailClosed})
	ctx := context.Background()
	if err := a.Cooldown(ctx, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	_, err := a.Reserve(ctx, 0)
	if e := asErr(t, err); e.Reason != sluice.ReasonVendorCooldown || e.RetryAfter <= 0 || e.RetryAfter > 300*time.Millisecond {
		t.Fatalf("got %v", err)
	}
	r, err := b.Reserve(ctx, 0)
	if err != nil || r.Wait() <= 0 {
		t.Fatalf("waiter: %v, waited %v", err, r.Wait())
	}
	// A shorter cooldown does not cut a longer one.
	if err := a.Cooldown(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	_ = a.Cooldown(ctx, time.Millisecond)
	_, err = a.Reserve(ctx, 0)
	if e := asErr(t, err); e.RetryAfter < time.Second {
		t.Fatalf("cooldown shortened: %v", err)
	}
}

// Redis down from the start: construction works, every failure mode does what
// it says and is counted, and no call pays a Redis timeout once the breaker is open.
func TestFailureModesWithRedisDown(t *testing.T) {
	url := "redis://127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)) + "/0"
	ctx := context.Background()
	for _, mode := range []FailureMode{LocalShare, FailOpen, FailClosed} {
		var degraded atomic.Int64
		l := newLimiter(t, guardFor(t, url, redisx.Options{HealthPeriod: time.Hour}), "down", Config{
			Requests: 10, Per: time.Second, Burst: 2, Fallback: mode,
			OnDegraded: func(context.Context) { degraded.Add(1) },
		})
		admitted := 0
		for i := 0; i < 5; i++ {
			r, err := l.Reserve(ctx, 0)
			if err == nil {
				admitted++
				if !r.Degraded() {
					t.Fatalf("mode %d: not marked degraded", mode)
				}
			}
		}
		want := map[FailureMode]int{LocalShare: 2, FailOpen: 5, FailClosed: 0}[mode]
		if admitted != want || degraded.Load() != 5 {
			t.Fatalf("mode %d: admitted %d (want %d), degraded %d (want 5)", mode, admitted, want, degraded.Load())
		}
	}
}
