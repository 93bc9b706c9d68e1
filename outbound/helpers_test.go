package outbound

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/otelx"
)

// vendor is a loopback httptest server whose handler the test sets.
func vendor(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// transport returns a fresh transport whose idle connections are closed at
// the end of the test, so goleak sees no stray readers.
func transport(t *testing.T) *http.Transport {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

type telemetry struct {
	tel    *otelx.Telemetry
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
}

func newTelemetry(t *testing.T, extra ...sdktrace.SpanProcessor) *telemetry {
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
	return &telemetry{tel: otelx.New(otelx.WithTracerProvider(tp), otelx.WithMeterProvider(mp)), spans: sr, tp: tp, reader: reader}
}

// sum returns an int64 sum metric over the points whose attributes include
// the given key=value pairs.
func (tm *telemetry) sum(t *testing.T, name string, kv ...string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tm.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			s, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				t.Fatalf("%s is %T", name, m.Data)
			}
		points:
			for _, dp := range s.DataPoints {
				for i := 0; i+1 < len(kv); i += 2 {
					v, ok := dp.Attributes.Value(attributeKey(kv[i]))
					if !ok || v.Emit() != kv[i+1] {
						continue points
					}
				}
				total += dp.Value
			}
		}
	}
	return total
}

func (tm *telemetry) rejections(t *testing.T, layer sluice.Layer, reason sluice.Reason) int64 {
	return tm.sum(t, otelx.MetricRequests, string(otelx.AttrLayer), string(layer), string(otelx.AttrErrorType), string(reason))
}

// onStart is a span processor that calls fn when a span named name starts.
type onStart struct {
	name string
	fn   func()
}

func (o onStart) OnStart(_ context.Context, s sdktrace.ReadWriteSpan) {
	if s.Name() == o.name {
		o.fn()
	}
}
func (onStart) OnEnd(sdktrace.ReadOnlySpan)      {}
func (onStart) Shutdown(context.Context) error   { return nil }
func (onStart) ForceFlush(context.Context) error { return nil }

// counter counts the requests a vendor sees, by path.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) add(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[path]++
	return c.n[path]
}

func (c *counter) get(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[path]
}

func wantReason(t *testing.T, err error, layer sluice.Layer, reason sluice.Reason) *sluice.Error {
	t.Helper()
	var e *sluice.Error
	if !errors.As(err, &e) || e.Layer != layer || e.Reason != reason {
		t.Fatalf("err = %v; want %s/%s", err, layer, reason)
	}
	return e
}

func mustPanic(t *testing.T, f func()) {
	t.Helper()
	defer func() {
		r := recover()
		if s, _ := r.(string); !strings.HasPrefix(s, "outbound: ") {
			t.Fatalf("panic = %v; want one starting with \"outbound: \"", r)
		}
	}()
	f()
}

func attributeKey(s string) attribute.Key { return attribute.Key(s) }
