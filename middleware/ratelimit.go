package middleware

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/ulule/limiter/v3"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/gcra"
	"github.com/sluice-go/sluice/internal/health"
	"github.com/sluice-go/sluice/internal/overlimit"
	"github.com/sluice-go/sluice/internal/rkey"
	"github.com/sluice-go/sluice/otelx"
)

// KeyFunc names the user a request counts against. An empty key means the
// request is not limited by this rule (let the handler reject anonymous
// requests, or give them a key of their own).
type KeyFunc func(c *gin.Context) string

// KeyFromHeader keys requests by a header such as an API key.
func KeyFromHeader(name string) KeyFunc {
	return func(c *gin.Context) string { return c.GetHeader(name) }
}

// KeyFromContext keys requests by a string that an authentication middleware
// stored with c.Set(name, userID).
func KeyFromContext(name string) KeyFunc {
	return func(c *gin.Context) string { return c.GetString(name) }
}

// KeyFromClientIP keys requests by gin's c.ClientIP(). Use it only after
// engine.SetTrustedProxies names your proxies: by default gin trusts
// X-Forwarded-For from every peer, so any client can claim any IP and escape
// its limit (or spend someone else's).
func KeyFromClientIP() KeyFunc {
	return func(c *gin.Context) string { return c.ClientIP() }
}

// UserRateLimit limits each user, named by key, to rate on store (nil: a new
// NewMemoryStore(0)).
//
// An allowed request gets X-RateLimit-Limit, X-RateLimit-Remaining and
// X-RateLimit-Reset (Unix seconds, as ulule/limiter sends them). A request over
// the limit gets 429 (layer user_rate_limiter, reason rate_limited) with
// Retry-After and the same headers, and its key is remembered in a local cache
// until it may pass again, so a flood from one user costs no store round trip
// per request (WithOverLimitCache).
//
// Counters are keyed by the policy name (WithPolicyName), the rate and the
// user, so several rules on one store (per second and per hour, per tier)
// never share a counter.
//
// When the store fails, the limiter takes the failure mode (WithFailureMode,
// default FailOpen), counts it in resilience.degraded and skips the store for
// the health period (WithHealthPeriod, default 1s) before one request probes
// it again: a Redis outage costs at most one timeout per period, never a
// panic. Construction does no I/O. Safe for concurrent use.
func UserRateLimit(store limiter.Store, rate limiter.Rate, key KeyFunc, opts ...Option) gin.HandlerFunc {
	l := newUserLimit(store, rate, key, opts)
	return l.handle
}

type userLimit struct {
	cfg     *config
	rec     *otelx.Recorder
	store   limiter.Store
	decider gcra.Decider
	rate    limiter.Rate
	key     KeyFunc
	prefix  string
	limit   string
	breaker *health.Breaker
	cache   *overlimit.Cache
}

func newUserLimit(store limiter.Store, rate limiter.Rate, key KeyFunc, opts []Option) *userLimit {
	if key == nil {
		panic("middleware: UserRateLimit: nil KeyFunc")
	}
	if rate.Limit <= 0 || rate.Period <= 0 {
		panic("middleware: UserRateLimit: rate needs a positive Limit and Period")
	}
	cfg := newConfig(opts)
	if store == nil {
		store = NewMemoryStore(0)
	}
	l := &userLimit{
		cfg:     cfg,
		rec:     cfg.tel.Recorder(sluice.LayerUserRateLimiter, cfg.policy),
		store:   store,
		rate:    rate,
		key:     key,
		prefix:  rkey.Escape(cfg.policy) + ":" + strconv.FormatInt(rate.Period.Milliseconds(), 10) + "ms:" + strconv.FormatInt(rate.Limit, 10) + ":",
		limit:   strconv.FormatInt(rate.Limit, 10),
		breaker: health.New(cfg.healthPeriod),
	}
	l.decider, _ = store.(gcra.Decider)
	if cfg.cacheKeys >= 0 {
		l.cache = overlimit.New(cfg.cacheKeys)
	}
	return l
}

func (l *userLimit) handle(c *gin.Context) {
	k := l.key(c)
	if k == "" {
		c.Next()
		return
	}
	sk := l.prefix + k
	now := l.cfg.now()
	ctx := c.Request.Context()
	if l.cache != nil {
		if until, ok := l.cache.Until(sk, now); ok {
			l.setHeaders(c.Writer.Header(), 0, ceilUnix(until))
			l.reject(c, until.Sub(now))
			return
		}
	}
	if !l.breaker.Allow(now) {
		l.degraded(c, ctx)
		return
	}
	d, err := l.decide(ctx, sk, now)
	if err != nil {
		if ctx.Err() == nil { // the client leaving is not the store failing
			l.breaker.Failure(now)
		}
		l.degraded(c, ctx)
		return
	}
	l.breaker.Success()
	l.setHeaders(c.Writer.Header(), d.Remaining, d.Reset)
	if d.Reached {
		if l.cache != nil {
			l.cache.Reject(sk, now.Add(d.RetryAfter), now)
		}
		l.reject(c, d.RetryAfter)
		return
	}
	l.rec.Allowed(ctx)
	c.Next()
}

// decide asks the store, preferring the precise retry-after of sluice's own
// stores; for other stores (ulule's fixed window) it waits until the second
// after the window's reset, since ulule truncates Reset to the second.
func (l *userLimit) decide(ctx context.Context, key string, now time.Time) (gcra.Decision, error) {
	if l.decider != nil {
		return l.decider.Decide(ctx, key, 1, l.rate)
	}
	lc, err := l.store.Get(ctx, key, l.rate)
	if err != nil {
		return gcra.Decision{}, err
	}
	d := gcra.Decision{Context: lc}
	if lc.Reached {
		d.RetryAfter = max(time.Unix(lc.Reset+1, 0).Sub(now), time.Millisecond)
	}
	return d, nil
}

func (l *userLimit) degraded(c *gin.Context, ctx context.Context) {
	l.rec.Degraded(ctx)
	if l.cfg.failureMode == FailClosed {
		l.reject(c, l.cfg.healthPeriod)
		return
	}
	l.rec.Allowed(ctx)
	c.Next()
}

func (l *userLimit) reject(c *gin.Context, retryAfter time.Duration) {
	e := sluice.NewError(sluice.LayerUserRateLimiter, sluice.ReasonRateLimited, nil)
	e.RetryAfter = retryAfter
	l.cfg.reject(c.Writer, c.Request, l.rec, e)
	c.Abort()
}

// Header keys in canonical form, set directly so that no key is re-canonicalized.
const (
	hdrLimit     = "X-Ratelimit-Limit"
	hdrRemaining = "X-Ratelimit-Remaining"
	hdrReset     = "X-Ratelimit-Reset"
)

func (l *userLimit) setHeaders(h http.Header, remaining, reset int64) {
	v := make([]string, 3)
	v[0], v[1], v[2] = l.limit, strconv.FormatInt(remaining, 10), strconv.FormatInt(reset, 10)
	h[hdrLimit], h[hdrRemaining], h[hdrReset] = v[0:1:1], v[1:2:2], v[2:3:3]
}

func ceilUnix(t time.Time) int64 {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return s
}
