package sluice

import (
	"math"
	"net/http"
	"strconv"
	"time"
)

// layerReasons is the vocabulary table of docs/reference.md: the layers in
// canonical order (inbound, then outbound) and the reasons each can emit.
var layerReasons = []struct {
	layer   Layer
	reasons []Reason
}{
	{LayerLoadShedder, []Reason{ReasonOverloaded}},
	{LayerUserRateLimiter, []Reason{ReasonRateLimited}},
	{LayerAdmissionQueue, []Reason{ReasonQueueFull, ReasonQueueTimeout}},
	{LayerRetry, []Reason{ReasonRetriesExhausted, ReasonRetryBudgetExhausted, ReasonDeadlineExceeded}},
	{LayerCircuitBreaker, []Reason{ReasonCircuitOpen}},
	{LayerGlobalRateLimiter, []Reason{ReasonRateLimited, ReasonVendorCooldown, ReasonQueueTimeout}},
	{LayerLocalRateLimiter, []Reason{ReasonRateLimited, ReasonQueueTimeout}},
	{LayerBulkhead, []Reason{ReasonQueueTimeout, ReasonBulkheadFull}},
	{LayerCallTimeout, []Reason{ReasonCallTimeout}},
	{LayerTransport, []Reason{ReasonPoolTimeout, ReasonConnectTimeout, ReasonTLSHandshakeTimeout,
		ReasonResponseHeaderTimeout, ReasonWriteTimeout, ReasonReadIdleTimeout, ReasonResponseHeaderTooLarge}},
}

// Layers returns every layer in canonical order: inbound first, then outbound
// from the outermost (retry) to the innermost (transport).
func Layers() []Layer {
	out := make([]Layer, len(layerReasons))
	for i, lr := range layerReasons {
		out[i] = lr.layer
	}
	return out
}

// Reasons returns the reasons layer l can emit, or nil for an unknown layer.
func (l Layer) Reasons() []Reason {
	for _, lr := range layerReasons {
		if lr.layer == l {
			return append([]Reason(nil), lr.reasons...)
		}
	}
	return nil
}

// Inbound reports whether l is one of the Gin middlewares' layers.
func (l Layer) Inbound() bool {
	return l == LayerLoadShedder || l == LayerUserRateLimiter || l == LayerAdmissionQueue
}

// HTTPStatus is the one place that maps an error to the status a server sends
// for it (ProblemOf(err).Status; 200 for nil):
//
//   - user_rate_limiter: 429 Too Many Requests;
//   - every other inbound rejection, and the outbound overload signals
//     (circuit_open, queue_timeout, queue_full, bulkhead_full, rate_limited,
//     vendor_cooldown, retry_budget_exhausted): 503 Service Unavailable;
//   - call_timeout, deadline_exceeded, the transport's timeouts and a
//     context deadline: 504 Gateway Timeout;
//   - a vendor's 429, or 503 with Retry-After, that outlived the retries
//     (*StatusError): 503 Service Unavailable;
//   - a canceled context (the client went away): 499;
//   - anything else, including retries_exhausted, other vendor statuses and
//     errors that are not *Error: 502 Bad Gateway.
func HTTPStatus(err error) int {
	if err == nil {
		return http.StatusOK
	}
	return ProblemOf(err).Status
}

// statusOf is HTTPStatus for a sluice rejection.
func statusOf(e *Error) int {
	if e.Layer == LayerUserRateLimiter {
		return http.StatusTooManyRequests
	}
	if e.Layer.Inbound() {
		return http.StatusServiceUnavailable
	}
	switch e.Reason {
	case ReasonCircuitOpen, ReasonQueueTimeout, ReasonQueueFull, ReasonBulkheadFull,
		ReasonRateLimited, ReasonVendorCooldown, ReasonRetryBudgetExhausted, ReasonOverloaded:
		return http.StatusServiceUnavailable
	}
	if e.Reason.Timeout() {
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// RetryAfterSeconds formats d for a Retry-After header: whole seconds, rounded
// up, at least 1.
func RetryAfterSeconds(d time.Duration) string {
	s := int64(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}
