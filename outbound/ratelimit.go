package outbound

import (
	"context"
	"net/http"
	"time"

	"github.com/failsafe-go/failsafe-go/ratelimiter"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/otelx"
)

// LocalRateLimitSettings configures the local (per-process) rate limiter of
// WithLocalRateLimit. Each attempt, retries included, takes one permit.
type LocalRateLimitSettings struct {
	// Requests per Period is the rate. Both are required (positive).
	Requests uint
	Period   time.Duration
	// Bursty lets all Requests of a Period go at once, then none until the
	// next Period begins. The default (false) is smooth: one request every
	// Period/Requests, which must not round down to zero.
	Bursty bool
	// MaxWait is how long an attempt may wait for a permit. A wait that
	// would exceed it, or the context's deadline, is not started: the attempt
	// fails at once with local_rate_limiter/queue_timeout. Zero (the
	// default) means no waiting: local_rate_limiter/rate_limited at once.
	MaxWait time.Duration
}

// WithLocalRateLimit adds the local rate limiter (layer local_rate_limiter),
// a failsafe-go RateLimiter.
// Panics on impossible settings: zero Requests or Period, negative MaxWait, or
// a smooth rate whose interval Period/Requests rounds to zero (which would
// make failsafe-go divide by zero).
func WithLocalRateLimit(s LocalRateLimitSettings) Option {
	if s.Requests == 0 || s.Period <= 0 {
		panic("outbound: WithLocalRateLimit: Requests and Period must be positive")
	}
	if s.MaxWait < 0 {
		panic("outbound: WithLocalRateLimit: negative MaxWait")
	}
	if !s.Bursty && s.Period/time.Duration(s.Requests) <= 0 {
		panic("outbound: WithLocalRateLimit: smooth interval Period/Requests rounds to zero; use a longer Period or Bursty")
	}
	return func(c *config) { c.setSlot(slotLocalRateLimiter, localRateLimitLayer(s), "WithLocalRateLimit") }
}

type localRateLimitLayer LocalRateLimitSettings

func (l localRateLimitLayer) wrap(next http.RoundTripper, e *env) http.RoundTripper {
	var rl ratelimiter.RateLimiter[*http.Response]
	if l.Bursty {
		rl = ratelimiter.NewBursty[*http.Response](l.Requests, l.Period)
	} else {
		rl = ratelimiter.NewSmooth[*http.Response](l.Requests, l.Period)
	}
	return &rateLimitRoundTripper{next: next, rl: rl, maxWait: l.MaxWait,
		rec: e.tel.Recorder(sluice.LayerLocalRateLimiter, e.name)}
}

type rateLimitRoundTripper struct {
	next    http.RoundTripper
	rl      ratelimiter.RateLimiter[*http.Response]
	maxWait time.Duration
	rec     *otelx.Recorder
}

func (r *rateLimitRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	maxWait := r.maxWait
	if dl, ok := ctx.Deadline(); ok && r.maxWait > 0 {
		maxWait = max(0, min(maxWait, time.Until(dl)))
	}
	// A reservation within maxWait, or -1: nothing is reserved when the wait
	// would be too long.
	wait := r.rl.TryReservePermit(maxWait)
	if wait < 0 {
		closeRequestBody(req)
		var e *sluice.Error
		switch {
		case r.maxWait == 0:
			e = sluice.NewError(sluice.LayerLocalRateLimiter, sluice.ReasonRateLimited, ratelimiter.ErrExceeded)
		case maxWait < r.maxWait:
			e = sluice.NewError(sluice.LayerLocalRateLimiter, sluice.ReasonQueueTimeout, context.DeadlineExceeded)
		default:
			e = sluice.NewError(sluice.LayerLocalRateLimiter, sluice.ReasonQueueTimeout, ratelimiter.ErrExceeded)
		}
		r.rec.RejectedAttempt(ctx, e)
		return nil, e
	}
	if wait > 0 {
		r.rec.QueuedAdd(ctx, 1)
		err := sleep(ctx, wait)
		r.rec.QueuedAdd(ctx, -1)
		r.rec.QueueWait(ctx, wait)
		if err != nil {
			closeRequestBody(req)
			r.rec.Canceled(ctx)
			return nil, err
		}
	}
	r.rec.Allowed(ctx)
	return r.next.RoundTrip(req)
}

// sleep waits d or until ctx is done, returning ctx.Err() in that case.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
