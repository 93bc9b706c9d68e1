package benchmarks

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/sluice-go/sluice/middleware"
	"github.com/sluice-go/sluice/outbound"
	"github.com/sluice-go/sluice/status"
)

// statusCases are the two sides of the status benchmarks: not registered
// with a status page, and registered with one that nobody reads. Compare
// them with benchstat -col /status.
var statusCases = []struct {
	name string
	reg  func() *status.Registry
}{
	{"status=off", func() *status.Registry { return nil }},
	{"status=on", status.NewRegistry},
}

// BenchmarkStatusChain: BenchmarkChain's sluice chain, every layer on, allow
// path, with and without outbound.WithStatus.
func BenchmarkStatusChain(b *testing.B) {
	const rate = 1 << 30 // never limits
	for _, sc := range statusCases {
		b.Run(sc.name, func(b *testing.B) {
			rt := outbound.NewRoundTripper(
				outbound.WithTransport(noop{}),
				outbound.WithStatus(sc.reg()),
				outbound.WithRetry(outbound.RetrySettings{}),
				outbound.WithCircuitBreaker(outbound.BreakerSettings{}),
				outbound.WithLocalRateLimit(outbound.LocalRateLimitSettings{Requests: rate, Period: time.Second, Bursty: true}),
				outbound.WithBulkhead(outbound.BulkheadSettings{MaxConcurrent: 1024, MaxWait: time.Second}),
				outbound.WithAttemptTimeout(outbound.AttemptTimeoutSettings{Timeout: 10 * time.Second}),
			)
			defer rt.Close()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodGet, "http://vendor.invalid/v1/x", nil)
					resp, err := rt.RoundTrip(req)
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

// BenchmarkStatusInbound: BenchmarkInbound's stack (load shedder, user rate
// limit on memory, admission queue), with and without their Status setting.
func BenchmarkStatusInbound(b *testing.B) {
	for _, sc := range statusCases {
		b.Run(sc.name, func(b *testing.B) {
			reg := sc.reg()
			run(b, engine(
				middleware.LoadShedder(middleware.LoadShedderSettings{MaxInFlight: 1 << 20, Status: reg}),
				middleware.UserRateLimit(middleware.UserRateLimitSettings{Rate: never,
					Key: middleware.KeyFromHeader("X-API-Key"), Status: reg}),
				middleware.AdmissionQueue(middleware.AdmissionQueueSettings{MaxActive: 1 << 10, MaxWaiting: 1 << 10,
					Timeout: time.Second, Status: reg}),
			))
		})
	}
}
