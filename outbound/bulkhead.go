package outbound

import (
	"context"
	"errors"
	"math"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/priority"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/adaptive"
	"github.com/sluice-go/sluice/internal/waitq"
	"github.com/sluice-go/sluice/otelx"
)

type bulkheadLayer struct {
	max      int
	maxWait  time.Duration
	adaptive bool
}

func (l bulkheadLayer) wrap(next http.RoundTripper, e *env) http.RoundTripper {
	b := &bulkheadRoundTripper{
		next:    next,
		maxWait: l.maxWait,
		rec:     e.tel.Recorder(sluice.LayerBulkhead, e.name),
	}
	maxWaiting := math.MaxInt // the callers bound it: each waits in its own goroutine, for at most maxWait
	if l.maxWait == 0 {
		maxWaiting = 0
	}
	b.wq = waitq.New(l.max, maxWaiting)
	if l.adaptive {
		b.limiter = adaptive.New(1, l.max, l.max)
	}
	return b
}

// bulkheadRoundTripper gates concurrency, holding the permit until the
// response body is closed or read to EOF (failsafe-go's own executor
// releases when the response headers arrive). Waiters are served highest
// priority first (priority.FromContext), first come first served within a
// priority. In adaptive mode the cap follows an adaptive.Limiter, never above
// max.
type bulkheadRoundTripper struct {
	next     http.RoundTripper
	wq       *waitq.Queue
	maxWait  time.Duration
	rec      *otelx.Recorder
	limiter  *adaptive.Limiter // nil: static
	inflight atomic.Int64
}

func (b *bulkheadRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	if err := b.acquire(ctx); err != nil {
		closeRequestBody(req)
		return nil, err
	}
	b.rec.Allowed(ctx)
	b.rec.ActiveAdd(ctx, 1)
	n := b.inflight.Add(1)
	start := time.Now()
	resp, err := b.next.RoundTrip(req)
	if b.limiter != nil {
		b.record(ctx, start, resp, err, int(n))
	}
	if err != nil {
		b.release()
		return nil, err
	}
	releaseOnClose(resp, b)
	return resp, nil
}

// record tells the adaptive limiter how the call went: its latency to the
// response headers, and whether the vendor signalled overload (429, 503, a
// timeout). A call the caller canceled, or that failed otherwise, says
// nothing about the vendor's capacity.
func (b *bulkheadRoundTripper) record(ctx context.Context, start time.Time, resp *http.Response, err error, inflight int) {
	overload := false
	switch {
	case err == nil:
		overload = resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable
	case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
		return
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sluice.ErrCallTimeout):
		overload = true
	default:
		var ne interface{ Timeout() bool }
		if !errors.As(err, &ne) || !ne.Timeout() {
			return
		}
		overload = true
	}
	if limit, changed := b.limiter.Record(time.Now(), time.Since(start), overload, inflight); changed {
		b.wq.SetLimit(limit)
	}
}

// acquire takes a permit, waiting for at most maxWait and never past ctx's
// deadline.
func (b *bulkheadRoundTripper) acquire(ctx context.Context) error {
	prio := priority.FromContext(ctx)
	if prio < priority.VeryLow || prio > priority.VeryHigh {
		prio = priority.Medium
	}
	maxWait := b.maxWait
	if dl, ok := ctx.Deadline(); ok {
		maxWait = min(maxWait, time.Until(dl))
	}
	if maxWait <= 0 {
		if b.wq.TryAcquire() {
			return nil
		}
		e := sluice.NewError(sluice.LayerBulkhead, sluice.ReasonBulkheadFull, nil)
		if b.maxWait > 0 {
			e = sluice.NewError(sluice.LayerBulkhead, sluice.ReasonQueueTimeout, context.DeadlineExceeded)
		}
		b.rec.RejectedAttempt(ctx, e)
		return e
	}
	w, err := b.wq.Join(int(prio), "", 1)
	if err != nil || w == nil {
		return err // nil: a free permit
	}
	start := time.Now()
	b.rec.QueuedAdd(ctx, 1)
	err = b.wq.Wait(ctx, w, maxWait)
	b.rec.QueuedAdd(ctx, -1)
	b.rec.QueueWait(ctx, time.Since(start))
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		// The caller gave up (or its deadline passed): its own error.
		b.rec.Canceled(ctx)
		return ctx.Err()
	}
	e := sluice.NewError(sluice.LayerBulkhead, sluice.ReasonQueueTimeout, errBulkheadWait)
	b.rec.RejectedAttempt(ctx, e)
	return e
}

// errBulkheadWait is the cause of a bulkhead queue_timeout.
var errBulkheadWait = errors.New("bulkhead: no permit within MaxWait")

func (b *bulkheadRoundTripper) release() {
	b.inflight.Add(-1)
	b.wq.Release()
	b.rec.ActiveAdd(context.Background(), -1)
}

// BodyDone releases the permit of a call whose response body is finished
// with (bodyhook.Hook).
func (b *bulkheadRoundTripper) BodyDone() { b.release() }
