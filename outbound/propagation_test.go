package outbound

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/sluice-go/sluice/otelx"
)

// TestTraceparentReachesVendor: the vendor receives a traceparent whose
// trace id is the caller's, with the propagator set globally or passed to the
// attempt spans, and also when sluice's own telemetry is off (noop
// providers) while the caller's span records.
func TestTraceparentReachesVendor(t *testing.T) {
	cases := []struct {
		name string
		// global, when true, sets propagation.TraceContext{} as the global
		// propagator for the subtest.
		global bool
		opts   func(tm *telemetry) []Option
		// parentIsAttempt: the vendor's parent span is an attempt span of
		// the chain (false when the chain records nothing).
		parentIsAttempt bool
	}{
		{"global propagator", true, func(tm *telemetry) []Option {
			return []Option{WithTelemetry(tm.tel)}
		}, true},
		{"WithAttemptSpanOptions", false, func(tm *telemetry) []Option {
			return []Option{WithTelemetry(tm.tel), WithAttemptSpanOptions(otelhttp.WithPropagators(propagation.TraceContext{}))}
		}, true},
		{"sluice telemetry off", false, func(*telemetry) []Option {
			off := otelx.New(otelx.WithTracerProvider(tracenoop.NewTracerProvider()), otelx.WithMeterProvider(metricnoop.NewMeterProvider()))
			return []Option{WithTelemetry(off), WithAttemptSpanOptions(otelhttp.WithPropagators(propagation.TraceContext{}))}
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.global {
				prev := otel.GetTextMapPropagator()
				otel.SetTextMapPropagator(propagation.TraceContext{})
				t.Cleanup(func() { otel.SetTextMapPropagator(prev) })
			}
			got := make(chan trace.SpanContext, 1)
			srv := vendor(t, func(w http.ResponseWriter, r *http.Request) {
				ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.HeaderCarrier(r.Header))
				got <- trace.SpanContextFromContext(ctx)
			})
			tm := newTelemetry(t)
			client := NewClient(append(tc.opts(tm), WithTransport(transport(t)), WithRetry(RetrySettings{}))...)
			ctx, caller := tm.tp.Tracer("test").Start(context.Background(), "inbound request")
			err := call(ctx, client, srv.URL)
			caller.End()
			if err != nil {
				t.Fatal(err)
			}
			sc := <-got
			if !sc.IsValid() || sc.TraceID() != caller.SpanContext().TraceID() {
				t.Fatalf("vendor got trace %v (valid %v); want the caller's %v", sc.TraceID(), sc.IsValid(), caller.SpanContext().TraceID())
			}
			var attempt trace.SpanContext
			for _, s := range tm.spans.Ended() {
				if s.SpanKind() == trace.SpanKindClient {
					attempt = s.SpanContext()
				}
			}
			switch {
			case tc.parentIsAttempt && sc.SpanID() != attempt.SpanID():
				t.Fatalf("vendor's parent span %v; want the attempt span %v", sc.SpanID(), attempt.SpanID())
			case !tc.parentIsAttempt && sc.SpanID() != caller.SpanContext().SpanID():
				t.Fatalf("vendor's parent span %v; want the caller's %v", sc.SpanID(), caller.SpanContext().SpanID())
			}
		})
	}
}
