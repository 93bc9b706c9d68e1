package middleware

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"
	ulredis "github.com/ulule/limiter/v3/drivers/store/redis"

	"github.com/sluice-go/sluice/internal/gcra"
	"github.com/sluice-go/sluice/internal/redisx"
)

// NewMemoryStore returns the default store of UserRateLimit: a smooth GCRA
// limiter.Store (the same algorithm as NewGCRAStore) in process memory that
// tracks at most maxKeys keys (0: 100,000). A key whose burst is full again
// is forgotten for free; past the bound an arbitrary key is forgotten and
// starts again with a full burst, so an abuser inventing keys cannot exhaust
// memory. It starts no goroutine. Safe for concurrent use.
//
// Its Peek reports Reached when a request now would be denied, and a denied
// Get consumes nothing (unlike ulule's fixed-window stores).
func NewMemoryStore(maxKeys int) limiter.Store { return gcra.NewMemoryStore(maxKeys, nil) }

// RedisStoreOptions configures the Redis-backed stores.
type RedisStoreOptions struct {
	// Prefix namespaces the keys; default "user_rate". GCRA keys are
	// sluice:{<prefix>:<key>}:gcra, the prefix and key escaped so that braces,
	// colons or newlines in a key can never reach another key, and the hash
	// tag covers the whole name so that Redis Cluster works.
	Prefix string
	// Timeout bounds each call; default 50ms. It takes effect only on a
	// client with ContextTimeoutEnabled (NewRedisClient sets it).
	Timeout time.Duration
}

func (o RedisStoreOptions) withDefaults() RedisStoreOptions {
	if o.Prefix == "" {
		o.Prefix = "user_rate"
	}
	if o.Timeout <= 0 {
		o.Timeout = redisx.DefaultTimeout
	}
	return o
}

// NewGCRAStore returns a smooth GCRA limiter.Store in Redis: one Lua script
// per decision (EVALSHA, falling back to EVAL), on the server's clock (TIME),
// one round trip. A rate of L per P admits one request every P/L with a burst
// of L, so unlike a fixed window it never admits 2L at a window's edge.
// Construction does no I/O. Give it a dedicated client with tight timeouts
// (NewRedisClient). Safe for concurrent use.
func NewGCRAStore(client redis.Scripter, opts RedisStoreOptions) limiter.Store {
	o := opts.withDefaults()
	return gcra.NewRedisStore(client, o.Prefix, o.Timeout)
}

// NewFixedWindowRedisStore returns ulule/limiter's own Redis store (a fixed
// window per key), created lazily on first use because ulule's constructor
// loads its scripts and fails when Redis is down. Its keys are
// <prefix>:<key>, unescaped, as ulule writes them. Safe for concurrent use.
func NewFixedWindowRedisStore(client redis.UniversalClient, opts RedisStoreOptions) limiter.Store {
	if client == nil {
		panic("middleware: NewFixedWindowRedisStore: nil Redis client")
	}
	return &lazyStore{client: client, opts: opts.withDefaults()}
}

// NewRedisClient returns a client for a rate-limit store: a copy of opt with
// tight defaults where opt leaves zero — 50ms dial, read and write timeouts,
// no command retries (MaxRetries -1), ContextTimeoutEnabled — so a stalled
// Redis costs tens of milliseconds, not seconds. Share it with nothing slow.
func NewRedisClient(opt *redis.Options) *redis.Client {
	o := *opt
	if o.DialTimeout == 0 {
		o.DialTimeout = redisx.DialTimeout
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = redisx.ReadTimeout
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = redisx.WriteTimeout
	}
	if o.PoolTimeout == 0 {
		o.PoolTimeout = 50 * time.Millisecond
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = -1
	}
	o.ContextTimeoutEnabled = true
	return redis.NewClient(&o)
}

type lazyStore struct {
	client redis.UniversalClient
	opts   RedisStoreOptions
	store  atomic.Pointer[limiter.Store] // set once built; read without a lock
	mu     sync.Mutex                    // held only while building
}

func (s *lazyStore) get() (limiter.Store, error) {
	if st := s.store.Load(); st != nil {
		return *st, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.store.Load(); st != nil {
		return *st, nil
	}
	st, err := ulredis.NewStoreWithOptions(s.client, limiter.StoreOptions{Prefix: s.opts.Prefix})
	if err != nil {
		return nil, err
	}
	s.store.Store(&st)
	return st, nil
}

func (s *lazyStore) call(ctx context.Context, f func(context.Context, limiter.Store) (limiter.Context, error)) (limiter.Context, error) {
	st, err := s.get()
	if err != nil {
		return limiter.Context{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	return f(ctx, st)
}

func (s *lazyStore) Get(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	return s.call(ctx, func(ctx context.Context, st limiter.Store) (limiter.Context, error) { return st.Get(ctx, key, rate) })
}

func (s *lazyStore) Peek(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	return s.call(ctx, func(ctx context.Context, st limiter.Store) (limiter.Context, error) { return st.Peek(ctx, key, rate) })
}

func (s *lazyStore) Reset(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	return s.call(ctx, func(ctx context.Context, st limiter.Store) (limiter.Context, error) { return st.Reset(ctx, key, rate) })
}

func (s *lazyStore) Increment(ctx context.Context, key string, count int64, rate limiter.Rate) (limiter.Context, error) {
	return s.call(ctx, func(ctx context.Context, st limiter.Store) (limiter.Context, error) {
		return st.Increment(ctx, key, count, rate)
	})
}
