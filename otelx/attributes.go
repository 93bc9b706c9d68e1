package otelx

import (
	"go.opentelemetry.io/otel/attribute"

	"github.com/sluice-go/sluice"
)

// ScopeName is the instrumentation scope of sluice's tracer and meter: the
// module path.
const ScopeName = "github.com/sluice-go/sluice"

// Span and metric attribute keys of the design contract. Until
// docs/reference.md carries them, this list is their reference:
//
//	key                               where                          value
//	resilience.layer                  pipeline/server span, metrics  the deciding sluice.Layer
//	resilience.outcome                pipeline/server span, metrics  an Outcome (allowed: metrics only)
//	error.type                        pipeline/server span, metrics  the sluice.Reason
//	resilience.policy.name            every sluice span, metrics     the chain's or middleware's name
//	resilience.queue.wait_time        span                           seconds waited in a queue
//	resilience.retry_after            span                           seconds the layer asked to wait
//	resilience.retry.attempts         pipeline span                  attempts made, the first included
//	resilience.circuit_breaker.state  pipeline span, breaker gauge   closed, open or half_open
//	resilience.degraded               span                           true: a Redis-backed layer fell back
//	resilience.retry.delay            backoff span                   seconds of this wait
//	resilience.retry.cause            backoff span                   why the wait: see AttrRetryCause
//	http.request.resend_count         attempt span of a resend       1 for the first resend, ...
//
// On the outbound pipeline span (SpanOutbound) the first three, with
// resilience.retry_after and resilience.retry.attempts, state the call's
// final verdict only: a rejection that a later attempt made good is an
// EventRejected event, not an attribute.
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
	// AttrRetryDelay is the length of one retry wait, in seconds, on its
	// SpanBackoff span: the larger of the jittered backoff and the vendor's
	// Retry-After.
	AttrRetryDelay = attribute.Key("resilience.retry.delay")
	// AttrRetryCause says what the retry wait on a SpanBackoff span follows,
	// in a low-cardinality form: the vendor's status code ("503"), the reason
	// of a sluice error ("call_timeout", "connect_timeout"), or the Go type of
	// any other error ("*net.OpError"). The full error is on the attempt span.
	AttrRetryCause = attribute.Key("resilience.retry.cause")
)

// EventRejected is the name of the span event that Recorder.RejectedAttempt
// adds: one per rejection of a single attempt, with the attributes
// resilience.layer, resilience.outcome, error.type, resilience.policy.name
// and, when known, resilience.retry_after.
const EventRejected = "sluice.rejected"

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
	switch {
	case r == sluice.ReasonRetriesExhausted:
		return OutcomeExhausted
	case r.Timeout():
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
