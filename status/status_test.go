package status_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/status"
)

func get(t *testing.T, h http.Handler, target string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func TestSnapshotCountsAndProbes(t *testing.T) {
	reg := status.NewRegistry()
	p := reg.Register(sluice.LayerAdmissionQueue, "chat", func(_ context.Context, l *status.Layer) {
		l.Gauges = append(l.Gauges, status.Gauge{Name: "queued", Value: 3, Max: 5})
	})
	p.Rejected(&sluice.Error{Layer: sluice.LayerAdmissionQueue, Reason: sluice.ReasonQueueFull})
	p.Rejected(&sluice.Error{Layer: sluice.LayerAdmissionQueue, Reason: sluice.ReasonQueueFull})
	p.Rejected(&sluice.Error{Layer: sluice.LayerAdmissionQueue, Reason: sluice.ReasonQueueTimeout, RetryAfter: time.Second})
	p.Rejected(nil)

	s := reg.Snapshot(context.Background())
	if len(s.Layers) != 1 {
		t.Fatalf("layers = %d, want 1", len(s.Layers))
	}
	l := s.Layers[0]
	if l.Layer != "admission_queue" || l.Policy != "chat" || l.Side != "inbound" {
		t.Errorf("layer = %+v", l)
	}
	if len(l.Gauges) != 1 || l.Gauges[0].Value != 3 || l.Gauges[0].Max != 5 {
		t.Errorf("gauges = %+v", l.Gauges)
	}
	want := map[string]int64{"queue_full": 2, "queue_timeout": 1}
	for _, rc := range l.Rejections {
		if rc.Count != want[rc.Reason] {
			t.Errorf("rejections[%s] = %d, want %d", rc.Reason, rc.Count, want[rc.Reason])
		}
		delete(want, rc.Reason)
	}
	if len(want) != 0 {
		t.Errorf("reasons missing: %v", want)
	}
	if len(s.Recent) != 3 || s.Recent[0].Reason != "queue_timeout" || s.Recent[0].RetryAfterSeconds != 1 {
		t.Errorf("recent = %+v", s.Recent)
	}
}

// The ring of recent rejections is bounded, whatever the number of
// rejections.
func TestRecentRejectionsBounded(t *testing.T) {
	reg := status.NewRegistry()
	p := reg.Register(sluice.LayerLoadShedder, "api", nil)
	for range 10 * status.RecentRejections {
		p.Rejected(&sluice.Error{Layer: sluice.LayerLoadShedder, Reason: sluice.ReasonOverloaded})
	}
	s := reg.Snapshot(context.Background())
	if len(s.Recent) != status.RecentRejections {
		t.Errorf("recent = %d, want %d", len(s.Recent), status.RecentRejections)
	}
	if got := s.Layers[0].Rejections[0].Count; got != 10*status.RecentRejections {
		t.Errorf("count = %d", got)
	}
}

func TestUnregisterAndNil(t *testing.T) {
	var nilReg *status.Registry
	p := nilReg.Register(sluice.LayerBulkhead, "x", nil)
	p.Rejected(&sluice.Error{Layer: sluice.LayerBulkhead, Reason: sluice.ReasonBulkheadFull}) // no panic
	p.Unregister()

	reg := status.NewRegistry()
	a := reg.Register(sluice.LayerBulkhead, "a", nil)
	reg.Register(sluice.LayerRetry, "b", nil)
	a.Unregister()
	a.Unregister()
	s := reg.Snapshot(context.Background())
	if len(s.Layers) != 1 || s.Layers[0].Policy != "b" {
		t.Errorf("layers after Unregister = %+v", s.Layers)
	}
}

// A reason outside the layer's vocabulary is counted as "other"; another
// layer's verdict reported on this Reporter is kept among the recent ones
// but not counted here.
func TestRejectedOtherReasonsAndLayers(t *testing.T) {
	reg := status.NewRegistry()
	p := reg.Register(sluice.LayerRetry, "v", nil)
	p.Rejected(&sluice.Error{Layer: sluice.LayerRetry, Reason: "surprise"})
	p.Rejected(&sluice.Error{Layer: sluice.LayerTransport, Reason: sluice.ReasonConnectTimeout})
	s := reg.Snapshot(context.Background())
	var other, total int64
	for _, rc := range s.Layers[0].Rejections {
		total += rc.Count
		if rc.Reason == "other" {
			other = rc.Count
		}
	}
	if other != 1 || total != 1 {
		t.Errorf("other = %d, total = %d, want 1, 1", other, total)
	}
	if len(s.Recent) != 2 || s.Recent[0].Layer == s.Recent[1].Layer {
		t.Errorf("recent = %+v", s.Recent)
	}
}

func TestHandlerJSONAndHTML(t *testing.T) {
	reg := status.NewRegistry()
	reg.Register(sluice.LayerCircuitBreaker, "vendor", func(_ context.Context, l *status.Layer) {
		l.Breaker = &status.Breaker{State: status.StateOpen, HalfOpenInSeconds: 4.5,
			Fleet: &status.FleetBreaker{State: status.StateHalfOpen}}
		l.Redis = &status.Redis{Healthy: false, Degraded: 7}
	}).Rejected(&sluice.Error{Layer: sluice.LayerCircuitBreaker, Reason: sluice.ReasonCircuitOpen})

	res, body := get(t, reg, "/debug/sluice?format=json")
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("json Content-Type = %q", ct)
	}
	var s status.Snapshot
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatal(err)
	}
	if b := s.Layers[0].Breaker; b == nil || b.State != "open" || b.Fleet.State != "half-open" || b.HalfOpenInSeconds != 4.5 {
		t.Errorf("breaker = %+v", s.Layers[0].Breaker)
	}
	if r := s.Layers[0].Redis; r == nil || r.Healthy || r.Degraded != 7 {
		t.Errorf("redis = %+v", s.Layers[0].Redis)
	}

	res, body = get(t, reg, "/debug/sluice")
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("html Content-Type = %q", ct)
	}
	if res.Header.Get("Cache-Control") != "no-store" || !strings.Contains(res.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("headers = %v", res.Header)
	}
	for _, want := range []string{`<meta http-equiv="refresh" content="2">`, `data-layer="circuit_breaker"`,
		`data-state="open"`, `data-fleet-state="half-open"`, "half-open in 4.50s", "unreachable", "circuit_open <b>1</b>"} {
		if !strings.Contains(body, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	// Self-contained: nothing to load, from anywhere.
	for _, bad := range []string{"<script", "src=", "<link", "http://", "https://", "@import", "url("} {
		if strings.Contains(body, bad) {
			t.Errorf("HTML contains %q: the page must need nothing from outside", bad)
		}
	}
}

func TestHandlerReadOnly(t *testing.T) {
	reg := status.NewRegistry()
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, httptest.NewRequest(m, "/debug/sluice", strings.NewReader("x")))
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: %d %v", m, rec.Code, rec.Header())
		}
	}
	rec := httptest.NewRecorder()
	reg.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/debug/sluice", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("HEAD: %d", rec.Code)
	}
}

// A policy name is the one string from configuration on the page: it is
// escaped in the HTML.
func TestHTMLEscapesNames(t *testing.T) {
	reg := status.NewRegistry()
	reg.Register(sluice.LayerRetry, `<img src=x onerror=alert(1)>`, nil)
	_, body := get(t, reg, "/")
	if strings.Contains(body, "<img") {
		t.Error("policy name not escaped")
	}
}

// Probes run one snapshot at a time, and neither Rejected nor Register
// waits for them (the test would hang).
func TestSnapshotsSerializedRejectedNotBlocked(t *testing.T) {
	reg := status.NewRegistry()
	inProbe := make(chan struct{})
	release := make(chan struct{})
	var p *status.Reporter
	p = reg.Register(sluice.LayerBulkhead, "v", func(context.Context, *status.Layer) {
		select {
		case inProbe <- struct{}{}:
			<-release
		default:
		}
	})
	done := make(chan struct{})
	go func() { reg.Snapshot(context.Background()); close(done) }()
	<-inProbe
	p.Rejected(&sluice.Error{Layer: sluice.LayerBulkhead, Reason: sluice.ReasonBulkheadFull}) // must not block
	reg.Register(sluice.LayerRetry, "late", nil).Unregister()                                 // nor must a chain being built
	close(release)
	<-done
	if n := reg.Snapshot(context.Background()).Layers[0].Rejections[1].Count; n != 1 {
		t.Errorf("bulkhead_full = %d, want 1", n)
	}
}
