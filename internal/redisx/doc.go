// Package redisx is the seam between sluice's fleet-wide layers and Redis: a
// Guard around a dedicated redis.UniversalClient that puts a short deadline on
// every call and a health breaker in front of it, so a Redis outage costs a
// request about nothing instead of a timeout each time.
//
//	opt, err := redisx.NewClientOptions(os.Getenv("REDIS_URL"))
//	if err != nil { ... }
//	g := redisx.New(redis.NewClient(opt), redisx.Options{}) // no I/O
//	res, err := g.Run(ctx, script, keys, args...)
//	if errors.Is(err, redisx.ErrUnavailable) { /* use the failure mode */ }
//
// The health breaker: the first call that fails because Redis is unreachable
// or slow (timeout, refused connection, pool timeout, LOADING, CLUSTERDOWN...)
// opens it for Options.HealthPeriod. While open every call returns
// ErrUnavailable at once without touching Redis. When the period ends exactly
// one call goes through as a probe; its success closes the breaker, its failure
// opens it for another period. Errors that prove Redis answered (a script
// error, NOSCRIPT, redis.Nil) and the caller's own cancellation do not count.
// On a Cluster client a failure also asks go-redis to reload the slot map, so
// that after a failover the next probe reaches the promoted replica instead of
// the dead master (go-redis alone notices only every 60s, or on MOVED).
//
// A Guard is safe for concurrent use.
package redisx
