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
	"github.com/sluice-go/sluice/internal/redisx"
	"github.com/sluice-go/sluice/internal/rkey"
	"github.com/sluice-go/sluice/otelx"
	"github.com/sluice-go/sluice/status"
)

// UserRateLimitSettings configures UserRateLimit and UserRateLimitHandler.
// The zero value of each field is its documented default.
type UserRateLimitSettings struct {
	// Store keeps the counters: ulule/limiter's Store interface. Default: a
	// new NewMemoryStore(MemoryStoreSettings{}) of this limiter's own.
	// Fleets share NewGCRAStore.
	Store limiter.Store
	// Rate is each user's limit: Limit requests per Period. Required (both
	// positive).
	Rate limiter.Rate
	// Key names the user a request counts against. Required.
	Key KeyFunc
	// FailureMode is what the limiter does while its store fails:
	// sluice.FailOpen (the default) serves the request unlimited;
	// sluice.FailClosed rejects it with 429 and a Retry-After of the health
	// period; sluice.FallbackLocal limits each user with this process's own
	// memory (a bounded NewMemoryStore) at the full Rate, so a user spread
	// over N processes may get up to N times the Rate while the store is
	// down. Each decision taken so is counted in resilience.degraded and
	// marked on the span.
	FailureMode sluice.FailureMode
	// HealthPeriod is how long the limiter skips a failed store before one
	// request probes it again. Default 1s.
	HealthPeriod time.Duration
	// OverLimitCache bounds the local cache of keys that are over their
	// limit: room for n keys of any length, at most n × 128 bytes (a key
	// longer than 64 bytes is kept as its SHA-256 digest). Default 10,000;
	// negative disables the cache.
	OverLimitCache int
	// SpanErrorOn429 sets the server span's status to Error on a 429.
	// Default false: a client over its limit is not a server error.
	// Rejections with a 5xx always mark the span Error.
	SpanErrorOn429 bool
	// Name is resilience.policy.name on spans and metrics, and keys the
	// counters, so two limiters with different names never share one.
	// Default sluice.DefaultName.
	Name string
	// Telemetry records decisions. Default otelx.New(), on the global
	// providers at construction time.
	Telemetry *otelx.Telemetry
	// Responder writes the rejection. Headers the limiter sets before it
	// rejects (X-RateLimit-*) are already on the ResponseWriter. Default
	// WriteRejection.
	Responder Responder
	// Status, if set, shows the limiter on that status page (its rate, its
	// store's health and degraded decisions, rejections; never a user's
	// key). Default nil: not shown, and no cost.
	Status *status.Registry
}

// UserRateLimit limits each user, named by Key, to Rate on Store.
//
// An allowed request gets X-RateLimit-Limit, X-RateLimit-Remaining and
// X-RateLimit-Reset (Unix seconds, as ulule/limiter sends them). A request over
// the limit gets 429 (layer user_rate_limiter, reason rate_limited) with
// Retry-After and the same headers, and its key is remembered in a local cache
// until it may pass again, so a flood from one user costs no store round trip
// per request (OverLimitCache).
//
// Counters are keyed by Name, the rate and the user, so several rules on one
// store (per second and per hour, per tier) never share a counter.
//
// When the store fails, the limiter takes its FailureMode (default
// sluice.FailOpen), counts it in resilience.degraded and skips the store for
// HealthPeriod before one request probes it again: a Redis outage costs at
// most one timeout per period, never a panic. Construction does no I/O.
// Panics on impossible settings (no Key, a Rate without a positive Limit and
// Period, a negative HealthPeriod, an unknown FailureMode). Safe for
// concurrent use.
func UserRateLimit(s UserRateLimitSettings) gin.HandlerFunc {
	l := newUserLimit(s)
	return func(c *gin.Context) {
		if !l.check(c.Writer, c.Request) {
			c.Abort()
			return
		}
		c.Next()
	}
}

// UserRateLimitHandler is UserRateLimit for net/http.
func UserRateLimitHandler(s UserRateLimitSettings) func(http.Handler) http.Handler {
	l := newUserLimit(s)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if l.check(w, r) {
				next.ServeHTTP(w, r)
			}
		})
	}
}

// DefaultOverLimitCache is UserRateLimitSettings.OverLimitCache's default.
const DefaultOverLimitCache = 10_000

type userLimit struct {
	rejecter
	store        limiter.Store
	decider      gcra.Decider
	local        gcra.Decider // FallbackLocal's store, else nil
	failClosed   bool
	healthPeriod time.Duration
	rate         limiter.Rate
	key          KeyFunc
	prefix       string
	limit        string
	breaker      *health.Breaker
	cache        *overlimit.Cache
}

func newUserLimit(s UserRateLimitSettings) *userLimit {
	if s.Key == nil {
		panic("middleware: UserRateLimit: nil Key")
	}
	if s.Rate.Limit <= 0 || s.Rate.Period <= 0 {
		panic("middleware: UserRateLimit: Rate needs a positive Limit and Period")
	}
	if s.HealthPeriod < 0 {
		panic("middleware: UserRateLimit: negative HealthPeriod")
	}
	switch s.FailureMode {
	case sluice.FailureModeDefault, sluice.FailOpen, sluice.FailClosed, sluice.FallbackLocal:
	default:
		panic("middleware: UserRateLimit: unknown FailureMode " + s.FailureMode.String())
	}
	store := s.Store
	if store == nil {
		store = NewMemoryStore(MemoryStoreSettings{})
	}
	name := policyName(s.Name)
	l := &userLimit{
		rejecter:     newRejecter(sluice.LayerUserRateLimiter, name, s.Telemetry, s.Responder),
		store:        store,
		failClosed:   s.FailureMode == sluice.FailClosed,
		healthPeriod: orDefault(s.HealthPeriod, redisx.DefaultHealthPeriod),
		rate:         s.Rate,
		key:          s.Key,
		prefix:       rkey.Escape(name) + ":" + strconv.FormatInt(s.Rate.Period.Milliseconds(), 10) + "ms:" + strconv.FormatInt(s.Rate.Limit, 10) + ":",
		limit:        strconv.FormatInt(s.Rate.Limit, 10),
	}
	l.markLimitErr = s.SpanErrorOn429
	l.breaker = health.New(l.healthPeriod)
	l.decider, _ = store.(gcra.Decider)
	if s.FailureMode == sluice.FallbackLocal {
		l.local = gcra.NewMemoryStore(DefaultMemoryStoreKeys, nil)
	}
	if s.OverLimitCache >= 0 {
		l.cache = overlimit.New(orDefault(s.OverLimitCache, DefaultOverLimitCache))
	}
	l.register(s.Status, name, s.FailureMode)
	return l
}

// check admits the request (true) or answers it (false).
func (l *userLimit) check(w http.ResponseWriter, r *http.Request) bool {
	k := l.key(r)
	if k == "" {
		return true
	}
	sk := l.prefix + k
	now := time.Now()
	if l.cache != nil {
		if until, ok := l.cache.Until(sk, now); ok {
			l.setHeaders(w.Header(), 0, ceilUnix(until))
			l.limited(w, r, until.Sub(now))
			return false
		}
	}
	if !l.breaker.Allow(now) {
		return l.degraded(w, r, sk, now)
	}
	ctx := r.Context()
	d, err := l.decide(ctx, sk, now)
	if err != nil {
		if ctx.Err() == nil { // the client leaving is not the store failing
			l.breaker.Failure(now)
		}
		return l.degraded(w, r, sk, now)
	}
	l.breaker.Success()
	return l.apply(w, r, sk, d, now)
}

// apply carries out a store's decision.
func (l *userLimit) apply(w http.ResponseWriter, r *http.Request, sk string, d gcra.Decision, now time.Time) bool {
	l.setHeaders(w.Header(), d.Remaining, d.Reset)
	if d.Reached {
		if l.cache != nil {
			l.cache.Reject(sk, now.Add(d.RetryAfter), now)
		}
		l.limited(w, r, d.RetryAfter)
		return false
	}
	l.rec.Allowed(r.Context())
	return true
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

// degraded decides without the store, by the failure mode.
func (l *userLimit) degraded(w http.ResponseWriter, r *http.Request, sk string, now time.Time) bool {
	ctx := r.Context()
	l.rec.Degraded(ctx)
	switch {
	case l.failClosed:
		l.limited(w, r, l.healthPeriod)
		return false
	case l.local != nil:
		d, _ := l.local.Decide(ctx, sk, 1, l.rate) // memory: never fails
		return l.apply(w, r, sk, d, now)
	}
	l.rec.Allowed(ctx)
	return true
}

func (l *userLimit) limited(w http.ResponseWriter, r *http.Request, retryAfter time.Duration) {
	e := sluice.NewError(sluice.LayerUserRateLimiter, sluice.ReasonRateLimited, nil)
	e.RetryAfter = retryAfter
	l.reject(w, r, e)
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
