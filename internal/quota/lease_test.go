package quota

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/redistest"
	"github.com/sluice-go/sluice/internal/redisx"
)

// scriptCounter counts the scripts a client runs (EVALSHA and EVAL).
type scriptCounter struct{ n atomic.Int64 }

func (s *scriptCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (s *scriptCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if n := cmd.Name(); n == "evalsha" || n == "eval" {
			s.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (s *scriptCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// countedGuard is a Guard whose client counts its scripts.
func countedGuard(t testing.TB, url string) (*redisx.Guard, *scriptCounter) {
	t.Helper()
	opt, err := redisx.NewClientOptions(url)
	if err != nil {
		t.Fatal(err)
	}
	opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout, opt.DialTimeout = time.Second, time.Second, time.Second, time.Second
	c := redis.NewClient(opt)
	var sc scriptCounter
	c.AddHook(&sc)
	t.Cleanup(func() { _ = c.Close() })
	return redisx.New(c, redisx.Options{Timeout: time.Second}), &sc
}

// A busy lease-mode process decides almost without Redis, and never admits
// more than the GCRA bound plus its lease.
func TestLeaseSpendsLocally(t *testing.T) {
	s := redistest.New(t)
	g, sc := countedGuard(t, s.URL)
	const burst, maxLease = 200, 100
	l := newLimiter(t, g, s.Prefix, Config{Requests: 100, Per: time.Second, Burst: burst, Lease: true,
		MaxLease: maxLease, Fallback: FailClosed})
	ctx := context.Background()
	admitted := 0
	for range 1000 {
		r, err := l.Reserve(ctx, 1)
		if err != nil {
			break
		}
		if r.Degraded() {
			t.Fatal("degraded decision with Redis up")
		}
		admitted++
	}
	// The run takes far less than one request interval (10ms) per call on
	// any machine, yet it may have taken longer: every admission is still
	// within the GCRA bound over the elapsed time plus one lease.
	scripts := sc.n.Load()
	t.Logf("admitted %d of 1000 with %d scripts", admitted, scripts)
	if admitted < burst/2 {
		t.Errorf("admitted %d, want at least half the burst (%d)", admitted, burst/2)
	}
	if admitted > burst+maxLease+100 { // +100: one second of quota, far more than the loop took
		t.Errorf("admitted %d, more than the burst + one lease + 1s of quota", admitted)
	}
	if scripts*5 > int64(admitted) {
		t.Errorf("%d scripts for %d admissions: the lease did not batch (want under one per 5)", scripts, admitted)
	}
}

// The bound across several lease-mode limiters (processes) on one quota:
// in any 1s window, at most rate + burst + P·MaxLease admissions.
func TestLeaseBoundInProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("3s run")
	}
	s := redistest.New(t)
	const procs, rate, burst, maxLease = 4, 200, 20, 10
	var mu sync.Mutex
	var times []time.Time
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range procs {
		g := guardFor(t, s.URL, redisx.Options{Timeout: time.Second})
		l := newLimiter(t, g, s.Prefix, Config{Requests: rate, Per: time.Second, Burst: burst, Lease: true,
			MaxLease: maxLease, MaxWait: 200 * time.Millisecond, Fallback: FailClosed})
		for range 4 {
			wg.Go(func() {
				for ctx.Err() == nil {
					if _, err := l.Reserve(ctx, 1); err == nil {
						mu.Lock()
						times = append(times, time.Now())
						mu.Unlock()
					}
				}
			})
		}
	}
	wg.Wait()
	hits := make([]hit, len(times))
	for i, at := range times {
		hits[i].at = at
	}
	got, bound := maxSliding(hits, time.Second), rate+burst+procs*maxLease
	t.Logf("%d admitted in 3s; max in any 1s %d; bound %d", len(times), got, bound)
	if got > bound {
		t.Errorf("%d admitted in a 1s window > bound %d (rate + burst + P·MaxLease)", got, bound)
	}
	if got < rate/2 {
		t.Errorf("only %d in the busiest second: the quota went unused", got)
	}
}

// A lease whose script was in flight when a cooldown arrived (a prefetch
// granted just before the cooldown was set) is not held during the cooldown:
// it goes to the return like the rest. (TestLeaseCooldownPubSub met this
// race on a loaded machine: "b still holds 3 leased requests".)
func TestLeaseLandingDuringCooldownIsReturned(t *testing.T) {
	s := redistest.New(t)
	cfg := Config{Requests: 1000, Per: time.Second, Burst: 100, Lease: true, MaxLease: 100, Fallback: FailClosed}
	l := newLimiter(t, guardFor(t, s.URL, redisx.Options{Timeout: time.Second}), s.Prefix, cfg)
	now := time.Now()
	l.setCooldown(now, 30*time.Second)
	l.keepLease(now, 7, 0) // the in-flight prefetch lands
	if snap := l.Snapshot(); snap.LeasedRequests != 0 || snap.ReturnRequests != 7 {
		t.Fatalf("after a lease landed during a cooldown: %+v; want nothing held, 7 to return", snap)
	}
	l.keepLease(now.Add(31*time.Second), 5, 0) // after the cooldown: held
	if snap := l.Snapshot(); snap.LeasedRequests != 5 {
		t.Fatalf("after the cooldown: %+v; want 5 held", snap)
	}
}

// A cooldown set by one process reaches a lease-mode process through
// pub/sub: it stops spending the lease it holds, and hands the lease back.
func TestLeaseCooldownPubSub(t *testing.T) {
	s := redistest.New(t)
	cfg := Config{Requests: 1000, Per: time.Second, Burst: 100, Lease: true, MaxLease: 100, Fallback: FailClosed}
	a := newLimiter(t, guardFor(t, s.URL, redisx.Options{Timeout: time.Second}), s.Prefix, cfg)
	b := newLimiter(t, guardFor(t, s.URL, redisx.Options{Timeout: time.Second}), s.Prefix, cfg)
	<-b.Subscribed()
	ctx := context.Background()
	// b gets busy: it holds a lease.
	for range 50 {
		if _, err := b.Reserve(ctx, 1); err != nil && asErr(t, err).Reason != sluice.ReasonRateLimited {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.Snapshot().LeasedRequests == 0 && time.Now().Before(deadline) {
		// A loaded machine may drain the quota before a lease lands: a
		// rate_limited answer is the quota working, not a failure.
		if _, err := b.Reserve(ctx, 1); err != nil && asErr(t, err).Reason != sluice.ReasonRateLimited {
			t.Fatal(err)
		}
	}
	if b.Snapshot().LeasedRequests == 0 {
		t.Fatal("b holds no lease after its calls")
	}
	set := time.Now()
	if err := a.Cooldown(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	for b.Snapshot().Cooldown == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	took := time.Since(set)
	snap := b.Snapshot()
	t.Logf("b learned of the cooldown %v after it was set; snapshot %+v", took, snap)
	if snap.Cooldown == 0 {
		t.Fatal("the cooldown never reached b")
	}
	if snap.LeasedRequests != 0 {
		t.Errorf("b still holds %d leased requests during the cooldown", snap.LeasedRequests)
	}
	_, err := b.Reserve(ctx, 1)
	if e := asErr(t, err); e.Reason != sluice.ReasonVendorCooldown || e.RetryAfter <= 0 || e.RetryAfter > 30*time.Second {
		t.Fatalf("got %v (retry %v), want vendor_cooldown within 30s", e.Reason, e.RetryAfter)
	}
}

// A surcharge beyond the lease is charged to Redis; a refund goes back to
// the lease.
func TestLeaseReconcile(t *testing.T) {
	s := redistest.New(t)
	g := guardFor(t, s.URL, redisx.Options{Timeout: time.Second})
	l := newLimiter(t, g, s.Prefix, Config{Cost: 10_000, CostPer: time.Minute, CostBurst: 1000, MaxCost: 1000,
		Lease: true, MaxLeaseCost: 100, Fallback: FailClosed})
	ctx := context.Background()
	r, err := l.Reserve(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	tat := func() float64 {
		v, err := g.Client().Get(ctx, l.keys[1]).Result()
		if err != nil {
			t.Fatal(err)
		}
		f, _ := strconv.ParseFloat(v, 64)
		return f
	}
	waitNoFetch(t, l)
	before := tat()
	held := l.Snapshot().LeasedCost
	// 10 reserved, 900 used: the lease covers what it holds, Redis the rest.
	if err := r.Reconcile(ctx, 900); err != nil {
		t.Fatal(err)
	}
	after := tat()
	charged := (after - before) / l.costTf
	want := float64(890 - held)
	t.Logf("held %d; Redis charged %.1f units for a surcharge of 890", held, charged)
	if charged < want-2 || charged > want+2 { // the TAT moved by the debt beyond the lease (±2 for µs rounding and drift)
		t.Errorf("Redis charged %.1f units, want %.0f (890 less the %d the lease held)", charged, want, held)
	}
	if got := l.Snapshot().LeasedCost; got != 0 {
		t.Errorf("the lease holds %d after the surcharge, want 0", got)
	}
	// A refund goes back to the lease, up to MaxLeaseCost.
	if err := r.Reconcile(ctx, 850); err != nil {
		t.Fatal(err)
	}
	if got := l.Snapshot().LeasedCost; got != 50 {
		t.Errorf("the lease holds %d after a refund of 50, want 50", got)
	}
}

// Close hands the lease back: the TAT moves back by what was held.
func TestLeaseReturnedAtClose(t *testing.T) {
	s := redistest.New(t)
	g := guardFor(t, s.URL, redisx.Options{Timeout: time.Second})
	l := New(g, s.Prefix, Config{Requests: 100, Per: time.Minute, Burst: 50, Lease: true, MaxLease: 50, Fallback: FailClosed})
	ctx := context.Background()
	for range 20 {
		if _, err := l.Reserve(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	waitNoFetch(t, l)
	held := l.Snapshot().LeasedRequests
	if held == 0 {
		t.Fatal("no lease held")
	}
	pttl := func() time.Duration { return g.Client().PTTL(ctx, l.keys[0]).Val() }
	before := pttl()
	_ = l.Close()
	after := pttl()
	returned := float64(before-after) / float64(time.Minute/100)
	t.Logf("held %d; the TAT moved back by %.1f requests", held, returned)
	if returned < float64(held)-1 || returned > float64(held)+1 {
		t.Errorf("Close returned %.1f requests, want the %d held", returned, held)
	}
}

// Lease sizing: a quiet process leases one request at a time, a busy one
// up to MaxLease; a lease past its TTL goes to the return.
func TestLeaseSizing(t *testing.T) {
	z := newLease(Config{Requests: 1, Per: time.Second, MaxLease: 64, LeaseTTL: time.Second})
	now := time.Unix(1000, 0)
	// Quiet: one call a second.
	for range 10 {
		now = now.Add(time.Second)
		z.spend(now, 0)
	}
	if r, _ := z.want(now, 0); r != 1 {
		t.Errorf("quiet: want %d, want 1", r)
	}
	// Busy: 10,000 calls a second (one per 100µs) for a second.
	for range 10_000 {
		now = now.Add(100 * time.Microsecond)
		z.spend(now, 0)
	}
	if r, _ := z.want(now, 0); r != 64 {
		t.Errorf("busy: want %d, want MaxLease 64", r)
	}
	// 100 calls a second: about leaseHorizon (250ms) of it, 25.
	for range 400 {
		now = now.Add(10 * time.Millisecond)
		z.spend(now, 0)
	}
	if r, _ := z.want(now, 0); r < 20 || r > 30 {
		t.Errorf("100/s: want %d, want about 25", r)
	}
	// Quiet again: the estimate decays back to 1 within a second.
	now = now.Add(time.Second)
	z.spend(now, 0)
	if r, _ := z.want(now, 0); r != 1 {
		t.Errorf("after 1s idle: want %d, want 1", r)
	}
	z.add(now, 30, 0)
	z.add(now, 60, 0) // over MaxLease: 26 go to the return
	if z.req != 64 || z.retReq != 26 {
		t.Errorf("held %d, returning %d; want 64 and 26", z.req, z.retReq)
	}
	z.mu.Lock()
	z.expire(now.Add(time.Second))
	z.mu.Unlock()
	if z.req != 0 || z.retReq != 90 {
		t.Errorf("after the TTL: held %d, returning %d; want 0 and 90", z.req, z.retReq)
	}
}

// Lease mode on a 3-master Redis Cluster: leases, cooldown pub/sub.
func TestLeaseOnRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster")
	}
	cl := redistest.StartCluster(t)
	mk := func() *Limiter {
		opt := redisx.NewClusterOptions(cl.Addrs)
		opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout, opt.DialTimeout = time.Second, time.Second, time.Second, time.Second
		c := redis.NewClusterClient(opt)
		t.Cleanup(func() { _ = c.Close() })
		return newLimiter(t, redisx.New(c, redisx.Options{Timeout: 2 * time.Second}), cl.Prefix,
			// MaxWait: a lease that expired on a loaded machine goes back to
			// Redis with the next lease script, so a call can meet a
			// bucket a fraction of a token short (seen: "retry after
			// 43µs"); this test is about the cluster, not the burst.
			Config{Requests: 1000, Per: time.Second, Burst: 100, Lease: true, MaxLease: 50, Fallback: FailClosed,
				MaxWait: time.Second})
	}
	a, b := mk(), mk()
	<-b.Subscribed()
	ctx := context.Background()
	for range 100 {
		r, err := a.Reserve(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if r.Degraded() {
			t.Fatal("degraded on a healthy cluster")
		}
	}
	if err := a.Cooldown(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.Snapshot().Cooldown == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if b.Snapshot().Cooldown == 0 {
		t.Fatal("the cooldown did not reach b over the cluster's pub/sub")
	}
}

// Validation of the lease settings.
func TestLeaseConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"negative max lease": {Requests: 1, Per: time.Second, MaxLease: -1},
		"huge max lease":     {Requests: 1, Per: time.Second, MaxLease: MaxLeaseLimit + 1},
		"negative ttl":       {Requests: 1, Per: time.Second, LeaseTTL: -1},
		"long ttl":           {Requests: 1, Per: time.Second, LeaseTTL: MaxWindow + 1},
	} {
		if cfg.Validate() == nil {
			t.Errorf("%s: valid", name)
		}
	}
	c, err := Config{Requests: 100, Per: time.Second, Burst: 20, Cost: 1000, CostPer: time.Second, Lease: true}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	// MaxLease defaults to Burst; MaxLeaseCost to the cost of that span
	// (20 requests = 200ms = 200 units).
	if c.MaxLease != 20 || c.MaxLeaseCost != 200 || c.LeaseTTL != DefaultLeaseTTL {
		t.Errorf("defaults %d, %d, %v", c.MaxLease, c.MaxLeaseCost, c.LeaseTTL)
	}
}

// waitNoFetch waits until no background lease is in flight (each ends
// within the Guard's timeout).
func waitNoFetch(t *testing.T, l *Limiter) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.lease.mu.Lock()
		f := l.lease.fetching
		l.lease.mu.Unlock()
		if !f {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a background lease never ended")
		}
		time.Sleep(time.Millisecond)
	}
}

// A per-call limiter's cooldown reaches a lease-mode process on the same
// quota (a mixed fleet, as during a rollout).
func TestLeaseCooldownFromPerCallProcess(t *testing.T) {
	s := redistest.New(t)
	cfg := Config{Requests: 1000, Per: time.Second, Burst: 100, MaxLease: 100, Fallback: FailClosed}
	a := newLimiter(t, guardFor(t, s.URL, redisx.Options{Timeout: time.Second}), s.Prefix, cfg)
	cfg.Lease = true
	b := newLimiter(t, guardFor(t, s.URL, redisx.Options{Timeout: time.Second}), s.Prefix, cfg)
	<-b.Subscribed()
	if err := a.Cooldown(context.Background(), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.Snapshot().Cooldown == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if b.Snapshot().Cooldown == 0 {
		t.Fatal("the per-call process's cooldown never reached the lease-mode one")
	}
}
