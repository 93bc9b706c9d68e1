package outbound

import (
	"context"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/quota"
	"github.com/sluice-go/sluice/internal/redisx"
	"github.com/sluice-go/sluice/otelx"
)

// FailureMode is what a Redis-backed layer does while Redis cannot be
// reached. Every decision taken that way is counted as resilience.degraded.
type FailureMode int

const (
	// FallbackLocal, the default, keeps limiting with local state. The
	// global rate limiter enforces this process's share of the quota: the
	// quota divided by the processes last counted alive through Redis.
	FallbackLocal FailureMode = iota
	// FailOpen admits every call.
	FailOpen
	// FailClosed rejects every call with global_rate_limiter/rate_limited.
	FailClosed
)

// GlobalRateLimitSettings configures WithGlobalRateLimit. Requests and Period,
// or Tokens and TokensPeriod, or both, are required; every other field has a
// documented zero-value default.
type GlobalRateLimitSettings struct {
	// Client is a dedicated Redis client (standalone, Cluster or Ring), best
	// built with tight timeouts and no retries (middleware.NewRedisClient).
	// Every process using the same Client data and Name shares one quota.
	// Nil means no Redis: the quota is enforced in this process only, with
	// the same semantics (waits, exact retry-after, cooldowns). The client
	// is not closed by RoundTripper.Close.
	Client redis.UniversalClient
	// Name identifies the quota in Redis (keys sluice:{Name}:...). Default:
	// the chain's WithName.
	Name string
	// Requests per Period: the request quota. Zero Requests means none.
	Requests int
	Period   time.Duration
	// Burst is how many requests may go at once after an idle spell.
	// Default 1: evenly spaced.
	Burst int
	// Tokens per TokensPeriod: the cost quota (LLM tokens per minute, say).
	// Zero Tokens means none.
	Tokens       int64
	TokensPeriod time.Duration
	// EstimateCost is the cost reserved before a call. Nil means 1 per
	// call. It must not consume the request's body.
	EstimateCost func(*http.Request) int64
	// ActualCost, if set, reads a call's real cost from its response
	// headers. When it is nil or reports false, the body is watched as the
	// caller reads it: usage.total_tokens of a JSON body, or of the last SSE
	// chunk that carries one (OpenAI's stream_options.include_usage). The
	// difference from the estimate is refunded or surcharged once known
	// (when the body is read to EOF or closed). No usage found: the
	// estimate stands.
	ActualCost func(*http.Response) (int64, bool)
	// MaxWait is the longest a call waits for its turn, never past its
	// context's deadline. Over it the call fails at once with
	// global_rate_limiter/queue_timeout; with MaxWait zero (the default) an
	// exhausted quota fails it with global_rate_limiter/rate_limited. Either
	// way the error's RetryAfter is the exact time until a turn frees up.
	MaxWait time.Duration
	// FailureMode applies while Redis is unreachable. Default FallbackLocal.
	FailureMode FailureMode
	// RedisTimeout bounds every Redis call. Default 50ms.
	RedisTimeout time.Duration
	// HealthPeriod is how long a failed Redis call keeps every call off
	// Redis (deciding per FailureMode) before one probes it again. Default 1s.
	HealthPeriod time.Duration
	// MaxCooldown caps the fleet-wide pause that a vendor's 429 or 503 with
	// Retry-After, or an exhausted x-ratelimit-remaining-* with its
	// x-ratelimit-reset-*, imposes. Default 1m.
	MaxCooldown time.Duration
}

// WithGlobalRateLimit adds the global rate limiter: one GCRA decision per
// attempt in a Lua script on Redis's clock, shared by every process using
// the same Client and Name. A call over the quota waits for its turn (up to
// MaxWait) or fails with global_rate_limiter/rate_limited or queue_timeout;
// after a vendor 429/503 with Retry-After (or exhausted x-ratelimit headers)
// every process fails with global_rate_limiter/vendor_cooldown, RetryAfter
// set, until the vendor's time is up. A reservation whose call is then
// rejected below it (local rate limiter, bulkhead, pool or connect timeout)
// is refunded.
//
// Construction does no I/O: the client works while Redis is down. Release the
// Redis heartbeat with RoundTripper.Close. Panics on impossible settings: no
// quota, a quota without its period, or negative values.
func WithGlobalRateLimit(s GlobalRateLimitSettings) Option {
	if s.Requests < 0 || s.Burst < 0 || s.Tokens < 0 || s.MaxWait < 0 || s.RedisTimeout < 0 ||
		s.HealthPeriod < 0 || s.MaxCooldown < 0 || s.Period < 0 || s.TokensPeriod < 0 {
		panic("outbound: WithGlobalRateLimit: negative setting")
	}
	if s.Requests == 0 && s.Tokens == 0 {
		panic("outbound: WithGlobalRateLimit: set Requests or Tokens")
	}
	if s.Requests > 0 && s.Period == 0 || s.Tokens > 0 && s.TokensPeriod == 0 {
		panic("outbound: WithGlobalRateLimit: Requests needs Period and Tokens needs TokensPeriod")
	}
	if s.FailureMode < FallbackLocal || s.FailureMode > FailClosed {
		panic("outbound: WithGlobalRateLimit: unknown FailureMode")
	}
	if s.Requests > 0 && s.Period.Microseconds() < int64(s.Requests) {
		panic("outbound: WithGlobalRateLimit: more than one request per microsecond")
	}
	return func(c *config) { c.setSlot(slotGlobalRateLimiter, globalLayer(s), "WithGlobalRateLimit") }
}

type globalLayer GlobalRateLimitSettings

func (l globalLayer) wrap(next http.RoundTripper, e *env) http.RoundTripper {
	name := l.Name
	if name == "" {
		name = e.name
	}
	rec := e.tel.Recorder(sluice.LayerGlobalRateLimiter, e.name)
	cfg := quota.Config{Requests: l.Requests, Per: l.Period, Burst: l.Burst, Cost: l.Tokens,
		CostPer: l.TokensPeriod, MaxWait: l.MaxWait, Fallback: quota.FailureMode(l.FailureMode),
		OnDegraded: rec.Degraded}
	var q *quota.Limiter
	if l.Client == nil {
		q = quota.NewLocal(name, cfg)
	} else {
		q = quota.New(redisx.New(l.Client, redisx.Options{Timeout: l.RedisTimeout, HealthPeriod: l.HealthPeriod}), name, cfg)
	}
	e.onClose(q.Close)
	return &globalRoundTripper{next: next, q: q, rec: rec, estimate: l.EstimateCost, actual: l.ActualCost,
		hasCost: l.Tokens > 0, maxCooldown: l.MaxCooldown}
}

type globalRoundTripper struct {
	next        http.RoundTripper
	q           *quota.Limiter
	rec         *otelx.Recorder
	estimate    func(*http.Request) int64
	actual      func(*http.Response) (int64, bool)
	hasCost     bool
	maxCooldown time.Duration
}

func (g *globalRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	cost := int64(1)
	if g.estimate != nil {
		cost = g.estimate(req)
	}
	r, err := g.q.Reserve(ctx, cost)
	if err != nil {
		closeRequestBody(req)
		if ctx.Err() != nil {
			// The caller gave up while waiting for its turn: theirs is the error.
			g.rec.Canceled(ctx)
			return nil, ctx.Err()
		}
		if e := sluice.ErrorOf(err); e != nil {
			g.rec.RejectedAttempt(ctx, e)
		}
		return nil, err
	}
	if w := r.Wait(); w > 0 {
		g.rec.QueueWait(ctx, w)
	}
	g.rec.Allowed(ctx)
	resp, err := g.next.RoundTrip(req)
	bg := context.WithoutCancel(ctx)
	if err != nil {
		if notSent(err) {
			_ = r.Cancel(bg)
		}
		return nil, err
	}
	if d, ok := quota.CooldownFromResponse(resp, g.maxCooldown); ok {
		if err := g.q.Cooldown(bg, d); err != nil {
			g.rec.Degraded(ctx) // kept locally: this process still pauses
		}
	}
	if g.hasCost {
		g.watchUsage(bg, resp, r)
	}
	return resp, nil
}

// notSent: a layer below rejected the attempt before it reached the vendor.
func notSent(err error) bool {
	e := sluice.ErrorOf(err)
	if e == nil {
		return false
	}
	switch e.Layer {
	case sluice.LayerLocalRateLimiter, sluice.LayerBulkhead:
		return true
	case sluice.LayerTransport:
		return e.Reason == sluice.ReasonPoolTimeout || e.Reason == sluice.ReasonConnectTimeout ||
			e.Reason == sluice.ReasonTLSHandshakeTimeout
	}
	return false
}

// maxUsageBody bounds the JSON body kept to read its usage; a larger body
// keeps its estimate.
const maxUsageBody = 1 << 20

func (g *globalRoundTripper) watchUsage(ctx context.Context, resp *http.Response, r *quota.Reservation) {
	if g.actual != nil {
		if n, ok := g.actual(resp); ok {
			_ = r.Reconcile(ctx, n)
			return
		}
	}
	if resp.Body == nil || resp.Body == http.NoBody {
		return
	}
	if _, ok := resp.Body.(io.Writer); ok { // a 101 upgrade: not ours to wrap
		return
	}
	ct := strings.ToLower(resp.Header.Get("Content-Type"))
	switch {
	case strings.HasPrefix(ct, "text/event-stream"):
		resp.Body = quota.WatchSSE(resp.Body, func(total int64, ok bool) {
			if ok {
				_ = r.Reconcile(ctx, total)
			}
		})
	case strings.Contains(ct, "json"):
		resp.Body = quota.WatchJSON(resp.Body, maxUsageBody, func(total int64, ok bool) {
			if ok {
				_ = r.Reconcile(ctx, total)
			}
		})
	}
}
