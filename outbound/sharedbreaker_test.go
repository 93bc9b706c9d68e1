package outbound

import (
	"context"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-go/sluice"
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
