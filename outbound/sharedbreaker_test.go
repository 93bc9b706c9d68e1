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

	"github.com/redis/go-redis/v9"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/redistest"
	"github.com/sluice-go/sluice/internal/redisx"
	"github.com/sluice-go/sluice/internal/rkey"
	"github.com/sluice-go/sluice/otelx"
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
	a := sharedClient(t, newTelemetry(t), local, shared)
	b := sharedClient(t, newTelemetry(t), local, shared)

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
	for _, c := range []*Client{a, b} {
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
	for _, c := range []*Client{a, b} {
		for call(context.Background(), c, url+"/after") != nil {
			if time.Now().After(deadline) {
				t.Fatal("the fleet did not close after a good probe")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// TestSharedBreakerRefusesImpossibleSettings: a shared breaker is a field of
// the local breaker's settings (so one without the other cannot be written:
// see TestMisuseDoesNotCompile), and its impossible settings panic in
// WithCircuitBreaker, naming the field.
func TestSharedBreakerRefusesImpossibleSettings(t *testing.T) {
	srv := redistest.New(t)
	for name, s := range map[string]SharedBreakerSettings{
		"nil Client":       {},
		"negative Quorum":  {Client: srv.Client(), Quorum: -1},
		"negative Window":  {Client: srv.Client(), Window: -time.Second},
		"negative OpenFor": {Client: srv.Client(), OpenFor: -time.Second},
		"negative Refresh": {Client: srv.Client(), Refresh: -time.Second},
		"negative Timeout": {Client: srv.Client(), RedisTimeout: -time.Second},
		"negative Health":  {Client: srv.Client(), HealthPeriod: -time.Second},
		"negative Lease":   {Client: srv.Client(), ProbeLease: -time.Second},
	} {
		msg := panicText(func() { WithCircuitBreaker(BreakerSettings{Shared: &s}) })
		if !strings.HasPrefix(msg, "outbound: WithCircuitBreaker: Shared: ") {
			t.Errorf("%s: panic %q; want one starting with %q", name, msg, "outbound: WithCircuitBreaker: Shared: ")
		}
	}
	mustPanic(t, func() { WithGlobalRateLimit(GlobalRateLimitSettings{}) })
}

// TestSharedBreakerSettingsCopied: WithCircuitBreaker keeps its own copy of
// Shared, so a caller reusing (and changing) its SharedBreakerSettings after
// the call cannot change, or break, a chain built from it.
func TestSharedBreakerSettingsCopied(t *testing.T) {
	srv := redistest.New(t)
	shared := &SharedBreakerSettings{Client: srv.Client(), Name: srv.Prefix}
	opt := WithCircuitBreaker(BreakerSettings{Shared: shared})
	shared.Client = nil // would panic at the first use of Redis if shared
	c := chain(t, newTelemetry(t), opt)
	mustGet(t, c, cbVendor(t, &counter{})+"/x")
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

// tenthFailsOpens is oneFailureOpens for a client that succeeded before: one
// failure among its first ten calls opens it.
var tenthFailsOpens = BreakerSettings{FailureRatio: 0.1, MinThroughput: 1, OpenDelay: time.Hour}

// sharedClient is a chain with a local breaker l shared through s.
func sharedClient(t *testing.T, tm *telemetry, l BreakerSettings, s SharedBreakerSettings) *Client {
	t.Helper()
	l.Shared = &s
	return chain(t, tm, WithCircuitBreaker(l))
}

// untilRejected calls path on c until the fleet's open state reaches it
// (pub/sub or refresh) and returns how long that took; the calls made before
// may reach the vendor.
func untilRejected(t *testing.T, c *Client, url string) time.Duration {
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
	openKey := rkey.Key(srv.Prefix, "cb:open")

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

// tightRedis is a client built as production code should build it
// (redisx.NewClientOptions: tens of ms, no retries), closed when the test ends.
func tightRedis(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	opt, err := redisx.NewClientOptions(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(opt)
	t.Cleanup(func() { _ = rc.Close() })
	return rc
}

// latencies records how long each call took, to bound the time calls spend
// waiting on a Redis that is gone.
type latencies struct {
	start time.Time
	d     []time.Duration
}

func (l *latencies) call(c *Client, url string) error {
	t0 := time.Now()
	err := call(context.Background(), c, url)
	l.d = append(l.d, time.Since(t0))
	return err
}

// check fails the test if a call took longer than generous, or if more
// calls than one per health period per client took at least timeout, the
// mark of a call that waited on Redis.
func (l *latencies) check(t *testing.T, clients int, timeout, health, generous time.Duration) {
	t.Helper()
	elapsed := time.Since(l.start)
	slow, worst := 0, time.Duration(0)
	for _, d := range l.d {
		worst = max(worst, d)
		if d >= timeout {
			slow++
		}
	}
	allowed := clients * (int(elapsed/health) + 1)
	t.Logf("%d calls in %v without Redis: slowest %v, %d took >= the %v Redis timeout (allowed %d)",
		len(l.d), elapsed.Round(time.Millisecond), worst, slow, timeout, allowed)
	if worst > generous {
		t.Errorf("a call took %v without Redis; want under %v", worst, generous)
	}
	if slow > allowed {
		t.Errorf("%d calls waited on Redis for its timeout in %v; want at most one per %v health period per client (%d)",
			slow, elapsed, health, allowed)
	}
}

// outages are the two ways Redis goes away: killed (connections refused at
// once) and paused (SIGSTOP: connections open, nothing answers, every call
// runs into its timeout).
var outages = []struct {
	name      string
	stop, fix func(*redistest.Server)
}{
	{"Killed", (*redistest.Server).Kill, (*redistest.Server).Restart},
	{"Paused", (*redistest.Server).Pause, (*redistest.Server).Resume},
}

// TestSharedBreakerRedisGoneWhileOpen: with the fleet open, Redis goes away.
// Every client keeps refusing until the last known open state expires, then
// decides on its local breaker alone: a client whose local breaker is open
// stays refused, one whose breaker is closed calls the vendor, and a local
// failure still opens it. The failed publication counts as
// resilience.degraded, and no more than one call per health period per client
// waits on Redis for the Redis timeout.
func TestSharedBreakerRedisGoneWhileOpen(t *testing.T) {
	for _, o := range outages {
		t.Run(o.name, func(t *testing.T) {
			srv := redistest.Start(t)
			rc := tightRedis(t, srv)
			var n counter
			url := cbVendor(t, &n)
			const openFor, redisTimeout, health = 3 * time.Second, 500 * time.Millisecond, time.Second
			shared := SharedBreakerSettings{Client: rc, Name: srv.Prefix, Quorum: 1, OpenFor: openFor,
				Refresh: 20 * time.Millisecond, RedisTimeout: redisTimeout, HealthPeriod: health}
			tmD := newTelemetry(t)
			a := sharedClient(t, newTelemetry(t), oneFailureOpens, shared)
			b := sharedClient(t, newTelemetry(t), oneFailureOpens, shared)
			c := sharedClient(t, newTelemetry(t), oneFailureOpens, shared)
			d := sharedClient(t, tmD, oneFailureOpens, shared) // no calls before the outage

			opened := time.Now()
			if err := call(context.Background(), a, url+"/a/bad"); err != nil {
				t.Fatalf("a's failing call: %v", err)
			}
			if pttl := rc.PTTL(context.Background(), rkey.Key(srv.Prefix, "cb:open")).Val(); pttl <= 0 {
				t.Fatalf("a's report did not open the fleet: PTTL %v", pttl)
			}
			untilRejected(t, b, url+"/b/learn")
			untilRejected(t, c, url+"/c/learn")
			o.stop(srv)
			l := &latencies{start: time.Now()}

			// The last known open state is honoured.
			for _, x := range []struct {
				c    *Client
				path string
			}{{a, "/a/x"}, {b, "/b/x"}, {c, "/c/x"}} {
				err := l.call(x.c, url+x.path)
				if e := wantReason(t, err, sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen); e.RetryAfter <= 0 {
					t.Errorf("%s refused with RetryAfter %v", x.path, e.RetryAfter)
				}
				if n.get(x.path) != 0 {
					t.Fatalf("%s reached the vendor while the fleet was open", x.path)
				}
			}
			// Until it expires; then b, whose local breaker is closed, calls.
			for err := l.call(b, url+"/b/ok"); err != nil; err = l.call(b, url+"/b/ok") {
				wantReason(t, err, sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen)
				if time.Since(opened) > openFor+10*time.Second {
					t.Fatalf("b still refused %v after the fleet opened for %v", time.Since(opened), openFor)
				}
				time.Sleep(5 * time.Millisecond) // waiting out the open period
			}
			if since := time.Since(opened); since < openFor {
				t.Errorf("b called the vendor %v after the fleet opened for %v", since, openFor)
			}
			mustOK := func(c *Client, path string) {
				t.Helper()
				if err := l.call(c, url+path); err != nil {
					t.Fatalf("%s: %v", path, err)
				}
			}
			mustOK(c, "/c/ok")
			// a's local breaker is still open (an hour): refused, vendor untouched.
			wantReason(t, l.call(a, url+"/a/after"), sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen)
			if n.get("/a/after") != 0 {
				t.Errorf("a's call reached the vendor while its local breaker was open")
			}
			// A local failure still opens d's breaker (one failure in one call).
			if err := l.call(d, url+"/d/bad"); err != nil {
				t.Fatalf("d's failing call: %v", err)
			}
			wantReason(t, l.call(d, url+"/d/y"), sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen)
			if n.get("/d/bad") != 1 || n.get("/d/y") != 0 {
				t.Errorf("vendor saw d/bad %d, d/y %d; want 1, 0", n.get("/d/bad"), n.get("/d/y"))
			}
			mustOK(c, "/c/ok2") // c, which never failed, still calls
			l.check(t, 4, redisTimeout, health, redisTimeout+2*time.Second)
			if got := tmD.sum(t, otelx.MetricDegraded); got < 1 {
				t.Errorf("d's resilience.degraded = %d; want its failed report counted", got)
			} else {
				t.Logf("d's resilience.degraded = %d", got)
			}
			o.fix(srv)
		})
	}
}

// Regression: with Redis gone, once the cached fleet open state ended, the
// fleet looked half-open, TryProbe answered "no Redis" with true, and the
// layer took that for the fleet's probe lease, skipping the local breaker:
// a client whose own breaker was open for an hour called the vendor.
func TestSharedBreakerRedisDownHalfOpenSkippedLocalBreaker(t *testing.T) {
	srv := redistest.Start(t)
	var n counter
	url := cbVendor(t, &n)
	a := sharedClient(t, newTelemetry(t), oneFailureOpens, SharedBreakerSettings{Client: tightRedis(t, srv),
		Name: srv.Prefix, Quorum: 1, OpenFor: 300 * time.Millisecond, RedisTimeout: 2 * time.Second})
	if err := call(context.Background(), a, url+"/bad"); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	// Refused by the fleet (RetryAfter <= 300ms) until its open state ends,
	// then by the local breaker (RetryAfter about an hour); never the vendor.
	deadline := time.Now().Add(10 * time.Second)
	for {
		e := wantReason(t, call(context.Background(), a, url+"/x"), sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen)
		if e.RetryAfter > 30*time.Minute {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the fleet's open state did not end")
		}
		time.Sleep(5 * time.Millisecond) // waiting out the open period
	}
	if got := n.get("/x"); got != 0 {
		t.Fatalf("the vendor saw %d calls while the local breaker was open", got)
	}
}

// TestSharedBreakerRedisKilledWhileClosedThenRestarted: with Redis killed
// while the fleet is closed, calls flow and each client keeps its local
// breaker (a's failure opens a, and with Quorum 1 would have opened the
// fleet, but c still calls). After Restart the shared mode resumes: b's next
// report opens the fleet again and c, which never failed, is refused without
// reaching the vendor.
func TestSharedBreakerRedisKilledWhileClosedThenRestarted(t *testing.T) {
	srv := redistest.Start(t)
	rc := tightRedis(t, srv)
	var n counter
	url := cbVendor(t, &n)
	const redisTimeout, health = 2 * time.Second, 100 * time.Millisecond
	shared := SharedBreakerSettings{Client: rc, Name: srv.Prefix, Quorum: 1, OpenFor: time.Hour,
		Refresh: 20 * time.Millisecond, RedisTimeout: redisTimeout, HealthPeriod: health}
	tmA := newTelemetry(t)
	a := sharedClient(t, tmA, tenthFailsOpens, shared)
	// b's breaker half-opens after 20ms, so each failed probe opens it again
	// and reports anew.
	b := sharedClient(t, newTelemetry(t), BreakerSettings{FailureRatio: 1, MinThroughput: 1, OpenDelay: 20 * time.Millisecond}, shared)
	c := sharedClient(t, newTelemetry(t), oneFailureOpens, shared)
	mustGet(t, c, url+"/c/before")

	srv.Kill()
	l := &latencies{start: time.Now()}
	for i := range 5 {
		if err := l.call(a, url+"/a/ok"); err != nil {
			t.Fatalf("call %d with Redis down: %v", i, err)
		}
	}
	if err := l.call(a, url+"/a/bad"); err != nil {
		t.Fatalf("a's failing call: %v", err)
	}
	wantReason(t, l.call(a, url+"/a/x"), sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen)
	for i := range 5 {
		if err := l.call(c, url+"/c/ok"); err != nil {
			t.Fatalf("c's call %d after a's breaker opened, with Redis down: %v", i, err)
		}
	}
	if n.get("/a/ok") != 5 || n.get("/a/x") != 0 || n.get("/c/ok") != 5 {
		t.Fatalf("vendor saw a/ok %d, a/x %d, c/ok %d; want 5, 0, 5", n.get("/a/ok"), n.get("/a/x"), n.get("/c/ok"))
	}
	l.check(t, 2, redisTimeout, health, redisTimeout+2*time.Second)
	if got := tmA.sum(t, otelx.MetricDegraded); got < 1 {
		t.Errorf("a's resilience.degraded = %d; want its failed report counted", got)
	}

	srv.Restart()
	restarted := time.Now()
	for {
		_ = call(context.Background(), b, url+"/b/bad") // a 500, or refused by b's own breaker
		if err := call(context.Background(), c, url+"/c/learn"); err != nil {
			wantReason(t, err, sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen)
			break
		}
		if time.Since(restarted) > 10*time.Second {
			t.Fatal("no report opened the fleet within 10s of the restart")
		}
		time.Sleep(10 * time.Millisecond) // pacing b's failures, not settling
	}
	t.Logf("shared again %v after the restart (%d failures of b reached the vendor)", time.Since(restarted), n.get("/b/bad"))
	if pttl := rc.PTTL(context.Background(), rkey.Key(srv.Prefix, "cb:open")).Val(); pttl <= 0 {
		t.Errorf("Redis holds no open fleet after c was refused: PTTL %v", pttl)
	}
	wantReason(t, call(context.Background(), c, url+"/c/x"), sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen)
	if n.get("/c/x") != 0 {
		t.Error("c's call reached the vendor with the fleet open")
	}
}

// TestSharedBreakerConstructionWithRedisDown: a client built against a
// stopped Redis works on its local breaker: calls flow, a failure opens it
// (counted as degraded, since the report cannot be published), and another
// client is unaffected.
func TestSharedBreakerConstructionWithRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	srv.Kill()
	var n counter
	url := cbVendor(t, &n)
	shared := SharedBreakerSettings{Client: tightRedis(t, srv), Name: srv.Prefix, Quorum: 1}
	tm := newTelemetry(t)
	a := sharedClient(t, tm, tenthFailsOpens, shared)
	c := sharedClient(t, newTelemetry(t), oneFailureOpens, shared)
	mustGet(t, a, url+"/a/ok")
	if err := call(context.Background(), a, url+"/a/bad"); err != nil {
		t.Fatalf("a's failing call: %v", err)
	}
	wantReason(t, call(context.Background(), a, url+"/a/x"), sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen)
	mustGet(t, c, url+"/c/ok")
	if n.get("/a/ok") != 1 || n.get("/a/x") != 0 || n.get("/c/ok") != 1 {
		t.Fatalf("vendor saw a/ok %d, a/x %d, c/ok %d; want 1, 0, 1", n.get("/a/ok"), n.get("/a/x"), n.get("/c/ok"))
	}
	if got := tm.sum(t, otelx.MetricDegraded); got < 1 {
		t.Errorf("resilience.degraded = %d; want the failed report counted", got)
	}
}
