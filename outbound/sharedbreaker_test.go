package outbound

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/quota"
	"github.com/sluice-go/sluice/internal/redistest"
)

// TestSharedBreakerOpensFleetAndProbesOnce: with quorum 1, client A's vendor
// failure opens B too: B's next call fails with circuit_open without reaching
// the vendor. When the fleet half-opens, callers of both clients race and
// exactly one probe reaches the vendor; its success closes the fleet.
func TestSharedBreakerOpensFleetAndProbesOnce(t *testing.T) {
	srv := redistest.New(t)
	var n counter
	release := make(chan struct{})
	var releaseOnce sync.Once
	rel := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(rel)
	url := vendor(t, func(w http.ResponseWriter, r *http.Request) {
		n.add(r.URL.Path)
		switch r.URL.Path {
		case "/bad":
			w.WriteHeader(http.StatusInternalServerError)
		case "/probe":
			select {
			case <-release:
			default:
				n.add("/probe-before-release")
			}
			select { // the probe stays in flight while the others race
			case <-release:
			case <-r.Context().Done():
			}
		}
		_, _ = io.WriteString(w, "ok")
	}).URL
	local := BreakerSettings{FailureRatio: 1, MinThroughput: 1, OpenDelay: time.Hour}
	// RedisTimeout is generous: a TryProbe that misses the 50ms default on a
	// loaded machine falls back to "no Redis", where every process may probe
	// (documented), and the test would count 8 probes for a reason that is
	// not the one it tests.
	shared := SharedBreakerSettings{Client: srv.Client(), Name: srv.Prefix, Quorum: 1,
		OpenFor: 300 * time.Millisecond, Refresh: 20 * time.Millisecond, RedisTimeout: 2 * time.Second}
	a := chain(t, newTelemetry(t), WithCircuitBreaker(local), WithSharedCircuitBreaker(shared))
	b := chain(t, newTelemetry(t), WithCircuitBreaker(local), WithSharedCircuitBreaker(shared))

	mustGet(t, a, url+"/bad") // A's breaker opens; quorum 1 opens the fleet
	wantReason(t, call(context.Background(), a, url+"/x"), sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen)
	// B learns it by pub/sub or its 20ms refresh.
	deadline := time.Now().Add(5 * time.Second)
	for call(context.Background(), b, url+"/learn") == nil {
		if time.Now().After(deadline) {
			t.Fatal("B never saw the fleet open")
		}
		time.Sleep(5 * time.Millisecond)
	}
	err := call(context.Background(), b, url+"/x")
	wantReason(t, err, sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen)
	if n.get("/x") != 0 {
		t.Fatalf("the vendor saw %d calls to /x while the fleet was open", n.get("/x"))
	}

	// Half-open: 8 callers on each client call /probe until the probe is in
	// flight, then a few more times; every other call must be refused.
	var wg sync.WaitGroup
	var rejected, others atomic.Int64
	stop := time.Now().Add(10 * time.Second)
	for _, c := range []*http.Client{a, b} {
		for range 8 {
			wg.Go(func() {
				after := 0
				for after < 5 && time.Now().Before(stop) {
					if n.get("/probe") > 0 {
						after++
					}
					err := call(context.Background(), c, url+"/probe")
					switch {
					case err == nil:
					case sluice.ErrorOf(err) != nil && sluice.ErrorOf(err).Reason == sluice.ReasonCircuitOpen:
						rejected.Add(1)
					default:
						others.Add(1)
						t.Errorf("unexpected %v", err)
					}
					time.Sleep(2 * time.Millisecond) // pace the race, not a settle
				}
			})
		}
	}
	// Release the probe once every caller has raced past it.
	go func() {
		for n.get("/probe") == 0 && time.Now().Before(stop) {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
		rel()
	}()
	wg.Wait()
	t.Logf("probes reaching the vendor while half-open: %d; rejected: %d", n.get("/probe-before-release"), rejected.Load())
	if got := n.get("/probe-before-release"); got != 1 {
		t.Fatalf("%d probes reached the vendor across both clients; want exactly 1", got)
	}
	// The good probe closed the fleet: both clients call again.
	deadline = time.Now().Add(5 * time.Second)
	for _, c := range []*http.Client{a, b} {
		for call(context.Background(), c, url+"/after") != nil {
			if time.Now().After(deadline) {
				t.Fatal("the fleet did not close after a good probe")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func TestSharedBreakerNeedsLocal(t *testing.T) {
	srv := redistest.New(t)
	mustPanic(t, func() { NewClient(WithSharedCircuitBreaker(SharedBreakerSettings{Client: srv.Client()})) })
	mustPanic(t, func() { WithSharedCircuitBreaker(SharedBreakerSettings{}) })
	mustPanic(t, func() { WithGlobalRateLimit(GlobalRateLimitSettings{}) })
}

// cbVendor counts calls by path. Paths ending in /bad answer 500, in /busy
// 503 with the Retry-After of the query's ra; anything else "ok".
func cbVendor(t *testing.T, n *counter) string {
	return vendor(t, func(w http.ResponseWriter, r *http.Request) {
		n.add(r.URL.Path)
		switch {
		case strings.HasSuffix(r.URL.Path, "/bad"):
			w.WriteHeader(http.StatusInternalServerError)
		case strings.HasSuffix(r.URL.Path, "/busy"):
			w.Header().Set("Retry-After", r.URL.Query().Get("ra"))
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			_, _ = io.WriteString(w, "ok")
		}
	}).URL
}

// oneFailureOpens is a local breaker that one vendor failure opens for an hour.
var oneFailureOpens = BreakerSettings{FailureRatio: 1, MinThroughput: 1, OpenDelay: time.Hour}

// sharedClient is a chain with a local breaker l shared through s.
func sharedClient(t *testing.T, tm *telemetry, l BreakerSettings, s SharedBreakerSettings) *http.Client {
	t.Helper()
	return chain(t, tm, WithCircuitBreaker(l), WithSharedCircuitBreaker(s))
}

// untilRejected calls path on c until the fleet's open state reaches it
// (pub/sub or refresh) and returns how long that took; the calls made before
// may reach the vendor.
func untilRejected(t *testing.T, c *http.Client, url string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := call(context.Background(), c, url)
		if err != nil {
			wantReason(t, err, sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen)
			return time.Since(start)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%s: the fleet's open state did not arrive within 10s", url)
		}
		time.Sleep(2 * time.Millisecond) // polling
	}
}

// TestSharedBreakerQuorumOfTwo: with Quorum 2, one client whose local breaker
// opens does not open the fleet (the other clients still reach the vendor);
// when a second client's local breaker opens, the fleet opens, and a third
// client that never failed is refused without reaching the vendor.
func TestSharedBreakerQuorumOfTwo(t *testing.T) {
	srv := redistest.New(t)
	rc := srv.Client()
	var n counter
	url := cbVendor(t, &n)
	shared := SharedBreakerSettings{Client: rc, Name: srv.Prefix, Quorum: 2, OpenFor: time.Hour,
		Refresh: 20 * time.Millisecond, RedisTimeout: 2 * time.Second}
	// Half the calls failing opens a local breaker: b's one success and one
	// failure open it.
	local := BreakerSettings{FailureRatio: 0.5, MinThroughput: 1, OpenDelay: time.Hour}
	a := sharedClient(t, newTelemetry(t), local, shared)
	b := sharedClient(t, newTelemetry(t), local, shared)
	c := sharedClient(t, newTelemetry(t), local, shared)
	openKey := quota.Key(srv.Prefix, "cb:open")

	if err := call(context.Background(), a, url+"/a/bad"); err != nil {
		t.Fatalf("a's failing call: %v", err) // a 500 is a response, not an error
	}
	wantReason(t, call(context.Background(), a, url+"/a/x"), sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen)
	// ReportOpen ran inside a's call, so Redis already has its verdict.
	if rc.Exists(context.Background(), openKey).Val() != 0 {
		t.Fatal("one process opened the fleet with Quorum 2")
	}
	mustGet(t, b, url+"/b/ok")
	mustGet(t, c, url+"/c/ok")
	if n.get("/a/x") != 0 || n.get("/b/ok") != 1 || n.get("/c/ok") != 1 {
		t.Fatalf("vendor saw a/x %d, b/ok %d, c/ok %d; want 0, 1, 1", n.get("/a/x"), n.get("/b/ok"), n.get("/c/ok"))
	}

	if err := call(context.Background(), b, url+"/b/bad"); err != nil {
		t.Fatalf("b's failing call: %v", err)
	}
	wantReason(t, call(context.Background(), b, url+"/b/x"), sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen)
	pttl := rc.PTTL(context.Background(), openKey).Val()
	if pttl <= 0 {
		t.Fatalf("the second report did not open the fleet: PTTL %v", pttl)
	}
	learned := untilRejected(t, c, url+"/c/learn")
	e := wantReason(t, call(context.Background(), c, url+"/c/x"), sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen)
	t.Logf("fleet open for %v; c learned it after %v (%d calls reached the vendor first); RetryAfter %v",
		pttl, learned, n.get("/c/learn"), e.RetryAfter)
	if n.get("/c/x") != 0 {
		t.Fatalf("the vendor saw %d calls from c while the fleet was open", n.get("/c/x"))
	}
	if e.RetryAfter < 50*time.Minute {
		t.Errorf("c's RetryAfter %v; want the fleet's remaining hour, not a local delay", e.RetryAfter)
	}
}

// TestSharedBreakerVendorSignalOpensFleet: a 503 with Retry-After opens the
// whole fleet at once, with no quorum (Quorum 2, and the local breaker, which
// needs 100 calls, never opens), for the Retry-After capped by MaxVendorOpen.
// The open lasts at least that long counted from before the 503 was asked for
// (causal), and ends within a generous bound.
func TestSharedBreakerVendorSignalOpensFleet(t *testing.T) {
	for _, tc := range []struct {
		name, ra string
		max      time.Duration
		want     time.Duration
	}{
		{"RetryAfter", "1", 10 * time.Second, time.Second},
		{"CappedByMaxVendorOpen", "3600", 700 * time.Millisecond, 700 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.New(t)
			var n counter
			url := cbVendor(t, &n)
			local := BreakerSettings{FailureRatio: 1, MinThroughput: 100, OpenDelay: time.Hour}
			shared := SharedBreakerSettings{Client: srv.Client(), Name: srv.Prefix, Quorum: 2, OpenFor: time.Hour,
				MaxVendorOpen: tc.max, Refresh: 20 * time.Millisecond, RedisTimeout: 2 * time.Second}
			a := sharedClient(t, newTelemetry(t), local, shared)
			b := sharedClient(t, newTelemetry(t), local, shared)

			before := time.Now()
			if err := call(context.Background(), a, url+"/a/busy?ra="+tc.ra); err != nil {
				t.Fatalf("the 503: %v", err)
			}
			e := wantReason(t, call(context.Background(), a, url+"/a/x"), sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen)
			if e.RetryAfter <= 0 || e.RetryAfter > tc.want {
				t.Errorf("a's RetryAfter %v; want in (0, %v]", e.RetryAfter, tc.want)
			}
			learned := untilRejected(t, b, url+"/b/learn")
			for err := call(context.Background(), b, url+"/b/after"); err != nil; err = call(context.Background(), b, url+"/b/after") {
				wantReason(t, err, sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen)
				if time.Since(before) > tc.want+5*time.Second {
					t.Fatalf("b still refused %v after the 503; want about %v", time.Since(before), tc.want)
				}
				time.Sleep(5 * time.Millisecond) // waiting out the open period
			}
			open := time.Since(before)
			t.Logf("b learned the open after %v; b called again %v after the 503 was asked for (want >= %v)", learned, open, tc.want)
			// Redis's PX and PTTL count whole milliseconds: allow a few.
			if open < tc.want-5*time.Millisecond {
				t.Errorf("the fleet reopened %v after the 503; want >= %v", open, tc.want)
			}
			if got := n.get("/b/after"); got != 1 {
				t.Errorf("the vendor saw %d calls to /b/after; want only the one after the open", got)
			}
			if n.get("/a/x") != 0 {
				t.Error("a's call reached the vendor while the fleet was open")
			}
		})
	}
}
