package middleware

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/otelx"
)

// StatusClientClosedRequest is the status recorded (nothing reaches the
// client) when a client disconnects while its request waits in the admission
// queue: nginx's 499.
const StatusClientClosedRequest = 499

// AdmissionQueue lets at most maxActive requests run the rest of the chain
// at once and at most maxWaiting more wait, first come first served, each for
// at most timeout (or until its context deadline, if sooner).
//
//   - With maxWaiting requests already waiting, a request is rejected at once
//     with 503 queue_full.
//   - A request still waiting after timeout is rejected with 503 queue_timeout.
//   - A request whose client disconnects leaves the queue at once; it is
//     counted as canceled and answered with status 499 and no body.
//
// Every wait is recorded in resilience.request.time_in_queue and on the span
// as resilience.queue.wait_time. maxActive and timeout must be positive;
// maxWaiting may be 0 (no queue). Safe for concurrent use.
func AdmissionQueue(maxActive, maxWaiting int, timeout time.Duration, opts ...Option) gin.HandlerFunc {
	q := newQueue(maxActive, maxWaiting, timeout, opts)
	return func(c *gin.Context) {
		if !q.enter(c.Writer, c.Request) {
			c.Abort()
			return
		}
		defer q.exit(c.Request)
		c.Next()
	}
}

// AdmissionQueueHandler is AdmissionQueue for net/http.
func AdmissionQueueHandler(maxActive, maxWaiting int, timeout time.Duration, opts ...Option) func(http.Handler) http.Handler {
	q := newQueue(maxActive, maxWaiting, timeout, opts)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !q.enter(w, r) {
				return
			}
			defer q.exit(r)
			next.ServeHTTP(w, r)
		})
	}
}

type queue struct {
	cfg        *config
	rec        *otelx.Recorder
	tokens     chan struct{}
	waiting    atomic.Int64
	maxWaiting int64
	timeout    time.Duration
}

func newQueue(maxActive, maxWaiting int, timeout time.Duration, opts []Option) *queue {
	if maxActive <= 0 || maxWaiting < 0 || timeout <= 0 {
		panic("middleware: AdmissionQueue: maxActive and timeout must be positive, maxWaiting not negative")
	}
	cfg := newConfig(opts)
	return &queue{
		cfg:        cfg,
		rec:        cfg.tel.Recorder(sluice.LayerAdmissionQueue, cfg.policy),
		tokens:     make(chan struct{}, maxActive),
		maxWaiting: int64(maxWaiting),
		timeout:    timeout,
	}
}

// enter admits the request (true) or answers it (false).
func (q *queue) enter(w http.ResponseWriter, r *http.Request) bool {
	ctx := r.Context()
	select {
	case q.tokens <- struct{}{}:
		q.rec.Allowed(ctx)
		q.rec.ActiveAdd(ctx, 1)
		return true
	default:
	}
	if q.waiting.Add(1) > q.maxWaiting {
		q.waiting.Add(-1)
		q.cfg.reject(w, r, q.rec, q.rejection(sluice.ReasonQueueFull))
		return false
	}
	q.rec.QueuedAdd(ctx, 1)
	start := q.cfg.now()
	wait := q.timeout
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, dl.Sub(start))
	}
	timer := time.NewTimer(wait)
	if q.cfg.onQueued != nil {
		q.cfg.onQueued()
	}
	var outcome int // 0 admitted, 1 timed out, 2 canceled
	select {
	case q.tokens <- struct{}{}:
	case <-timer.C:
		outcome = 1
	case <-ctx.Done():
		outcome = 2
	}
	timer.Stop()
	q.waiting.Add(-1)
	q.rec.QueuedAdd(ctx, -1)
	q.rec.QueueWait(ctx, q.cfg.now().Sub(start))
	switch outcome {
	case 1:
		q.cfg.reject(w, r, q.rec, q.rejection(sluice.ReasonQueueTimeout))
		return false
	case 2:
		q.rec.Canceled(ctx)
		w.WriteHeader(StatusClientClosedRequest)
		return false
	}
	q.rec.Allowed(ctx)
	q.rec.ActiveAdd(ctx, 1)
	return true
}

func (q *queue) exit(r *http.Request) {
	<-q.tokens
	q.rec.ActiveAdd(r.Context(), -1)
}

func (q *queue) rejection(reason sluice.Reason) *sluice.Error {
	e := sluice.NewError(sluice.LayerAdmissionQueue, reason, nil)
	e.RetryAfter = q.cfg.retryAfter
	return e
}
