package benchmarks

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/github.com/gin-gonic/gin/otelgin"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/sluice-go/sluice/middleware"
	"github.com/sluice-go/sluice/otelx"
	"github.com/sluice-go/sluice/outbound"
)

// providers is one telemetry setting of BenchmarkTelemetry.
type providers struct {
	name string
	tp   trace.TracerProvider
	mp   metric.MeterProvider
}

// telemetrySettings: "off" is the noop providers; "on" is the real SDK,
// recording every span (into an exporter that drops them) and every metric
// (into a manual reader nobody collects), so that the difference is the cost
// of sluice's instrumentation and the SDK's, not of exporting.
func telemetrySettings(b *testing.B) []providers {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(tracetest.NewNoopExporter())))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	return []providers{
		{"off", tracenoop.NewTracerProvider(), metricnoop.NewMeterProvider()},
		{"on", tp, mp},
	}
}

// BenchmarkTelemetry compares tracing and metrics off and on, side by side in
// one run, on the allow path of each stack: the outbound chain with every
// layer, and the inbound middleware stack.
func BenchmarkTelemetry(b *testing.B) {
	b.Run("outbound", func(b *testing.B) {
		for _, p := range telemetrySettings(b) {
			tel := otelx.New(otelx.WithTracerProvider(p.tp), otelx.WithMeterProvider(p.mp))
			rt := outbound.NewRoundTripper(
				outbound.WithTransport(noop{}),
				outbound.WithTelemetry(tel),
				outbound.WithRetry(outbound.RetrySettings{}),
				outbound.WithCircuitBreaker(outbound.BreakerSettings{}),
				outbound.WithLocalRateLimit(outbound.LocalRateLimitSettings{Requests: 1 << 30, Period: time.Second, Bursty: true}),
				outbound.WithBulkhead(outbound.BulkheadSettings{MaxConcurrent: 1024, MaxWait: time.Second}),
				outbound.WithAttemptTimeout(outbound.AttemptTimeoutSettings{Timeout: 10 * time.Second}),
			)
			b.Run(p.name, func(b *testing.B) {
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
	})
	b.Run("inbound", benchmarkInboundTelemetry)
}

// benchmarkInboundTelemetry is the inbound half: otelgin → load shedder →
// user rate limiter → admission queue (the canonical order without Deadline
// and BufferBody, which record nothing), off against on with
// telemetrySettings, like the outbound half above.
func benchmarkInboundTelemetry(b *testing.B) {
	key := middleware.KeyFromHeader("X-API-Key")
	for _, p := range telemetrySettings(b) {
		tel := otelx.New(otelx.WithTracerProvider(p.tp), otelx.WithMeterProvider(p.mp))
		h := engine(
			otelgin.Middleware("bench", otelgin.WithTracerProvider(p.tp), otelgin.WithMeterProvider(p.mp)),
			middleware.LoadShedder(middleware.LoadShedderSettings{MaxInFlight: 1 << 20, Telemetry: tel}),
			middleware.UserRateLimit(middleware.UserRateLimitSettings{Rate: never, Key: key, Telemetry: tel}),
			middleware.AdmissionQueue(middleware.AdmissionQueueSettings{MaxActive: 1 << 10, MaxWaiting: 1 << 10,
				Timeout: time.Second, Telemetry: tel}),
		)
		b.Run(p.name, func(b *testing.B) { run(b, h) })
	}
}
