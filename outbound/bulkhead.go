package outbound

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/failsafe-go/failsafe-go/bulkhead"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/otelx"
)

type bulkheadLayer struct {
	max     int
	maxWait time.Duration
}

func (l bulkheadLayer) wrap(next http.RoundTripper, e *env) http.RoundTripper {
	return &bulkheadRoundTripper{
		next:    next,
		bh:      bulkhead.New[*http.Response](uint(l.max)),
		maxWait: l.maxWait,
		rec:     e.tel.Recorder(sluice.LayerBulkhead, e.name),
	}
}

// bulkheadRoundTripper gates concurrency with a failsafe-go bulkhead, but,
// unlike failsafe-go's own executor (which releases when the response headers
// arrive), it holds the permit until the response body is closed or read to
// EOF.
type bulkheadRoundTripper struct {
	next    http.RoundTripper
	bh      bulkhead.Bulkhead[*http.Response]
	maxWait time.Duration
	rec     *otelx.Recorder
}

func (b *bulkheadRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	if !b.bh.TryAcquirePermit() {
		if err := b.wait(ctx); err != nil {
			closeRequestBody(req)
			return nil, err
		}
	}
	b.rec.Allowed(ctx)
	b.rec.ActiveAdd(ctx, 1)
	resp, err := b.next.RoundTrip(req)
	if err != nil {
		b.release()
		return nil, err
	}
	releaseOnClose(resp, b)
	return resp, nil
}

// wait queues for a permit for at most maxWait, and never past ctx's
// deadline.
func (b *bulkheadRoundTripper) wait(ctx context.Context) error {
	maxWait := b.maxWait
	if dl, ok := ctx.Deadline(); ok {
		maxWait = min(maxWait, time.Until(dl))
	}
	if maxWait <= 0 {
		e := sluice.NewError(sluice.LayerBulkhead, sluice.ReasonBulkheadFull, nil)
		if b.maxWait > 0 {
			e = sluice.NewError(sluice.LayerBulkhead, sluice.ReasonQueueTimeout, context.DeadlineExceeded)
		}
		b.rec.RejectedAttempt(ctx, e)
		return e
	}
	start := time.Now()
	b.rec.QueuedAdd(ctx, 1)
	err := b.bh.AcquirePermitWithMaxWait(ctx, maxWait)
	b.rec.QueuedAdd(ctx, -1)
	b.rec.QueueWait(ctx, time.Since(start))
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		// The caller gave up (or its deadline passed): its own error.
		b.rec.Canceled(ctx)
		return ctx.Err()
	case errors.Is(err, bulkhead.ErrFull):
		e := sluice.NewError(sluice.LayerBulkhead, sluice.ReasonQueueTimeout, err)
		b.rec.RejectedAttempt(ctx, e)
		return e
	}
	return err
}

func (b *bulkheadRoundTripper) release() {
	b.bh.ReleasePermit()
	b.rec.ActiveAdd(context.Background(), -1)
}
