package otelx

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/goleak"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/oteltest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func setup(t *testing.T) (*Telemetry, *tracetest.SpanRecorder, *sdkmetric.ManualReader) {
	t.Helper()
	sdk := oteltest.New(t)
	return New(WithTracerProvider(sdk.TP), WithMeterProvider(sdk.MP)), sdk.Spans, sdk.Reader
}

func sum(t *testing.T, reader *sdkmetric.ManualReader, name string, want ...attribute.KeyValue) int64 {
	t.Helper()
	return oteltest.Sum(t, reader, name, want...)
}

func TestRejectedEveryLayerAndReason(t *testing.T) {
	tel, sr, reader := setup(t)
	for _, layer := range sluice.Layers() {
		rec := tel.Recorder(layer, "p")
		for _, reason := range layer.Reasons() {
			ctx, span := tel.Tracer().Start(context.Background(), "op")
			e := &sluice.Error{Layer: layer, Reason: reason, RetryAfter: 1500 * time.Millisecond}
			rec.Rejected(ctx, e)
			span.End()
			got := map[attribute.Key]attribute.Value{}
			spans := sr.Ended()
			for _, kv := range spans[len(spans)-1].Attributes() {
				got[kv.Key] = kv.Value
			}
			if got[AttrLayer].AsString() != string(layer) || got[AttrErrorType].AsString() != string(reason) ||
				got[AttrOutcome].AsString() != string(OutcomeOf(reason)) || got[AttrPolicyName].AsString() != "p" ||
				got[AttrRetryAfter].AsFloat64() != 1.5 {
				t.Errorf("%s/%s: span attributes %v", layer, reason, got)
			}
			if n := sum(t, reader, MetricRequests, AttrLayer.String(string(layer)),
				AttrErrorType.String(string(reason))); n != 1 {
				t.Errorf("%s/%s: %s = %d, want 1", layer, reason, MetricRequests, n)
			}
		}
	}
}

func TestAllowedCountsWithoutError(t *testing.T) {
	tel, _, reader := setup(t)
	rec := tel.Recorder(sluice.LayerBulkhead, "vendor")
	for i := 0; i < 3; i++ {
		rec.Allowed(context.Background())
	}
	if n := sum(t, reader, MetricRequests, AttrOutcome.String("allowed")); n != 3 {
		t.Fatalf("allowed = %d, want 3", n)
	}
	rec.ActiveAdd(context.Background(), 1)
	rec.ActiveAdd(context.Background(), 1)
	rec.ActiveAdd(context.Background(), -1)
	if n := sum(t, reader, MetricActive, AttrLayer.String("bulkhead")); n != 1 {
		t.Fatalf("active = %d, want 1", n)
	}
	rec.Degraded(context.Background())
	if n := sum(t, reader, MetricDegraded, AttrLayer.String("bulkhead")); n != 1 {
		t.Fatalf("degraded = %d, want 1", n)
	}
}

func TestNilRecorderIsNoop(t *testing.T) {
	var r *Recorder
	ctx := context.Background()
	r.Allowed(ctx)
	r.Rejected(ctx, sluice.ErrCircuitOpen)
	r.QueueWait(ctx, time.Second)
	r.ActiveAdd(ctx, 1)
	r.Degraded(ctx)
	r.CircuitState(ctx, CircuitOpen)
	r.RetryAttempt(ctx)
	r.Canceled(ctx)
}

func TestAllowedOnNoopProviderDoesNotAllocate(t *testing.T) {
	rec := New(WithTracerProvider(tracenoop.NewTracerProvider()),
		WithMeterProvider(metricnoop.NewMeterProvider())).Recorder(sluice.LayerBulkhead, "vendor")
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() {
		rec.Allowed(ctx)
		rec.ActiveAdd(ctx, 1)
		rec.ActiveAdd(ctx, -1)
	}); n > 0 {
		t.Fatalf("the allow path allocates %.1f times on no-op providers", n)
	}
}

func TestAllowedDoesNotAllocate(t *testing.T) {
	tel, _, _ := setup(t)
	rec := tel.Recorder(sluice.LayerBulkhead, "vendor")
	ctx := context.Background()
	rec.Allowed(ctx) // first call creates the data point
	// The floor is the SDK's own cost of one Add with a precomputed set.
	set := metric.WithAttributeSet(attribute.NewSet(AttrLayer.String("x")))
	tel.requests.Add(ctx, 1, set)
	floor := testing.AllocsPerRun(100, func() { tel.requests.Add(ctx, 1, set) })
	if n := testing.AllocsPerRun(100, func() { rec.Allowed(ctx) }); n > floor {
		t.Fatalf("Allowed allocates %.1f times per call; a bare Add allocates %.1f", n, floor)
	}
}

// TestRejectedAttemptIsAnEvent: an attempt's rejection is counted and shows
// as an EventRejected event, leaving the span's attributes to the verdict.
func TestRejectedAttemptIsAnEvent(t *testing.T) {
	tel, sr, reader := setup(t)
	rec := tel.Recorder(sluice.LayerCallTimeout, "vendor")
	ctx, span := tel.Tracer().Start(context.Background(), "op")
	rec.RejectedAttempt(ctx, &sluice.Error{Layer: sluice.LayerCallTimeout, Reason: sluice.ReasonCallTimeout, RetryAfter: time.Second})
	span.End()
	s := sr.Ended()[0]
	for _, kv := range s.Attributes() {
		if kv.Key == AttrErrorType || kv.Key == AttrLayer || kv.Key == AttrOutcome {
			t.Errorf("attribute %v set by a per-attempt rejection", kv)
		}
	}
	if len(s.Events()) != 1 || s.Events()[0].Name != EventRejected {
		t.Fatalf("events %v; want one %s", s.Events(), EventRejected)
	}
	got := attribute.NewSet(s.Events()[0].Attributes...)
	want := attribute.NewSet(AttrLayer.String("call_timeout"), AttrPolicyName.String("vendor"),
		AttrOutcome.String("timed_out"), AttrErrorType.String("call_timeout"), AttrRetryAfter.Float64(1))
	if !got.Equals(&want) {
		t.Fatalf("event attributes %v; want %v", got.Encoded(attribute.DefaultEncoder()), want.Encoded(attribute.DefaultEncoder()))
	}
	if n := sum(t, reader, MetricRequests, AttrLayer.String("call_timeout"), AttrErrorType.String("call_timeout")); n != 1 {
		t.Fatalf("%s = %d, want 1", MetricRequests, n)
	}
}

// TestSetVerdict: the final verdict's attributes and status, and nothing
// counted.
func TestSetVerdict(t *testing.T) {
	tel, sr, reader := setup(t)
	_, span := tel.Tracer().Start(context.Background(), "op")
	SetVerdict(span, &sluice.Error{Layer: sluice.LayerRetry, Reason: sluice.ReasonRetriesExhausted, Attempts: 3, RetryAfter: 2 * time.Second})
	span.End()
	s := sr.Ended()[0]
	got := attribute.NewSet(s.Attributes()...)
	want := attribute.NewSet(AttrLayer.String("retry"), AttrOutcome.String("exhausted"),
		AttrErrorType.String("retries_exhausted"), AttrRetryAttempts.Int(3), AttrRetryAfter.Float64(2))
	if !got.Equals(&want) {
		t.Fatalf("attributes %v; want %v", got.Encoded(attribute.DefaultEncoder()), want.Encoded(attribute.DefaultEncoder()))
	}
	if s.Status().Code != codes.Error || s.Status().Description != "retries_exhausted" {
		t.Fatalf("status %v", s.Status())
	}
	if n := sum(t, reader, MetricRequests); n != 0 {
		t.Fatalf("SetVerdict counted %d requests", n)
	}
}

// TestCountersExistFromStart: a layer's counters are exported, at zero, as
// soon as it is built, so dashboards and alerts see a series before the first
// event (issue 12).
func TestCountersExistFromStart(t *testing.T) {
	tel, _, reader := setup(t)
	tel.Recorder(sluice.LayerGlobalRateLimiter, "vendor")
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if d, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, dp := range d.DataPoints {
					if dp.Value != 0 {
						t.Errorf("%s = %d before any event", m.Name, dp.Value)
					}
					seen[m.Name]++
				}
			}
		}
	}
	// allowed + one series per reason the layer can emit.
	if want := 1 + len(sluice.LayerGlobalRateLimiter.Reasons()); seen[MetricRequests] != want {
		t.Errorf("%s: %d series at start, want %d", MetricRequests, seen[MetricRequests], want)
	}
	if seen[MetricDegraded] != 1 {
		t.Errorf("%s: %d series at start, want 1", MetricDegraded, seen[MetricDegraded])
	}
}
