package sluice

import "strconv"

// FailureMode is what a Redis-backed layer does while Redis cannot be
// reached (a failed or timed-out call, or the health breaker keeping calls
// off Redis). Every decision taken that way is counted in the
// resilience.degraded metric and marked on the span. One type serves every
// layer; each layer's settings document which modes it supports and its
// default.
type FailureMode int

const (
	// FailureModeDefault, the zero value, is the layer's documented default:
	// FailOpen for the per-user rate limit, FallbackLocal for the vendor
	// quota.
	FailureModeDefault FailureMode = iota
	// FailOpen admits every request.
	FailOpen
	// FailClosed rejects every request with the layer's rate_limited.
	FailClosed
	// FallbackLocal keeps limiting with this process's own state: the vendor
	// quota enforces this process's share of it (the quota divided by the
	// processes last counted alive through Redis).
	FallbackLocal
)

// String returns the mode's name as written in the docs: "default",
// "fail_open", "fail_closed" or "fallback_local".
func (m FailureMode) String() string {
	switch m {
	case FailureModeDefault:
		return "default"
	case FailOpen:
		return "fail_open"
	case FailClosed:
		return "fail_closed"
	case FallbackLocal:
		return "fallback_local"
	}
	return "FailureMode(" + strconv.Itoa(int(m)) + ")"
}

// DefaultName is the policy name (resilience.policy.name) of a layer or chain
// built without one.
const DefaultName = "default"
