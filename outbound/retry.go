package outbound

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/failsafe-go/failsafe-go/budget"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/httpx"
	"github.com/sluice-go/sluice/otelx"
)

// RetrySettings configures the retry layer of WithRetry. The zero value is
// usable: every field has a documented default.
type RetrySettings struct {
	// MaxAttempts is the most attempts one call makes, the first included.
	// Default 3; 1 disables retries.
	MaxAttempts int
	// BaseDelay and MaxDelay shape the exponential backoff with full jitter:
	// the wait before retry n (1, 2, ...) is uniform in
	// [0, min(MaxDelay, BaseDelay·2^(n-1))]. Defaults 100ms and 10s.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// MaxRetryAfter is the longest Retry-After (delta seconds, HTTP-date or
	// retry-after-ms) the layer honours. A vendor asking for longer is not
	// retried: the call fails with retry/retries_exhausted carrying the
	// vendor's RetryAfter. Default 60s.
	MaxRetryAfter time.Duration
	// ShouldRetry says whether an attempt's outcome is worth another attempt.
	// Nil means DefaultShouldRetry. Whatever it says, overload signals are
	// never retried and requests that are not replay-safe are never retried.
	// The vendor's x-should-retry header overrides it for one response:
	// "x-should-retry: false" stops the retry of any response, and
	// "x-should-retry: true" makes an error response (status 400 or above)
	// retryable; on a 1xx, 2xx or 3xx response "true" is ignored, since a
	// success or a redirect is the answer.
	ShouldRetry func(resp *http.Response, err error) bool
	// Budget caps concurrent retries (waiting for their backoff or in
	// flight) at a share of the calls in flight in this layer. Nil means a
	// failsafe-go budget with BudgetRatio and BudgetMin; pass your own
	// (budget.NewBuilder()...Build()) to share one between clients. A retry
	// refused by the budget fails the call with
	// retry/retry_budget_exhausted. failsafe-go counts a pending retry as
	// an execution too, so with c calls in flight in this layer and
	// r = BudgetRatio < 1, at most
	//
	//	max(BudgetMin, ⌊r·c/(1−r)⌋ + 1)
	//
	// retries are pending at any moment (23 for c = 200, r = 0.1): the load
	// an outage adds stays near r of the calls. A shared Budget counts the
	// calls of every client using it.
	Budget budget.Budget
	// BudgetRatio is the budget's max rate. Default 0.2.
	BudgetRatio float64
	// BudgetMin is the retries always allowed whatever the rate. Default 3.
	BudgetMin uint
	// AddIdempotencyKey gives a request that is not idempotent by method
	// (POST, PATCH) and has no Idempotency-Key header a random one, making
	// it replay-safe. Default false: such requests are sent once.
	AddIdempotencyKey bool
}

// WithRetry adds the retry layer, outermost of the chain, so that no backoff
// ever holds a permit, a reservation or a socket. Panics on negative
// settings or a BudgetRatio outside [0, 1].
func WithRetry(s RetrySettings) Option {
	if s.MaxAttempts < 0 || s.BaseDelay < 0 || s.MaxDelay < 0 || s.MaxRetryAfter < 0 {
		panic("outbound: WithRetry: negative setting")
	}
	if s.BudgetRatio < 0 || s.BudgetRatio > 1 {
		panic("outbound: WithRetry: BudgetRatio must be in [0, 1]")
	}
	if s.MaxAttempts == 0 {
		s.MaxAttempts = 3
	}
	if s.BaseDelay == 0 {
		s.BaseDelay = 100 * time.Millisecond
	}
	if s.MaxDelay == 0 {
		s.MaxDelay = 10 * time.Second
	}
	if s.MaxRetryAfter == 0 {
		s.MaxRetryAfter = 60 * time.Second
	}
	if s.ShouldRetry == nil {
		s.ShouldRetry = DefaultShouldRetry
	}
	if s.Budget == nil {
		if s.BudgetRatio == 0 {
			s.BudgetRatio = 0.2
		}
		if s.BudgetMin == 0 {
			s.BudgetMin = 3
		}
		s.Budget = budget.NewBuilder().WithMaxRate(s.BudgetRatio).WithMinConcurrency(s.BudgetMin).Build()
	}
	bp, ok := s.Budget.(budgetPermits)
	if !ok {
		panic(fmt.Sprintf("outbound: WithRetry: Budget %T is not a failsafe-go budget", s.Budget))
	}
	return func(c *config) { c.setSlot(slotRetry, retryLayer{s: s, budget: bp}, "WithRetry") }
}

// budgetPermits is the accounting that failsafe-go's budget implements and
// its retry executor calls; we call it the same way.
type budgetPermits interface {
	RecordExecution()
	ReleaseExecution()
	TryAcquirePermit() bool
	ReleasePermit()
}

// DefaultShouldRetry retries transport errors (refused, reset, unexpected
// EOF, net timeouts, the transport layer's timeouts), call timeouts, the
// global rate limiter's rate_limited and vendor_cooldown when they carry a
// RetryAfter (waited like a vendor's Retry-After: only when it fits in
// MaxRetryAfter and the deadline), and responses 408, 429, 500, 502, 503 and
// 504. A vendor whose headers exceed the transport's cap
// (response_header_too_large) is not retried: it would only do it again.
func DefaultShouldRetry(resp *http.Response, err error) bool {
	if err != nil {
		if e := sluice.ErrorOf(err); e != nil {
			if e.Layer == sluice.LayerGlobalRateLimiter {
				// Never sent: worth another attempt once its turn comes.
				return (e.Reason == sluice.ReasonRateLimited || e.Reason == sluice.ReasonVendorCooldown) && e.RetryAfter > 0
			}
			return (e.Layer == sluice.LayerTransport && e.Timeout()) || e.Layer == sluice.LayerCallTimeout
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return false
		}
		var ne net.Error
		return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
			errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
			(errors.As(err, &ne) && ne.Timeout())
	}
	switch resp.StatusCode {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

type retryLayer struct {
	s      RetrySettings
	budget budgetPermits
}

func (l retryLayer) wrap(next http.RoundTripper, e *env) http.RoundTripper {
	return &retryRoundTripper{next: next, s: l.s, budget: l.budget, tracer: e.tel.Tracer(),
		rec: e.tel.Recorder(sluice.LayerRetry, e.name)}
}

type retryRoundTripper struct {
	next     http.RoundTripper
	s        RetrySettings
	budget   budgetPermits
	budgetMu sync.Mutex // makes the budget's check-then-add atomic, so its bound is exact
	tracer   trace.Tracer
	rec      *otelx.Recorder
}

func (r *retryRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	safe := replaySafe(req)
	if !safe && r.s.AddIdempotencyKey && req.Header.Get("Idempotency-Key") == "" && replayableBody(req) {
		req = req.Clone(ctx)
		req.Header.Set("Idempotency-Key", rand.Text())
		safe = true
	}
	if !safe || r.s.MaxAttempts == 1 {
		r.setAttempts(ctx, 1)
		return r.next.RoundTrip(req)
	}

	r.budget.RecordExecution()
	defer r.budget.ReleaseExecution()

	attemptReq := req
	for attempt := 1; ; attempt++ {
		resp, err := r.next.RoundTrip(attemptReq)
		if attempt > 1 {
			r.budget.ReleasePermit()
		}
		if ctx.Err() != nil {
			// The caller gave up: theirs is the error, not ours.
			r.setAttempts(ctx, attempt)
			if err != nil {
				return nil, ctx.Err()
			}
			return resp, nil
		}
		retry, ra := r.decide(resp, err)
		if !retry {
			r.setAttempts(ctx, attempt)
			return resp, err
		}
		cause := err
		if resp != nil {
			// The vendor's status, with its Retry-After (capped at
			// sluice.MaxRetryAfter), for sluice.ProblemOf.
			cause = sluice.VendorError(resp)
		}
		// This attempt's answer is not the caller's: whatever happens next
		// (giving up, or waiting to retry), its body, its attempt span (ended
		// by otelhttp on close) and anything held below are released now.
		httpx.Drain(bodyOf(resp))
		if ra > r.s.MaxRetryAfter || attempt >= r.s.MaxAttempts {
			return nil, r.fail(ctx, sluice.ReasonRetriesExhausted, cause, attempt, ra)
		}
		wait := max(ra, r.backoff(attempt))
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return nil, r.fail(ctx, sluice.ReasonDeadlineExceeded, cause, attempt, ra)
		}
		if !r.acquireBudget() {
			return nil, r.fail(ctx, sluice.ReasonRetryBudgetExhausted, cause, attempt, ra)
		}
		if err := r.sleep(ctx, wait, ra, cause); err != nil {
			r.budget.ReleasePermit()
			r.setAttempts(ctx, attempt)
			return nil, err
		}
		attemptReq = req.Clone(withResend(ctx, attempt))
		if req.GetBody != nil && req.Body != nil && req.Body != http.NoBody {
			body, err := req.GetBody()
			if err != nil {
				r.budget.ReleasePermit()
				return nil, r.fail(ctx, sluice.ReasonRetriesExhausted, err, attempt, 0)
			}
			attemptReq.Body = body
		}
		r.rec.RetryAttempt(ctx)
	}
}

// decide says whether to retry an outcome and the vendor's Retry-After.
func (r *retryRoundTripper) decide(resp *http.Response, err error) (retry bool, ra time.Duration) {
	if err != nil {
		// Overload signals (ours) and the retry's own verdicts are final.
		if sluice.IsOverload(err) {
			return false, 0
		}
		if !r.s.ShouldRetry(nil, err) {
			return false, 0
		}
		// The global rate limiter's rate_limited and vendor_cooldown carry
		// the exact wait: honoured like a vendor's Retry-After, so the retry
		// happens only when it fits in MaxRetryAfter and the deadline.
		if e := sluice.ErrorOf(err); e != nil && e.Layer == sluice.LayerGlobalRateLimiter {
			return true, e.RetryAfter
		}
		return true, 0
	}
	force, present := httpx.ShouldRetryHeader(resp.Header)
	if present && !force {
		return false, 0
	}
	// The vendor's "x-should-retry: true" speaks for failed attempts only:
	// a success or a redirect is the answer, whatever headers come with it.
	force = force && resp.StatusCode >= http.StatusBadRequest
	if !force && !r.s.ShouldRetry(resp, nil) {
		return false, 0
	}
	ra, _ = httpx.RetryAfter(resp.Header, time.Now())
	return true, ra
}

// backoff is the full-jitter exponential backoff before retry n.
func (r *retryRoundTripper) backoff(n int) time.Duration {
	ceiling := r.s.BaseDelay
	for i := 1; i < n && ceiling < r.s.MaxDelay; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, r.s.MaxDelay)
	if ceiling <= 0 {
		return 0
	}
	return time.Duration(mathrand.Int64N(int64(ceiling) + 1))
}

func (r *retryRoundTripper) acquireBudget() bool {
	r.budgetMu.Lock()
	ok := r.budget.TryAcquirePermit()
	r.budgetMu.Unlock()
	return ok
}

// sleep waits d inside an otelx.SpanBackoff span. Nothing is held meanwhile.
func (r *retryRoundTripper) sleep(ctx context.Context, d, ra time.Duration, cause error) error {
	if d <= 0 {
		return nil
	}
	sctx, span := r.tracer.Start(ctx, otelx.SpanBackoff, trace.WithSpanKind(trace.SpanKindInternal))
	if span.IsRecording() {
		span.SetAttributes(otelx.AttrLayer.String(string(sluice.LayerRetry)),
			otelx.AttrRetryDelay.Float64(d.Seconds()), otelx.AttrRetryCause.String(retryCause(cause)))
		if ra > 0 {
			span.SetAttributes(otelx.AttrRetryAfter.Float64(ra.Seconds()))
		}
	}
	err := sleep(sctx, d)
	span.End()
	if err != nil {
		r.rec.Canceled(ctx)
	}
	return err
}

func (r *retryRoundTripper) fail(ctx context.Context, reason sluice.Reason, cause error, attempts int, ra time.Duration) *sluice.Error {
	e := sluice.NewError(sluice.LayerRetry, reason, cause)
	e.Attempts = attempts
	e.RetryAfter = ra
	r.rec.Rejected(ctx, e)
	return e
}

func (r *retryRoundTripper) setAttempts(ctx context.Context, n int) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(otelx.AttrRetryAttempts.Int(n))
	}
}

// replaySafe: an idempotent method or an Idempotency-Key, and a body that can
// be sent again.
func replaySafe(req *http.Request) bool {
	if !replayableBody(req) {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return req.Header.Get("Idempotency-Key") != ""
}

func replayableBody(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

func bodyOf(resp *http.Response) io.ReadCloser {
	if resp == nil {
		return nil
	}
	return resp.Body
}
