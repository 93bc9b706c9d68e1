package middleware

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/sluice-go/sluice"
)

func TestDeadlineGivesTheBudgetAndKeepsAnEarlierOne(t *testing.T) {
	var got time.Time
	var ok bool
	r := gin.New()
	r.Use(Deadline(DeadlineSettings{Budget: time.Hour}))
	r.GET("/", func(c *gin.Context) { got, ok = c.Request.Context().Deadline() })
	before := time.Now()
	serve(r, httptest.NewRequest("GET", "/", nil))
	if !ok || got.Before(before.Add(time.Hour)) || got.After(time.Now().Add(time.Hour)) {
		t.Fatalf("deadline %v (set %v), want now+1h", got, ok)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	early, _ := ctx.Deadline()
	serve(r, httptest.NewRequest("GET", "/", nil).WithContext(ctx))
	if !got.Equal(early) {
		t.Fatalf("deadline %v, want the earlier %v", got, early)
	}
}

func TestDeadlineBoundsTheAdmissionQueueWait(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	h := DeadlineHandler(DeadlineSettings{Budget: 20 * time.Millisecond})(AdmissionQueueHandler(AdmissionQueueSettings{MaxActive: 1, MaxWaiting: 1, Timeout: time.Hour})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			entered <- struct{}{}
			<-release
		})))
	done := make(chan struct{})
	go func() { serve(h, httptest.NewRequest("GET", "/", nil)); close(done) }()
	<-entered
	// The queue timeout is an hour; the budget ends the wait.
	if w := serve(h, httptest.NewRequest("GET", "/", nil)); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("%d, want 503 queue_timeout", w.Code)
	}
	close(release)
	<-done
}

func TestResponderReplacesTheResponse(t *testing.T) {
	var seen *sluice.Error
	release := make(chan struct{})
	entered := make(chan struct{})
	h := LoadShedderHandler(LoadShedderSettings{MaxInFlight: 1, Responder: func(w http.ResponseWriter, r *http.Request, err *sluice.Error) {
		seen = err
		w.WriteHeader(http.StatusTeapot)
	}})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	}))
	done := make(chan struct{})
	go func() { serve(h, httptest.NewRequest("GET", "/", nil)); close(done) }()
	<-entered
	if w := serve(h, httptest.NewRequest("GET", "/", nil)); w.Code != http.StatusTeapot {
		t.Fatalf("%d, want the replacement's 418", w.Code)
	}
	close(release)
	<-done
	if seen == nil || seen.Layer != sluice.LayerLoadShedder || seen.Reason != sluice.ReasonOverloaded || seen.RetryAfter != time.Second {
		t.Fatalf("responder saw %+v", seen)
	}
}

// TestDeadlineEndsWorkWithDeadlineExceeded: the context's own deadline ends
// the handler's work, never the connection's read deadline. When both fell
// at the same instant, net/http's background read hit its deadline first now
// and then and canceled the request as if the client had gone
// (context.Canceled: answered 499 instead of 504; seen in the README
// wiring's test).
func TestDeadlineEndsWorkWithDeadlineExceeded(t *testing.T) {
	errs := make(chan error, 1)
	h := DeadlineHandler(DeadlineSettings{Budget: 20 * time.Millisecond})(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
			errs <- r.Context().Err()
		}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	for i := 0; i < 40; i++ {
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err := <-errs; !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("request %d: the handler's context ended with %v, want context.DeadlineExceeded", i, err)
		}
	}
}
