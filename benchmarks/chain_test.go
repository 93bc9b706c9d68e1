// Package benchmarks measures sluice's chains against the same failsafe-go
// policies composed by hand.
package benchmarks

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/failsafe-go/failsafe-go/ratelimiter"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/failsafe-go/failsafe-go/timeout"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/sluice-go/sluice/outbound"
)

// noop answers 200 with a small body, in process: the benchmark measures the
// chain, not the network.
type noop struct{}

func (noop) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
	return &http.Response{StatusCode: 200, Status: "200 OK", Header: http.Header{},
		Body: io.NopCloser(strings.NewReader("ok")), Request: req}, nil
}

// BenchmarkChain: every layer on, allow path (nothing rejects). Both sides
// wrap the attempt in otelhttp on the (no-op) global providers.
func BenchmarkChain(b *testing.B) {
	const rate = 1 << 30 // never limits
	sluiceRT := outbound.NewRoundTripper(
		outbound.WithTransport(noop{}),
		outbound.WithRetry(outbound.RetrySettings{}),
		outbound.WithCircuitBreaker(outbound.BreakerSettings{}),
		outbound.WithLocalRateLimit(outbound.LocalRateLimitSettings{Requests: rate, Period: time.Second, Bursty: true}),
		outbound.WithBulkhead(outbound.BulkheadSettings{MaxConcurrent: 1024, MaxWait: time.Second}),
		outbound.WithAttemptTimeout(outbound.AttemptTimeoutSettings{Timeout: 10 * time.Second}),
	)
	handRT := failsafehttp.NewRoundTripper(otelhttp.NewTransport(noop{}),
		retrypolicy.NewBuilder[*http.Response]().WithMaxAttempts(3).WithBackoff(100*time.Millisecond, 10*time.Second).Build(),
		circuitbreaker.NewBuilder[*http.Response]().WithFailureRateThreshold(0.5, 10, 10*time.Second).WithDelay(5*time.Second).Build(),
		ratelimiter.NewBurstyBuilder[*http.Response](rate, time.Second).Build(),
		bulkhead.NewBuilder[*http.Response](1024).WithMaxWaitTime(time.Second).Build(),
		timeout.New[*http.Response](10*time.Second),
	)
	for _, bc := range []struct {
		name string
		rt   http.RoundTripper
	}{{"sluice", sluiceRT}, {"failsafehttp", handRT}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodGet, "http://vendor.invalid/v1/x", nil)
					resp, err := bc.rt.RoundTrip(req)
					if err != nil {
						b.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
			})
		})
	}
}
