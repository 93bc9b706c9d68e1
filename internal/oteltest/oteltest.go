// Package oteltest gives tests the real OpenTelemetry SDK: spans into a
// tracetest.SpanRecorder, metrics into a ManualReader, both providers shut
// down when the test ends, and a way to read a counter back.
package oteltest

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// SDK is one test's providers and what they recorded.
type SDK struct {
	TP     *sdktrace.TracerProvider
	MP     *sdkmetric.MeterProvider
	Spans  *tracetest.SpanRecorder
	Reader *sdkmetric.ManualReader
}

// New returns providers recording every span (and passing it to extra
// processors too) and every metric.
func New(t testing.TB, extra ...sdktrace.SpanProcessor) *SDK {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	opts := []sdktrace.TracerProviderOption{sdktrace.WithSpanProcessor(sr)}
	for _, p := range extra {
		opts = append(opts, sdktrace.WithSpanProcessor(p))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	return &SDK{TP: tp, MP: mp, Spans: sr, Reader: reader}
}

// Metrics collects reader and returns the metrics named name.
func Metrics(t testing.TB, reader *sdkmetric.ManualReader, name string) []metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var out []metricdata.Metrics
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				out = append(out, m)
			}
		}
	}
	return out
}

// Sum returns the total of the int64 sum metric name over the data points
// whose attributes include all of want.
func Sum(t testing.TB, reader *sdkmetric.ManualReader, name string, want ...attribute.KeyValue) int64 {
	t.Helper()
	var total int64
	for _, m := range Metrics(t, reader, name) {
		s, ok := m.Data.(metricdata.Sum[int64])
		if !ok {
			t.Fatalf("%s is %T", name, m.Data)
		}
		for _, dp := range s.DataPoints {
			if HasAll(dp.Attributes, want) {
				total += dp.Value
			}
		}
	}
	return total
}

// HasAll reports whether set holds every key=value of want.
func HasAll(set attribute.Set, want []attribute.KeyValue) bool {
	for _, kv := range want {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}
