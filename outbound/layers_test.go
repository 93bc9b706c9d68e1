package outbound

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-go/sluice"
)

// streamVendor answers /stream with headers at once and its body only when
// release is closed; anything else gets "ok".
func streamVendor(t *testing.T, release <-chan struct{}) string {
	srv := vendor(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		if r.URL.Path == "/bad" {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	return srv.URL
}

// TestOverloadNotRetried: each overload signal comes back after exactly one
// attempt, as the layer's typed error, though retries are on.
func TestOverloadNotRetried(t *testing.T) {
	retry := WithRetry(RetrySettings{MaxAttempts: 5, BaseDelay: time.Millisecond})
	cases := []struct {
		name   string
		layer  sluice.Layer
		reason sluice.Reason
		opt    Option
		// hold makes the layer reject the next call; it returns a cleanup.
		hold func(t *testing.T, c *Client, url string) func()
	}{
		{"bulkhead_full", sluice.LayerBulkhead, sluice.ReasonBulkheadFull, WithBulkhead(BulkheadSettings{MaxConcurrent: 1}), holdStream},
		{"bulkhead queue_timeout", sluice.LayerBulkhead, sluice.ReasonQueueTimeout, WithBulkhead(BulkheadSettings{MaxConcurrent: 1, MaxWait: 20 * time.Millisecond}), holdStream},
		{"rate_limited", sluice.LayerLocalRateLimiter, sluice.ReasonRateLimited,
			WithLocalRateLimit(LocalRateLimitSettings{Requests: 1, Period: time.Hour, Bursty: true}), holdOne},
		{"rate limiter queue_timeout", sluice.LayerLocalRateLimiter, sluice.ReasonQueueTimeout,
			WithLocalRateLimit(LocalRateLimitSettings{Requests: 1, Period: time.Hour, MaxWait: 20 * time.Millisecond}), holdOne},
		{"circuit_open", sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen,
			WithCircuitBreaker(BreakerSettings{FailureRatio: 1, MinThroughput: 1, OpenDelay: time.Hour}), holdFail},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			url := streamVendor(t, release)
			tm := newTelemetry(t)
			client := NewClient(WithTransport(transport(t)), WithTelemetry(tm.tel), retry, tc.opt)
			cleanup := tc.hold(t, client, url)
			before := tm.rejections(t, tc.layer, tc.reason)
			_, err := client.Get(url + "/call")
			e := wantReason(t, err, tc.layer, tc.reason)
			if !sluice.IsOverload(err) || e.Attempts != 0 {
				t.Fatalf("err = %v; want an overload signal straight from its layer", err)
			}
			if n := tm.rejections(t, tc.layer, tc.reason) - before; n != 1 {
				t.Fatalf("%s rejected %d attempts; want exactly 1", tc.layer, n)
			}
			if n := tm.rejections(t, sluice.LayerRetry, sluice.ReasonRetriesExhausted); n != 0 {
				t.Fatalf("retry layer gave up %d times; it should not have retried", n)
			}
			close(release)
			cleanup()
		})
	}
}

// holdStream takes the only bulkhead permit with a response whose body stays
// open.
func holdStream(t *testing.T, c *Client, url string) func() {
	resp, err := c.Get(url + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	return func() { _, _ = io.Copy(io.Discard, resp.Body); _ = resp.Body.Close() }
}

// holdOne spends the rate limiter's permit.
func holdOne(t *testing.T, c *Client, url string) func() {
	resp, err := c.Get(url + "/one")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return func() {}
}

// holdFail opens the breaker with vendor failures (the retry layer's retries
// of which are refused by the opening breaker).
func holdFail(t *testing.T, c *Client, url string) func() {
	_, err := c.Get(url + "/bad")
	if !errors.Is(err, sluice.ErrCircuitOpen) {
		t.Fatalf("opening call: %v", err)
	}
	return func() {}
}

// TestBulkheadHoldsPermitUntilBodyClosed: a streamed response counts against
// the bulkhead until its body is closed, and its permit is released once.
func TestBulkheadHoldsPermitUntilBodyClosed(t *testing.T) {
	release := make(chan struct{})
	url := streamVendor(t, release)
	client := NewClient(WithTransport(transport(t)), WithBulkhead(BulkheadSettings{MaxConcurrent: 1}))
	resp, err := client.Get(url + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Get(url + "/other"); !errors.Is(err, sluice.ErrBulkheadFull) {
		t.Fatalf("second call while the stream is open: %v; want bulkhead_full", err)
	}
	close(release)
	_, _ = io.Copy(io.Discard, resp.Body) // EOF releases...
	_ = resp.Body.Close()                 // ...and Close does not release twice
	for i := 0; i < 3; i++ {
		r, err := client.Get(url + "/other")
		if err != nil {
			t.Fatalf("call %d after the stream closed: %v", i, err)
		}
		_ = r.Body.Close()
	}
}

// TestAttemptTimeout: the timeout cancels the attempt (the vendor sees its
// request's context end) with call_timeout; in stream mode a response whose
// headers arrived outlives it.
func TestAttemptTimeout(t *testing.T) {
	canceled := make(chan struct{})
	srv := vendor(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hang":
			<-r.Context().Done()
			close(canceled)
		case "/slowbody":
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			time.Sleep(300 * time.Millisecond) // the vendor paces its stream past the timeout
			_, _ = io.WriteString(w, "tail")
		}
	})
	const d = 100 * time.Millisecond
	client := NewClient(WithTransport(transport(t)), WithAttemptTimeout(AttemptTimeoutSettings{Timeout: d}))
	_, err := client.Get(srv.URL + "/hang")
	wantReason(t, err, sluice.LayerCallTimeout, sluice.ReasonCallTimeout)
	select {
	case <-canceled:
	case <-time.After(10 * time.Second):
		t.Fatal("the vendor never saw the attempt canceled")
	}

	resp, err := client.Get(srv.URL + "/slowbody")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("without stream mode the body outlived the attempt timeout")
	}
	_ = resp.Body.Close()

	stream := NewClient(WithTransport(transport(t)), WithAttemptTimeout(AttemptTimeoutSettings{Timeout: d, Streaming: true}))
	resp, err = stream.Get(srv.URL + "/slowbody")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || string(b) != "tail" {
		t.Fatalf("stream mode: body %q, %v", b, err)
	}
}

// TestBreakerOpensAndRecovers: the breaker opens after the configured
// failures, the next call does not reach the vendor, and a half-open probe
// closes it again. 4xx other than 429 do not count.
func TestBreakerOpensAndRecovers(t *testing.T) {
	var healthy atomic.Bool
	var seen counter
	srv := vendor(t, func(w http.ResponseWriter, r *http.Request) {
		seen.add("")
		switch {
		case r.URL.Path == "/missing":
			w.WriteHeader(http.StatusNotFound)
		case !healthy.Load():
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	const openDelay = 200 * time.Millisecond
	client := NewClient(WithTransport(transport(t)),
		WithCircuitBreaker(BreakerSettings{FailureRatio: 0.5, MinThroughput: 4, Window: time.Minute, OpenDelay: openDelay}))
	get := func(path string) (*http.Response, error) {
		resp, err := client.Get(srv.URL + path)
		if err == nil {
			_ = resp.Body.Close()
		}
		return resp, err
	}
	for i := 0; i < 8; i++ {
		if _, err := get("/missing"); err != nil {
			t.Fatalf("404s opened the breaker: %v", err)
		}
	}
	// The window now holds 8 successes: 8 failures make the ratio 0.5.
	for i := 0; i < 8; i++ {
		if _, err := get("/"); err != nil {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	n := seen.get("")
	_, err := get("/")
	e := wantReason(t, err, sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen)
	if seen.get("") != n {
		t.Fatal("a call reached the vendor while the breaker was open")
	}
	if e.RetryAfter <= 0 || e.RetryAfter > openDelay {
		t.Fatalf("RetryAfter %v; want the time left to half-open, in (0, %v]", e.RetryAfter, openDelay)
	}
	healthy.Store(true)
	time.Sleep(e.RetryAfter) // the breaker said when it would let a probe through
	if resp, err := get("/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("half-open probe: %v", err)
	}
	for i := 0; i < 3; i++ {
		if _, err := get("/"); err != nil {
			t.Fatalf("after the probe succeeded: %v", err)
		}
	}
}

// TestRetryBudgetBound: with the vendor down and 200 concurrent callers, at
// most max(BudgetMin, ⌊r·200/(1−r)⌋+1) retries (r = BudgetRatio) are ever
// pending, so the vendor sees at most 200 + that many attempts (one retry
// allowed per call).
func TestRetryBudgetBound(t *testing.T) {
	const (
		callers = 200
		ratio   = 0.1
		minimum = 3
		bound   = 23 // ⌊0.1·200/0.9⌋ + 1, above minimum
	)
	var (
		mu       sync.Mutex
		seen     = map[string]int{}
		arrived  int
		allIn    = make(chan struct{})
		releaseR = make(chan struct{})
		events   = make(chan string, 4*callers)
	)
	srv := vendor(t, func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Caller")
		mu.Lock()
		seen[id]++
		first := seen[id] == 1
		if first {
			arrived++
			if arrived == callers {
				close(allIn)
			}
		}
		mu.Unlock()
		if first {
			<-allIn // every call is in flight before any fails
		} else {
			events <- "held"
			<-releaseR
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	tr := transport(t)
	tr.MaxIdleConnsPerHost = callers
	client := NewClient(WithTransport(tr), WithRetry(RetrySettings{
		MaxAttempts: 2, BaseDelay: time.Millisecond, BudgetRatio: ratio, BudgetMin: minimum}))
	errs := make(chan error, callers)
	var wg sync.WaitGroup
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			req.Header.Set("X-Caller", strconv.Itoa(i))
			_, err := client.Do(req)
			if errors.Is(err, sluice.ErrRetryBudgetExhausted) {
				events <- "refused"
			}
			errs <- err
		}()
	}
	// Every caller is either refused a retry or has its retry held at the
	// vendor: count until all 200 are accounted for.
	held, refused := 0, 0
	for held+refused < callers {
		select {
		case ev := <-events:
			if ev == "held" {
				held++
			} else {
				refused++
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("stuck with %d held and %d refused", held, refused)
		}
	}
	close(releaseR)
	wg.Wait()
	close(errs)
	if held > bound || held < minimum {
		t.Fatalf("%d retries were let through at once; the bound is %v (and at least %d)", held, bound, minimum)
	}
	total := 0
	mu.Lock()
	for _, n := range seen {
		total += n
	}
	mu.Unlock()
	if total > callers+bound {
		t.Fatalf("vendor saw %d attempts; bound %v", total, callers+bound)
	}
	for err := range errs {
		if !errors.Is(err, sluice.ErrRetryBudgetExhausted) && !errors.Is(err, sluice.ErrRetriesExhausted) {
			t.Fatalf("unexpected error %v", err)
		}
	}
	t.Logf("held %d, refused %d, vendor attempts %d (bound %v)", held, refused, total, callers+bound)
}
