package outbound

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluice-go/sluice"
)

// TestRetryAfterForms: a 429 asking for 2 s, in each form, is retried exactly
// 2 s of fake time after the vendor sent it (an HTTP-date, exactly at the
// date it announces, even when sent mid-second); with 1 s left on the
// deadline the call fails at once with deadline_exceeded, wrapping the 429
// and carrying its Retry-After.
func TestRetryAfterForms(t *testing.T) {
	// date announces the first whole second at least 2 s after sent: an
	// HTTP-date has 1 s resolution.
	date := func(sent time.Time) time.Time {
		at := sent.Add(2 * time.Second)
		if !at.Equal(at.Truncate(time.Second)) {
			at = at.Truncate(time.Second).Add(time.Second)
		}
		return at
	}
	for name, tc := range map[string]struct {
		// offset moves the fake clock (which starts on a whole second)
		// before the first call.
		offset time.Duration
		// answer is the 429's headers and the instant the retry is due.
		answer func(sent time.Time) (http.Header, time.Time)
	}{
		"delta-seconds": {0, func(sent time.Time) (http.Header, time.Time) {
			return http.Header{"Retry-After": {"2"}}, sent.Add(2 * time.Second)
		}},
		"retry-after-ms": {0, func(sent time.Time) (http.Header, time.Time) {
			return http.Header{"Retry-After-Ms": {"2000"}}, sent.Add(2 * time.Second)
		}},
		"http-date": {0, func(sent time.Time) (http.Header, time.Time) {
			at := date(sent)
			return http.Header{"Retry-After": {at.UTC().Format(http.TimeFormat)}}, at
		}},
		// The wait is the date minus the 429's arrival, to the nanosecond:
		// sent at .3 s, the date 2.7 s away is waited for, not 2 s or 3 s.
		"http-date sent mid-second": {300 * time.Millisecond, func(sent time.Time) (http.Header, time.Time) {
			at := date(sent)
			return http.Header{"Retry-After": {at.UTC().Format(http.TimeFormat)}}, at
		}},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				if now := time.Now(); !now.Equal(now.Truncate(time.Second)) {
					t.Fatalf("the fake clock starts at %v, not on a whole second", now)
				}
				time.Sleep(tc.offset) // fake time: sets where in its second the 429 is sent
				var sent, due, retried time.Time
				var seen counter
				client := NewClient(WithTransport(handlerTransport{http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if seen.add(r.URL.Path) > 1 {
						retried = time.Now()
						return
					}
					sent = time.Now()
					var h http.Header
					h, due = tc.answer(sent)
					maps.Copy(w.Header(), h)
					w.WriteHeader(http.StatusTooManyRequests)
				})}), WithRetry(RetrySettings{BaseDelay: time.Millisecond}))
				defer client.Close()

				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://vendor.test/wait", nil)
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_ = resp.Body.Close()
				if seen.get("/wait") != 2 {
					t.Fatalf("attempts = %d, want 2", seen.get("/wait"))
				}
				if !retried.Equal(due) {
					t.Fatalf("retried %v after the 429; want exactly %v", retried.Sub(sent), due.Sub(sent))
				}

				// With 1 s left, the 2 s wait cannot end before the deadline.
				ctx1, cancel1 := context.WithTimeout(context.Background(), time.Second)
				defer cancel1()
				req, _ = http.NewRequestWithContext(ctx1, http.MethodGet, "http://vendor.test/deadline", nil)
				start := time.Now()
				_, err = client.Do(req)
				if d := time.Since(start); d != 0 || ctx1.Err() != nil {
					t.Fatalf("the call waited %v (context: %v) before failing with %v; want it to fail at once", d, ctx1.Err(), err)
				}
				e := wantReason(t, err, sluice.LayerRetry, sluice.ReasonDeadlineExceeded)
				var se *sluice.StatusError
				if !errors.As(err, &se) || se.StatusCode != http.StatusTooManyRequests || e.Attempts != 1 || e.RetryAfter != due.Sub(sent) {
					t.Fatalf("err = %v (retry after %v); want it to wrap the 429 after 1 attempt with its Retry-After %v",
						err, e.RetryAfter, due.Sub(sent))
				}
				if seen.get("/deadline") != 1 {
					t.Fatalf("vendor saw %d attempts, want 1", seen.get("/deadline"))
				}
			})
		})
	}
}

// TestRetryAfterAboveMaximum: a Retry-After longer than MaxRetryAfter is not
// waited for; the error carries the vendor's RetryAfter.
func TestRetryAfterAboveMaximum(t *testing.T) {
	var seen counter
	srv := vendor(t, func(w http.ResponseWriter, r *http.Request) {
		seen.add("")
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	client := NewClient(WithTransport(transport(t)), WithRetry(RetrySettings{MaxRetryAfter: 30 * time.Second}))
	_, err := client.Get(srv.URL)
	e := wantReason(t, err, sluice.LayerRetry, sluice.ReasonRetriesExhausted)
	if e.RetryAfter != 120*time.Second || e.Attempts != 1 || seen.get("") != 1 {
		t.Fatalf("err = %v (retry after %v) after %d attempts", err, e.RetryAfter, seen.get(""))
	}
}

// TestShouldRetryHeader: x-should-retry: false stops retries of a 503.
func TestShouldRetryHeader(t *testing.T) {
	var seen counter
	srv := vendor(t, func(w http.ResponseWriter, r *http.Request) {
		seen.add("")
		w.Header().Set("X-Should-Retry", "false")
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	client := NewClient(WithTransport(transport(t)), WithRetry(RetrySettings{BaseDelay: time.Millisecond}))
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 503 || seen.get("") != 1 {
		t.Fatalf("status %d after %d attempts; want 503 after 1", resp.StatusCode, seen.get(""))
	}
}

// TestRetriesExhausted: the final error counts the attempts and wraps the
// last cause; every retried response was drained and closed (the vendor's
// connection is reused).
func TestRetriesExhausted(t *testing.T) {
	var seen counter
	srv := vendor(t, func(w http.ResponseWriter, r *http.Request) {
		seen.add("")
		w.WriteHeader(http.StatusBadGateway)
		_, _ = io.WriteString(w, strings.Repeat("e", 1000))
	})
	client := NewClient(WithTransport(transport(t)), WithRetry(RetrySettings{MaxAttempts: 4, BaseDelay: time.Millisecond}))
	_, err := client.Get(srv.URL)
	e := wantReason(t, err, sluice.LayerRetry, sluice.ReasonRetriesExhausted)
	var se *sluice.StatusError
	if e.Attempts != 4 || seen.get("") != 4 || !errors.As(err, &se) || se.StatusCode != 502 {
		t.Fatalf("err = %v after %d vendor attempts; want 4 attempts wrapping the 502", err, seen.get(""))
	}
	if !strings.Contains(err.Error(), "after 4 attempt(s)") {
		t.Fatalf("error text %q does not say how many attempts", err)
	}
}

// TestTransportErrorRetried: connection refused is retried, and the last
// cause is wrapped.
func TestTransportErrorRetried(t *testing.T) {
	srv := vendor(t, func(http.ResponseWriter, *http.Request) {})
	url := srv.URL
	srv.Close()
	client := NewClient(WithTransport(transport(t)), WithRetry(RetrySettings{MaxAttempts: 2, BaseDelay: time.Millisecond}))
	_, err := client.Get(url)
	e := wantReason(t, err, sluice.LayerRetry, sluice.ReasonRetriesExhausted)
	if e.Attempts != 2 || e.Err == nil {
		t.Fatalf("err = %v; want 2 attempts wrapping the refusal", err)
	}
}

// TestIdempotency: a POST without Idempotency-Key is sent once; with one it
// is retried and its body arrives intact every time; AddIdempotencyKey adds
// one key, the same on every attempt.
func TestIdempotency(t *testing.T) {
	const payload = `{"prompt":"hello, vendor"}`
	type seenReq struct{ body, key string }
	var mu sync.Mutex
	got := map[string][]seenReq{}
	srv := vendor(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got[r.URL.Path] = append(got[r.URL.Path], seenReq{string(b), r.Header.Get("Idempotency-Key")})
		n := len(got[r.URL.Path])
		mu.Unlock()
		if n < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	post := func(client *Client, path, key string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewBufferString(payload))
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		_ = resp.Body.Close()
		return resp
	}
	retry := RetrySettings{MaxAttempts: 3, BaseDelay: time.Millisecond}
	client := NewClient(WithTransport(transport(t)), WithRetry(retry))

	if resp := post(client, "/nokey", ""); resp.StatusCode != 503 || len(got["/nokey"]) != 1 {
		t.Fatalf("POST without key: status %d after %d attempts; want 503 after 1", resp.StatusCode, len(got["/nokey"]))
	}
	if resp := post(client, "/key", "k-1"); resp.StatusCode != 200 || len(got["/key"]) != 3 {
		t.Fatalf("POST with key: status %d after %d attempts; want 200 after 3", resp.StatusCode, len(got["/key"]))
	}
	retry.AddIdempotencyKey = true
	auto := NewClient(WithTransport(transport(t)), WithRetry(retry))
	if resp := post(auto, "/auto", ""); resp.StatusCode != 200 || len(got["/auto"]) != 3 {
		t.Fatalf("POST with added key: status %d after %d attempts; want 200 after 3", resp.StatusCode, len(got["/auto"]))
	}
	mu.Lock()
	defer mu.Unlock()
	for _, path := range []string{"/key", "/auto"} {
		for i, s := range got[path] {
			if s.body != payload {
				t.Errorf("%s attempt %d: body %q", path, i+1, s.body)
			}
			if s.key == "" || s.key != got[path][0].key {
				t.Errorf("%s attempt %d: Idempotency-Key %q, first %q", path, i+1, s.key, got[path][0].key)
			}
		}
	}
}

// TestCallerCancellationIsTheContextError: a caller that gives up during a
// backoff gets its context's error, not a layer's, the moment it gives up.
func TestCallerCancellationIsTheContextError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var seen counter
		client := NewClient(WithTransport(handlerTransport{http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen.add("")
			w.Header().Set("Retry-After", "5")
			w.WriteHeader(http.StatusServiceUnavailable)
		})}), WithRetry(RetrySettings{}))
		defer client.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		time.AfterFunc(time.Second, cancel) // the caller gives up 1 s into the 5 s wait
		start := time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://vendor.test/", nil)
		_, err := client.Do(req)
		if !errors.Is(err, context.Canceled) || sluice.ErrorOf(err) != nil {
			t.Fatalf("err = %v; want context.Canceled and no *sluice.Error", err)
		}
		if d := time.Since(start); d != time.Second || seen.get("") != 1 {
			t.Fatalf("returned after %v and %d attempts; want 1s (when the caller gave up) and 1", d, seen.get(""))
		}
	})
}

// TestOptionsRefuseImpossibleSettings: programmer errors panic at
// construction with the package's prefix and the option's name.
func TestOptionsRefuseImpossibleSettings(t *testing.T) {
	for name, tc := range map[string]struct {
		prefix string
		f      func()
	}{
		"smooth interval rounds to zero": {"WithLocalRateLimit", func() {
			WithLocalRateLimit(LocalRateLimitSettings{Requests: 2, Period: time.Nanosecond})
		}},
		"zero rate":        {"WithLocalRateLimit", func() { WithLocalRateLimit(LocalRateLimitSettings{Period: time.Second}) }},
		"negative wait":    {"WithLocalRateLimit", func() { WithLocalRateLimit(LocalRateLimitSettings{Requests: 1, Period: time.Second, MaxWait: -1}) }},
		"bulkhead of zero": {"WithBulkhead", func() { WithBulkhead(BulkheadSettings{}) }},
		"bulkhead negative wait": {"WithBulkhead", func() {
			WithBulkhead(BulkheadSettings{MaxConcurrent: 1, MaxWait: -time.Second})
		}},
		"zero attempt timeout":     {"WithAttemptTimeout", func() { WithAttemptTimeout(AttemptTimeoutSettings{Streaming: true}) }},
		"negative attempt timeout": {"WithAttemptTimeout", func() { WithAttemptTimeout(AttemptTimeoutSettings{Timeout: -1}) }},
		"negative retry":           {"WithRetry", func() { WithRetry(RetrySettings{MaxAttempts: -1}) }},
		"budget ratio above 1":     {"WithRetry", func() { WithRetry(RetrySettings{BudgetRatio: 2}) }},
		"failure ratio above 1":    {"WithCircuitBreaker", func() { WithCircuitBreaker(BreakerSettings{FailureRatio: 1.5}) }},
		"negative breaker window":  {"WithCircuitBreaker", func() { WithCircuitBreaker(BreakerSettings{Window: -time.Second}) }},
		"negative open delay":      {"WithCircuitBreaker", func() { WithCircuitBreaker(BreakerSettings{OpenDelay: -time.Second}) }},
		"unsupported failure mode": {"WithGlobalRateLimit", func() {
			WithGlobalRateLimit(GlobalRateLimitSettings{Requests: 1, Period: time.Second, FailureMode: sluice.FailureMode(99)})
		}},
		"same layer twice": {"WithBulkhead", func() {
			NewClient(WithBulkhead(BulkheadSettings{MaxConcurrent: 1}), WithBulkhead(BulkheadSettings{MaxConcurrent: 2}))
		}},
		"nil option": {"nil Option", func() { NewClient(nil) }},
	} {
		t.Run(name, func(t *testing.T) {
			want := "outbound: " + tc.prefix
			if msg := panicText(tc.f); !strings.HasPrefix(msg, want) {
				t.Fatalf("panic %q; want one starting with %q", msg, want)
			}
		})
	}
	// A smooth rate that does not round to zero is fine.
	_ = WithLocalRateLimit(LocalRateLimitSettings{Requests: 1000, Period: time.Second})
}

// TestRetryWrapsVendorStatusWithRetryAfter: a vendor status that outlives the
// retries comes back as a *sluice.StatusError in the retry layer's error,
// carrying the vendor's Retry-After capped at sluice.MaxRetryAfter, so that
// sluice.ProblemOf can announce it.
func TestRetryWrapsVendorStatusWithRetryAfter(t *testing.T) {
	for name, tc := range map[string]struct {
		status     int
		retryAfter string
		want       time.Duration
	}{
		"429 within the cap": {http.StatusTooManyRequests, "30", 30 * time.Second},
		"503 over the cap":   {http.StatusServiceUnavailable, "7200", sluice.MaxRetryAfter},
		"502 without":        {http.StatusBadGateway, "", 0},
	} {
		t.Run(name, func(t *testing.T) {
			srv := vendor(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				w.WriteHeader(tc.status)
			})
			// A Retry-After over MaxRetryAfter fails at once; a 502 is retried
			// once without waiting long.
			client := NewClient(WithTransport(transport(t)),
				WithRetry(RetrySettings{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxRetryAfter: time.Second}))
			_, err := client.Get(srv.URL)
			wantReason(t, err, sluice.LayerRetry, sluice.ReasonRetriesExhausted)
			var se *sluice.StatusError
			if !errors.As(err, &se) || se.StatusCode != tc.status || se.RetryAfter != tc.want {
				t.Fatalf("err = %v; want it to wrap a *sluice.StatusError %d with RetryAfter %s, got %+v",
					err, tc.status, tc.want, se)
			}
			if p := sluice.ProblemOf(err); tc.want > 0 && p.RetryAfter != tc.want {
				t.Fatalf("ProblemOf(err).RetryAfter = %s; want %s", p.RetryAfter, tc.want)
			}
		})
	}
}
