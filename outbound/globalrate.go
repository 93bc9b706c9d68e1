package outbound

import (
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/quota"
	"github.com/sluice-go/sluice/internal/redisx"
	"github.com/sluice-go/sluice/internal/usage"
	"github.com/sluice-go/sluice/otelx"
)

// GlobalRateLimitSettings configures WithGlobalRateLimit. Requests and Period,
// or Tokens and TokensPeriod, or both, are required; every other field has a
// documented zero-value default.
type GlobalRateLimitSettings struct {
	// Client is a dedicated Redis client (standalone, Cluster or Ring), best
	// built with tight timeouts and no retries (fleet.NewClient).
	// It must honour context deadlines, so that RedisTimeout bounds a call:
	// a go-redis client built without ContextTimeoutEnabled is refused with
	// a panic (go-redis would wait its ReadTimeout, seconds by default, on a
	// stalled Redis).
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
	// call. It must not consume the request's body. A negative estimate
	// counts as 0, one above MaxCost as MaxCost.
	EstimateCost func(*http.Request) int64
	// ActualCost, if set, reads a call's real cost from its response
	// headers; it is asked first. When it is nil or reports false, Usage
	// reads the cost from the body as the caller reads it. The difference
	// from the estimate is refunded or surcharged once the cost is known
	// (for the body, when it is read to EOF or closed). No cost found, or a
	// negative one: the estimate stands. A cost above MaxCost counts as
	// MaxCost. Used only with Tokens set.
	ActualCost func(*http.Response) (int64, bool)
	// Usage reads a call's usage from its body when ActualCost did not
	// give its cost: a JSON answer (Content-Type containing "json", at most
	// 1 MiB) whole, or a text/event-stream answer event by event; the Total
	// it reports is the cost. Nil means AutoUsage: OpenAI (chat completions
	// and the Responses API), Anthropic and Gemini, each recognised from the
	// payload. Set OpenAIUsage, AnthropicUsage or GeminiUsage to read one
	// vendor's shape only, or a UsageParser of your own for another vendor.
	// Like ActualCost, used only with Tokens set.
	Usage UsageParser
	// MaxCost bounds what one call is charged, estimated or actual: a
	// vendor's usage is a number from outside, and one absurd claim must not
	// lock the fleet's quota. Default: the token burst, one TokensPeriod's
	// Tokens. However many calls claim more than they reserved, the quota
	// never runs more than one MaxCost into debt, so no call waits (and no
	// RetryAfter says) more than MaxCooldown + MaxWait + Period/Requests +
	// twice MaxCost's share of TokensPeriod. In-process a call is charged at
	// most the token burst.
	MaxCost int64
	// MaxWait is the longest a call waits for its turn, never past its
	// context's deadline. Over it the call fails at once with
	// global_rate_limiter/queue_timeout; with MaxWait zero (the default) an
	// exhausted quota fails it with global_rate_limiter/rate_limited. Either
	// way the error's RetryAfter is the exact time until a turn frees up.
	MaxWait time.Duration
	// FailureMode applies while Redis is unreachable (every decision taken
	// that way counts as resilience.degraded): sluice.FallbackLocal, the
	// default (zero, sluice.FailureModeDefault), keeps limiting with this
	// process's share of the quota, the quota divided by the processes last
	// counted alive through Redis; sluice.FailOpen admits every call;
	// sluice.FailClosed rejects every call with
	// global_rate_limiter/rate_limited. Other values panic.
	FailureMode sluice.FailureMode
	// RedisTimeout bounds every Redis call, whatever Client's own timeouts.
	// Default 50ms.
	RedisTimeout time.Duration
	// HealthPeriod is how long a failed Redis call keeps every call off
	// Redis (deciding per FailureMode) before one probes it again. Default 1s.
	HealthPeriod time.Duration
	// MaxCooldown caps the fleet-wide pause that a vendor's 429 or 503 with
	// Retry-After, or an exhausted x-ratelimit-remaining-* with its
	// x-ratelimit-reset-*, imposes. Default 1m.
	MaxCooldown time.Duration

	// Lease turns on lease mode (opt-in): each process leases a batch of the
	// quota (requests and tokens) from Redis in one script, spends it in
	// memory with no Redis call per call, and hands back what it did not
	// spend. The batch follows the process's own demand, about 250ms of
	// it: one request at a time when it is quiet (per-call mode's cost),
	// up to MaxLease when it is busy. The price is a slack: in any window W
	// the fleet sends at most Requests·W/Period + Burst + P·MaxLease
	// requests for P processes (tokens likewise, with the token burst and
	// MaxLeaseTokens), where per-call mode sends at most the first two
	// terms.
	// Vendor cooldowns still reach every process at once (Redis pub/sub),
	// reconciliation still charges the real usage (beyond the lease, to
	// Redis), FailureMode applies to the lease script, and a process that
	// dies holding a lease costs the fleet at most that lease, once. Use it
	// when the quota is high (hundreds of calls per second and more, or
	// many processes); keep per-call mode for low rates and strict
	// accuracy. Ignored without Client.
	Lease bool
	// MaxLease is the most requests a process holds at once in lease mode.
	// Default: Burst. One lease never takes more than the quota holds at
	// that instant (at most Burst).
	MaxLease int
	// MaxLeaseTokens is the most tokens a process holds at once in lease
	// mode. Default: Tokens over the time MaxLease requests take at the
	// request rate (Tokens·MaxLease·Period/(Requests·TokensPeriod)), or a
	// tenth of Tokens without Requests. A call estimated at more is leased
	// alone.
	MaxLeaseTokens int64
	// LeaseTTL is how long leased capacity may be spent before it is handed
	// back (with the next lease, or at Close). Default 1s.
	LeaseTTL time.Duration
}

// WithGlobalRateLimit adds the global rate limiter: one GCRA decision per
// attempt in a Lua script on Redis's clock, shared by every process using
// the same Client and Name (or, with Lease, one script per batch of
// attempts: see GlobalRateLimitSettings.Lease). A call over the quota waits for its turn (up to
// MaxWait) or fails with global_rate_limiter/rate_limited or queue_timeout;
// after a vendor 429/503 with Retry-After (or exhausted x-ratelimit headers)
// every process fails with global_rate_limiter/vendor_cooldown, RetryAfter
// set, until the vendor's time is up. A reservation whose attempt did not
// reach the vendor is refunded, whatever stopped it below: a rejection (local
// rate limiter, bulkhead, pool, connect or TLS timeout), or the caller giving
// up or its deadline passing while it waits there or for a connection.
//
// Redis keys: sluice:{Name}:req lives at most the request burst window
// (Burst·Period/Requests) plus MaxWait, sluice:{Name}:cost at most the token
// burst window plus the longer of MaxWait and MaxCost's window
// (MaxCost·TokensPeriod/Tokens), sluice:{Name}:cooldown at most MaxCooldown
// and sluice:{Name}:members a few seconds.
//
// Construction does no I/O: the client works while Redis is down. Release the
// Redis heartbeat with RoundTripper.Close. Panics on impossible settings: no
// quota, a quota without its period, negative values, a quota finer than one
// request or 1000 tokens per microsecond, a window (Period, TokensPeriod,
// MaxWait, MaxCooldown, LeaseTTL, or the burst and MaxCost windows) above
// 366 days, a MaxLease above 1,048,576, or a Client that ignores context
// deadlines.
func WithGlobalRateLimit(s GlobalRateLimitSettings) Option {
	if s.Requests < 0 || s.Burst < 0 || s.Tokens < 0 || s.MaxCost < 0 || s.MaxWait < 0 || s.RedisTimeout < 0 ||
		s.HealthPeriod < 0 || s.MaxCooldown < 0 || s.Period < 0 || s.TokensPeriod < 0 ||
		s.MaxLease < 0 || s.MaxLeaseTokens < 0 || s.LeaseTTL < 0 {
		panic("outbound: WithGlobalRateLimit: negative setting")
	}
	if s.Requests == 0 && s.Tokens == 0 {
		panic("outbound: WithGlobalRateLimit: set Requests or Tokens")
	}
	if s.Requests > 0 && s.Period == 0 || s.Tokens > 0 && s.TokensPeriod == 0 {
		panic("outbound: WithGlobalRateLimit: Requests needs Period and Tokens needs TokensPeriod")
	}
	if _, ok := quotaFailureModes[s.FailureMode]; !ok {
		panic("outbound: WithGlobalRateLimit: unsupported FailureMode " + s.FailureMode.String())
	}
	if err := s.quotaConfig(nil).Validate(); err != nil {
		panic("outbound: WithGlobalRateLimit: " + err.Error())
	}
	if err := redisx.CheckDeadlines(s.Client); err != nil {
		panic("outbound: WithGlobalRateLimit: " + err.Error())
	}
	return func(c *config) { c.setSlot(slotGlobalRateLimiter, globalLayer(s), "WithGlobalRateLimit") }
}

// quotaConfig is s as the quota package's Config; rec, if set, counts the
// decisions taken without Redis.
func (s GlobalRateLimitSettings) quotaConfig(rec *otelx.Recorder) quota.Config {
	cfg := quota.Config{Requests: s.Requests, Per: s.Period, Burst: s.Burst, Cost: s.Tokens,
		CostPer: s.TokensPeriod, MaxCost: s.MaxCost, MaxWait: s.MaxWait, MaxCooldown: s.MaxCooldown,
		Fallback: quotaFailureModes[s.FailureMode], Lease: s.Lease && s.Client != nil, MaxLease: s.MaxLease,
		MaxLeaseCost: s.MaxLeaseTokens, LeaseTTL: s.LeaseTTL}
	if rec != nil {
		cfg.OnDegraded = rec.Degraded
	}
	return cfg
}

// quotaFailureModes are the failure modes the global rate limiter supports,
// as the quota package names them.
var quotaFailureModes = map[sluice.FailureMode]quota.FailureMode{
	sluice.FailureModeDefault: quota.LocalShare,
	sluice.FallbackLocal:      quota.LocalShare,
	sluice.FailOpen:           quota.FailOpen,
	sluice.FailClosed:         quota.FailClosed,
}

type globalLayer GlobalRateLimitSettings

func (l globalLayer) wrap(next http.RoundTripper, e *env) http.RoundTripper {
	name := l.Name
	if name == "" {
		name = e.name
	}
	rec := e.tel.Recorder(sluice.LayerGlobalRateLimiter, e.name)
	cfg := GlobalRateLimitSettings(l).quotaConfig(rec)
	var q *quota.Limiter
	if l.Client == nil {
		q = quota.NewLocal(name, cfg)
	} else {
		q = quota.New(redisx.New(l.Client, redisx.Options{Timeout: l.RedisTimeout, HealthPeriod: l.HealthPeriod}), name, cfg)
	}
	e.onClose(q.Close)
	return &globalRoundTripper{next: next, q: q, rec: rec, estimate: l.EstimateCost, actual: l.ActualCost,
		usage: usageParser(l.Usage), hasCost: l.Tokens > 0, maxCooldown: l.MaxCooldown}
}

type globalRoundTripper struct {
	next        http.RoundTripper
	q           *quota.Limiter
	rec         *otelx.Recorder
	estimate    func(*http.Request) int64
	actual      func(*http.Response) (int64, bool)
	usage       usage.Parser
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
	st := &attemptState{}
	resp, err := g.next.RoundTrip(req.WithContext(st.track(ctx)))
	bg := context.WithoutCancel(ctx)
	if err != nil {
		if !st.mayHaveSent(err) {
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

// attemptState is how far one attempt got below the global limiter, which
// refunds the reservation of every attempt that did not reach the vendor,
// whatever ended it: a layer's rejection, or the caller giving up (or its
// deadline passing) while it waited in the local rate limiter, the bulkhead
// or for a connection.
type attemptState struct {
	transport atomic.Bool // attemptRoundTripper passed it to the transport
	getConn   atomic.Bool // the transport looked for a connection (httptrace)
	gotConn   atomic.Bool // ...and got one: from here it may reach the vendor
}

type attemptStateKey struct{}

// track returns ctx carrying s, for attemptRoundTripper, and an httptrace
// hook (composed with any the caller set) that follows the connection.
func (s *attemptState) track(ctx context.Context) context.Context {
	ctx = context.WithValue(ctx, attemptStateKey{}, s)
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GetConn: func(string) { s.getConn.Store(true) },
		GotConn: func(httptrace.GotConnInfo) { s.gotConn.Store(true) },
	})
}

// markTransport records, for the global limiter above, that the attempt
// reached the transport.
func markTransport(ctx context.Context) {
	if s, ok := ctx.Value(attemptStateKey{}).(*attemptState); ok {
		s.transport.Store(true)
	}
}

// mayHaveSent reports whether an attempt that failed with err may have
// reached the vendor: it got to the transport, and the transport got it a
// connection. A transport that reports no connection events (one given with
// WithTransport that does not use net/http's) is taken to have sent it,
// unless err says it did not.
func (s *attemptState) mayHaveSent(err error) bool {
	switch {
	case !s.transport.Load():
		return false
	case s.gotConn.Load():
		return true
	case s.getConn.Load():
		return false
	}
	return !notSent(err)
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
	reconcile := func(t usage.Tokens, ok bool) {
		if ok {
			_ = r.Reconcile(ctx, t.Total)
		}
	}
	ct := strings.ToLower(resp.Header.Get("Content-Type"))
	switch {
	case strings.HasPrefix(ct, "text/event-stream"):
		resp.Body = quota.WatchSSE(resp.Body, g.usage, reconcile)
	case strings.Contains(ct, "json"):
		resp.Body = quota.WatchJSON(resp.Body, maxUsageBody, g.usage, reconcile)
	}
}
