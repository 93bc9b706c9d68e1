package sluice

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestProblemOf(t *testing.T) {
	vendor429 := &Error{Layer: LayerRetry, Reason: ReasonRetriesExhausted, Attempts: 3, RetryAfter: 2 * time.Second,
		Err: &StatusError{StatusCode: 429, Status: "429 Too Many Requests", RetryAfter: 5 * time.Second}}
	cases := []struct {
		name   string
		err    error
		status int
		layer  string
		reason string
		ra     time.Duration
	}{
		{"user limit", &Error{Layer: LayerUserRateLimiter, Reason: ReasonRateLimited, RetryAfter: 1500 * time.Millisecond},
			429, "user_rate_limiter", "rate_limited", 1500 * time.Millisecond},
		{"shedder without retry-after", NewError(LayerLoadShedder, ReasonOverloaded, nil), 503, "load_shedder", "overloaded", time.Second},
		{"breaker open", NewError(LayerCircuitBreaker, ReasonCircuitOpen, nil), 503, "circuit_breaker", "circuit_open", time.Second},
		{"cooldown, wrapped", fmt.Errorf("calling: %w", &Error{Layer: LayerGlobalRateLimiter, Reason: ReasonVendorCooldown, RetryAfter: 3 * time.Second}),
			503, "global_rate_limiter", "vendor_cooldown", 3 * time.Second},
		{"call timeout", NewError(LayerCallTimeout, ReasonCallTimeout, context.DeadlineExceeded), 504, "call_timeout", "call_timeout", 0},
		{"retry deadline", NewError(LayerRetry, ReasonDeadlineExceeded, nil), 504, "retry", "deadline_exceeded", 0},
		{"transport timeout", NewError(LayerTransport, ReasonConnectTimeout, nil), 504, "transport", "connect_timeout", 0},
		{"retries exhausted on a network error", NewError(LayerRetry, ReasonRetriesExhausted, net.ErrClosed), 502, "retry", "retries_exhausted", 0},
		{"vendor 429 outlived the retries", vendor429, 503, "vendor", "vendor_rate_limited", 5 * time.Second},
		{"vendor 503 with retry-after", &StatusError{StatusCode: 503, Status: "503 Service Unavailable", RetryAfter: time.Second}, 503, "vendor", "vendor_rate_limited", time.Second},
		{"vendor 503 without retry-after", &StatusError{StatusCode: 503, Status: "503 Service Unavailable"}, 502, "vendor", "vendor_error", 0},
		{"vendor 500", &StatusError{StatusCode: 500, Status: "500 Internal Server Error"}, 502, "vendor", "vendor_error", 0},
		{"vendor asks for years", &StatusError{StatusCode: 429, RetryAfter: 1e6 * time.Hour}, 503, "vendor", "vendor_rate_limited", MaxRetryAfter},
		{"layer asks for years", &Error{Layer: LayerGlobalRateLimiter, Reason: ReasonRateLimited, RetryAfter: 1e6 * time.Hour}, 503, "global_rate_limiter", "rate_limited", MaxRetryAfter},
		{"context deadline", fmt.Errorf("Post %q: %w", "https://internal.example/v1", context.DeadlineExceeded), 504, "request", "deadline_exceeded", 0},
		{"context canceled", context.Canceled, 499, "request", "client_closed_request", 0},
		{"header too large", NewError(LayerTransport, ReasonResponseHeaderTooLarge, nil), 502, "transport", "response_header_too_large", 0},
		{"anything else", fmt.Errorf("dial tcp 10.1.2.3:443: connection refused"), 502, "vendor", "unreachable", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := ProblemOf(c.err)
			if p.Status != c.status || p.Layer != c.layer || p.Reason != c.reason || p.RetryAfter != c.ra {
				t.Errorf("ProblemOf(%v) = %+v, want %d %s/%s retry after %s", c.err, p, c.status, c.layer, c.reason, c.ra)
			}
			if p.Message == "" || strings.HasPrefix(p.Message, "rejected by") {
				t.Errorf("no message of its own: %q", p.Message)
			}
			if got := HTTPStatus(c.err); got != p.Status {
				t.Errorf("HTTPStatus = %d, ProblemOf says %d: two answers for one error", got, p.Status)
			}
		})
	}
	if p := ProblemOf(nil); p != (Problem{}) {
		t.Errorf("ProblemOf(nil) = %+v, want the zero Problem", p)
	}
	if HTTPStatus(nil) != http.StatusOK {
		t.Error("HTTPStatus(nil) is not 200")
	}
}

// TestProblemNeverEchoesTheCause: the README's first handler answered
// err.Error(), which carries the vendor's URL. A real failed call's error
// must reach the client as a fixed message only.
func TestProblemNeverEchoesTheCause(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: the call is refused
	secretURL := "http://" + addr + "/v1/secret-internal-path?key=sk-planted"
	resp, err := http.Get(secretURL)
	if err == nil {
		resp.Body.Close()
		t.Fatal("the call to a closed port succeeded")
	}
	if !strings.Contains(err.Error(), "secret-internal-path") {
		t.Fatalf("the error does not carry the URL (%v); the test would prove nothing", err)
	}
	for _, e := range []error{err, NewError(LayerRetry, ReasonRetriesExhausted, err),
		NewError(LayerTransport, ReasonConnectTimeout, err)} {
		rec := httptest.NewRecorder()
		WriteError(rec, e)
		body := rec.Body.String()
		if strings.Contains(body, "secret") || strings.Contains(body, addr) || strings.Contains(body, "sk-planted") {
			t.Errorf("the body echoes the cause: %s", body)
		}
		var v struct {
			Error struct{ Layer, Reason, Message string }
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil || v.Error.Layer == "" || v.Error.Reason == "" || v.Error.Message == "" {
			t.Errorf("body %q is not the one JSON error shape: %v", body, err)
		}
	}
}

func TestProblemWrite(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, &Error{Layer: LayerBulkhead, Reason: ReasonQueueTimeout, RetryAfter: 1100 * time.Millisecond})
	if rec.Code != 503 || rec.Header().Get("Retry-After") != "2" ||
		rec.Header().Get("Content-Type") != "application/json; charset=utf-8" || rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("got %d %v", rec.Code, rec.Header())
	}
	want := `{"error":{"layer":"bulkhead","reason":"queue_timeout","message":"timed out waiting for capacity; retry later"}}` + "\n"
	if rec.Body.String() != want {
		t.Errorf("body %q, want %q", rec.Body.String(), want)
	}
	rec = httptest.NewRecorder()
	WriteError(rec, NewError(LayerCallTimeout, ReasonCallTimeout, nil))
	if rec.Code != 504 || rec.Header().Get("Retry-After") != "" {
		t.Errorf("504: got %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
}

func TestVendorError(t *testing.T) {
	h := http.Header{}
	h.Set("Retry-After", "99999999999")
	e := VendorError(&http.Response{StatusCode: 429, Header: h})
	if e.StatusCode != 429 || e.Status != "429 Too Many Requests" || e.RetryAfter != MaxRetryAfter {
		t.Errorf("VendorError = %+v", e)
	}
	h = http.Header{}
	h.Set("Retry-After-Ms", "1500")
	if e := VendorError(&http.Response{StatusCode: 503, Status: "503 Busy", Header: h}); e.RetryAfter != 1500*time.Millisecond || e.Status != "503 Busy" {
		t.Errorf("VendorError = %+v", e)
	}
	if e := VendorError(&http.Response{StatusCode: 500, Header: http.Header{}}); e.RetryAfter != 0 || e.Error() != "vendor answered 500 Internal Server Error" {
		t.Errorf("VendorError = %+v (%v)", e, e)
	}
}

func TestFailureModeString(t *testing.T) {
	for m, want := range map[FailureMode]string{FailureModeDefault: "default", FailOpen: "fail_open",
		FailClosed: "fail_closed", FallbackLocal: "fallback_local", 9: "FailureMode(9)"} {
		if m.String() != want {
			t.Errorf("%d: %q, want %q", int(m), m.String(), want)
		}
	}
}

// TestEveryReasonHasAMessage: a reason added to the vocabulary gets its own
// fixed message, not the fallback.
func TestEveryReasonHasAMessage(t *testing.T) {
	for _, l := range Layers() {
		for _, r := range l.Reasons() {
			if problemMessages[r] == "" {
				t.Errorf("reason %s (layer %s) has no message in problemMessages", r, l)
			}
		}
	}
}
