package outbound

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
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
// attempt, as the layer's typed error, though retries are on, and when its
// layer's documentation says: a bulkhead waiter after exactly MaxWait, every
// other at once (a rate limiter wait longer than MaxWait is not started).
func TestOverloadNotRetried(t *testing.T) {
	const maxWait = 20 * time.Millisecond
	cases := []struct {
		name   string
		layer  sluice.Layer
		reason sluice.Reason
		after  time.Duration // fake time from the call to its error
		opt    func() Option
		// hold makes the layer reject the next call; it returns a cleanup.
		hold func(t *testing.T, c *Client, url string) func()
	}{
		{"bulkhead_full", sluice.LayerBulkhead, sluice.ReasonBulkheadFull, 0,
			func() Option { return WithBulkhead(BulkheadSettings{MaxConcurrent: 1}) }, holdStream},
		{"bulkhead queue_timeout", sluice.LayerBulkhead, sluice.ReasonQueueTimeout, maxWait,
			func() Option { return WithBulkhead(BulkheadSettings{MaxConcurrent: 1, MaxWait: maxWait}) }, holdStream},
		{"rate_limited", sluice.LayerLocalRateLimiter, sluice.ReasonRateLimited, 0,
			func() Option {
				return WithLocalRateLimit(LocalRateLimitSettings{Requests: 1, Period: time.Hour, Bursty: true})
			}, holdOne},
		{"rate limiter queue_timeout", sluice.LayerLocalRateLimiter, sluice.ReasonQueueTimeout, 0,
			func() Option {
				return WithLocalRateLimit(LocalRateLimitSettings{Requests: 1, Period: time.Hour, MaxWait: maxWait})
			}, holdOne},
		{"circuit_open", sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen, 0,
			func() Option {
				return WithCircuitBreaker(BreakerSettings{FailureRatio: 1, MinThroughput: 1, OpenDelay: time.Hour})
			}, holdFail},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const url = "http://vendor.test"
				tm := newTelemetry(t)
				// The layers are built in the bubble, so that their clocks are
				// its fake one.
				retry := WithRetry(RetrySettings{MaxAttempts: 5, BaseDelay: time.Millisecond})
				client := NewClient(WithTransport(handlerTransport{http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path == "/bad" {
						w.WriteHeader(http.StatusInternalServerError)
						return
					}
					_, _ = io.WriteString(w, "ok")
				})}), WithTelemetry(tm.tel), retry, tc.opt())
				defer client.Close()
				cleanup := tc.hold(t, client, url)
				before := tm.rejections(t, tc.layer, tc.reason)
				start := time.Now()
				_, err := client.Get(url + "/call")
				e := wantReason(t, err, tc.layer, tc.reason)
				if !sluice.IsOverload(err) || e.Attempts != 0 {
					t.Fatalf("err = %v; want an overload signal straight from its layer", err)
				}
				if d := time.Since(start); d != tc.after {
					t.Fatalf("%s after %v; want exactly %v", tc.reason, d, tc.after)
				}
				if n := tm.rejections(t, tc.layer, tc.reason) - before; n != 1 {
					t.Fatalf("%s rejected %d attempts; want exactly 1", tc.layer, n)
				}
				if n := tm.rejections(t, sluice.LayerRetry, sluice.ReasonRetriesExhausted); n != 0 {
					t.Fatalf("retry layer gave up %d times; it should not have retried", n)
				}
				cleanup()
			})
		})
	}
}

// holdStream takes the only bulkhead permit with a response whose body stays
// open until the cleanup.
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

// TestAttemptTimeout: the timeout cancels the attempt at exactly its
// duration (the vendor sees its request's context end then) with
// call_timeout; it also ends a response body still arriving then, unless in
// stream mode, where a response whose headers arrived outlives it.
func TestAttemptTimeout(t *testing.T) {
	const d = 100 * time.Millisecond
	t.Run("hang", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var canceledAt time.Time
			client := NewClient(WithTransport(handlerTransport{http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				<-r.Context().Done()
				canceledAt = time.Now()
			})}), WithAttemptTimeout(AttemptTimeoutSettings{Timeout: d}))
			defer client.Close()
			start := time.Now()
			_, err := client.Get("http://vendor.test/hang")
			wantReason(t, err, sluice.LayerCallTimeout, sluice.ReasonCallTimeout)
			if got := time.Since(start); got != d || !canceledAt.Equal(start.Add(d)) {
				t.Fatalf("failed after %v, the vendor saw the cancellation after %v; want both at exactly %v",
					got, canceledAt.Sub(start), d)
			}
		})
	})
	for _, streaming := range []bool{false, true} {
		t.Run("slow body, streaming="+strconv.FormatBool(streaming), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const pace = 3 * d // the vendor sends its body this long after its headers
				client := NewClient(WithTransport(slowBodyTransport{pace}),
					WithAttemptTimeout(AttemptTimeoutSettings{Timeout: d, Streaming: streaming}))
				defer client.Close()
				start := time.Now()
				resp, err := client.Get("http://vendor.test/slowbody")
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				took := time.Since(start)
				switch {
				case !streaming && (err == nil || took != d):
					t.Fatalf("body %q, %v after %v; want it cut off at exactly %v", b, err, took, d)
				case streaming && (err != nil || string(b) != "tail" || took != pace):
					t.Fatalf("stream mode: body %q, %v after %v; want \"tail\" after %v", b, err, took, pace)
				}
			})
		})
	}
}

// slowBodyTransport answers at once with headers and sends the body "tail"
// after pace, without sockets (for a synctest bubble). Like net/http's
// transport, it fails a body read when the request's context ends.
type slowBodyTransport struct{ pace time.Duration }

func (s slowBodyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Request: r,
		Body: &slowBody{ctx: r.Context(), ready: time.After(s.pace)}}, nil
}

type slowBody struct {
	ctx   context.Context
	ready <-chan time.Time
	sent  bool
}

func (b *slowBody) Read(p []byte) (int, error) {
	if b.sent {
		return 0, io.EOF
	}
	select {
	case <-b.ctx.Done():
		return 0, b.ctx.Err()
	case <-b.ready:
		b.sent = true
		return copy(p, "tail"), nil
	}
}

func (b *slowBody) Close() error { return nil }

// TestAttemptTimeoutWithRealTransport: net/http's transport, not a fake,
// ends a body still arriving when the attempt timeout fires, and in stream
// mode leaves it alone. Real sockets, so real time: the vendor must pace its
// body past the timeout.
func TestAttemptTimeoutWithRealTransport(t *testing.T) {
	const d = 100 * time.Millisecond
	srv := vendor(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		if r.URL.Path == "/cut" {
			<-r.Context().Done() // the client gives up; nothing more to send
			return
		}
		time.Sleep(3 * d) // real time: the stream must outlive the timeout on real sockets
		_, _ = io.WriteString(w, "tail")
	})
	client := NewClient(WithTransport(transport(t)), WithAttemptTimeout(AttemptTimeoutSettings{Timeout: d}))
	resp, err := client.Get(srv.URL + "/cut")
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
// failures, the next call does not reach the vendor and is told to come back
// after exactly OpenDelay, the breaker stays open until that instant, and a
// half-open probe then closes it again. 4xx other than 429 do not count.
func TestBreakerOpensAndRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var healthy atomic.Bool
		var seen counter
		const openDelay = 200 * time.Millisecond
		client := NewClient(WithTransport(handlerTransport{http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen.add("")
			switch {
			case r.URL.Path == "/missing":
				w.WriteHeader(http.StatusNotFound)
			case !healthy.Load():
				w.WriteHeader(http.StatusInternalServerError)
			}
		})}), WithCircuitBreaker(BreakerSettings{FailureRatio: 0.5, MinThroughput: 4, Window: time.Minute, OpenDelay: openDelay}))
		defer client.Close()
		get := func(path string) (*http.Response, error) {
			resp, err := client.Get("http://vendor.test" + path)
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
		// No fake time has passed since the breaker opened.
		if e.RetryAfter != openDelay {
			t.Fatalf("RetryAfter %v; want the whole open delay, %v", e.RetryAfter, openDelay)
		}
		healthy.Store(true)
		time.Sleep(openDelay - time.Nanosecond) // fake time: to just before the announced instant
		if _, err := get("/"); !errors.Is(err, sluice.ErrCircuitOpen) || seen.get("") != n {
			t.Fatalf("1ns before the open delay ends: %v after %d vendor calls; want circuit_open and none", err, seen.get("")-n)
		}
		time.Sleep(time.Nanosecond) // fake time: the instant the breaker said a probe goes through
		if resp, err := get("/"); err != nil || resp.StatusCode != 200 {
			t.Fatalf("half-open probe at exactly the open delay: %v", err)
		}
		for i := 0; i < 3; i++ {
			if _, err := get("/"); err != nil {
				t.Fatalf("after the probe succeeded: %v", err)
			}
		}
	})
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
