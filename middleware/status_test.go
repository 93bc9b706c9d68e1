package middleware

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	limiter "github.com/ulule/limiter/v3"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/redistest"
	"github.com/sluice-go/sluice/status"
)

func pageLayer(t *testing.T, reg *status.Registry, layer sluice.Layer) status.Layer {
	t.Helper()
	for _, l := range reg.Snapshot(context.Background()).Layers {
		if l.Layer == string(layer) {
			return l
		}
	}
	t.Fatalf("no %s on the page", layer)
	return status.Layer{}
}

func gaugeOf(l status.Layer, name string) status.Gauge {
	for _, g := range l.Gauges {
		if g.Name == name {
			return g
		}
	}
	return status.Gauge{Name: "missing", Value: -1}
}

// blocking returns a handler that announces each request on in and holds it
// until release is closed.
func blocking(in chan<- struct{}, release <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in <- struct{}{}
		<-release
	})
}

func TestStatusLoadShedder(t *testing.T) {
	reg := status.NewRegistry()
	in, release := make(chan struct{}, 4), make(chan struct{})
	h := LoadShedderHandler(LoadShedderSettings{MaxInFlight: 2, Name: "api", Status: reg, Telemetry: newTelemetry(t).tel})(blocking(in, release))
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil)) })
	}
	<-in
	<-in
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("third request: %d, want 503", rec.Code)
	}
	l := pageLayer(t, reg, sluice.LayerLoadShedder)
	if g := gaugeOf(l, "in_flight"); g.Value != 2 || g.Max != 2 {
		t.Errorf("in_flight = %+v, want 2 of 2", g)
	}
	if l.Policy != "api" || l.Rejections[0].Reason != "overloaded" || l.Rejections[0].Count != 1 {
		t.Errorf("layer = %+v", l)
	}
	close(release)
	wg.Wait()
	if g := gaugeOf(pageLayer(t, reg, sluice.LayerLoadShedder), "in_flight"); g.Value != 0 {
		t.Errorf("in_flight after = %+v", g)
	}
	if r := reg.Snapshot(context.Background()).Recent; len(r) != 1 || r[0].Layer != "load_shedder" || r[0].RetryAfterSeconds != 1 {
		t.Errorf("recent = %+v", r)
	}
}

func TestStatusAdmissionQueue(t *testing.T) {
	reg := status.NewRegistry()
	in, release := make(chan struct{}, 4), make(chan struct{})
	queued := make(chan struct{}, 4)
	q := newQueue(AdmissionQueueSettings{MaxActive: 1, MaxWaiting: 2, Timeout: time.Minute, Status: reg,
		Telemetry: newTelemetry(t).tel}, func() { queued <- struct{}{} })
	next := blocking(in, release)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r, ok := q.enter(w, r); ok {
			defer q.exit(r)
			next.ServeHTTP(w, r)
		}
	})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil)) })
	}
	<-in
	<-queued
	<-queued
	l := pageLayer(t, reg, sluice.LayerAdmissionQueue)
	if g := gaugeOf(l, "active"); g.Value != 1 || g.Max != 1 {
		t.Errorf("active = %+v, want 1 of 1", g)
	}
	if g := gaugeOf(l, "queued"); g.Value != 2 || g.Max != 2 {
		t.Errorf("queued = %+v, want 2 of 2", g)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("fourth request: %d, want 503 queue_full", rec.Code)
	}
	close(release)
	wg.Wait()
	l = pageLayer(t, reg, sluice.LayerAdmissionQueue)
	if g := gaugeOf(l, "queued"); g.Value != 0 {
		t.Errorf("queued after = %+v", g)
	}
	if l.Rejections[0].Reason != "queue_full" || l.Rejections[0].Count != 1 {
		t.Errorf("rejections = %+v", l.Rejections)
	}
}

// TestStatusUserRateLimitRedisDown: the limiter's Redis health and degraded
// count are shown, and no user key ever is.
func TestStatusUserRateLimitRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	reg := status.NewRegistry()
	const user = "user-planted-4f9c2a"
	h := UserRateLimitHandler(UserRateLimitSettings{
		Store: NewGCRAStore(srv.Client(), RedisStoreSettings{Prefix: srv.Prefix, Timeout: time.Second}),
		Rate:  limiter.Rate{Limit: 1, Period: time.Hour}, Key: KeyFromHeader("X-User"), Name: "per-user",
		Status: reg, Telemetry: newTelemetry(t).tel,
	})(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	send := func() int {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("X-User", user)
		h.ServeHTTP(rec, r)
		return rec.Code
	}
	if send() != 200 || send() != 429 {
		t.Fatal("the limiter did not limit")
	}
	l := pageLayer(t, reg, sluice.LayerUserRateLimiter)
	if l.Redis == nil || !l.Redis.Healthy || l.Redis.Degraded != 0 || l.Rejections[0].Count != 1 {
		t.Errorf("before: redis %+v, rejections %+v", l.Redis, l.Rejections)
	}
	srv.Kill()
	send() // the over-limit cache answers: no Redis call
	h2user := "another-user-7d1e"
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-User", h2user)
	h.ServeHTTP(rec, r) // Redis is down: fails open, degraded
	if rec.Code != 200 {
		t.Errorf("with Redis down: %d, want 200 (fail open)", rec.Code)
	}
	l = pageLayer(t, reg, sluice.LayerUserRateLimiter)
	if l.Redis == nil || l.Redis.Healthy || l.Redis.Degraded != 1 {
		t.Errorf("after: redis %+v", l.Redis)
	}
	for _, format := range []string{"?format=json", ""} {
		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/sluice"+format, nil))
		body := rec.Body.String()
		if strings.Contains(body, user) || strings.Contains(body, h2user) || strings.Contains(body, srv.Addr) {
			t.Errorf("page %q shows a user key or the Redis address", format)
		}
		if format != "" && !json.Valid([]byte(body)) {
			t.Error("invalid JSON")
		}
	}
}
