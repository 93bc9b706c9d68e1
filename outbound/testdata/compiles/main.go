// The control for TestMisuseDoesNotCompile: every option used as documented
// compiles, so the misuse cases fail for their misuse alone.
package main

import (
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/outbound"
)

func main() {
	c := outbound.NewClient(
		outbound.WithName("vendor"),
		outbound.WithTransport(outbound.NewTransport(outbound.TransportSettings{MaxConns: 10})),
		outbound.WithRetry(outbound.RetrySettings{}),
		outbound.WithCircuitBreaker(outbound.BreakerSettings{Shared: &outbound.SharedBreakerSettings{Quorum: 2}}),
		outbound.WithGlobalRateLimit(outbound.GlobalRateLimitSettings{Requests: 10, Period: time.Second,
			FailureMode: sluice.FailClosed}),
		outbound.WithLocalRateLimit(outbound.LocalRateLimitSettings{Requests: 10, Period: time.Second}),
		outbound.WithBulkhead(outbound.BulkheadSettings{MaxConcurrent: 10}),
		outbound.WithAttemptTimeout(outbound.AttemptTimeoutSettings{Timeout: time.Second, Streaming: true}),
	)
	_ = c.Close()
}
