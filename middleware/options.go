package middleware

import (
	"net/http"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivelimiter"
	"github.com/failsafe-go/failsafe-go/priority"

	"github.com/sluice-go/sluice/internal/redisx"
	"github.com/sluice-go/sluice/otelx"
)

// Option configures a middleware. Every middleware accepts every Option and
// ignores those that do not concern it.
type Option func(*config)

type config struct {
	tel          *otelx.Telemetry
	policy       string
	respond      Responder
	retryAfter   time.Duration
	markLimitErr bool

	// load shedder
	adaptive adaptivelimiter.AdaptiveLimiter[any]
	priority func(*http.Request) priority.Priority
	shares   [5]float64

	// user rate limiter
	failureMode  FailureMode
	healthPeriod time.Duration
	cacheKeys    int

	// test seams
	now      func() time.Time
	onQueued func()
}

// DefaultPolicyName is the resilience.policy.name of a middleware built
// without WithPolicyName.
const DefaultPolicyName = "default"

func newConfig(opts []Option) *config {
	c := &config{
		policy:       DefaultPolicyName,
		retryAfter:   time.Second,
		shares:       [5]float64{0.5, 0.7, 0.8, 0.9, 1},
		healthPeriod: redisx.DefaultHealthPeriod,
		now:          time.Now,
	}
	for _, o := range opts {
		o(c)
	}
	if c.tel == nil {
		c.tel = otelx.New()
	}
	if c.respond == nil {
		c.respond = WriteRejection
	}
	return c
}

// WithTelemetry sets the tracer and instruments. Default: otelx.New(), on the
// global providers at construction time.
func WithTelemetry(t *otelx.Telemetry) Option { return func(c *config) { c.tel = t } }

// WithPolicyName sets resilience.policy.name on spans and metrics. Default
// "default". The user rate limiter also keys its counters by it, so two
// limiters with different names never share a counter.
func WithPolicyName(name string) Option { return func(c *config) { c.policy = name } }

// WithResponder replaces the function that writes rejections. Default
// WriteRejection. Headers the layer sets before rejecting (Retry-After is the
// responder's job; X-RateLimit-* are set by the user rate limiter) are already
// on w.
func WithResponder(r Responder) Option { return func(c *config) { c.respond = r } }

// WithRetryAfter sets the Retry-After that the load shedder and the admission
// queue send (rounded up to whole seconds). Default 1s. The user rate limiter
// sends its own, computed from the limit.
func WithRetryAfter(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.retryAfter = d
		}
	}
}

// WithRateLimitSpanError makes the user rate limiter set the server span's
// status to Error on a 429. Default false: a client over its limit is not a
// server error. 503 rejections always mark the span Error.
func WithRateLimitSpanError(mark bool) Option { return func(c *config) { c.markLimitErr = mark } }

// WithAdaptive makes the load shedder take its cap from an adaptive limiter
// of failsafe-go, which finds it from latency; the shedder's maxInFlight then
// bounds it from above (0: no bound besides the limiter's own). Requests never
// wait for the limiter: build it without queueing.
func WithAdaptive(l adaptivelimiter.AdaptiveLimiter[any]) Option {
	return func(c *config) { c.adaptive = l }
}

// WithPriority makes the load shedder priority-aware: f gives each request a
// priority, and a request of priority p is shed once the in-flight count
// reaches its share of the cap (see WithPriorityShares), so the lowest
// priorities are shed first and VeryHigh traffic may use the whole cap.
// Without it every request may use the whole cap. PriorityFromHeader is the
// usual f.
func WithPriority(f func(*http.Request) priority.Priority) Option {
	return func(c *config) { c.priority = f }
}

// WithPriorityShares sets the share of the cap that each priority, from
// VeryLow to VeryHigh, may fill. Default {0.5, 0.7, 0.8, 0.9, 1}. Shares are
// clamped to [0, 1].
func WithPriorityShares(shares [5]float64) Option {
	return func(c *config) {
		for i, s := range shares {
			c.shares[i] = min(1, max(0, s))
		}
	}
}

// FailureMode is what the user rate limiter does when its store fails.
type FailureMode int

const (
	// FailOpen serves the request unlimited (the default).
	FailOpen FailureMode = iota
	// FailClosed rejects the request with 429 and a Retry-After of the
	// health period.
	FailClosed
)

// WithFailureMode sets the user rate limiter's behaviour when its store
// fails or is skipped by the health breaker. Default FailOpen. Either way the
// event is counted in resilience.degraded and marked on the span.
func WithFailureMode(m FailureMode) Option { return func(c *config) { c.failureMode = m } }

// WithHealthPeriod sets how long the user rate limiter skips its store after
// a failure before one request probes it again. Default 1s.
func WithHealthPeriod(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.healthPeriod = d
		}
	}
}

// WithOverLimitCache bounds the user rate limiter's local cache of keys that
// are over their limit (default 10,000 keys); a negative n disables it.
func WithOverLimitCache(n int) Option { return func(c *config) { c.cacheKeys = n } }
