package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/budget"
	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/fallback"
	"github.com/failsafe-go/failsafe-go/hedgepolicy"
	"github.com/failsafe-go/failsafe-go/ratelimiter"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/failsafe-go/failsafe-go/timeout"
	"go.uber.org/goleak"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/otelx"
)

// connVendor is a loopback vendor that counts its open connections.
type connVendor struct {
	*httptest.Server
	open     atomic.Int64
	arrivals atomic.Int64
}

func newConnVendor(t *testing.T, h func(n int64, w http.ResponseWriter, r *http.Request)) *connVendor {
	t.Helper()
	v := &connVendor{}
	v.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h(v.arrivals.Add(1), w, r)
	}))
	v.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			v.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			v.open.Add(-1)
		}
	}
	v.Start()
	t.Cleanup(v.Close)
	return v
}

// settle waits for everything the calls started to end, then checks that
// nothing was left holding a socket, a bulkhead permit or a goroutine: the
// client's idle connections are closed, the vendor is closed (which waits
// for its handlers), goleak retries until no stray goroutine is left, and
// then the counts must be exactly zero.
func settle(t *testing.T, v *connVendor, tr *http.Transport, ot *openTransport, tm *telemetry) {
	t.Helper()
	// The losers' bodies are drained in the background (policyCall.finish):
	// wait, with a generous bound, until each has been released. These tests
	// count real sockets (connVendor), so they cannot run in a synctest
	// bubble, and the drains read real sockets in real time.
	// A losing attempt also gives its bulkhead permit back as it unwinds,
	// which may be after the winner's call has returned: wait for that too
	// (a permit that never comes back still fails below, after 10s).
	permits := func() int64 {
		if tm == nil {
			return 0
		}
		return tm.sum(t, otelx.MetricActive, string(otelx.AttrLayer), string(sluice.LayerBulkhead))
	}
	for deadline := time.Now().Add(10 * time.Second); (ot.open.Load() != 0 || permits() != 0) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond) // polling counters; the condition, not the time, ends the wait
	}
	tr.CloseIdleConnections()
	v.Close()
	goleak.VerifyNone(t, goleak.IgnoreCurrent())
	if n := v.open.Load(); n != 0 {
		t.Errorf("vendor has %d open connections; want 0", n)
	}
	if n := ot.open.Load(); n != 0 {
		t.Errorf("%d attempts still hold a response body (a socket); want 0", n)
	}
	if n := permits(); n != 0 {
		t.Errorf("bulkhead permits held = %d; want 0", n)
	}
}

func getID(t *testing.T, c *http.Client, url string, id int) error {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Request-Id", strconv.Itoa(id))
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || string(b) != strconv.Itoa(id) {
		return fmt.Errorf("request %d: got %d %q", id, resp.StatusCode, b)
	}
	return nil
}

// TestPoliciesHedge runs failsafe-go's hedgepolicy against a vendor whose
// every 20th arrival is 10x slower: every caller gets its own answer, and
// once the calls are done no socket, bulkhead permit or goroutine is left,
// the losing hedges' included.
func TestPoliciesHedge(t *testing.T) {
	const calls, workers = 200, 8
	v := newConnVendor(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		d := 5 * time.Millisecond
		if n%20 == 0 {
			d = 50 * time.Millisecond
		}
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, r.Header.Get("X-Request-Id"))
	})
	tr := transport(t)
	ot := &openTransport{next: tr}
	tm := newTelemetry(t)
	var hedges atomic.Int64
	hedge := hedgepolicy.NewBuilderWithDelay[*http.Response](20 * time.Millisecond).
		WithBudget(budget.NewBuilder().WithMaxRate(0.1).WithMinConcurrency(1).Build()).
		OnHedge(func(failsafe.ExecutionEvent[*http.Response]) { hedges.Add(1) }).
		Build()
	rt := NewRoundTripper(WithTransport(ot), WithTelemetry(tm.tel),
		WithBulkhead(BulkheadSettings{MaxConcurrent: workers * 2, MaxWait: time.Second}), WithPolicies(hedge))
	defer rt.Close()
	c := &http.Client{Transport: rt}

	var wg sync.WaitGroup
	errs := make(chan error, calls)
	ids := make(chan int, calls)
	for i := range calls {
		ids <- i
	}
	close(ids)
	for range workers {
		wg.Go(func() {
			for id := range ids {
				if err := getID(t, c, v.URL, id); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	settle(t, v, tr, ot, tm)
	h, a := hedges.Load(), v.arrivals.Load()
	t.Logf("%d calls, %d hedges, %d vendor arrivals", calls, h, a)
	if h > calls || a > calls+h {
		t.Errorf("%d hedges and %d arrivals for %d calls; want at most one hedge per call and nothing else", h, a, calls)
	}
}

// TestPoliciesHedgeLoserClosed: a hedge's losing response (here a 503 the
// hedge policy does not take as final) is drained and closed, releasing its
// bulkhead permit and socket, while the winner is returned intact.
func TestPoliciesHedgeLoserClosed(t *testing.T) {
	hedgeIn := make(chan struct{})
	v := newConnVendor(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			<-hedgeIn // answer only once the hedge is at the vendor
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, strings.Repeat("x", 100))
			return
		}
		close(hedgeIn)
		_, _ = io.WriteString(w, "winner")
	})
	tr := transport(t)
	ot := &openTransport{next: tr}
	tm := newTelemetry(t)
	hedge := hedgepolicy.NewBuilderWithDelay[*http.Response](time.Millisecond).
		CancelIf(func(r *http.Response, err error) bool { return err == nil && r.StatusCode == http.StatusOK }).
		Build()
	rt := NewRoundTripper(WithTransport(ot), WithTelemetry(tm.tel), WithBulkhead(BulkheadSettings{MaxConcurrent: 2}), WithPolicies(hedge))
	defer rt.Close()
	resp, err := (&http.Client{Transport: rt}).Get(v.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "winner" {
		t.Fatalf("got %d %q; want 200 \"winner\"", resp.StatusCode, b)
	}
	settle(t, v, tr, ot, tm)
	if n := v.arrivals.Load(); n != 2 {
		t.Errorf("vendor arrivals = %d; want 2", n)
	}
}

// TestPoliciesBodyWithoutGetBodySentOnce: a body that cannot be replayed is
// sent by the first execution only; a hedge shares its outcome.
func TestPoliciesBodyWithoutGetBodySentOnce(t *testing.T) {
	hedged := make(chan struct{})
	v := newConnVendor(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
		<-hedged
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	})
	tr := transport(t)
	ot := &openTransport{next: tr}
	var once sync.Once
	hedge := hedgepolicy.NewBuilderWithDelay[*http.Response](time.Millisecond).
		OnHedge(func(failsafe.ExecutionEvent[*http.Response]) { once.Do(func() { close(hedged) }) }).Build()
	rt := NewRoundTripper(WithTransport(ot), WithPolicies(hedge))
	defer rt.Close()
	req, _ := http.NewRequest(http.MethodPost, v.URL, io.NopCloser(strings.NewReader("payload")))
	if req.GetBody != nil {
		t.Fatal("test needs a request without GetBody")
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "payload" {
		t.Fatalf("body = %q; want the payload", b)
	}
	settle(t, v, tr, ot, nil)
	if n := v.arrivals.Load(); n != 1 {
		t.Errorf("vendor arrivals = %d; want 1 (the body can be sent once)", n)
	}
}

// TestPoliciesFallback: a failsafe-go fallback sends the call to a second
// vendor (its own chain) while the first one's breaker is open, or while the
// first vendor is cooling down; the first vendor is not called meanwhile.
func TestPoliciesFallback(t *testing.T) {
	cases := map[string]struct {
		first  http.HandlerFunc
		option Option
		reason sluice.Reason
	}{
		"circuit_open": {
			first: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) },
			option: WithCircuitBreaker(BreakerSettings{FailureRatio: 1, MinThroughput: 2,
				OpenDelay: time.Hour}),
			reason: sluice.ReasonCircuitOpen,
		},
		"vendor_cooldown": {
			first: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Retry-After", "3600")
				w.WriteHeader(http.StatusTooManyRequests)
			},
			option: WithGlobalRateLimit(GlobalRateLimitSettings{Requests: 1000, Period: time.Second, Burst: 1000}),
			reason: sluice.ReasonVendorCooldown,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var firstCalls counter
			first := vendor(t, func(w http.ResponseWriter, r *http.Request) {
				firstCalls.add("/")
				tc.first(w, r)
			})
			second := vendor(t, func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, "second:"+r.URL.Path)
			})
			secondClient := NewClient(WithTransport(transport(t)), WithName("second"))
			defer secondClient.Close()
			var fellBack atomic.Int64
			fb := fallback.NewBuilderWithFunc(func(exec failsafe.Execution[*http.Response]) (*http.Response, error) {
				fellBack.Add(1)
				req, err := PolicyRequest(exec)
				if err != nil {
					return nil, err
				}
				req.URL.Host = strings.TrimPrefix(second.URL, "http://")
				req.Host = ""
				return secondClient.Do(req)
			}).HandleIf(func(_ *http.Response, err error) bool {
				return errors.Is(err, &sluice.Error{Reason: tc.reason})
			}).Build()
			firstClient := NewClient(WithTransport(transport(t)), WithName("first"), tc.option, WithPolicies(fb))
			defer firstClient.Close()

			// Make the first vendor's failures open its breaker or start its
			// cooldown: those calls get the first vendor's answer.
			for {
				if firstCalls.get("/") > 0 && fellBack.Load() > 0 {
					break
				}
				resp, err := firstClient.Get(first.URL + "/v1/chat")
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if firstCalls.get("/") > 10 {
					t.Fatalf("the first vendor was called %d times and never %s", firstCalls.get("/"), tc.reason)
				}
			}
			before := firstCalls.get("/")
			for range 5 {
				resp, err := firstClient.Get(first.URL + "/v1/chat")
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || string(b) != "second:/v1/chat" {
					t.Fatalf("got %d %q; want the second vendor's answer", resp.StatusCode, b)
				}
			}
			if n := firstCalls.get("/"); n != before {
				t.Errorf("the first vendor was called %d times while %s; want 0", n-before, tc.reason)
			}
		})
	}
}

// TestPoliciesErrorMapping: each failsafe-go policy's rejection comes back
// as a *sluice.Error of its layer and reason, wrapping the original.
func TestPoliciesErrorMapping(t *testing.T) {
	openCB := circuitbreaker.NewWithDefaults[*http.Response]()
	openCB.Open()
	fullBH := bulkhead.New[*http.Response](1)
	if !fullBH.TryAcquirePermit() {
		t.Fatal("bulkhead: no permit")
	}
	usedRL := ratelimiter.NewBursty[*http.Response](1, time.Hour)
	if !usedRL.TryAcquirePermit() {
		t.Fatal("rate limiter: no permit")
	}
	spentBudget := budget.NewBuilder().WithMaxRate(0.1).WithMinConcurrency(1).Build()
	if !spentBudget.(interface{ TryAcquirePermit() bool }).TryAcquirePermit() {
		t.Fatal("budget: no permit")
	}
	on500 := func(r *http.Response, err error) bool {
		return err == nil && r.StatusCode == http.StatusInternalServerError
	}
	cases := []struct {
		name     string
		policy   failsafe.Policy[*http.Response]
		original error
		layer    sluice.Layer
		reason   sluice.Reason
	}{
		{"circuitbreaker", openCB, circuitbreaker.ErrOpen, sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen},
		{"bulkhead", fullBH, bulkhead.ErrFull, sluice.LayerBulkhead, sluice.ReasonBulkheadFull},
		{"ratelimiter", usedRL, ratelimiter.ErrExceeded, sluice.LayerLocalRateLimiter, sluice.ReasonRateLimited},
		{"timeout", timeout.New[*http.Response](time.Millisecond), timeout.ErrExceeded,
			sluice.LayerCallTimeout, sluice.ReasonCallTimeout},
		{"retrypolicy", retrypolicy.NewBuilder[*http.Response]().HandleIf(on500).WithMaxRetries(1).
			WithDelay(time.Millisecond).Build(), retrypolicy.ErrExceeded, sluice.LayerRetry, sluice.ReasonRetriesExhausted},
		{"budget", retrypolicy.NewBuilder[*http.Response]().HandleIf(on500).WithMaxRetries(1).
			WithDelay(time.Millisecond).WithBudget(spentBudget).Build(), budget.ErrExceeded,
			sluice.LayerRetry, sluice.ReasonRetryBudgetExhausted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := newConnVendor(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
				if tc.name == "timeout" {
					<-r.Context().Done() // never answers in time
					return
				}
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = io.WriteString(w, "boom")
			})
			tr := transport(t)
			ot := &openTransport{next: tr}
			rt := NewRoundTripper(WithTransport(ot), WithPolicies(tc.policy))
			defer rt.Close()
			resp, err := (&http.Client{Transport: rt}).Get(v.URL)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("got %d; want an error", resp.StatusCode)
			}
			e := wantReason(t, err, tc.layer, tc.reason)
			if !errors.Is(e, tc.original) {
				t.Errorf("%v does not wrap %v", e, tc.original)
			}
			settle(t, v, tr, ot, nil)
		})
	}
}

// TestPoliciesKeepChainErrors: a rejection of the chain inside the policies
// comes back as it was, not renamed after a failsafe-go sentinel it wraps.
func TestPoliciesKeepChainErrors(t *testing.T) {
	block, arrived := make(chan struct{}), make(chan struct{})
	v := newConnVendor(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			close(arrived)
		}
		select {
		case <-block:
		case <-r.Context().Done():
		}
	})
	tr := transport(t)
	ot := &openTransport{next: tr}
	rt := NewRoundTripper(WithTransport(ot), WithBulkhead(BulkheadSettings{MaxConcurrent: 1}),
		WithPolicies(retrypolicy.NewBuilder[*http.Response]().HandleIf(func(*http.Response, error) bool { return false }).Build()))
	defer rt.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, v.URL, nil)
		if resp, err := rt.RoundTrip(req); err == nil {
			resp.Body.Close()
		}
	}()
	<-arrived // the first call holds the bulkhead's only permit
	_, err := (&http.Client{Transport: rt}).Get(v.URL)
	wantReason(t, err, sluice.LayerBulkhead, sluice.ReasonBulkheadFull)
	close(block)
	cancel()
	<-done
	settle(t, v, tr, ot, nil)
}

func TestWithPoliciesPanics(t *testing.T) {
	mustPanic(t, func() { WithPolicies(nil) })
	p := timeout.New[*http.Response](time.Second)
	mustPanic(t, func() { NewRoundTripper(WithPolicies(p), WithPolicies(p)) })
}

func TestPolicyRequestOutsidePolicies(t *testing.T) {
	_, err := failsafe.With[*http.Response](timeout.New[*http.Response](time.Second)).
		GetWithExecution(func(exec failsafe.Execution[*http.Response]) (*http.Response, error) {
			_, err := PolicyRequest(exec)
			return nil, err
		})
	if err == nil || !strings.HasPrefix(err.Error(), "outbound: ") {
		t.Fatalf("err = %v; want an outbound: error", err)
	}
}
