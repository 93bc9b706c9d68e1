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
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/oteltest"
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
	sdk := oteltest.New(t, extra...)
	return &telemetry{tel: otelx.New(otelx.WithTracerProvider(sdk.TP), otelx.WithMeterProvider(sdk.MP)),
		spans: sdk.Spans, tp: sdk.TP, reader: sdk.Reader}
}

// sum returns an int64 sum metric over the points whose attributes include
// the given key=value pairs (sluice's metric attributes are all strings).
func (tm *telemetry) sum(t *testing.T, name string, kv ...string) int64 {
	t.Helper()
	want := make([]attribute.KeyValue, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		want = append(want, attribute.String(kv[i], kv[i+1]))
	}
	return oteltest.Sum(t, tm.reader, name, want...)
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
