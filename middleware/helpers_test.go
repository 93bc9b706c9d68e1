package middleware

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/contrib/instrumentation/github.com/gin-gonic/gin/otelgin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sluice-go/sluice/otelx"
)

func init() { gin.SetMode(gin.TestMode) }

// telemetry is the real OTel SDK wired to an in-memory span recorder and a
// manual metric reader.
type telemetry struct {
	tel    *otelx.Telemetry
	tp     *sdktrace.TracerProvider
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
}

func newTelemetry(t *testing.T) *telemetry {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	return &telemetry{
		tel:    otelx.New(otelx.WithTracerProvider(tp), otelx.WithMeterProvider(mp)),
		tp:     tp,
		spans:  sr,
		reader: reader,
	}
}

// engine returns a gin engine with otelgin's server span first.
func (tm *telemetry) engine() *gin.Engine {
	r := gin.New()
	r.Use(otelgin.Middleware("test", otelgin.WithTracerProvider(tm.tp)))
	return r
}

// sum returns the total of an int64 sum metric over the data points whose
// attributes include all of want.
func (tm *telemetry) sum(t *testing.T, name string, want ...attribute.KeyValue) int64 {
	t.Helper()
	var total int64
	for _, m := range tm.collect(t, name) {
		s, ok := m.Data.(metricdata.Sum[int64])
		if !ok {
			t.Fatalf("%s is %T", name, m.Data)
		}
		for _, dp := range s.DataPoints {
			if hasAll(dp.Attributes, want) {
				total += dp.Value
			}
		}
	}
	return total
}

// histCount returns the number of recordings of a float64 histogram.
func (tm *telemetry) histCount(t *testing.T, name string) uint64 {
	t.Helper()
	var n uint64
	for _, m := range tm.collect(t, name) {
		for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
			n += dp.Count
		}
	}
	return n
}

func (tm *telemetry) collect(t *testing.T, name string) []metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tm.reader.Collect(context.Background(), &rm); err != nil {
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

func hasAll(set attribute.Set, want []attribute.KeyValue) bool {
	for _, kv := range want {
		v, ok := set.Value(kv.Key)
		if !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// serverSpans returns the ended server spans whose attributes include all of want.
func (tm *telemetry) serverSpans(want ...attribute.KeyValue) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range tm.spans.Ended() {
		if hasAll(attribute.NewSet(s.Attributes()...), want) {
			out = append(out, s)
		}
	}
	return out
}

func statusOf(s sdktrace.ReadOnlySpan) codes.Code { return s.Status().Code }

// serve runs one request through h in process.
func serve(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

type body struct {
	Error struct {
		Layer, Reason, Message string
	} `json:"error"`
}

func decodeBody(t *testing.T, w *httptest.ResponseRecorder) body {
	t.Helper()
	var b body
	if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
		t.Fatalf("body %q: %v", w.Body.String(), err)
	}
	return b
}
