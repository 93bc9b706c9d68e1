package outbound

import (
	"context"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-go/sluice/internal/httpx"
	"github.com/sluice-go/sluice/internal/redisx"
	"github.com/sluice-go/sluice/internal/sharedcb"
	"github.com/sluice-go/sluice/otelx"
)

// SharedBreakerSettings, set as BreakerSettings.Shared, shares the breaker of
// WithCircuitBreaker across every process using the same Client and Name.
// Each process keeps its local breaker; when it opens, the process reports it
// to Redis, and the fleet opens once Quorum processes reported within Window
// (or at once on a vendor 503 with Retry-After). Every process honours the
// fleet's open state through a locally cached flag, kept current by pub/sub
// and a periodic refresh: no Redis call on the hot path. While open, calls
// fail with circuit_breaker/circuit_open; when it half-opens, exactly one
// probe runs in the whole fleet, whose outcome closes or re-opens it
// everywhere.
//
// Without Redis, each process keeps the last known fleet state (an open
// state still ends on time) and its local breaker, which alone decides once
// that open state has ended; failed publications and probe leases count as
// resilience.degraded. Construction does no I/O. Release the subscriber with
// Client.Close or RoundTripper.Close.
//
// Client is required; every other field has a documented zero-value default.
// WithCircuitBreaker panics if Client is nil or ignores context deadlines
// (see GlobalRateLimitSettings.Client) or a setting is negative.
type SharedBreakerSettings struct {
	// Client is a dedicated Redis client (standalone, Cluster or Ring). It
	// is not closed by RoundTripper.Close.
	Client redis.UniversalClient
	// Name identifies the fleet breaker in Redis (keys sluice:{Name}:cb...).
	// Default: the chain's WithName.
	Name string
	// Quorum is how many distinct processes must see their local breaker
	// open within Window to open the fleet, so one sick pod cannot. Default
	// 2; 1 lets any process open the fleet.
	Quorum int
	// Window is how recent the reports counted toward Quorum must be.
	// Default 10s.
	Window time.Duration
	// OpenFor is how long a quorum, or a failed fleet probe, opens the
	// fleet. Default 30s.
	OpenFor time.Duration
	// MaxVendorOpen caps how long a vendor-wide signal, a 503 with
	// Retry-After, opens the whole fleet at once (no quorum needed): for its
	// Retry-After, at most this. Zero means OpenFor; negative ignores the
	// signal.
	MaxVendorOpen time.Duration
	// ProbeLease is how long the one fleet-wide half-open probe may take
	// before another process may probe. Default 5s.
	ProbeLease time.Duration
	// Refresh is how often the state is re-read from Redis, the safety net
	// for a lost pub/sub message. Default 1s.
	Refresh time.Duration
	// RedisTimeout bounds every Redis call, whatever Client's own timeouts.
	// Default 50ms.
	RedisTimeout time.Duration
	// HealthPeriod is how long a failed Redis call keeps the breaker off
	// Redis before one call probes it again. Default 1s.
	HealthPeriod time.Duration
}

// check panics on impossible settings, for WithCircuitBreaker.
func (s *SharedBreakerSettings) check() {
	if s.Client == nil {
		panic("outbound: WithCircuitBreaker: Shared: nil Client (a local breaker needs no Shared)")
	}
	if s.Quorum < 0 || s.Window < 0 || s.OpenFor < 0 || s.ProbeLease < 0 || s.Refresh < 0 ||
		s.RedisTimeout < 0 || s.HealthPeriod < 0 {
		panic("outbound: WithCircuitBreaker: Shared: negative setting")
	}
	if err := redisx.CheckDeadlines(s.Client); err != nil {
		panic("outbound: WithCircuitBreaker: Shared: " + err.Error())
	}
}

// fleet is the breaker layer's link to the shared state.
type fleet struct {
	b         *sharedcb.Breaker
	vendorMax time.Duration // < 0: ignore 503 + Retry-After
	lease     time.Duration
}

func newFleet(s *SharedBreakerSettings, e *env, br *breakerRoundTripper) *fleet {
	name := s.Name
	if name == "" {
		name = e.name
	}
	g := redisx.New(s.Client, redisx.Options{Timeout: s.RedisTimeout, HealthPeriod: s.HealthPeriod})
	f := &fleet{vendorMax: s.MaxVendorOpen, lease: s.ProbeLease}
	if f.lease == 0 {
		f.lease = sharedcb.DefaultProbeLease
	}
	if f.vendorMax == 0 {
		f.vendorMax = s.OpenFor
		if f.vendorMax == 0 {
			f.vendorMax = sharedcb.DefaultOpenFor
		}
	}
	f.b = sharedcb.New(g, name, sharedcb.Config{Quorum: s.Quorum, Window: s.Window, OpenFor: s.OpenFor,
		ProbeLease: s.ProbeLease, Refresh: s.Refresh, OnChange: func(st sharedcb.State) {
			switch st {
			case sharedcb.Open:
				br.rec.CircuitState(context.Background(), otelx.CircuitOpen)
			case sharedcb.Closed:
				// A good probe somewhere closed the fleet: the vendor is
				// back, so this process's breaker closes too.
				br.cb.Close()
			}
		}})
	e.onClose(f.b.Close)
	return f
}

// vendorSignal opens the fleet on a vendor-wide 503 with Retry-After.
func (f *fleet) vendorSignal(ctx context.Context, resp *http.Response, now time.Time, degraded func(context.Context)) {
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable || f.vendorMax < 0 {
		return
	}
	if ra, ok := httpx.RetryAfter(resp.Header, now); ok && ra > 0 {
		if err := f.b.OpenFor(ctx, min(ra, f.vendorMax)); err != nil {
			degraded(ctx)
		}
	}
}
