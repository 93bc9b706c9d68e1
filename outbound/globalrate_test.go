package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/quota"
	"github.com/sluice-go/sluice/internal/redistest"
	"github.com/sluice-go/sluice/internal/rkey"
	"github.com/sluice-go/sluice/otelx"
)

// fleetVendor counts calls by path: /429 answers 429 with Retry-After: 2,
// /bad 500; anything else "ok". (claimVendor answers with usage.)
func fleetVendor(t *testing.T, n *counter) string {
	return vendor(t, func(w http.ResponseWriter, r *http.Request) {
		n.add(r.URL.Path)
		n.add("*")
		switch r.URL.Path {
		case "/429":
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
		case "/bad":
			w.WriteHeader(http.StatusInternalServerError)
		default:
			_, _ = io.WriteString(w, "ok")
		}
	}).URL
}

func globalClient(t *testing.T, tm *telemetry, s GlobalRateLimitSettings, more ...Option) *Client {
	t.Helper()
	return chain(t, tm, append([]Option{WithGlobalRateLimit(s)}, more...)...)
}

// TestGlobalQuotaSharedByTwoClients: two clients with one name on one Redis
// admit together no more than one quota (20/s, burst 1): over a run of
// elapsed seconds at most 1 + 20·elapsed calls reach the vendor, where two
// independent limiters would let through about twice that.
func TestGlobalQuotaSharedByTwoClients(t *testing.T) {
	srv := redistest.New(t)
	var n counter
	url := fleetVendor(t, &n)
	// A generous RedisTimeout: a 50ms call missed on a loaded machine would
	// make that client fall back to its local share, and this test is about
	// the shared quota, not the timeout.
	s := GlobalRateLimitSettings{Client: srv.Client(), Name: srv.Prefix, Requests: 20, Period: time.Second,
		RedisTimeout: 2 * time.Second}
	a, b := globalClient(t, newTelemetry(t), s), globalClient(t, newTelemetry(t), s)
	start := time.Now()
	var wg sync.WaitGroup
	var rejected atomic.Int64
	for _, c := range []*Client{a, a, b, b} {
		wg.Go(func() {
			for time.Since(start) < time.Second {
				err := call(context.Background(), c, url+"/ok")
				if err != nil {
					wantReasonAsync(t, err, sluice.LayerGlobalRateLimiter, sluice.ReasonRateLimited)
					rejected.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	got, bound := n.get("/ok"), 1+20*elapsed+1
	t.Logf("vendor saw %d calls in %.2fs (bound %.1f), %d rejected", got, elapsed, bound, rejected.Load())
	if float64(got) > bound {
		t.Errorf("vendor saw %d calls in %.2fs; the shared quota allows at most %.1f", got, elapsed, bound)
	}
	if got < 5 || rejected.Load() == 0 {
		t.Errorf("got %d calls, %d rejected: the test did not load the limiter", got, rejected.Load())
	}
}

func wantReasonAsync(t *testing.T, err error, layer sluice.Layer, reason sluice.Reason) {
	var e *sluice.Error
	if !errors.As(err, &e) || e.Layer != layer || e.Reason != reason {
		t.Errorf("err = %v; want %s/%s", err, layer, reason)
	}
}

// TestGlobalVendorCooldownReachesOtherClient: client A sees a vendor 429 with
// Retry-After: 2; client B, another process for all it knows, then fails with
// vendor_cooldown and a RetryAfter of about 2s without reaching the vendor,
// and a client C allowed to wait gets through only after the cooldown.
func TestGlobalVendorCooldownReachesOtherClient(t *testing.T) {
	srv := redistest.New(t)
	var n counter
	url := fleetVendor(t, &n)
	s := GlobalRateLimitSettings{Client: srv.Client(), Name: srv.Prefix, Requests: 1000, Period: time.Second, Burst: 100,
		RedisTimeout: 2 * time.Second} // about the cooldown, not the timeout
	a := globalClient(t, newTelemetry(t), s)
	tmB := newTelemetry(t)
	b := globalClient(t, tmB, s)
	s.MaxWait = 10 * time.Second
	c := globalClient(t, newTelemetry(t), s)

	start := time.Now()
	mustGet(t, a, url+"/429")
	err := call(context.Background(), b, url+"/ok")
	elapsed := time.Since(start)
	e := wantReason(t, err, sluice.LayerGlobalRateLimiter, sluice.ReasonVendorCooldown)
	t.Logf("B: %v", err)
	// What is left of the 2s cooldown, set after start (less 1ms: Redis
	// keeps it in ms), when B asked.
	if e.RetryAfter < 2*time.Second-elapsed-time.Millisecond || e.RetryAfter > 2*time.Second {
		t.Errorf("RetryAfter = %v %v after the 429 was asked for; want what is left of 2s", e.RetryAfter, elapsed)
	}
	if n.get("/ok") != 0 {
		t.Errorf("B reached the vendor during the cooldown")
	}
	if got := tmB.rejections(t, sluice.LayerGlobalRateLimiter, sluice.ReasonVendorCooldown); got != 1 {
		t.Errorf("B counted %d vendor_cooldown rejections; want 1", got)
	}
	mustGet(t, c, url+"/ok")
	waited := time.Since(start)
	t.Logf("C got through after %v", waited)
	if waited < 1500*time.Millisecond {
		t.Errorf("C got through after %v, inside the 2s cooldown", waited)
	}
}

// TestGlobalRedisKilledFallsBackAndReturns: with Redis killed mid-run the
// client keeps working on its local share, counting resilience.degraded; after
// Restart the decisions are shared again (the quota's key reappears in Redis).
func TestGlobalRedisKilledFallsBackAndReturns(t *testing.T) {
	srv := redistest.Start(t)
	rc := srv.Client()
	var n counter
	url := fleetVendor(t, &n)
	tm := newTelemetry(t)
	// RedisTimeout 2s: a killed Redis refuses at once, and no call missing
	// 50ms on a loaded machine counts as degraded before the outage.
	c := globalClient(t, tm, GlobalRateLimitSettings{Client: rc, Name: srv.Prefix, Requests: 1000, Period: time.Second,
		Burst: 100, HealthPeriod: 50 * time.Millisecond, RedisTimeout: 2 * time.Second})
	mustGet(t, c, url+"/ok")
	degraded := func() int64 { return tm.sum(t, otelx.MetricDegraded) }
	if d := degraded(); d != 0 {
		t.Fatalf("degraded = %d before the outage", d)
	}
	srv.Kill()
	for i := range 20 {
		if err := call(context.Background(), c, url+"/ok"); err != nil {
			t.Fatalf("call %d with Redis down: %v", i, err)
		}
	}
	d := degraded()
	t.Logf("20 calls with Redis down: degraded = %d", d)
	if d < 20 {
		t.Errorf("degraded = %d after 20 calls with Redis down; want >= 20", d)
	}
	srv.Restart()
	key := rkey.Key(srv.Prefix, quota.KindRequests)
	deadline := time.Now().Add(10 * time.Second)
	for calls := 1; ; calls++ {
		mustGet(t, c, url+"/ok")
		if rc.Exists(context.Background(), key).Val() == 1 {
			t.Logf("shared again after %d calls", calls)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no decision reached Redis 10s after Restart")
		}
		time.Sleep(10 * time.Millisecond) // a real redis-server restarts; the health check, every 50ms of real time, must see it
	}
}

// TestGlobalConstructionWithRedisDown: a client built against a stopped
// server starts and serves calls on its local share.
func TestGlobalConstructionWithRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	srv.Kill()
	var n counter
	url := fleetVendor(t, &n)
	tm := newTelemetry(t)
	c := globalClient(t, tm, GlobalRateLimitSettings{Client: srv.Client(), Name: "down", Requests: 10, Period: time.Second, Burst: 10})
	mustGet(t, c, url+"/ok")
	if d := tm.sum(t, otelx.MetricDegraded); d < 1 {
		t.Errorf("degraded = %d; want the fallback counted", d)
	}
}

// TestGlobalInProcess: with no Client the quota is enforced in this process.
func TestGlobalInProcess(t *testing.T) {
	var n counter
	url := fleetVendor(t, &n)
	tm := newTelemetry(t)
	c := globalClient(t, tm, GlobalRateLimitSettings{Requests: 2, Period: time.Hour, Burst: 2})
	mustGet(t, c, url+"/ok")
	mustGet(t, c, url+"/ok")
	e := wantReason(t, call(context.Background(), c, url+"/ok"), sluice.LayerGlobalRateLimiter, sluice.ReasonRateLimited)
	if e.RetryAfter < 20*time.Minute {
		t.Errorf("RetryAfter = %v; want about 30m", e.RetryAfter)
	}
	if d := tm.sum(t, otelx.MetricDegraded); d != 0 {
		t.Errorf("degraded = %d; in-process is not a fallback", d)
	}
}

// TestGlobalCanceledWhenBulkheadRejects: a reservation whose call the bulkhead
// then refuses is refunded: with a quota of 2 per hour, a held stream and a
// bulkhead rejection leave room for one more call.
func TestGlobalCanceledWhenBulkheadRejects(t *testing.T) {
	srv := redistest.New(t)
	url := verdictVendor(t)
	c := globalClient(t, newTelemetry(t), GlobalRateLimitSettings{Client: srv.Client(), Name: srv.Prefix,
		Requests: 2, Period: time.Hour, Burst: 2}, WithBulkhead(BulkheadSettings{MaxConcurrent: 1}))
	resp, err := c.Get(url + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	wantReason(t, call(context.Background(), c, url+"/x"), sluice.LayerBulkhead, sluice.ReasonBulkheadFull)
	_ = resp.Body.Close()
	mustGet(t, c, url+"/x") // the refunded slot
	wantReason(t, call(context.Background(), c, url+"/x"), sluice.LayerGlobalRateLimiter, sluice.ReasonRateLimited)
}

// TestGlobalRetryWaitsForItsTurn: the retry layer honours the global
// limiter's exact RetryAfter when it fits in the deadline.
func TestGlobalRetryWaitsForItsTurn(t *testing.T) {
	srv := redistest.New(t)
	var n counter
	url := fleetVendor(t, &n)
	c := globalClient(t, newTelemetry(t), GlobalRateLimitSettings{Client: srv.Client(), Name: srv.Prefix,
		Requests: 5, Period: time.Second}, WithRetry(RetrySettings{MaxAttempts: 3, BaseDelay: time.Millisecond}))
	for i := range 3 {
		if err := call(context.Background(), c, fmt.Sprintf("%s/ok?%d", url, i)); err != nil {
			t.Fatalf("call %d: %v; want a retry after the limiter's RetryAfter", i, err)
		}
	}
}

// TestGlobalOnRedisCluster: the same quota works through a ClusterClient:
// two clients share 2 requests per hour.
func TestGlobalOnRedisCluster(t *testing.T) {
	t.Parallel() // its own cluster; most of its time is the cluster starting
	cl := redistest.StartCluster(t)
	var n counter
	url := fleetVendor(t, &n)
	// A generous RedisTimeout: a Cluster client's first call also discovers
	// the slots and dials, which can miss the default 50 ms on a loaded
	// machine, and then the call is decided on the local share (seen once:
	// a third call admitted). This test is about the Cluster, not timeouts.
	s := GlobalRateLimitSettings{Client: cl.Client(), Name: "cluster", Requests: 2, Period: time.Hour, Burst: 2,
		RedisTimeout: 2 * time.Second}
	tm := newTelemetry(t)
	a, b := globalClient(t, tm, s), globalClient(t, newTelemetry(t), s)
	mustGet(t, a, url+"/ok")
	mustGet(t, b, url+"/ok")
	wantReason(t, call(context.Background(), a, url+"/ok"), sluice.LayerGlobalRateLimiter, sluice.ReasonRateLimited)
	if d := tm.sum(t, otelx.MetricDegraded); d != 0 {
		t.Errorf("degraded = %d on a healthy cluster", d)
	}
}

// TestGlobalFailureModes: FailureMode is sluice's. While Redis is down its
// zero value is FallbackLocal (this process's share: here the whole quota of
// 2), FailOpen admits every call and FailClosed rejects every one with
// global_rate_limiter/rate_limited.
func TestGlobalFailureModes(t *testing.T) {
	srv := redistest.Start(t)
	srv.Kill()
	var n counter
	url := fleetVendor(t, &n)
	for mode, want := range map[sluice.FailureMode]int{sluice.FailureModeDefault: 2, sluice.FallbackLocal: 2,
		sluice.FailOpen: 4, sluice.FailClosed: 0} {
		t.Run(mode.String(), func(t *testing.T) {
			c := globalClient(t, newTelemetry(t), GlobalRateLimitSettings{Client: srv.Client(), Name: "down",
				Requests: 2, Period: time.Hour, Burst: 2, FailureMode: mode})
			admitted := 0
			for range 4 {
				err := call(context.Background(), c, url+"/ok")
				if err == nil {
					admitted++
					continue
				}
				wantReason(t, err, sluice.LayerGlobalRateLimiter, sluice.ReasonRateLimited)
			}
			if admitted != want {
				t.Fatalf("%d of 4 calls admitted with Redis down; want %d", admitted, want)
			}
		})
	}
}

// TestGlobalLeaseMode: two lease-mode clients on one quota. A busy client
// goes to the vendor with a Redis script per lease, not per call; after a
// vendor 429 seen by A, B stops (told through pub/sub) having sent at most
// what it held, and fails with vendor_cooldown.
func TestGlobalLeaseMode(t *testing.T) {
	srv := redistest.New(t)
	var n counter
	url := fleetVendor(t, &n)
	const maxLease = 50
	s := GlobalRateLimitSettings{Client: srv.Client(), Name: srv.Prefix, Requests: 100_000, Period: time.Second,
		Burst: 1000, Lease: true, MaxLease: maxLease, RedisTimeout: 2 * time.Second}
	a, b := globalClient(t, newTelemetry(t), s), globalClient(t, newTelemetry(t), s)
	ctx := context.Background()
	before := srv.Client().Info(ctx, "commandstats").Val()
	for range 300 {
		mustGet(t, b, url+"/ok")
	}
	scripts := evalCalls(srv.Client().Info(ctx, "commandstats").Val()) - evalCalls(before)
	t.Logf("300 calls, %d scripts on Redis (this Redis may be shared: an upper bound)", scripts)
	if n.get("/ok") != 300 {
		t.Fatalf("vendor saw %d of 300", n.get("/ok"))
	}
	if redistestShared() == "" && scripts > 100 {
		t.Errorf("%d scripts for 300 calls: lease mode did not batch", scripts)
	}
	mustGet(t, a, url+"/429")
	sent := n.get("/ok")
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for err == nil && time.Now().Before(deadline) {
		err = call(ctx, b, url+"/ok")
	}
	wantReason(t, err, sluice.LayerGlobalRateLimiter, sluice.ReasonVendorCooldown)
	if extra := n.get("/ok") - sent; extra > maxLease {
		t.Errorf("B sent %d calls after the cooldown was set, more than one lease (%d)", extra, maxLease)
	}
}

func evalCalls(info string) int64 {
	var total int64
	for _, name := range []string{"cmdstat_evalsha:calls=", "cmdstat_eval:calls="} {
		if i := strings.Index(info, name); i >= 0 {
			rest := info[i+len(name):]
			if j := strings.IndexByte(rest, ','); j >= 0 {
				v, _ := strconv.ParseInt(rest[:j], 10, 64)
				total += v
			}
		}
	}
	return total
}

func redistestShared() string { return os.Getenv("REDIS_URL") }

// Impossible lease settings panic at construction.
func TestGlobalLeaseSettingsPanic(t *testing.T) {
	base := GlobalRateLimitSettings{Requests: 10, Period: time.Second, Lease: true}
	for name, mod := range map[string]func(*GlobalRateLimitSettings){
		"negative MaxLease":       func(s *GlobalRateLimitSettings) { s.MaxLease = -1 },
		"negative MaxLeaseTokens": func(s *GlobalRateLimitSettings) { s.MaxLeaseTokens = -1 },
		"negative LeaseTTL":       func(s *GlobalRateLimitSettings) { s.LeaseTTL = -1 },
		"huge MaxLease":           func(s *GlobalRateLimitSettings) { s.MaxLease = quota.MaxLeaseLimit + 1 },
		"long LeaseTTL":           func(s *GlobalRateLimitSettings) { s.LeaseTTL = quota.MaxWindow + time.Hour },
	} {
		s := base
		mod(&s)
		t.Run(name, func(t *testing.T) { mustPanic(t, func() { WithGlobalRateLimit(s) }) })
	}
}
