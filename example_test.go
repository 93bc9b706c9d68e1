package sluice_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/sluice-go/sluice"
)

// An outbound call failed: answer the client with the right status, a
// Retry-After and the one JSON error body, without echoing the cause.
func ExampleWriteError() {
	err := &sluice.Error{Layer: sluice.LayerGlobalRateLimiter, Reason: sluice.ReasonVendorCooldown,
		RetryAfter: 2500 * time.Millisecond, Err: errors.New(`Post "https://internal.example/v1": ...`)}
	rec := httptest.NewRecorder()
	sluice.WriteError(rec, err)
	fmt.Println(rec.Code, rec.Header().Get("Retry-After"))
	fmt.Print(rec.Body.String())
	// Output:
	// 503 3
	// {"error":{"layer":"global_rate_limiter","reason":"vendor_cooldown","message":"the vendor asked every caller to wait; retry later"}}
}

func ExampleProblemOf() {
	// A vendor 429 that outlived the retries.
	err := &sluice.Error{Layer: sluice.LayerRetry, Reason: sluice.ReasonRetriesExhausted, Attempts: 3,
		Err: &sluice.StatusError{StatusCode: 429, Status: "429 Too Many Requests", RetryAfter: 20 * time.Second}}
	p := sluice.ProblemOf(err)
	fmt.Println(p.Status, p.Layer, p.Reason, p.RetryAfter)
	// Output: 503 vendor vendor_rate_limited 20s
}

func ExampleHTTPStatus() {
	fmt.Println(sluice.HTTPStatus(sluice.NewError(sluice.LayerUserRateLimiter, sluice.ReasonRateLimited, nil)))
	fmt.Println(sluice.HTTPStatus(sluice.NewError(sluice.LayerBulkhead, sluice.ReasonQueueTimeout, nil)))
	fmt.Println(sluice.HTTPStatus(sluice.NewError(sluice.LayerCallTimeout, sluice.ReasonCallTimeout, nil)))
	fmt.Println(sluice.HTTPStatus(errors.New("connection refused")))
	// Output:
	// 429
	// 503
	// 504
	// 502
}

// A response the caller treats as a failure becomes an error that
// WriteError maps like any other.
func ExampleVendorError() {
	resp := &http.Response{StatusCode: 429, Header: http.Header{"Retry-After": {"7"}}}
	err := sluice.VendorError(resp)
	fmt.Println(err, err.RetryAfter, sluice.HTTPStatus(err))
	// Output: vendor answered 429 Too Many Requests 7s 503
}

func ExampleError() {
	var err error = fmt.Errorf("calling the vendor: %w",
		&sluice.Error{Layer: sluice.LayerBulkhead, Reason: sluice.ReasonQueueTimeout, RetryAfter: time.Second})
	fmt.Println(errors.Is(err, sluice.ErrQueueTimeout), sluice.IsOverload(err))
	var e *sluice.Error
	if errors.As(err, &e) {
		fmt.Println(e.Layer, e.Reason, e.RetryAfter)
	}
	// Output:
	// true true
	// bulkhead queue_timeout 1s
}

func ExampleErrorOf() {
	err := fmt.Errorf("wrapped: %w", sluice.NewError(sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen, nil))
	fmt.Println(sluice.ErrorOf(err).Reason, sluice.ErrorOf(errors.New("other")) == nil)
	// Output: circuit_open true
}

func ExampleRetryAfterSeconds() {
	fmt.Println(sluice.RetryAfterSeconds(1100*time.Millisecond), sluice.RetryAfterSeconds(0))
	// Output: 2 1
}

func ExampleLayers() {
	for _, l := range sluice.Layers()[:3] {
		fmt.Println(l, l.Inbound(), l.Reasons())
	}
	// Output:
	// load_shedder true [overloaded]
	// user_rate_limiter true [rate_limited]
	// admission_queue true [queue_full queue_timeout]
}

func ExampleIsOverload() {
	fmt.Println(sluice.IsOverload(sluice.NewError(sluice.LayerBulkhead, sluice.ReasonBulkheadFull, nil)))
	fmt.Println(sluice.IsOverload(&sluice.Error{Layer: sluice.LayerGlobalRateLimiter, Reason: sluice.ReasonRateLimited}))
	// Output:
	// true
	// false
}

// A layer of your own reports its rejections in sluice's vocabulary, so that
// errors.Is, HTTPStatus and WriteError treat them like sluice's own.
func ExampleNewError() {
	cause := errors.New("tenant quota store said no")
	err := sluice.NewError(sluice.LayerUserRateLimiter, sluice.ReasonRateLimited, cause)
	fmt.Println(err)
	fmt.Println(errors.Is(err, sluice.ErrRateLimited), errors.Is(err, cause), sluice.HTTPStatus(err))
	// Output:
	// sluice: user_rate_limiter: rate_limited: tenant quota store said no
	// true true 429
}

// Problem.Write lets a handler adjust the answer before sending it, here
// the message, keeping the status, the Retry-After and the JSON shape.
func ExampleProblem_Write() {
	p := sluice.ProblemOf(&sluice.Error{Layer: sluice.LayerCircuitBreaker, Reason: sluice.ReasonCircuitOpen,
		RetryAfter: 4 * time.Second})
	p.Message = "the assistant is unavailable; retry in a few seconds"
	rec := httptest.NewRecorder()
	p.Write(rec)
	fmt.Println(rec.Code, rec.Header().Get("Retry-After"), rec.Header().Get("Content-Type"))
	fmt.Print(rec.Body.String())
	// Output:
	// 503 4 application/json; charset=utf-8
	// {"error":{"layer":"circuit_breaker","reason":"circuit_open","message":"the assistant is unavailable; retry in a few seconds"}}
}

// The zero FailureMode is each layer's documented default; set one of the
// others to choose what a Redis-backed layer does while Redis is down.
func ExampleFailureMode() {
	for _, m := range []sluice.FailureMode{sluice.FailureModeDefault, sluice.FailOpen, sluice.FailClosed, sluice.FallbackLocal} {
		fmt.Println(int(m), m)
	}
	// Output:
	// 0 default
	// 1 fail_open
	// 2 fail_closed
	// 3 fallback_local
}

// A Layer names where a decision was taken, the same in errors, spans,
// metrics and docs.
func ExampleLayer() {
	for _, l := range []sluice.Layer{sluice.LayerAdmissionQueue, sluice.LayerBulkhead} {
		fmt.Println(l, l.Inbound(), l.Reasons())
	}
	// Output:
	// admission_queue true [queue_full queue_timeout]
	// bulkhead false [queue_timeout bulkhead_full]
}

func ExampleReason() {
	for _, r := range []sluice.Reason{sluice.ReasonQueueTimeout, sluice.ReasonConnectTimeout, sluice.ReasonCircuitOpen} {
		fmt.Println(r, r.Timeout())
	}
	// Output:
	// queue_timeout true
	// connect_timeout true
	// circuit_open false
}
