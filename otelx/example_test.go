package otelx_test

import (
	"context"
	"fmt"
	"sort"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/otelx"
)

// printCounters prints the non-zero points of the counters reader holds,
// one line each, sorted: name, layer, outcome, error.type, value.
func printCounters(reader *sdkmetric.ManualReader) {
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		fmt.Println(err)
		return
	}
	var lines []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			for _, dp := range sum.DataPoints {
				if dp.Value == 0 {
					continue // counters exist at zero from the start
				}
				line := m.Name
				for _, k := range []attribute.Key{otelx.AttrLayer, otelx.AttrOutcome, otelx.AttrErrorType} {
					if v, ok := dp.Attributes.Value(k); ok {
						line += " " + v.AsString()
					}
				}
				lines = append(lines, fmt.Sprint(line, " ", dp.Value))
			}
		}
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
}

// printAttributes prints a span's name and attributes, sorted by key.
func printAttributes(s sdktrace.ReadOnlySpan) {
	attrs := s.Attributes()
	sort.Slice(attrs, func(i, j int) bool { return attrs[i].Key < attrs[j].Key })
	fmt.Println(s.Name())
	for _, kv := range attrs {
		fmt.Printf("  %s=%s\n", kv.Key, kv.Value.Emit())
	}
}

// A Telemetry on the application's SDK providers, for the settings'
// Telemetry field of every middleware and outbound.WithTelemetry. Without
// options it uses the global providers, as read when New is called.
func ExampleNew() {
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	mp := sdkmetric.NewMeterProvider()
	defer mp.Shutdown(context.Background())

	tel := otelx.New(otelx.WithTracerProvider(tp), otelx.WithMeterProvider(mp))
	fmt.Println(tel.TracerProvider() == tp, tel.MeterProvider() == mp)
	// Output: true true
}

// sluice's spans go where the tracer provider sends them; here to an
// in-memory recorder, as in a test.
func ExampleWithTracerProvider() {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	tel := otelx.New(otelx.WithTracerProvider(tp))

	_, span := tel.Tracer().Start(context.Background(), "work")
	span.End()
	s := sr.Ended()[0]
	fmt.Println(s.Name(), s.InstrumentationScope().Name)
	// Output: work github.com/sluice-go/sluice
}

// sluice's instruments are created on the meter provider at New, and each
// layer's counters exist (at zero) as soon as the layer is built.
func ExampleWithMeterProvider() {
	reader := sdkmetric.NewManualReader()
	tel := otelx.New(otelx.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))

	rec := tel.Recorder(sluice.LayerLoadShedder, "api")
	rec.Allowed(context.Background())
	printCounters(reader)
	// Output: resilience.requests load_shedder allowed 1
}

// A layer of your own records its decisions in sluice's vocabulary: build
// one Recorder per layer and policy name at construction, then count each
// decision; a rejection is also stated on the span in the context.
func ExampleRecorder() {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	reader := sdkmetric.NewManualReader()
	tel := otelx.New(otelx.WithTracerProvider(tp),
		otelx.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	rec := tel.Recorder(sluice.LayerAdmissionQueue, "chat")

	ctx, span := tel.Tracer().Start(context.Background(), "request")
	rec.QueuedAdd(ctx, 1)
	rec.QueueWait(ctx, 1500*time.Millisecond)
	rec.QueuedAdd(ctx, -1)
	rec.Rejected(ctx, &sluice.Error{Layer: sluice.LayerAdmissionQueue, Reason: sluice.ReasonQueueTimeout,
		RetryAfter: 2 * time.Second})
	span.End()
	rec.Allowed(context.Background()) // another request, admitted

	printAttributes(sr.Ended()[0])
	printCounters(reader)
	// Output:
	// request
	//   error.type=queue_timeout
	//   resilience.layer=admission_queue
	//   resilience.outcome=timed_out
	//   resilience.policy.name=chat
	//   resilience.queue.wait_time=1.5
	//   resilience.retry_after=2
	// resilience.requests admission_queue allowed 1
	// resilience.requests admission_queue timed_out queue_timeout 1
}

// A decision about one attempt that a later attempt may make good is an
// event on the span, not its verdict; SetVerdict states the call's final
// rejection once it is known.
func ExampleSetVerdict() {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	tel := otelx.New(otelx.WithTracerProvider(tp))
	rec := tel.Recorder(sluice.LayerBulkhead, "vendor")

	ctx, span := tel.Tracer().Start(context.Background(), otelx.SpanOutbound)
	rec.RejectedAttempt(ctx, sluice.NewError(sluice.LayerBulkhead, sluice.ReasonQueueTimeout, nil)) // first attempt
	final := &sluice.Error{Layer: sluice.LayerRetry, Reason: sluice.ReasonRetriesExhausted, Attempts: 3}
	otelx.SetVerdict(span, final)
	span.End()

	s := sr.Ended()[0]
	printAttributes(s)
	fmt.Println(s.Status().Code, s.Status().Description, s.Events()[0].Name)
	// Output:
	// sluice.outbound
	//   error.type=retries_exhausted
	//   resilience.layer=retry
	//   resilience.outcome=exhausted
	//   resilience.retry.attempts=3
	// Error retries_exhausted sluice.rejected
}

// A server span is marked Error for the rejections the service answers with
// a 5xx; a 429 (a client over its limit) usually is not.
func ExampleMarkError() {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	ctx, span := tp.Tracer("app").Start(context.Background(), "POST /v1/chat")
	e := sluice.NewError(sluice.LayerLoadShedder, sluice.ReasonOverloaded, nil)
	if sluice.HTTPStatus(e) >= 500 {
		otelx.MarkError(ctx, e)
	}
	span.End()
	fmt.Println(sr.Ended()[0].Status().Code, sr.Ended()[0].Status().Description)
	// Output: Error overloaded
}

func ExampleOutcomeOf() {
	for _, r := range []sluice.Reason{sluice.ReasonRateLimited, sluice.ReasonCallTimeout, sluice.ReasonRetriesExhausted} {
		fmt.Println(r, otelx.OutcomeOf(r))
	}
	// Output:
	// rate_limited rejected
	// call_timeout timed_out
	// retries_exhausted exhausted
}

// Degradations is a layer's count of decisions taken by its failure mode,
// which the status page reads.
func ExampleRecorder_Degradations() {
	rec := otelx.New().Recorder(sluice.LayerUserRateLimiter, "api")
	rec.Degraded(context.Background())
	fmt.Println(rec.Degradations())
	// Output: 1
}
