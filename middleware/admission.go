package middleware

import (
	"errors"
	"net/http"
	"time"

	"github.com/failsafe-go/failsafe-go/priority"
	"github.com/gin-gonic/gin"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/waitq"
	"github.com/sluice-go/sluice/otelx"
	"github.com/sluice-go/sluice/status"
)

// AdmissionQueueSettings configures AdmissionQueue and
// AdmissionQueueHandler. The zero value of each field is its documented
// default.
type AdmissionQueueSettings struct {
	// MaxActive is the most requests that run the rest of the chain at once.
	// Required (positive).
	MaxActive int
	// MaxWaiting is the most requests that wait for one of them to finish.
	// Default 0: no waiting room, a request finding every slot taken is
	// rejected at once with queue_full.
	MaxWaiting int
	// Timeout is the longest a request waits (or until its context
	// deadline, if sooner). Default 1s.
	Timeout time.Duration
	// RetryAfter is the Retry-After sent with a 503, rounded up to whole
	// seconds. Default 1s.
	RetryAfter time.Duration
	// Name is resilience.policy.name on spans and metrics. Default
	// sluice.DefaultName.
	Name string
	// Telemetry records decisions. Default otelx.New(), on the global
	// providers at construction time.
	Telemetry *otelx.Telemetry
	// Responder writes the rejection. Default WriteRejection.
	Responder Responder
	// Status, if set, shows the queue on that status page (active and
	// waiting, each of its cap; rejections). Default nil: not shown, and no
	// cost.
	Status *status.Registry

	// Priority, if set, orders the waiting room: a freed slot goes to the
	// highest priority waiting (first come first served within a
	// priority), and a request that finds the room full displaces the
	// newest waiter of the lowest priority below its own, which is answered
	// 503 queue_full. The priority also goes on in the request's context
	// (failsafe-go's priority.ContextWithPriority), where the outbound
	// bulkhead reads it. Derive it from an identity you trust (an
	// authenticated key or user), not from a header the client chooses:
	// PriorityFromHeader is for traffic from trusted callers only. A
	// newcomer displaces only once it reaches the queue: leave the load
	// shedder's cap room above MaxActive+MaxWaiting. Nil: every request is
	// priority.Medium, and nothing goes in the context.
	Priority func(*http.Request) priority.Priority
	// Key, if set, shares the waiting room fairly across keys (usually the
	// user rate limit's KeyFunc): within a priority, the keys with someone
	// waiting take turns at the freed slots (round robin, first come first
	// served within a key), and a request that finds the room full
	// displaces the newest waiter of the key with the most waiters, when its
	// own key has at least two fewer. So one busy key cannot fill the room
	// and starve the rest. Keys with nobody waiting cost nothing: the state
	// is per waiter, at most MaxWaiting. Nil: one queue, first come first
	// served (within a priority). The empty key is a key like any other.
	Key KeyFunc
	// Weight, if set (it needs Key), is a request's key's weight, from 1
	// to 100 (clamped): a key of weight w is served w times per turn and
	// may keep w times as many waiters as a key of weight 1. The weight of
	// a key's first waiter holds while the key has waiters. Nil: 1 for
	// every key.
	Weight func(*http.Request) int
}

// DefaultQueueTimeout is AdmissionQueueSettings.Timeout's default.
const DefaultQueueTimeout = time.Second

// AdmissionQueue lets at most MaxActive requests run the rest of the chain
// at once and at most MaxWaiting more wait, each for at most Timeout (or
// until its context deadline, if sooner). A freed slot goes to the waiter
// of highest Priority, taking turns across Keys, first come first served
// within a key; with neither set, first come first served.
//
//   - With MaxWaiting requests already waiting, a request is rejected at once
//     with 503 queue_full, unless it displaces a waiter of lower priority (or,
//     with Key, of a key with at least two more waiters than its own), who
//     gets that 503 queue_full instead.
//   - A request still waiting after Timeout is rejected with 503
//     queue_timeout.
//   - A request whose client disconnects leaves the queue at once; it is
//     counted as canceled and answered with status 499
//     (sluice.StatusClientClosedRequest) and no body.
//
// Every wait is recorded in resilience.request.time_in_queue and on the span
// as resilience.queue.wait_time. A rejection is never retried by sluice: it
// is an overload signal. Panics on impossible settings (MaxActive not
// positive, a negative MaxWaiting, Timeout or RetryAfter, Weight without
// Key). Safe for concurrent use.
func AdmissionQueue(s AdmissionQueueSettings) gin.HandlerFunc {
	return newQueue(s, nil).gin
}

// AdmissionQueueHandler is AdmissionQueue for net/http.
func AdmissionQueueHandler(s AdmissionQueueSettings) func(http.Handler) http.Handler {
	q := newQueue(s, nil)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r, ok := q.enter(w, r)
			if !ok {
				return
			}
			defer q.exit(r)
			next.ServeHTTP(w, r)
		})
	}
}

type queue struct {
	rejecter
	wq         *waitq.Queue
	timeout    time.Duration
	retryAfter time.Duration
	priority   func(*http.Request) priority.Priority
	key        KeyFunc
	weight     func(*http.Request) int
	onQueued   func() // test seam: called once a request waits
}

func newQueue(s AdmissionQueueSettings, onQueued func()) *queue {
	if s.MaxActive <= 0 || s.MaxWaiting < 0 || s.Timeout < 0 || s.RetryAfter < 0 {
		panic("middleware: AdmissionQueue: MaxActive must be positive; MaxWaiting, Timeout and RetryAfter not negative")
	}
	if s.Weight != nil && s.Key == nil {
		panic("middleware: AdmissionQueue: Weight needs Key")
	}
	q := &queue{
		rejecter:   newRejecter(sluice.LayerAdmissionQueue, s.Name, s.Telemetry, s.Responder),
		wq:         waitq.New(s.MaxActive, s.MaxWaiting),
		timeout:    orDefault(s.Timeout, DefaultQueueTimeout),
		retryAfter: orDefault(s.RetryAfter, defaultRetryAfter),
		priority:   s.Priority,
		key:        s.Key,
		weight:     s.Weight,
		onQueued:   onQueued,
	}
	q.register(s.Status, policyName(s.Name))
	return q
}

func (q *queue) gin(c *gin.Context) {
	r, ok := q.enter(c.Writer, c.Request)
	if !ok {
		c.Abort()
		return
	}
	c.Request = r
	defer q.exit(r)
	c.Next()
}

// enter admits the request (true), with the request that goes on: r, or,
// with Priority set, r carrying its priority in its context. Or it answers
// it (false).
func (q *queue) enter(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	ctx := r.Context()
	prio := priority.Medium
	if q.priority != nil {
		if prio = q.priority(r); prio < priority.VeryLow || prio > priority.VeryHigh {
			prio = priority.Medium
		}
		ctx = priority.ContextWithPriority(ctx, prio)
		r = r.WithContext(ctx)
	}
	var key string
	weight := 1
	if q.key != nil {
		key = q.key(r)
		if q.weight != nil {
			weight = q.weight(r)
		}
	}
	wt, err := q.wq.Join(int(prio), key, weight)
	if err != nil {
		q.reject(w, r, q.rejection(sluice.ReasonQueueFull))
		return nil, false
	}
	if wt == nil {
		q.rec.Allowed(ctx)
		q.rec.ActiveAdd(ctx, 1)
		return r, true
	}
	q.rec.QueuedAdd(ctx, 1)
	start := time.Now()
	wait := q.timeout
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, dl.Sub(start))
	}
	if q.onQueued != nil {
		q.onQueued()
	}
	err = q.wq.Wait(ctx, wt, wait)
	q.rec.QueuedAdd(ctx, -1)
	q.rec.QueueWait(ctx, time.Now().Sub(start))
	switch {
	case err == nil:
	case errors.Is(err, waitq.ErrTimeout):
		q.reject(w, r, q.rejection(sluice.ReasonQueueTimeout))
		return nil, false
	case errors.Is(err, waitq.ErrDisplaced):
		q.reject(w, r, q.rejection(sluice.ReasonQueueFull))
		return nil, false
	default: // the client went away
		q.rec.Canceled(ctx)
		w.WriteHeader(sluice.StatusClientClosedRequest)
		return nil, false
	}
	q.rec.Allowed(ctx)
	q.rec.ActiveAdd(ctx, 1)
	return r, true
}

func (q *queue) exit(r *http.Request) {
	q.wq.Release()
	q.rec.ActiveAdd(r.Context(), -1)
}

func (q *queue) rejection(reason sluice.Reason) *sluice.Error {
	e := sluice.NewError(sluice.LayerAdmissionQueue, reason, nil)
	e.RetryAfter = q.retryAfter
	return e
}
