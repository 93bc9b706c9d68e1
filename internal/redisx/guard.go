package redisx

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-go/sluice/internal/health"
)

// ErrUnavailable is returned, without touching Redis, while the health breaker
// is open, and wraps the failure that opened it.
var ErrUnavailable = errors.New("redisx: redis unavailable")

// Defaults of Options.
const (
	DefaultTimeout      = 50 * time.Millisecond
	DefaultHealthPeriod = time.Second
)

// Options configures a Guard. The zero value is ready to use.
type Options struct {
	// Timeout bounds every call (it is applied as a context deadline; the
	// client must honour it: see NewClientOptions and CheckDeadlines, which
	// the public constructors apply). Zero means 50ms. The
	// client's own socket and pool timeouts still apply and the smaller one
	// fires first: with NewClientOptions's (50ms, 20ms for a pooled
	// connection) a longer Timeout needs them raised too.
	Timeout time.Duration
	// HealthPeriod is how long the health breaker stays open after a failure
	// before it lets one probe through. Zero means 1s.
	HealthPeriod time.Duration
	// OnStateChange, if set, is called (synchronously, keep it cheap) when the
	// breaker opens (healthy=false) or closes (healthy=true).
	OnStateChange func(healthy bool)
}

// Guard wraps a dedicated Redis client with a per-call deadline and a health
// breaker. It is safe for concurrent use.
type Guard struct {
	c       redis.UniversalClient
	timeout time.Duration
	onState func(bool)

	health *health.Breaker
	cause  atomic.Pointer[unavailableError] // why the breaker last opened
}

// New returns a Guard for c. It does no I/O, so it works with Redis down.
// It panics if c is nil.
func New(c redis.UniversalClient, opts Options) *Guard {
	if c == nil {
		panic("redisx: nil client")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.HealthPeriod <= 0 {
		opts.HealthPeriod = DefaultHealthPeriod
	}
	return &Guard{c: c, timeout: opts.Timeout, onState: opts.OnStateChange,
		health: health.New(opts.HealthPeriod)}
}

// Client returns the wrapped client, for work that does not go through Do
// (pub/sub subscriptions).
func (g *Guard) Client() redis.UniversalClient { return g.c }

// Timeout returns the per-call deadline.
func (g *Guard) Timeout() time.Duration { return g.timeout }

// Healthy reports whether the health breaker is closed.
func (g *Guard) Healthy() bool { return g.health.Healthy() }

// acquire reports whether a call may go to Redis now: always while the
// breaker is closed; while it is open, to one probe per health period.
func (g *Guard) acquire() error {
	if g.health.Allow(time.Now()) {
		return nil
	}
	if c := g.cause.Load(); c != nil {
		return c
	}
	return ErrUnavailable
}

// release records a call's verdict: a failure to reach Redis opens the
// breaker, anything else (an answer, even an error answer) closes it.
func (g *Guard) release(err error) {
	was := g.health.Healthy()
	if isFailure(err) {
		g.cause.Store(&unavailableError{err})
		g.health.Failure(time.Now())
		if r, ok := g.c.(stateReloader); ok {
			// A Cluster client learns of a failover only from a MOVED
			// reply or every ClusterStateReloadInterval (60s by default);
			// a dead master answers nothing, so ask for the slot map now.
			// At most once per health period: the breaker is open now.
			r.ReloadState(context.Background())
		}
	} else {
		g.health.Success()
	}
	if now := g.health.Healthy(); now != was && g.onState != nil {
		g.onState(now)
	}
}

// Do runs fn with a context bounded by the Guard's timeout, unless the health
// breaker is open, in which case it returns an error matching ErrUnavailable
// at once. fn's failure to reach Redis opens the breaker; Do returns it
// wrapped so that it matches ErrUnavailable too.
func (g *Guard) Do(ctx context.Context, fn func(ctx context.Context, c redis.UniversalClient) error) error {
	if err := g.acquire(); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	cctx, cancel := context.WithTimeout(ctx, g.timeout)
	err := fn(cctx, g.c)
	cancel()
	if err != nil && CallerDone(ctx) {
		// The caller gave up: that says nothing about Redis. (A probe that
		// ends this way leaves the breaker open; the next probe comes one
		// health period later.)
		return err
	}
	g.release(err)
	if isFailure(err) {
		return &unavailableError{err}
	}
	return err
}

// Run runs script with EVALSHA, falling back to EVAL when Redis answers
// NOSCRIPT (after a restart or SCRIPT FLUSH), through Do.
func (g *Guard) Run(ctx context.Context, script *redis.Script, keys []string, args ...any) (any, error) {
	var res any
	err := g.Do(ctx, func(ctx context.Context, c redis.UniversalClient) error {
		var err error
		res, err = script.Run(ctx, c, keys, args...).Result()
		return err
	})
	return res, err
}

// CallerDone reports whether ctx is done or past its deadline, that is,
// whether an error from Do may be the caller's own deadline or cancellation
// rather than Redis's failure (a socket deadline taken from ctx can fire a
// moment before ctx's own timer).
func CallerDone(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// isFailure reports whether err means Redis is unreachable or unhealthy, as
// opposed to an answer.
func isFailure(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) {
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		for _, p := range []string{"LOADING", "CLUSTERDOWN", "MASTERDOWN", "TRYAGAIN", "BUSY"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	// Timeouts, pool timeouts, closed connections, EOFs, refused dials: no answer.
	return true
}

// stateReloader is a Redis Cluster client (redis.ClusterClient): ReloadState
// refreshes its slot map in the background.
type stateReloader interface{ ReloadState(ctx context.Context) }

type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return "redisx: redis unavailable: " + e.err.Error() }
func (e *unavailableError) Unwrap() error { return e.err }
func (e *unavailableError) Is(target error) bool {
	return target == ErrUnavailable
}
