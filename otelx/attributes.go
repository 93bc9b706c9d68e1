package otelx

import (
	"go.opentelemetry.io/otel/attribute"

	"github.com/sluice-go/sluice"
)

// ScopeName is the instrumentation scope of sluice's tracer and meter: the
// module path.
const ScopeName = "github.com/sluice-go/sluice"

// Span and metric attribute keys of the design contract (docs/reference.md).
const (
	AttrLayer         = attribute.Key("resilience.layer")
	AttrOutcome       = attribute.Key("resilience.outcome")
	AttrErrorType     = attribute.Key("error.type")
	AttrPolicyName    = attribute.Key("resilience.policy.name")
	AttrQueueWait     = attribute.Key("resilience.queue.wait_time")
	AttrRetryAfter    = attribute.Key("resilience.retry_after")
	AttrRetryAttempts = attribute.Key("resilience.retry.attempts")
	AttrCircuitState  = attribute.Key("resilience.circuit_breaker.state")
	AttrDegraded      = attribute.Key("resilience.degraded")
	// AttrResendCount is the semconv attribute set on each resent attempt span.
	AttrResendCount = attribute.Key("http.request.resend_count")
)

// Outcome is the value of resilience.outcome.
type Outcome string

// The outcomes. Allowed appears on metrics only.
const (
	OutcomeAllowed   Outcome = "allowed"
	OutcomeRejected  Outcome = "rejected"
	OutcomeTimedOut  Outcome = "timed_out"
	OutcomeExhausted Outcome = "exhausted"
	OutcomeCanceled  Outcome = "canceled"
)

// OutcomeOf maps a reason to its outcome: timeouts are timed_out,
// retries_exhausted is exhausted, everything else is rejected.
func OutcomeOf(r sluice.Reason) Outcome {
	switch r {
	case sluice.ReasonRetriesExhausted:
		return OutcomeExhausted
	case sluice.ReasonQueueTimeout, sluice.ReasonCallTimeout, sluice.ReasonDeadlineExceeded,
		sluice.ReasonPoolTimeout, sluice.ReasonConnectTimeout, sluice.ReasonTLSHandshakeTimeout,
		sluice.ReasonResponseHeaderTimeout, sluice.ReasonWriteTimeout, sluice.ReasonReadIdleTimeout:
		return OutcomeTimedOut
	}
	return OutcomeRejected
}

// Span names of sluice's own spans.
const (
	// SpanOutbound is the internal pipeline span that wraps every attempt of
	// one outbound call.
	SpanOutbound = "sluice.outbound"
	// SpanBackoff is the internal span of one retry wait.
	SpanBackoff = "sluice.retry.backoff"
)

// Circuit breaker states, the values of resilience.circuit_breaker.state.
const (
	CircuitClosed   = "closed"
	CircuitOpen     = "open"
	CircuitHalfOpen = "half_open"
)
