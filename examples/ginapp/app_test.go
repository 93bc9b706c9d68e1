package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The embedded fake vendor (VENDOR_URL unset) answers through the whole
// stack: 200 {"answer", "usage": {"total_tokens"}}.
func TestChatAnswers(t *testing.T) {
	a := startApp(t, config(t, nil))
	got := a.chat(t, "alice", `{"prompt":"hello","stream":false}`)
	if got.status != http.StatusOK {
		t.Fatalf("status %d: %s", got.status, got)
	}
	var body struct {
		Answer string `json:"answer"`
		Usage  struct {
			TotalTokens int `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(got.body, &body); err != nil {
		t.Fatalf("body %q: %v", got.body, err)
	}
	if body.Answer != "echo: hello" || body.Usage.TotalTokens != 42 {
		t.Errorf("answer %q, %d tokens; want the fake vendor's \"echo: hello\", 42", body.Answer, body.Usage.TotalTokens)
	}
	if n := a.fake.Stats().Served; n != 1 {
		t.Errorf("the fake vendor served %d requests, want 1", n)
	}
}

// "stream": true relays the vendor's SSE stream: its data lines, the final
// chunk with usage, then [DONE].
func TestChatStreams(t *testing.T) {
	a := startApp(t, config(t, nil))
	got := a.chat(t, "alice", `{"prompt":"hello","stream":true}`)
	if got.status != http.StatusOK {
		t.Fatalf("status %d: %s", got.status, got)
	}
	if ct := got.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("Content-Type %q, want text/event-stream", ct)
	}
	var data []string
	sc := bufio.NewScanner(bytes.NewReader(got.body))
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			data = append(data, d)
		} else if sc.Text() != "" {
			t.Errorf("unexpected line %q in the stream", sc.Text())
		}
	}
	// The fake vendor sends 5 content chunks, a usage chunk and [DONE].
	if len(data) != 7 {
		t.Fatalf("%d data lines, want 7:\n%s", len(data), got.body)
	}
	if !strings.Contains(data[0], "echo: hello") {
		t.Errorf("first chunk %q lacks the answer", data[0])
	}
	var usage struct {
		Usage struct {
			TotalTokens int `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal([]byte(data[5]), &usage); err != nil || usage.Usage.TotalTokens != 42 {
		t.Errorf("usage chunk %q: total_tokens %d, err %v; want 42", data[5], usage.Usage.TotalTokens, err)
	}
	if data[6] != "[DONE]" {
		t.Errorf("last data %q, want [DONE]", data[6])
	}
}

func TestHealthz(t *testing.T) {
	a := startApp(t, config(t, nil))
	got := a.get(t, "/healthz")
	if got.status != http.StatusOK || strings.TrimSpace(string(got.body)) != `{"status":"ok"}` {
		t.Errorf("GET /healthz: %d %s", got.status, got.body)
	}
}

// /metrics serves Prometheus text with sluice's resilience.requests, whose
// Prometheus name (by the OTel exporter's translation: dots to underscores,
// _total for a counter; the unit {request} is an annotation and adds no
// suffix) is resilience_requests_total, counted by layer and outcome.
func TestMetrics(t *testing.T) {
	a := startApp(t, config(t, nil))
	if got := a.chat(t, "alice", hello); got.status != http.StatusOK {
		t.Fatalf("chat: %s", got)
	}
	got := a.get(t, "/metrics")
	if got.status != http.StatusOK {
		t.Fatalf("GET /metrics: %s", got)
	}
	if ct := got.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want Prometheus text (text/plain)", ct)
	}
	text := string(got.body)
	if !strings.Contains(text, "# TYPE resilience_requests_total counter") {
		t.Fatalf("no resilience_requests_total counter in /metrics:\n%s", text)
	}
	for _, layer := range []string{"load_shedder", "user_rate_limiter", "admission_queue"} {
		if !regexpMatch(`(?m)^resilience_requests_total\{[^}]*resilience_layer="`+layer+`"[^}]*resilience_outcome="allowed"[^}]*\} 1$`, text) {
			t.Errorf("no resilience_requests_total{layer=%q, outcome=allowed} 1 in /metrics:\n%s", layer,
				grepLines(text, "resilience_requests_total"))
		}
	}
}

// TestMetricsFromStart: before any request, /metrics already carries the Go
// runtime and process metrics, every layer's rejection counters at zero (so
// alerts and dashboards have a series), and no otel_scope_* label.
func TestMetricsFromStart(t *testing.T) {
	a := startApp(t, config(t, nil))
	got := a.get(t, "/metrics")
	if got.status != http.StatusOK {
		t.Fatalf("GET /metrics: %s", got)
	}
	text := string(got.body)
	for _, want := range []string{"# TYPE go_goroutines gauge", "# TYPE process_resident_memory_bytes gauge",
		"# TYPE go_gc_duration_seconds summary"} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in /metrics", want)
		}
	}
	if strings.Contains(text, "otel_scope_") {
		t.Errorf("otel_scope_* labels in /metrics:\n%s", grepLines(text, "otel_scope_"))
	}
	for _, lr := range []string{`error_type="overloaded",resilience_layer="load_shedder"`,
		`error_type="queue_full",resilience_layer="admission_queue"`,
		`error_type="queue_timeout",resilience_layer="bulkhead"`} {
		if !regexpMatch(`(?m)^resilience_requests_total\{[^}]*`+lr+`[^}]*\} 0$`, text) {
			t.Errorf("no zero resilience_requests_total series matching %s before any request:\n%s", lr,
				grepLines(text, "resilience_requests_total"))
		}
	}
}

func TestMissingAPIKeyIs401(t *testing.T) {
	a := startApp(t, config(t, nil))
	wantError(t, a.chat(t, "", hello), http.StatusUnauthorized, one("auth"), one("missing_api_key"), false)
	if n := a.fake.Stats().Requests; n != 0 {
		t.Errorf("the vendor got %d requests, want 0", n)
	}
}

func TestBadRequestsAre400And413(t *testing.T) {
	a := startApp(t, config(t, nil))
	for _, tc := range []struct {
		name, body string
		status     int
		reason     string
	}{
		{"bad JSON", `{"prompt":`, http.StatusBadRequest, "bad_json"},
		{"not an object", `"hello"`, http.StatusBadRequest, "bad_json"},
		{"empty prompt", `{"prompt":""}`, http.StatusBadRequest, "empty_prompt"},
		{"blank prompt", `{"prompt":"  \n"}`, http.StatusBadRequest, "empty_prompt"},
		{"no prompt", `{"stream":true}`, http.StatusBadRequest, "empty_prompt"},
		{"over 64 KiB", `{"prompt":"` + strings.Repeat("a", maxChatBody) + `"}`, http.StatusRequestEntityTooLarge, "body_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, a.chat(t, "alice", tc.body), tc.status, one("request"), one(tc.reason), false)
		})
	}
	// Exactly 64 KiB is allowed.
	body := `{"prompt":"` + strings.Repeat("a", maxChatBody-len(`{"prompt":""}`)) + `"}`
	if got := a.chat(t, "alice", body); got.status != http.StatusOK {
		t.Errorf("a body of exactly %d bytes: %s", len(body), got)
	}
	if n := a.fake.Stats().Requests; n != 1 {
		t.Errorf("the vendor got %d requests, want only the valid one", n)
	}
}

// With SLUICE_MAX_INFLIGHT=1 and one request held at the vendor, the next
// is shed: 503 load_shedder/overloaded with Retry-After.
func TestLoadShedderIs503(t *testing.T) {
	v := newGateVendor(t)
	a := startApp(t, config(t, vendorEnv(v.scriptedVendor, map[string]string{"SLUICE_MAX_INFLIGHT": "1"})))
	defer v.open()
	held := a.chatAsync(t, "alice", hello)
	v.waitArrived(t, 1)
	wantError(t, a.chat(t, "bob", hello), http.StatusServiceUnavailable, one("load_shedder"), one("overloaded"), true)
	v.open()
	if got := <-held; got.status != http.StatusOK {
		t.Errorf("the held request: %s", got)
	}
}

// With SLUICE_USER_RATE=1-M, a user's second request is 429
// user_rate_limiter/rate_limited with Retry-After and X-RateLimit-*; another
// user is not limited.
func TestUserRateLimitIs429(t *testing.T) {
	a := startApp(t, config(t, map[string]string{"SLUICE_USER_RATE": "1-M"}))
	first := a.chat(t, "alice", hello)
	if first.status != http.StatusOK {
		t.Fatalf("first request: %s", first)
	}
	if first.header.Get("X-RateLimit-Limit") != "1" || first.header.Get("X-RateLimit-Remaining") != "0" {
		t.Errorf("first request: X-RateLimit-Limit %q Remaining %q, want 1 and 0",
			first.header.Get("X-RateLimit-Limit"), first.header.Get("X-RateLimit-Remaining"))
	}
	got := a.chat(t, "alice", hello)
	wantError(t, got, http.StatusTooManyRequests, one("user_rate_limiter"), one("rate_limited"), true)
	if ra, _ := strconv.Atoi(got.header.Get("Retry-After")); ra < 1 || ra > 60 {
		t.Errorf("Retry-After %d, want 1..60 for a limit of 1 a minute", ra)
	}
	if got.header.Get("X-RateLimit-Limit") != "1" || got.header.Get("X-RateLimit-Remaining") != "0" {
		t.Errorf("X-RateLimit-Limit %q Remaining %q, want 1 and 0",
			got.header.Get("X-RateLimit-Limit"), got.header.Get("X-RateLimit-Remaining"))
	}
	reset, err := strconv.ParseInt(got.header.Get("X-RateLimit-Reset"), 10, 64)
	if err != nil || reset < time.Now().Unix() {
		t.Errorf("X-RateLimit-Reset %q, want a unix time not in the past", got.header.Get("X-RateLimit-Reset"))
	}
	if got := a.chat(t, "bob", hello); got.status != http.StatusOK {
		t.Errorf("another user: %s", got)
	}
}

// The admission queue: with one active slot held at the vendor, a queue of
// 0 rejects at once (queue_full) and a queue of 1 rejects after
// SLUICE_QUEUE_TIMEOUT (queue_timeout), both 503 with Retry-After.
func TestAdmissionQueueIs503(t *testing.T) {
	for _, tc := range []struct{ waiting, reason string }{{"0", "queue_full"}, {"1", "queue_timeout"}} {
		t.Run(tc.reason, func(t *testing.T) {
			v := newGateVendor(t)
			a := startApp(t, config(t, vendorEnv(v.scriptedVendor, map[string]string{
				"SLUICE_QUEUE_ACTIVE": "1", "SLUICE_QUEUE_WAITING": tc.waiting, "SLUICE_QUEUE_TIMEOUT": "50ms"})))
			defer v.open()
			held := a.chatAsync(t, "alice", hello)
			v.waitArrived(t, 1)
			wantError(t, a.chat(t, "bob", hello), http.StatusServiceUnavailable, one("admission_queue"), one(tc.reason), true)
			v.open()
			if got := <-held; got.status != http.StatusOK {
				t.Errorf("the held request: %s", got)
			}
		})
	}
}

// A vendor that always answers 500 opens the breaker (default: half of at
// least 10 calls failed): from then on calls fail at once, without reaching
// the vendor, with 503 circuit_breaker/circuit_open and Retry-After.
func TestCircuitOpenIs503(t *testing.T) {
	v := newVendor(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":{"type":"server_error"}}`, http.StatusInternalServerError)
	})
	a := startApp(t, config(t, vendorEnv(v, map[string]string{"SLUICE_RETRY_ATTEMPTS": "1"})))
	for i := 1; ; i++ {
		if i > 50 {
			t.Fatalf("the breaker did not open in 50 failing calls")
		}
		before := v.requests.Load()
		got := a.chat(t, "alice", hello)
		var e errorBody
		_ = json.Unmarshal(got.body, &e)
		if e.Error.Reason != "circuit_open" {
			wantError(t, got, http.StatusBadGateway, one("vendor"), one("vendor_error"), false)
			continue
		}
		wantError(t, got, http.StatusServiceUnavailable, one("circuit_breaker"), one("circuit_open"), true)
		if n := v.requests.Load(); n != before {
			t.Errorf("an open breaker let a call reach the vendor")
		}
		if i < 11 {
			t.Errorf("the breaker opened after %d calls, before its minimum throughput of 10", i-1)
		}
		return
	}
}

// With SLUICE_VENDOR_CONCURRENCY=1 and the permit held by a call at the
// vendor, the next call waits SLUICE_VENDOR_QUEUE_TIMEOUT for the bulkhead:
// 503 bulkhead/queue_timeout with Retry-After, and it never reaches the
// vendor.
func TestBulkheadIs503(t *testing.T) {
	v := newGateVendor(t)
	a := startApp(t, config(t, vendorEnv(v.scriptedVendor, map[string]string{
		"SLUICE_VENDOR_CONCURRENCY": "1", "SLUICE_VENDOR_QUEUE_TIMEOUT": "50ms"})))
	defer v.open()
	held := a.chatAsync(t, "alice", hello)
	v.waitArrived(t, 1)
	wantError(t, a.chat(t, "bob", hello), http.StatusServiceUnavailable, one("bulkhead"), one("queue_timeout"), true)
	v.open()
	if got := <-held; got.status != http.StatusOK {
		t.Errorf("the held request: %s", got)
	}
	if n := v.requests.Load(); n != 1 {
		t.Errorf("the vendor got %d requests, want 1", n)
	}
}

// SLUICE_VENDOR_RATE=1-M: the second call within the minute would wait far
// longer than SLUICE_VENDOR_QUEUE_TIMEOUT, so it fails at once with 503 from
// the vendor-rate layer (local now, global_rate_limiter once it is fleet-wide)
// and Retry-After.
func TestVendorRateIs503(t *testing.T) {
	v := newVendor(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, completion("ok", 1))
	})
	a := startApp(t, config(t, vendorEnv(v, map[string]string{
		"SLUICE_VENDOR_RATE": "1-M", "SLUICE_VENDOR_QUEUE_TIMEOUT": "50ms"})))
	if got := a.chat(t, "alice", hello); got.status != http.StatusOK {
		t.Fatalf("first call: %s", got)
	}
	wantError(t, a.chat(t, "alice", hello), http.StatusServiceUnavailable,
		[]string{"local_rate_limiter", "global_rate_limiter"}, []string{"queue_timeout", "rate_limited"}, true)
	if n := v.requests.Load(); n != 1 {
		t.Errorf("the vendor got %d requests, want 1", n)
	}
}

// An attempt timeout shorter than the vendor's time to answer (here it never
// answers) is 504 call_timeout/call_timeout.
func TestAttemptTimeoutIs504(t *testing.T) {
	v := newVendor(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	a := startApp(t, config(t, vendorEnv(v, map[string]string{
		"SLUICE_ATTEMPT_TIMEOUT": "100ms", "SLUICE_RETRY_ATTEMPTS": "1"})))
	wantError(t, a.chat(t, "alice", hello), http.StatusGatewayTimeout, one("call_timeout"), one("call_timeout"), false)
}

// A vendor 429 whose Retry-After outlasts the request's time budget is not
// waited for (the retry layer fails at once with deadline_exceeded); the app
// answers with what the caller can act on, the vendor's rate limit and its
// Retry-After: 503 vendor/vendor_rate_limited, not a 504.
func TestVendorRateLimitPastDeadlineIs503(t *testing.T) {
	v := newVendor(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	a := startApp(t, config(t, vendorEnv(v, map[string]string{"SLUICE_REQUEST_TIMEOUT": "5s"})))
	got := a.chat(t, "alice", hello)
	wantError(t, got, http.StatusServiceUnavailable, one("vendor"), one("vendor_rate_limited"), true)
	if ra := got.header.Get("Retry-After"); ra != "30" {
		t.Errorf("Retry-After %q, want the vendor's 30", ra)
	}
	if n := v.requests.Load(); n != 1 {
		t.Errorf("the vendor got %d requests, want 1", n)
	}
}

// The vendor's own rate limit that outlives the retries is 503
// vendor/vendor_rate_limited with the vendor's Retry-After: when the retries
// run out (Retry-After 1, two attempts), and when the vendor asks for longer
// than the retry layer waits (Retry-After 120, past its 60s cap: one
// attempt). A 503 with Retry-After is the vendor's rate limit too.
func TestVendorRateLimitIs503(t *testing.T) {
	for _, tc := range []struct {
		name       string
		status     int
		retryAfter string
		attempts   string
		wantCalls  int64
	}{
		{"429 retried", http.StatusTooManyRequests, "1", "2", 2},
		{"429 past the retry cap", http.StatusTooManyRequests, "120", "3", 1},
		{"503 with Retry-After", http.StatusServiceUnavailable, "120", "3", 1},
		{"429 without retries", http.StatusTooManyRequests, "7", "1", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVendor(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", tc.retryAfter)
				w.WriteHeader(tc.status)
			})
			a := startApp(t, config(t, vendorEnv(v, map[string]string{"SLUICE_RETRY_ATTEMPTS": tc.attempts})))
			got := a.chat(t, "alice", hello)
			wantError(t, got, http.StatusServiceUnavailable, one("vendor"), one("vendor_rate_limited"), true)
			if ra := got.header.Get("Retry-After"); ra != tc.retryAfter {
				t.Errorf("Retry-After %q, want the vendor's %q", ra, tc.retryAfter)
			}
			if n := v.requests.Load(); n != tc.wantCalls {
				t.Errorf("the vendor got %d requests, want %d", n, tc.wantCalls)
			}
		})
	}
}

// Any other vendor error is 502: a 500 after every retry (vendor/vendor_error
// or retry/retries_exhausted), a 500 without retries, a 503 without
// Retry-After, a 400.
func TestVendorErrorIs502(t *testing.T) {
	for _, tc := range []struct {
		name      string
		status    int
		attempts  string
		wantCalls int64
	}{
		{"500 retried", http.StatusInternalServerError, "3", 3},
		{"500 without retries", http.StatusInternalServerError, "1", 1},
		{"503 without Retry-After", http.StatusServiceUnavailable, "1", 1},
		{"400", http.StatusBadRequest, "3", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVendor(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(tc.status) })
			a := startApp(t, config(t, vendorEnv(v, map[string]string{"SLUICE_RETRY_ATTEMPTS": tc.attempts})))
			wantError(t, a.chat(t, "alice", hello), http.StatusBadGateway,
				[]string{"vendor", "retry"}, []string{"vendor_error", "retries_exhausted"}, false)
			if n := v.requests.Load(); n != tc.wantCalls {
				t.Errorf("the vendor got %d requests, want %d", n, tc.wantCalls)
			}
		})
	}
}

// Every call sends an Idempotency-Key; its retries send the same one, and
// another call a different one. The vendor fails each call's first attempt
// with 503 and answers the second.
func TestIdempotencyKey(t *testing.T) {
	var mu sync.Mutex
	var keys []string
	seen := map[string]int{}
	v := newVendor(t, func(w http.ResponseWriter, r *http.Request) {
		k := r.Header.Get("Idempotency-Key")
		mu.Lock()
		keys = append(keys, k)
		seen[k]++
		n := seen[k]
		mu.Unlock()
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, completion("ok", 1))
	})
	a := startApp(t, config(t, vendorEnv(v, map[string]string{"SLUICE_RETRY_ATTEMPTS": "3"})))
	for i := range 2 {
		if got := a.chat(t, "alice", hello); got.status != http.StatusOK {
			t.Fatalf("call %d: %s", i+1, got)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(keys) != 4 {
		t.Fatalf("the vendor saw %d attempts (keys %q), want 2 calls of 2 attempts", len(keys), keys)
	}
	if keys[0] == "" || keys[2] == "" {
		t.Errorf("a call without an Idempotency-Key: %q", keys)
	}
	if keys[0] != keys[1] || keys[2] != keys[3] {
		t.Errorf("a call's attempts sent different keys: %q", keys)
	}
	if keys[0] == keys[2] {
		t.Errorf("two calls sent the same key %q", keys[0])
	}
}

func regexpMatch(pattern, s string) bool { return mustCompile(pattern).MatchString(s) }

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A stream that breaks after the status was sent cannot change the status:
// the app relays what came and ends the stream with an in-band error event.
func TestBrokenStreamEndsWithErrorEvent(t *testing.T) {
	v := cutStreamVendor(t, "data: {\"choices\":[]}\n\n")
	a := startApp(t, config(t, vendorEnv(v, nil)))
	got := a.chat(t, "alice", `{"prompt":"hello","stream":true}`)
	if got.status != http.StatusOK {
		t.Fatalf("status %d: %s", got.status, got)
	}
	if rest := wantStreamError(t, got.body, "vendor", "stream_broken"); string(rest) != "data: {\"choices\":[]}\n\n" {
		t.Errorf("the relayed stream %q lacks the vendor's event", rest)
	}
}

// TestHugeVendorRetryAfterIsCapped: a vendor asking for centuries must not
// make the app tell its clients to wait centuries.
func TestHugeVendorRetryAfterIsCapped(t *testing.T) {
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "99999999999")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	t.Cleanup(vendor.Close)
	a := startApp(t, config(t, map[string]string{"VENDOR_URL": vendor.URL, "SLUICE_RETRY_ATTEMPTS": "1"}))
	got := a.chat(t, "alice", `{"prompt":"hi"}`)
	if got.status != http.StatusServiceUnavailable || got.header.Get("Retry-After") != "3600" {
		t.Fatalf("got %s with Retry-After %q, want 503 with 3600", got, got.header.Get("Retry-After"))
	}
}
