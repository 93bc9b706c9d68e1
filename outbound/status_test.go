package outbound

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/redistest"
	"github.com/sluice-go/sluice/status"
)

func layerOf(t *testing.T, s status.Snapshot, layer sluice.Layer) status.Layer {
	t.Helper()
	for _, l := range s.Layers {
		if l.Layer == string(layer) {
			return l
		}
	}
	t.Fatalf("no %s on the page: %+v", layer, s.Layers)
	return status.Layer{}
}

func gauge(l status.Layer, name string) (status.Gauge, bool) {
	for _, g := range l.Gauges {
		if g.Name == name {
			return g, true
		}
	}
	return status.Gauge{}, false
}

func rejections(l status.Layer, reason sluice.Reason) int64 {
	for _, rc := range l.Rejections {
		if rc.Reason == string(reason) {
			return rc.Count
		}
	}
	return -1
}

// TestStatusShowsChain: a registered chain shows its layers in canonical
// order; the breaker is shown open (with its time to half-open) after the
// vendor failed, and the call it then refused is among the recent
// rejections; Close removes the chain from the page.
func TestStatusShowsChain(t *testing.T) {
	reg := status.NewRegistry()
	url := vendor(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) }).URL
	c := NewClient(WithName("vendor"), WithStatus(reg),
		WithTransport(NewTransport(TransportSettings{MaxConns: 4})),
		WithRetry(RetrySettings{MaxAttempts: 1}),
		WithCircuitBreaker(BreakerSettings{MinThroughput: 2, OpenDelay: time.Hour}),
		// MaxWait: the three calls may come within one 1ms slot of the
		// smooth rate; they wait their turn rather than fail rate_limited.
		WithLocalRateLimit(LocalRateLimitSettings{Requests: 1000, Period: time.Second, MaxWait: time.Second}),
		WithBulkhead(BulkheadSettings{MaxConcurrent: 3}),
		WithAttemptTimeout(AttemptTimeoutSettings{Timeout: time.Minute}))

	var order []string
	for _, l := range reg.Snapshot(context.Background()).Layers {
		order = append(order, l.Layer)
		if l.Policy != "vendor" {
			t.Errorf("%s policy = %q", l.Layer, l.Policy)
		}
	}
	want := []string{"retry", "circuit_breaker", "local_rate_limiter", "bulkhead", "call_timeout", "transport"}
	if len(order) != len(want) {
		t.Fatalf("layers = %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("layers = %v, want %v", order, want)
		}
	}
	if b := layerOf(t, reg.Snapshot(context.Background()), sluice.LayerCircuitBreaker).Breaker; b == nil || b.State != "closed" {
		t.Fatalf("breaker before = %+v", b)
	}

	for range 2 {
		_ = call(context.Background(), c, url) // two 500s open the breaker
	}
	err := call(context.Background(), c, url)
	wantReason(t, err, sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen)

	s := reg.Snapshot(context.Background())
	cb := layerOf(t, s, sluice.LayerCircuitBreaker)
	if cb.Breaker == nil || cb.Breaker.State != "open" || cb.Breaker.HalfOpenInSeconds <= 0 || cb.Breaker.HalfOpenInSeconds > 3600 {
		t.Errorf("breaker after = %+v", cb.Breaker)
	}
	if n := rejections(cb, sluice.ReasonCircuitOpen); n != 1 {
		t.Errorf("circuit_open count = %d, want 1", n)
	}
	if len(s.Recent) != 1 || s.Recent[0].Layer != "circuit_breaker" || s.Recent[0].Reason != "circuit_open" || s.Recent[0].Policy != "vendor" {
		t.Errorf("recent = %+v", s.Recent)
	}
	tr := layerOf(t, s, sluice.LayerTransport)
	if g, ok := gauge(tr, "sockets_open"); !ok || g.Value < 1 || g.Max != 4 {
		t.Errorf("sockets_open = %+v", g)
	}
	bh := layerOf(t, s, sluice.LayerBulkhead)
	if g, ok := gauge(bh, "in_flight"); !ok || g.Value != 0 || g.Max != 3 {
		t.Errorf("bulkhead in_flight after the calls = %+v", g)
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(reg.Snapshot(context.Background()).Layers); n != 0 {
		t.Errorf("%d layers left after Close", n)
	}
}

// TestStatusBulkheadUse: the bulkhead's permits in use and its waiters are
// shown while calls hold them, and go back to zero when the bodies close.
func TestStatusBulkheadUse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := status.NewRegistry()
		release := make(chan struct{})
		c := NewClient(WithName(policy), WithTelemetry(newTelemetry(t).tel), WithStatus(reg),
			WithTransport(handlerTransport{http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release })}),
			WithBulkhead(BulkheadSettings{MaxConcurrent: 2, MaxWait: time.Minute}))
		defer c.Close()
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() { _ = call(context.Background(), c, "http://vendor.test/") })
		}
		synctest.Wait() // two calls are at the vendor, the third waits for a permit
		bh := layerOf(t, reg.Snapshot(context.Background()), sluice.LayerBulkhead)
		if g, _ := gauge(bh, "in_flight"); g.Value != 2 || g.Max != 2 {
			t.Errorf("in_flight = %+v, want 2 of 2", g)
		}
		if g, _ := gauge(bh, "queued"); g.Value != 1 {
			t.Errorf("queued = %+v, want 1", g)
		}
		close(release)
		wg.Wait()
		bh = layerOf(t, reg.Snapshot(context.Background()), sluice.LayerBulkhead)
		if g, _ := gauge(bh, "in_flight"); g.Value != 0 {
			t.Errorf("in_flight after = %+v, want 0", g)
		}
		if g, _ := gauge(bh, "queued"); g.Value != 0 {
			t.Errorf("queued after = %+v, want 0", g)
		}
	})
}

// TestStatusGlobalQuotaOnRedis: the global quota's remaining burst and next
// free slot are read from a real Redis; a vendor's Retry-After shows as a
// cooldown; with Redis gone, the page says so and counts degraded decisions.
func TestStatusGlobalQuotaOnRedis(t *testing.T) {
	srv := redistest.Start(t)
	reg := status.NewRegistry()
	limited := false
	var mu sync.Mutex
	url := vendor(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if limited {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	}).URL
	c := chain(t, newTelemetry(t), WithStatus(reg), WithGlobalRateLimit(GlobalRateLimitSettings{
		Client: srv.Client(), Name: srv.Prefix, Requests: 3, Period: time.Hour, Burst: 3,
		RedisTimeout: 2 * time.Second}))

	q := layerOf(t, reg.Snapshot(context.Background()), sluice.LayerGlobalRateLimiter)
	if q.Quota == nil || q.Quota.Source != "redis" || q.Quota.RequestsRemaining == nil || *q.Quota.RequestsRemaining != 3 ||
		q.Quota.NextFreeInSeconds != 0 {
		t.Fatalf("quota before = %+v", q.Quota)
	}
	if q.Redis == nil || !q.Redis.Healthy || q.Redis.Degraded != 0 {
		t.Errorf("redis before = %+v", q.Redis)
	}
	for range 3 {
		mustGet(t, c, url)
	}
	q = layerOf(t, reg.Snapshot(context.Background()), sluice.LayerGlobalRateLimiter)
	// Three of three per hour used: the next slot frees in about 20 minutes.
	if *q.Quota.RequestsRemaining != 0 || q.Quota.NextFreeInSeconds < 1000 || q.Quota.NextFreeInSeconds > 1200 {
		t.Errorf("quota after 3 calls = %+v (remaining %d)", q.Quota, *q.Quota.RequestsRemaining)
	}

	srv2 := redistest.Start(t) // a fresh quota, to see a cooldown
	reg2 := status.NewRegistry()
	c2 := chain(t, newTelemetry(t), WithStatus(reg2), WithRetry(RetrySettings{MaxAttempts: 1}),
		WithGlobalRateLimit(GlobalRateLimitSettings{Client: srv2.Client(), Name: srv2.Prefix, Requests: 100,
			Period: time.Second, RedisTimeout: 2 * time.Second}))
	mu.Lock()
	limited = true
	mu.Unlock()
	_ = call(context.Background(), c2, url)
	q = layerOf(t, reg2.Snapshot(context.Background()), sluice.LayerGlobalRateLimiter)
	if q.Quota.CooldownUntil == nil || time.Until(*q.Quota.CooldownUntil) < 20*time.Second || *q.Quota.RequestsRemaining != 0 {
		t.Errorf("quota in cooldown = %+v", q.Quota)
	}

	srv2.Kill()
	_ = call(context.Background(), c2, url) // fails to reach Redis: falls back, degraded
	q = layerOf(t, reg2.Snapshot(context.Background()), sluice.LayerGlobalRateLimiter)
	if q.Redis == nil || q.Redis.Healthy || q.Redis.Degraded < 1 || q.Quota.Source != "local" {
		t.Errorf("with Redis down: redis = %+v, quota = %+v", q.Redis, q.Quota)
	}
}

// TestStatusGlobalQuotaLease: in lease mode the page shows what this process
// holds, and what it holds (spendable or to hand back), what Redis has left
// and what was sent add up to the burst (the quota refills one request per 6 minutes, so not within the
// test).
func TestStatusGlobalQuotaLease(t *testing.T) {
	srv := redistest.Start(t)
	reg := status.NewRegistry()
	url := vendor(t, func(http.ResponseWriter, *http.Request) {}).URL
	c := chain(t, newTelemetry(t), WithStatus(reg), WithGlobalRateLimit(GlobalRateLimitSettings{
		Client: srv.Client(), Name: srv.Prefix, Requests: 10, Period: time.Hour, Burst: 10,
		Lease: true, MaxLease: 5, RedisTimeout: 2 * time.Second}))
	const sent = 6
	for range sent {
		mustGet(t, c, url)
	}
	// A top-up lease may still be on its way (it asks Redis in the
	// background when the holding runs low): read until it has landed.
	var held, back, left int64
	for deadline := time.Now().Add(10 * time.Second); ; {
		q := layerOf(t, reg.Snapshot(context.Background()), sluice.LayerGlobalRateLimiter)
		if q.Quota == nil || q.Quota.Lease == nil || q.Quota.RequestsRemaining == nil {
			t.Fatalf("quota = %+v; want a lease and the requests remaining", q.Quota)
		}
		held, back, left = q.Quota.Lease.Requests, q.Quota.Lease.ReturnRequests, *q.Quota.RequestsRemaining
		if held+back+left+sent == 10 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond) // polling: the top-up is a real Redis call, in real time
	}
	if held < 0 || held > 5 || back < 0 || held+back+left+sent != 10 {
		t.Errorf("held %d + to hand back %d + left in Redis %d + sent %d; want 10 with at most MaxLease (5) held",
			held, back, left, sent)
	}
	rec := httptest.NewRecorder()
	reg.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/sluice", nil))
	// (what is held may have expired since: the HTML is checked for the line)
	if want := "leased here: <b>"; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("the page does not say %q", want)
	}
}
