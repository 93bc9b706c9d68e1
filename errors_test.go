package sluice

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestErrorIsSentinelByReason(t *testing.T) {
	cause := context.DeadlineExceeded
	err := fmt.Errorf("call vendor: %w", NewError(LayerTransport, ReasonPoolTimeout, cause))
	if !errors.Is(err, ErrPoolTimeout) {
		t.Fatal("errors.Is(err, ErrPoolTimeout) = false")
	}
	if errors.Is(err, ErrConnectTimeout) {
		t.Fatal("pool timeout matched ErrConnectTimeout")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("cause not unwrapped")
	}
	var e *Error
	if !errors.As(err, &e) || e.Layer != LayerTransport || e.Reason != ReasonPoolTimeout {
		t.Fatalf("errors.As: %+v", e)
	}
	if !e.Timeout() {
		t.Fatal("pool_timeout is a timeout")
	}
}

func TestErrorIsLayerQualified(t *testing.T) {
	err := NewError(LayerBulkhead, ReasonQueueTimeout, nil)
	if !errors.Is(err, ErrQueueTimeout) {
		t.Fatal("queue timeout from any layer matches ErrQueueTimeout")
	}
	if !errors.Is(err, &Error{Layer: LayerBulkhead, Reason: ReasonQueueTimeout}) {
		t.Fatal("layer-qualified target should match")
	}
	if errors.Is(err, &Error{Layer: LayerAdmissionQueue, Reason: ReasonQueueTimeout}) {
		t.Fatal("other layer must not match")
	}
	if errors.Is(err, &Error{}) {
		t.Fatal("an empty target matches nothing")
	}
}

func TestErrorText(t *testing.T) {
	e := &Error{Layer: LayerRetry, Reason: ReasonRetriesExhausted, Attempts: 3,
		RetryAfter: 1500 * time.Millisecond, Err: errors.New("503 Service Unavailable")}
	want := "sluice: retry: retries_exhausted after 3 attempt(s) (retry after 1.5s): 503 Service Unavailable"
	if got := e.Error(); got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	if got := ErrCircuitOpen.Error(); got != "sluice: circuit_open" {
		t.Fatalf("sentinel text %q", got)
	}
}

func TestVocabularyComplete(t *testing.T) {
	seen := map[Reason]bool{}
	for _, l := range Layers() {
		rs := l.Reasons()
		if len(rs) == 0 {
			t.Fatalf("layer %s has no reasons", l)
		}
		for _, r := range rs {
			seen[r] = true
		}
	}
	sentinels := []*Error{ErrOverloaded, ErrRateLimited, ErrQueueFull, ErrQueueTimeout, ErrRetriesExhausted,
		ErrRetryBudgetExhausted, ErrDeadlineExceeded, ErrCircuitOpen, ErrVendorCooldown, ErrBulkheadFull,
		ErrCallTimeout, ErrPoolTimeout, ErrConnectTimeout, ErrTLSHandshakeTimeout, ErrResponseHeaderTimeout,
		ErrWriteTimeout, ErrReadIdleTimeout, ErrResponseHeaderTooLarge}
	if len(sentinels) != len(seen) {
		t.Fatalf("%d sentinels for %d reasons", len(sentinels), len(seen))
	}
	for _, s := range sentinels {
		if !seen[s.Reason] {
			t.Fatalf("sentinel %s has no layer", s.Reason)
		}
	}
	if len(Layers()) != 10 {
		t.Fatalf("%d layers, want 10", len(Layers()))
	}
	if Layer("nope").Reasons() != nil {
		t.Fatal("unknown layer has reasons")
	}
}

func TestIsOverload(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{NewError(LayerBulkhead, ReasonQueueTimeout, nil), true},
		{NewError(LayerBulkhead, ReasonBulkheadFull, nil), true},
		{NewError(LayerCircuitBreaker, ReasonCircuitOpen, nil), true},
		{NewError(LayerLocalRateLimiter, ReasonRateLimited, nil), true},
		{NewError(LayerGlobalRateLimiter, ReasonQueueTimeout, nil), true},
		{NewError(LayerGlobalRateLimiter, ReasonRateLimited, nil), false},
		{NewError(LayerCallTimeout, ReasonCallTimeout, nil), false},
		{NewError(LayerTransport, ReasonConnectTimeout, nil), false},
		{errors.New("plain"), false},
		{nil, false},
	}
	for _, c := range cases {
		if got := IsOverload(c.err); got != c.want {
			t.Errorf("IsOverload(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestHTTPStatus(t *testing.T) {
	cases := []struct {
		err  error
		want int
	}{
		{NewError(LayerLoadShedder, ReasonOverloaded, nil), http.StatusServiceUnavailable},
		{NewError(LayerUserRateLimiter, ReasonRateLimited, nil), http.StatusTooManyRequests},
		{NewError(LayerAdmissionQueue, ReasonQueueFull, nil), http.StatusServiceUnavailable},
		{NewError(LayerAdmissionQueue, ReasonQueueTimeout, nil), http.StatusServiceUnavailable},
		{NewError(LayerCircuitBreaker, ReasonCircuitOpen, nil), http.StatusServiceUnavailable},
		{NewError(LayerGlobalRateLimiter, ReasonVendorCooldown, nil), http.StatusServiceUnavailable},
		{NewError(LayerBulkhead, ReasonQueueTimeout, nil), http.StatusServiceUnavailable},
		{NewError(LayerCallTimeout, ReasonCallTimeout, nil), http.StatusGatewayTimeout},
		{NewError(LayerTransport, ReasonResponseHeaderTimeout, nil), http.StatusGatewayTimeout},
		{NewError(LayerRetry, ReasonRetriesExhausted, nil), http.StatusBadGateway},
		{errors.New("boom"), http.StatusBadGateway},
	}
	for _, c := range cases {
		if got := HTTPStatus(c.err); got != c.want {
			t.Errorf("HTTPStatus(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "1", time.Millisecond: "1", time.Second: "1",
		1001 * time.Millisecond: "2", 59 * time.Second: "59"} {
		if got := RetryAfterSeconds(d); got != want {
			t.Errorf("RetryAfterSeconds(%s) = %s, want %s", d, got, want)
		}
	}
}
