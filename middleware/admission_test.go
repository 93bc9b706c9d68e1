package middleware

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/codes"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/otelx"
)

// queueServer: /slow blocks until release; queued announces each request that
// starts waiting; left announces the status of each request the queue let go.
type queueServer struct {
	*slowServer
	queued chan struct{}
	left   chan int
	tm     *telemetry
}

func newQueueServer(t *testing.T, maxActive, maxWaiting int, timeout time.Duration) *queueServer {
	tm := newTelemetry(t)
	q := &queueServer{queued: make(chan struct{}, 100), left: make(chan int, 100), tm: tm}
	e := tm.engine()
	e.Use(func(c *gin.Context) {
		c.Next()
		q.left <- c.Writer.Status()
	})
	q.slowServer = newSlowServer(e, newQueue(AdmissionQueueSettings{MaxActive: maxActive, MaxWaiting: maxWaiting, Timeout: timeout,
		Telemetry: tm.tel}, func() { q.queued <- struct{}{} }).gin)
	return q
}

func (q *queueServer) async(req *http.Request) chan *httptest.ResponseRecorder {
	ch := make(chan *httptest.ResponseRecorder, 1)
	go func() { ch <- serve(q.engine, req) }()
	return ch
}

func TestAdmissionQueueFull(t *testing.T) {
	q := newQueueServer(t, 1, 1, time.Hour)
	a := q.async(httptest.NewRequest("GET", "/slow", nil))
	<-q.entered
	b := q.async(httptest.NewRequest("GET", "/slow", nil))
	<-q.queued
	w := serve(q.engine, httptest.NewRequest("GET", "/slow", nil)) // at once: nothing released yet
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("third: %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	if body := decodeBody(t, w); body.Error.Layer != "admission_queue" || body.Error.Reason != "queue_full" {
		t.Fatalf("body %+v", body)
	}
	close(q.release)
	if (<-a).Code != 200 || (<-b).Code != 200 {
		t.Fatal("the active or the waiting request failed")
	}
	spans := q.tm.serverSpans(otelx.AttrLayer.String("admission_queue"), otelx.AttrErrorType.String("queue_full"))
	if len(spans) != 1 || statusOf(spans[0]) != codes.Error {
		t.Fatalf("%d queue_full spans", len(spans))
	}
	if n := q.tm.histCount(t, otelx.MetricTimeInQueue); n != 1 {
		t.Fatalf("time_in_queue recorded %d times, want 1 (the waiter)", n)
	}
}

func TestAdmissionQueueTimeout(t *testing.T) {
	q := newQueueServer(t, 1, 5, 20*time.Millisecond)
	a := q.async(httptest.NewRequest("GET", "/slow", nil))
	<-q.entered
	// The active request never finishes while this one waits: it must time out.
	w := serve(q.engine, httptest.NewRequest("GET", "/slow", nil))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("waiter: %d", w.Code)
	}
	if body := decodeBody(t, w); body.Error.Reason != "queue_timeout" {
		t.Fatalf("body %+v", body)
	}
	close(q.release)
	<-a
	spans := q.tm.serverSpans(otelx.AttrErrorType.String("queue_timeout"), otelx.AttrOutcome.String("timed_out"))
	if len(spans) != 1 {
		t.Fatalf("%d queue_timeout spans", len(spans))
	}
	var wait float64
	for _, kv := range spans[0].Attributes() {
		if kv.Key == otelx.AttrQueueWait {
			wait = kv.Value.AsFloat64()
		}
	}
	if wait < 0.020 {
		t.Fatalf("resilience.queue.wait_time %v, want >= the 20ms timeout", wait)
	}
}

// TestAdmissionQueueClientDisconnect: a real client whose context is
// canceled while its request waits; the server lets it go at once (without
// the active request finishing), counts it canceled, and the queue is empty.
func TestAdmissionQueueClientDisconnect(t *testing.T) {
	q := newQueueServer(t, 1, 5, time.Hour)
	srv := httptest.NewServer(q.engine)
	defer srv.Close()
	client := srv.Client()
	defer client.CloseIdleConnections()

	first := make(chan error, 1)
	go func() {
		resp, err := client.Get(srv.URL + "/slow")
		if err == nil {
			resp.Body.Close()
		}
		first <- err
	}()
	<-q.entered

	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/slow", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		second <- err
	}()
	<-q.queued
	cancel()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Fatalf("client: %v", err)
	}
	select {
	case status := <-q.left:
		if status != sluice.StatusClientClosedRequest {
			t.Fatalf("left with %d", status)
		}
	case <-time.After(30 * time.Second): // a failure bound, not a settle
		t.Fatal("the disconnected request is still waiting in the queue")
	}
	if n := q.tm.sum(t, otelx.MetricQueued); n != 0 {
		t.Fatalf("queued %d after the disconnect, want 0", n)
	}
	if n := q.tm.sum(t, otelx.MetricRequests, otelx.AttrOutcome.String("canceled")); n != 1 {
		t.Fatalf("canceled %d, want 1", n)
	}
	close(q.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	<-q.left
}

func TestAdmissionQueueHandlerForNetHTTP(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	h := AdmissionQueueHandler(AdmissionQueueSettings{MaxActive: 1, Timeout: time.Hour})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}))
	done := make(chan int)
	go func() { done <- serve(h, httptest.NewRequest("GET", "/", nil)).Code }()
	<-entered
	if w := serve(h, httptest.NewRequest("GET", "/", nil)); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("no waiting room: %d, want 503 queue_full", w.Code)
	}
	close(release)
	if c := <-done; c != 200 {
		t.Fatalf("first %d", c)
	}
	if w := serve(h, httptest.NewRequest("GET", "/", nil)); w.Code != 200 {
		t.Fatalf("token leaked: %d", w.Code)
	}
}
