package redisx

import (
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Timeouts used by NewClientOptions and NewClusterOptions.
//
// go-redis's defaults (DialTimeout 5s, ReadTimeout 3s, PoolTimeout
// ReadTimeout+1s, 3 retries) make a stalled Redis (SIGSTOP, a full network
// buffer, a failover) cost a caller seconds per command. A rate-limit decision
// that takes longer than a vendor call is worse than none, so the dedicated
// client fails within tens of milliseconds and the Guard's health breaker turns
// the next calls into immediate failures.
const (
	DialTimeout  = 50 * time.Millisecond
	ReadTimeout  = 50 * time.Millisecond
	WriteTimeout = 50 * time.Millisecond
	PoolTimeout  = 20 * time.Millisecond
)

// NewClientOptions parses a redis:// or rediss:// URL (see redis.ParseURL) and
// tightens it for a Guard: Dial/Read/Write timeouts of tens of milliseconds, a
// short pool wait, context deadlines honoured on socket I/O, and MaxRetries -1
// (no retries): the quota scripts are not idempotent, a retried EVALSHA whose
// first reply was lost would charge the quota twice. Query parameters in the
// URL (dial_timeout=..., ...) are overridden.
func NewClientOptions(url string) (*redis.Options, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	opt.DialTimeout = DialTimeout
	opt.ReadTimeout = ReadTimeout
	opt.WriteTimeout = WriteTimeout
	opt.PoolTimeout = PoolTimeout
	opt.MaxRetries = -1
	opt.ContextTimeoutEnabled = true
	return opt, nil
}

// NewClusterOptions returns Cluster options for addrs with the same tight
// timeouts and no retries as NewClientOptions. Redirections (MOVED/ASK) are
// still followed: they are answers, not retries of a lost reply.
func NewClusterOptions(addrs []string) *redis.ClusterOptions {
	return &redis.ClusterOptions{
		Addrs:                 addrs,
		DialTimeout:           DialTimeout,
		ReadTimeout:           ReadTimeout,
		WriteTimeout:          WriteTimeout,
		PoolTimeout:           PoolTimeout,
		MaxRetries:            -1,
		ContextTimeoutEnabled: true,
	}
}

// CheckDeadlines returns an error when c is a go-redis Client, ClusterClient
// or Ring (or a type embedding one) built without ContextTimeoutEnabled: such
// a client ignores context deadlines on socket I/O, so a stalled Redis
// (SIGSTOP, a full network buffer, a failover) holds every call for the
// client's ReadTimeout, seconds by default, whatever deadline sluice puts on
// it. The public constructors panic with it, so that the documented per-call
// bound holds for every client they accept. Other implementations of
// redis.UniversalClient cannot be inspected and are trusted to honour
// context deadlines.
func CheckDeadlines(c any) error {
	var on bool
	switch o := c.(type) {
	case interface{ Options() *redis.Options }:
		on = o.Options().ContextTimeoutEnabled
	case interface{ Options() *redis.ClusterOptions }:
		on = o.Options().ContextTimeoutEnabled
	case interface{ Options() *redis.RingOptions }:
		on = o.Options().ContextTimeoutEnabled
	default:
		return nil
	}
	if on {
		return nil
	}
	return errIgnoresDeadlines
}

var errIgnoresDeadlines = errors.New("the Redis client ignores context deadlines (its options leave " +
	"ContextTimeoutEnabled false), so a stalled Redis would hold each call for the client's ReadTimeout " +
	"(seconds by default) instead of sluice's timeout: build it with ContextTimeoutEnabled: true " +
	"(fleet.NewClient does), best with tight Dial/Read/Write timeouts and MaxRetries: -1")
