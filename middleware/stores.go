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

// MemoryStoreSettings configures NewMemoryStore. The zero value of each
// field is its documented default.
type MemoryStoreSettings struct {
	// MaxKeys is how many keys the store has room for. Default 100,000
	// (DefaultMemoryStoreKeys).
	MaxKeys int
}

// DefaultMemoryStoreKeys is MemoryStoreSettings.MaxKeys' default.
const DefaultMemoryStoreKeys = 100_000

// NewMemoryStore returns the default store of UserRateLimit: a smooth GCRA
// limiter.Store (the same algorithm as NewGCRAStore) in process memory,
// bounded in bytes with room for MaxKeys keys of any length.
// A key longer than 64 bytes is kept as its SHA-256 digest (two keys share a
// state only if their digests collide), so no key costs more than 128 bytes
// of accounted memory and the store never holds more than MaxKeys × 128
// bytes (about 12 MiB at the default), however long the keys an abuser
// invents. A key whose burst is full again is let go for free (lazily, and by
// a sweep each part of the store runs every so many new keys); past the bound
// an arbitrary key is forgotten and starts again with a full burst. It starts
// no goroutine. Safe for concurrent use.
//
// Its Peek reports Reached when a request now would be denied, and a denied
// Get consumes nothing (unlike ulule's fixed-window stores). Panics on a
// negative MaxKeys.
func NewMemoryStore(s MemoryStoreSettings) limiter.Store {
	if s.MaxKeys < 0 {
		panic("middleware: NewMemoryStore: negative MaxKeys")
	}
	return gcra.NewMemoryStore(orDefault(s.MaxKeys, DefaultMemoryStoreKeys), nil)
}

// RedisStoreSettings configures the Redis-backed stores. The zero value of
// each field is its documented default.
type RedisStoreSettings struct {
	// Prefix namespaces the keys; default "user_rate". GCRA keys are
	// sluice:{<prefix>:<key>}:gcra, the prefix and key escaped so that braces,
	// colons or newlines in a key can never reach another key, and the hash
	// tag covers the whole name so that Redis Cluster works.
	Prefix string
	// Timeout bounds each call; default 50ms. The store's client must
	// honour context deadlines: a go-redis client built without
	// ContextTimeoutEnabled (fleet.NewClient sets it) is refused with a
	// panic, since go-redis would wait its ReadTimeout, seconds by default,
	// on a stalled Redis.
	Timeout time.Duration
}

func (o RedisStoreSettings) withDefaults(constructor string) RedisStoreSettings {
	if o.Timeout < 0 {
		panic("middleware: " + constructor + ": negative Timeout")
	}
	o.Prefix = orDefault(o.Prefix, "user_rate")
	o.Timeout = orDefault(o.Timeout, redisx.DefaultTimeout)
	return o
}

// NewGCRAStore returns a smooth GCRA limiter.Store in Redis: one Lua script
// per decision (EVALSHA, falling back to EVAL), on the server's clock (TIME),
// one round trip. A rate of L per P admits one request every P/L with a burst
// of L, so unlike a fixed window it never admits 2L at a window's edge.
// Construction does no I/O. Give it a dedicated client with tight timeouts
// (fleet.NewClient). Safe for concurrent use. Panics if client is nil or
// ignores context deadlines (see RedisStoreSettings.Timeout), or on a
// negative Timeout.
func NewGCRAStore(client redis.Scripter, s RedisStoreSettings) limiter.Store {
	if client == nil {
		panic("middleware: NewGCRAStore: nil Redis client")
	}
	if err := redisx.CheckDeadlines(client); err != nil {
		panic("middleware: NewGCRAStore: " + err.Error())
	}
	o := s.withDefaults("NewGCRAStore")
	return gcra.NewRedisStore(client, o.Prefix, o.Timeout)
}

// NewFixedWindowRedisStore returns ulule/limiter's own Redis store (a fixed
// window per key), created lazily on first use because ulule's constructor
// loads its scripts and fails when Redis is down. Its keys are
// <prefix>:<key>, unescaped, as ulule writes them. Safe for concurrent use.
// Panics if client is nil or ignores context deadlines (see
// RedisStoreSettings.Timeout), or on a negative Timeout.
func NewFixedWindowRedisStore(client redis.UniversalClient, s RedisStoreSettings) limiter.Store {
	if client == nil {
		panic("middleware: NewFixedWindowRedisStore: nil Redis client")
	}
	if err := redisx.CheckDeadlines(client); err != nil {
		panic("middleware: NewFixedWindowRedisStore: " + err.Error())
	}
	return &lazyStore{client: client, opts: s.withDefaults("NewFixedWindowRedisStore")}
}

type lazyStore struct {
	client redis.UniversalClient
	opts   RedisStoreSettings
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
