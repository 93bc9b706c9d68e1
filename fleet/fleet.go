// Package fleet builds the dedicated Redis client that carries sluice's
// fleet-wide state: the per-user limit (middleware.NewGCRAStore), the vendor
// quota (outbound.GlobalRateLimitSettings) and the shared circuit breaker.
// It imports no Gin, so an outbound-only service needs nothing else.
//
//	fc := fleet.NewClient(&redis.Options{Addr: "10.0.0.5:6379"})
//	defer fc.Close()
//
// go-redis's defaults (5 s dial, 3 s read, a pool wait of 4 s, 3 retries,
// context deadlines ignored) make a stalled Redis cost each caller seconds.
// A rate-limit decision slower than the vendor call it guards is worse than
// none, so these constructors copy the options given and fill what is left
// zero with tight values: 50 ms dial, read and write timeouts, a 20 ms pool
// wait, no command retries (the quota scripts are not idempotent: a retried
// script whose first reply was lost would charge the quota twice), and
// context deadlines honoured. Redirections (MOVED, ASK) in a Cluster are
// still followed: they are answers, not retries. Share the client with
// nothing slow.
//
// Construction does no I/O: the application starts while Redis is down, and
// each layer takes its documented failure mode until Redis answers.
package fleet

import (
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-go/sluice/internal/redisx"
)

// The tight defaults applied where the options leave zero.
const (
	DialTimeout  = redisx.DialTimeout
	ReadTimeout  = redisx.ReadTimeout
	WriteTimeout = redisx.WriteTimeout
	PoolTimeout  = redisx.PoolTimeout
)

// NewClient returns a standalone client: a copy of opt with the tight
// defaults where it leaves zero (MaxRetries 0 becomes -1, no retries) and
// ContextTimeoutEnabled set. Panics if opt is nil.
func NewClient(opt *redis.Options) *redis.Client {
	if opt == nil {
		panic("fleet: NewClient: nil options")
	}
	o := *opt
	tighten(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout, &o.MaxRetries)
	o.ContextTimeoutEnabled = true
	return redis.NewClient(&o)
}

// NewClusterClient is NewClient for a Redis Cluster. Every key one sluice
// script touches shares one hash tag, so every decision runs on one shard.
// Panics if opt is nil.
func NewClusterClient(opt *redis.ClusterOptions) *redis.ClusterClient {
	if opt == nil {
		panic("fleet: NewClusterClient: nil options")
	}
	o := *opt
	tighten(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout, &o.MaxRetries)
	o.ContextTimeoutEnabled = true
	return redis.NewClusterClient(&o)
}

// NewUniversalClient is NewClient for redis.UniversalOptions: a Cluster
// client when it names several addresses (or IsClusterMode), a Sentinel
// failover client with MasterName, a standalone one otherwise. Panics if opt
// is nil.
func NewUniversalClient(opt *redis.UniversalOptions) redis.UniversalClient {
	if opt == nil {
		panic("fleet: NewUniversalClient: nil options")
	}
	o := *opt
	tighten(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout, &o.MaxRetries)
	o.ContextTimeoutEnabled = true
	return redis.NewUniversalClient(&o)
}

// ParseURL parses a redis:// or rediss:// URL (see redis.ParseURL) and
// returns NewClient for it. Timeouts given as URL parameters
// (dial_timeout=...) are kept; those left out get the tight defaults.
func ParseURL(url string) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	return NewClient(opt), nil
}

func tighten(dial, read, write, pool *time.Duration, retries *int) {
	if *dial == 0 {
		*dial = DialTimeout
	}
	if *read == 0 {
		*read = ReadTimeout
	}
	if *write == 0 {
		*write = WriteTimeout
	}
	if *pool == 0 {
		*pool = PoolTimeout
	}
	if *retries == 0 {
		*retries = -1
	}
}
