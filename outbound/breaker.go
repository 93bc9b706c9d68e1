package outbound

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/httpx"
	"github.com/sluice-go/sluice/internal/sharedcb"
	"github.com/sluice-go/sluice/otelx"
)

// BreakerSettings configures the circuit breaker of WithCircuitBreaker. The
// zero value is usable: every field has a documented default.
type BreakerSettings struct {
	// FailureRatio opens the breaker when the share of vendor failures among
	// the calls of the last Window reaches it. Default 0.5.
	FailureRatio float64
	// MinThroughput is how many calls the Window must hold before the ratio
	// counts. Default 10.
	MinThroughput uint
	// Window is the sliding window of the ratio. Default 10s.
	Window time.Duration
	// OpenDelay is how long the breaker stays open before it lets probes
	// through (half-open). Default 5s.
	OpenDelay time.Duration
	// HalfOpenProbes is how many probes are let through when half-open; all
	// must succeed to close the breaker, and one failure opens it again.
	// Default 1.
	HalfOpenProbes uint
	// MaxRetryAfterDelay, when positive, lets a vendor's Retry-After on the
	// failure that opened the breaker (or any failure while open) keep it open
	// longer than OpenDelay, up to this much. Default 0: ignore Retry-After.
	MaxRetryAfterDelay time.Duration
	// IsFailure says whether an attempt's outcome is a vendor failure. Nil
	// means IsVendorFailure. Outcomes that are neither failures nor our own
	// rejections (below) count as successes.
	IsFailure func(resp *http.Response, err error) bool
	// Shared shares this breaker's open state across every process using
	// the same Redis and name (see SharedBreakerSettings). Default nil: the
	// breaker is local to this process.
	Shared *SharedBreakerSettings
}

// IsVendorFailure is the breaker's default failure predicate: 5xx and 429
// responses, call timeouts, the transport's timeouts and other transport
// errors. Other 4xx are the vendor working as intended, and our own
// rejections (rate limits, bulkhead) never reached it: neither counts.
func IsVendorFailure(resp *http.Response, err error) bool {
	if err != nil {
		if e := sluice.ErrorOf(err); e != nil {
			return e.Layer == sluice.LayerCallTimeout || e.Layer == sluice.LayerTransport
		}
		return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
	}
	return resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests
}

// WithCircuitBreaker adds a failsafe-go circuit breaker that counts vendor
// failures only. While it is open, calls fail at once with
// circuit_breaker/circuit_open, whose RetryAfter is the time left until it
// half-opens. With Shared set, the breaker's state is also shared across a
// fleet of processes (see SharedBreakerSettings). Panics if FailureRatio is
// outside (0, 1], a duration is negative, or Shared is set with a nil Client,
// a Client that ignores context deadlines or a negative setting.
func WithCircuitBreaker(s BreakerSettings) Option {
	if s.Window < 0 || s.OpenDelay < 0 || s.MaxRetryAfterDelay < 0 {
		panic("outbound: WithCircuitBreaker: negative setting")
	}
	if s.Shared != nil {
		sh := *s.Shared // the caller's struct may change after this call
		sh.check()
		s.Shared = &sh
	}
	if s.FailureRatio == 0 {
		s.FailureRatio = 0.5
	}
	if s.FailureRatio < 0 || s.FailureRatio > 1 {
		panic("outbound: WithCircuitBreaker: FailureRatio must be in (0, 1]")
	}
	if s.MinThroughput == 0 {
		s.MinThroughput = 10
	}
	if s.Window == 0 {
		s.Window = 10 * time.Second
	}
	if s.OpenDelay == 0 {
		s.OpenDelay = 5 * time.Second
	}
	if s.HalfOpenProbes == 0 {
		s.HalfOpenProbes = 1
	}
	if s.IsFailure == nil {
		s.IsFailure = IsVendorFailure
	}
	return func(c *config) { c.setSlot(slotCircuitBreaker, breakerLayer(s), "WithCircuitBreaker") }
}

type breakerLayer BreakerSettings

func (l breakerLayer) wrap(next http.RoundTripper, e *env) http.RoundTripper {
	b := &breakerRoundTripper{next: next, isFailure: l.IsFailure, maxRA: l.MaxRetryAfterDelay,
		rec: e.tel.Recorder(sluice.LayerCircuitBreaker, e.name)}
	rec := b.rec
	b.cb = circuitbreaker.NewBuilder[*http.Response]().
		WithFailureRateThreshold(l.FailureRatio, l.MinThroughput, l.Window).
		WithSuccessThreshold(l.HalfOpenProbes).
		WithDelay(l.OpenDelay).
		OnStateChanged(func(ev circuitbreaker.StateChangedEvent) {
			rec.CircuitState(context.Background(), stateName(ev.NewState))
		}).
		Build()
	rec.CircuitState(context.Background(), otelx.CircuitClosed) // the gauge starts known
	if l.Shared != nil {
		b.fleet = newFleet(l.Shared, e, b)
	}
	return b
}

// breakerRoundTripper drives a failsafe-go breaker by hand
// (TryAcquirePermit, RecordSuccess, RecordFailure) instead of through its
// executor, which would count every error, our own rejections included.
type breakerRoundTripper struct {
	next      http.RoundTripper
	cb        circuitbreaker.CircuitBreaker[*http.Response]
	isFailure func(*http.Response, error) bool
	maxRA     time.Duration
	rec       *otelx.Recorder
	// holdUntil (unix nanoseconds) keeps the breaker shut past failsafe-go's
	// open delay when the vendor's Retry-After asks for longer.
	holdUntil atomic.Int64
	// fleet, with BreakerSettings.Shared, is the state shared through Redis.
	fleet *fleet
}

func (b *breakerRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	now := time.Now()
	// fleetProbe: this call holds the fleet's one half-open probe lease; the
	// fleet, not the local breaker, decides that it goes.
	fleetProbe := false
	if b.fleet != nil {
		switch b.fleet.b.State() { // a cached flag: no Redis call
		case sharedcb.Open:
			return nil, b.reject(req, max(b.fleet.b.OpenRemaining(), time.Millisecond))
		case sharedcb.HalfOpen:
			won, err := b.fleet.b.TryProbe(ctx)
			switch {
			case err != nil:
				// No Redis: no lease was taken, and the local breaker
				// alone decides below.
				b.rec.Degraded(ctx)
			case !won:
				return nil, b.reject(req, b.fleet.lease)
			default:
				fleetProbe = true
			}
		}
	}
	held := time.Duration(b.holdUntil.Load() - now.UnixNano())
	if !fleetProbe && (held > 0 || !b.cb.TryAcquirePermit()) {
		return nil, b.reject(req, max(held, b.cb.RemainingDelay()))
	}
	probe := fleetProbe || !b.cb.IsClosed()
	if probe {
		b.setSpanState(ctx, otelx.CircuitHalfOpen)
	} else {
		b.setSpanState(ctx, otelx.CircuitClosed)
	}
	b.rec.Allowed(ctx)
	resp, err := b.next.RoundTrip(req)
	switch {
	case b.isFailure(resp, err):
		wasOpen := b.cb.IsOpen()
		if !fleetProbe || !wasOpen {
			b.cb.RecordFailure()
		}
		if resp != nil && b.maxRA > 0 && !b.cb.IsClosed() {
			if ra, ok := httpx.RetryAfter(resp.Header, now); ok {
				b.holdUntil.Store(now.Add(min(ra, b.maxRA)).UnixNano())
			}
		}
		if b.fleet != nil {
			b.fleetFailure(context.WithoutCancel(ctx), resp, now, fleetProbe, !wasOpen && b.cb.IsOpen())
		}
	case err == nil:
		b.cb.RecordSuccess()
		if fleetProbe {
			if err := b.fleet.b.ReportSuccess(context.WithoutCancel(ctx)); err != nil {
				b.rec.Degraded(ctx)
			}
		}
	case fleetProbe:
		// A fleet probe that never reached the vendor: its lease runs out
		// and another process probes; the fleet's state is unchanged.
	case probe:
		// A probe that never reached the vendor (our own rejection, or the
		// caller gave up). failsafe-go has no way to hand back a half-open
		// permit without a verdict, and keeping it would wedge the breaker
		// half-open, so count it as a failed probe: open again and retry later.
		b.cb.RecordFailure()
	}
	return resp, err
}

// reject fails an attempt with circuit_open.
func (b *breakerRoundTripper) reject(req *http.Request, retryAfter time.Duration) error {
	ctx := req.Context()
	closeRequestBody(req)
	e := sluice.NewError(sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen, circuitbreaker.ErrOpen)
	e.RetryAfter = retryAfter
	b.setSpanState(ctx, otelx.CircuitOpen)
	b.rec.RejectedAttempt(ctx, e)
	return e
}

// fleetFailure publishes a vendor failure to the fleet: a failed fleet probe
// re-opens it, a local breaker that just opened reports toward the quorum,
// and a 503 with Retry-After opens it at once.
func (b *breakerRoundTripper) fleetFailure(ctx context.Context, resp *http.Response, now time.Time, fleetProbe, opened bool) {
	var err error
	switch {
	case fleetProbe:
		err = b.fleet.b.ReportFailure(ctx)
	case opened:
		_, err = b.fleet.b.ReportOpen(ctx)
	}
	if err != nil {
		b.rec.Degraded(ctx)
	}
	b.fleet.vendorSignal(ctx, resp, now, b.rec.Degraded)
}

// setSpanState records on the pipeline span the state the breaker was in when
// it decided about this attempt; a retried call shows its last attempt's.
func (b *breakerRoundTripper) setSpanState(ctx context.Context, state string) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(otelx.AttrCircuitState.String(state))
	}
}

func stateName(s circuitbreaker.State) string {
	switch s {
	case circuitbreaker.OpenState:
		return otelx.CircuitOpen
	case circuitbreaker.HalfOpenState:
		return otelx.CircuitHalfOpen
	}
	return otelx.CircuitClosed
}
