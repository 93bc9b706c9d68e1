package status_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/middleware"
	"github.com/sluice-go/sluice/status"
)

// Give the Registry to the layers' settings, and mount it on an internal
// listener, like expvar or pprof.
func ExampleNewRegistry() {
	reg := status.NewRegistry()
	shed := middleware.LoadShedderHandler(middleware.LoadShedderSettings{MaxInFlight: 10, Name: "api", Status: reg})
	app := shed(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	app.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))

	admin := http.NewServeMux()
	admin.Handle("/debug/sluice", reg) // never on the public listener
	rec := httptest.NewRecorder()
	admin.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/sluice?format=json", nil))
	body, _ := io.ReadAll(rec.Body)
	fmt.Println(rec.Code, strings.Contains(string(body), `"layer": "load_shedder"`))
	// Output: 200 true
}

// A layer of your own shows up on the page too: register it with a probe
// that reads its state when the page is read, and report its rejections.
func ExampleReporter() {
	reg := status.NewRegistry()
	var inUse int64 = 4
	rep := reg.Register(sluice.LayerBulkhead, "batch", func(_ context.Context, l *status.Layer) {
		l.Gauges = append(l.Gauges, status.Gauge{Name: "in_flight", Value: inUse, Max: 4})
	})
	rep.Rejected(sluice.NewError(sluice.LayerBulkhead, sluice.ReasonBulkheadFull, nil))

	s := reg.Snapshot(context.Background())
	l := s.Layers[0]
	fmt.Println(l.Layer, l.Policy, l.Gauges[0].Name, l.Gauges[0].Value, "of", l.Gauges[0].Max)
	fmt.Println(s.Recent[0].Layer, s.Recent[0].Reason)
	// Output:
	// bulkhead batch in_flight 4 of 4
	// bulkhead bulkhead_full
}

// Snapshot returns the page's data, the JSON of ?format=json.
func ExampleRegistry_Snapshot() {
	reg := status.NewRegistry()
	reg.Register(sluice.LayerCircuitBreaker, "openai", func(_ context.Context, l *status.Layer) {
		l.Breaker = &status.Breaker{State: status.StateClosed}
	})
	s := reg.Snapshot(context.Background())
	fmt.Println(s.Layers[0].Layer, s.Layers[0].Side, s.Layers[0].Breaker.State)
	// Output: circuit_breaker outbound closed
}
