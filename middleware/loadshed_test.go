package middleware

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/failsafe-go/failsafe-go/adaptivelimiter"
	"github.com/failsafe-go/failsafe-go/priority"
	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/sluice-go/sluice/otelx"
)

// slowServer is an engine whose /slow handler blocks until release is closed,
// announcing each entry on entered.
type slowServer struct {
	engine  *gin.Engine
	entered chan struct{}
	release chan struct{}
}

func newSlowServer(engine *gin.Engine, mw ...gin.HandlerFunc) *slowServer {
	s := &slowServer{engine: engine, entered: make(chan struct{}, 1000), release: make(chan struct{})}
	engine.Use(mw...)
	engine.GET("/slow", func(c *gin.Context) {
		s.entered <- struct{}{}
		<-s.release
		c.Status(http.StatusOK)
	})
	return s
}

// TestLoadShedderShedsExactlyTheExcessWithoutWaiting: cap 10 and 100
// concurrent slow requests. The 90 rejections all complete while the 10
// admitted requests are still blocked (so none of them waited for capacity),
// each with 503, Retry-After and the JSON body; spans and metrics say why.
func TestLoadShedderShedsExactlyTheExcessWithoutWaiting(t *testing.T) {
	tm := newTelemetry(t)
	s := newSlowServer(tm.engine(), LoadShedder(LoadShedderSettings{MaxInFlight: 10, Telemetry: tm.tel, Name: "api"}))

	results := make(chan *httptest.ResponseRecorder, 100)
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- serve(s.engine, httptest.NewRequest("GET", "/slow", nil))
		}()
	}
	for i := 0; i < 90; i++ { // all rejections arrive before any release
		w := <-results
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" {
			t.Fatalf("rejection %d: %d Retry-After %q", i, w.Code, w.Header().Get("Retry-After"))
		}
		if b := decodeBody(t, w); b.Error.Layer != "load_shedder" || b.Error.Reason != "overloaded" || b.Error.Message == "" {
			t.Fatalf("body %+v", b)
		}
	}
	for i := 0; i < 10; i++ {
		<-s.entered
	}
	close(s.release)
	wg.Wait()
	close(results)
	for w := range results {
		if w.Code != http.StatusOK {
			t.Fatalf("admitted request got %d", w.Code)
		}
	}

	rejected := tm.serverSpans(otelx.AttrLayer.String("load_shedder"), otelx.AttrErrorType.String("overloaded"),
		otelx.AttrOutcome.String("rejected"), otelx.AttrPolicyName.String("api"))
	if len(rejected) != 90 {
		t.Fatalf("%d rejected server spans, want 90", len(rejected))
	}
	if statusOf(rejected[0]) != codes.Error {
		t.Fatalf("503 span status %v, want Error", rejected[0].Status())
	}
	if n := tm.sum(t, otelx.MetricRequests, otelx.AttrOutcome.String("allowed")); n != 10 {
		t.Fatalf("allowed metric %d, want 10", n)
	}
	if n := tm.sum(t, otelx.MetricRequests, otelx.AttrErrorType.String("overloaded")); n != 90 {
		t.Fatalf("overloaded metric %d, want 90", n)
	}
	if n := tm.sum(t, otelx.MetricActive, otelx.AttrLayer.String("load_shedder")); n != 0 {
		t.Fatalf("active %d after all requests ended, want 0", n)
	}
}

// TestLoadShedderKeepsCriticalTrafficFlowing: cap 20, 10 critical and 30
// very-low-priority slow requests at once, in any order. VeryLow may fill
// only half the cap (its default share), so all 10 critical requests pass however the race goes.
func TestLoadShedderKeepsCriticalTrafficFlowing(t *testing.T) {
	s := newSlowServer(gin.New(), LoadShedder(LoadShedderSettings{MaxInFlight: 20, Priority: PriorityFromHeader("")}))
	type result struct {
		prio int
		code int
	}
	results := make(chan result, 40)
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		p := priority.VeryLow
		if i%4 == 0 {
			p = priority.VeryHigh
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequest("GET", "/slow", nil)
			req.Header.Set(PriorityHeader, strconv.Itoa(int(p)))
			results <- result{int(p), serve(s.engine, req).Code}
		}()
	}
	// Every critical request is admitted, and at most 10 low ones: wait for
	// the admitted ones to enter or be rejected before releasing.
	var criticalOK, lowOK, lowShed atomic.Int64
	done := 0
	entered := 0
	for entered+done < 40 {
		select {
		case <-s.entered:
			entered++
		case r := <-results:
			done++
			if r.code != http.StatusServiceUnavailable {
				t.Fatalf("early response %d for priority %d", r.code, r.prio)
			}
			if r.prio == int(priority.VeryHigh) {
				t.Fatal("a critical request was shed")
			}
			lowShed.Add(1)
		}
	}
	close(s.release)
	wg.Wait()
	close(results)
	for r := range results {
		if r.code != http.StatusOK {
			t.Fatalf("late response %d", r.code)
		}
		if r.prio == int(priority.VeryHigh) {
			criticalOK.Add(1)
		} else {
			lowOK.Add(1)
		}
	}
	if criticalOK.Load() != 10 || lowOK.Load() > 10 || lowShed.Load() < 20 {
		t.Fatalf("critical passed %d/10, low passed %d (max 10), low shed %d (min 20)",
			criticalOK.Load(), lowOK.Load(), lowShed.Load())
	}
}

// TestAdaptiveLoadShedderUsesTheLimitersCap: the cap is the adaptive
// limiter's current limit (5 here, before any latency sample moves it).
func TestAdaptiveLoadShedderUsesTheLimitersCap(t *testing.T) {
	al := adaptivelimiter.NewBuilder[any]().WithLimits(1, 50, 5).Build()
	tm := newTelemetry(t)
	s := newSlowServer(tm.engine(), LoadShedder(LoadShedderSettings{Adaptive: al, Telemetry: tm.tel}))
	codes := make(chan int, 20)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- serve(s.engine, httptest.NewRequest("GET", "/slow", nil)).Code
		}()
	}
	for i := 0; i < 15; i++ {
		if c := <-codes; c != http.StatusServiceUnavailable {
			t.Fatalf("got %d before release, want 503", c)
		}
	}
	for i := 0; i < 5; i++ {
		<-s.entered
	}
	if al.Inflight() != 5 {
		t.Fatalf("limiter inflight %d, want 5", al.Inflight())
	}
	close(s.release)
	wg.Wait()
	if al.Inflight() != 0 {
		t.Fatalf("permits leaked: inflight %d", al.Inflight())
	}
	if n := len(tm.serverSpans(otelx.AttrLayer.String("load_shedder"))); n != 15 {
		t.Fatalf("%d shed spans, want 15", n)
	}
}

func TestLoadShedderHandlerForNetHTTP(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	h := LoadShedderHandler(LoadShedderSettings{MaxInFlight: 1})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}))
	done := make(chan int)
	go func() { done <- serve(h, httptest.NewRequest("GET", "/", nil)).Code }()
	<-entered
	w := serve(h, httptest.NewRequest("GET", "/", nil))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("second request: %d %v", w.Code, w.Header())
	}
	close(release)
	if c := <-done; c != http.StatusOK {
		t.Fatalf("first request %d", c)
	}
	if w := serve(h, httptest.NewRequest("GET", "/", nil)); w.Code != http.StatusOK {
		t.Fatalf("after release: %d (permit leaked)", w.Code)
	}
}

func TestLoadShedderPanicsOnNoCap(t *testing.T) {
	defer func() {
		if r := recover(); r == nil {
			t.Fatal("no panic")
		}
	}()
	LoadShedder(LoadShedderSettings{})
}

var _ = attribute.Key("")
