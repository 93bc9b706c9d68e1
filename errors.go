package sluice

import (
	"errors"
	"strconv"
	"time"
)

// Layer names the resilience layer that rejected or delayed a request. The same
// value appears in errors, in the span attribute resilience.layer, in metric
// attributes, in the example app's JSON error bodies and in the docs.
type Layer string

// The layers, inbound first, then outbound in the canonical order.
const (
	LayerLoadShedder       Layer = "load_shedder"
	LayerUserRateLimiter   Layer = "user_rate_limiter"
	LayerAdmissionQueue    Layer = "admission_queue"
	LayerRetry             Layer = "retry"
	LayerCircuitBreaker    Layer = "circuit_breaker"
	LayerGlobalRateLimiter Layer = "global_rate_limiter"
	LayerLocalRateLimiter  Layer = "local_rate_limiter"
	LayerBulkhead          Layer = "bulkhead"
	LayerCallTimeout       Layer = "call_timeout"
	LayerTransport         Layer = "transport"
)

// Reason is why a layer rejected a request: the value of the error.type
// attribute.
type Reason string

// The reasons. Each layer emits only the reasons listed for it in
// docs/reference.md.
const (
	ReasonOverloaded             Reason = "overloaded"
	ReasonRateLimited            Reason = "rate_limited"
	ReasonQueueFull              Reason = "queue_full"
	ReasonQueueTimeout           Reason = "queue_timeout"
	ReasonRetriesExhausted       Reason = "retries_exhausted"
	ReasonRetryBudgetExhausted   Reason = "retry_budget_exhausted"
	ReasonDeadlineExceeded       Reason = "deadline_exceeded"
	ReasonCircuitOpen            Reason = "circuit_open"
	ReasonVendorCooldown         Reason = "vendor_cooldown"
	ReasonBulkheadFull           Reason = "bulkhead_full"
	ReasonCallTimeout            Reason = "call_timeout"
	ReasonPoolTimeout            Reason = "pool_timeout"
	ReasonConnectTimeout         Reason = "connect_timeout"
	ReasonTLSHandshakeTimeout    Reason = "tls_handshake_timeout"
	ReasonResponseHeaderTimeout  Reason = "response_header_timeout"
	ReasonWriteTimeout           Reason = "write_timeout"
	ReasonReadIdleTimeout        Reason = "read_idle_timeout"
	ReasonResponseHeaderTooLarge Reason = "response_header_too_large"
)

// Sentinels, one per reason. errors.Is(err, ErrQueueTimeout) is true for a
// queue timeout from any layer; use errors.As with *Error to read the layer.
var (
	ErrOverloaded             = &Error{Reason: ReasonOverloaded}
	ErrRateLimited            = &Error{Reason: ReasonRateLimited}
	ErrQueueFull              = &Error{Reason: ReasonQueueFull}
	ErrQueueTimeout           = &Error{Reason: ReasonQueueTimeout}
	ErrRetriesExhausted       = &Error{Reason: ReasonRetriesExhausted}
	ErrRetryBudgetExhausted   = &Error{Reason: ReasonRetryBudgetExhausted}
	ErrDeadlineExceeded       = &Error{Reason: ReasonDeadlineExceeded}
	ErrCircuitOpen            = &Error{Reason: ReasonCircuitOpen}
	ErrVendorCooldown         = &Error{Reason: ReasonVendorCooldown}
	ErrBulkheadFull           = &Error{Reason: ReasonBulkheadFull}
	ErrCallTimeout            = &Error{Reason: ReasonCallTimeout}
	ErrPoolTimeout            = &Error{Reason: ReasonPoolTimeout}
	ErrConnectTimeout         = &Error{Reason: ReasonConnectTimeout}
	ErrTLSHandshakeTimeout    = &Error{Reason: ReasonTLSHandshakeTimeout}
	ErrResponseHeaderTimeout  = &Error{Reason: ReasonResponseHeaderTimeout}
	ErrWriteTimeout           = &Error{Reason: ReasonWriteTimeout}
	ErrReadIdleTimeout        = &Error{Reason: ReasonReadIdleTimeout}
	ErrResponseHeaderTooLarge = &Error{Reason: ReasonResponseHeaderTooLarge}
)

// Error is the one error type every sluice layer returns when it rejects,
// times out or gives up on a request.
//
// Match a condition with errors.Is against a sentinel (ErrPoolTimeout, ...) and
// read the details with errors.As:
//
//	var e *sluice.Error
//	if errors.As(err, &e) {
//		log.Printf("rejected by %s (%s), retry after %s", e.Layer, e.Reason, e.RetryAfter)
//	}
type Error struct {
	// Layer is the layer that decided.
	Layer Layer
	// Reason is the error.type value.
	Reason Reason
	// RetryAfter is how long the caller should wait before trying again, when
	// the layer knows it; zero otherwise.
	RetryAfter time.Duration
	// Attempts is the number of attempts made, set by the retry layer; zero
	// elsewhere.
	Attempts int
	// Err is the underlying cause, if any.
	Err error
}

// NewError returns an *Error for layer and reason wrapping cause (which may be nil).
func NewError(layer Layer, reason Reason, cause error) *Error {
	return &Error{Layer: layer, Reason: reason, Err: cause}
}

// Error formats as "sluice: <layer>: <reason>[ after N attempt(s)][ (retry after D)][: cause]".
func (e *Error) Error() string {
	b := make([]byte, 0, 64)
	b = append(b, "sluice: "...)
	if e.Layer != "" {
		b = append(b, e.Layer...)
		b = append(b, ": "...)
	}
	b = append(b, e.Reason...)
	if e.Attempts > 0 {
		b = append(b, " after "...)
		b = strconv.AppendInt(b, int64(e.Attempts), 10)
		b = append(b, " attempt(s)"...)
	}
	if e.RetryAfter > 0 {
		b = append(b, " (retry after "...)
		b = append(b, e.RetryAfter.String()...)
		b = append(b, ')')
	}
	if e.Err != nil {
		b = append(b, ": "...)
		b = append(b, e.Err.Error()...)
	}
	return string(b)
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is a sentinel (or another *Error) with the same
// reason, and the same layer when target names one.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	if t.Reason != "" && t.Reason != e.Reason {
		return false
	}
	if t.Layer != "" && t.Layer != e.Layer {
		return false
	}
	return t.Reason != "" || t.Layer != ""
}

// Timeout reports whether the error is a timeout, for callers that test
// net.Error-style interfaces.
func (e *Error) Timeout() bool { return e.Reason.Timeout() }

// Timeout reports whether r says time ran out: a queue, call, deadline or
// transport timeout.
func (r Reason) Timeout() bool {
	switch r {
	case ReasonQueueTimeout, ReasonCallTimeout, ReasonPoolTimeout, ReasonConnectTimeout,
		ReasonTLSHandshakeTimeout, ReasonResponseHeaderTimeout, ReasonWriteTimeout,
		ReasonReadIdleTimeout, ReasonDeadlineExceeded:
		return true
	}
	return false
}

// IsOverload reports whether err is an overload signal of our own making:
// queue_timeout, queue_full, bulkhead_full, circuit_open, overloaded, or a
// local rate_limited. Overload signals are never retried.
func IsOverload(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Reason {
	case ReasonQueueTimeout, ReasonQueueFull, ReasonBulkheadFull, ReasonCircuitOpen, ReasonOverloaded:
		return true
	case ReasonRateLimited:
		return e.Layer != LayerGlobalRateLimiter
	}
	return false
}

// ErrorOf returns the outermost *Error in err's chain, or nil.
func ErrorOf(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}
