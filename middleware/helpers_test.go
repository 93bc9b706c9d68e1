package middleware

import (
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

	"github.com/sluice-go/sluice/internal/oteltest"
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
	sdk := oteltest.New(t)
	return &telemetry{
		tel:    otelx.New(otelx.WithTracerProvider(sdk.TP), otelx.WithMeterProvider(sdk.MP)),
		tp:     sdk.TP,
		spans:  sdk.Spans,
		reader: sdk.Reader,
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
	return oteltest.Sum(t, tm.reader, name, want...)
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
	return oteltest.Metrics(t, tm.reader, name)
}

// serverSpans returns the ended server spans whose attributes include all of want.
func (tm *telemetry) serverSpans(want ...attribute.KeyValue) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range tm.spans.Ended() {
		if oteltest.HasAll(attribute.NewSet(s.Attributes()...), want) {
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
