// Package quota is the global vendor quota: one GCRA decision per request in a
// single Lua script on Redis's clock, shared by every process that uses the
// same name, limiting requests per period and optionally cost (LLM tokens)
// per period, plus a fleet-wide vendor cooldown.
//
//	g := redisx.New(redis.NewClient(opt), redisx.Options{})
//	l := quota.New(g, "openai", quota.Config{Requests: 500, Per: time.Minute,
//		Cost: 90_000, CostPer: time.Minute, MaxWait: 2 * time.Second,
//		OnDegraded: func(ctx context.Context) { rec.Degraded(ctx) }})
//	defer l.Close()
//	r, err := l.Reserve(ctx, estimatedTokens) // waits for its slot, or *sluice.Error
//	if err != nil { return err }
//	resp, err := next.RoundTrip(req)
//	if d, ok := quota.CooldownFromResponse(resp, 0); ok { l.Cooldown(ctx, d) }
//	// when the usage is known (WatchJSON, WatchSSE with a usage.Parser):
//	r.Reconcile(ctx, actualTokens)
//
// Keys are sluice:{<escaped name>}:req, :cost, :cooldown and :members; they
// share one hash tag, so Redis Cluster works.
//
// Costs come from outside (a vendor's usage), so they are clamped to
// [0, Config.MaxCost] before any arithmetic, surcharges cannot put the
// bucket more than one MaxCost into debt, and every window of a Config is at
// most MaxWindow: no key outlives its documented bound (see Limiter) and
// every RetryAfter is positive and bounded. Refunds (Reconcile below the
// reservation, Cancel) apply on Redis and in-process alike.
//
// When Redis is unreachable (the redisx.Guard's health breaker is open, so no
// request pays a Redis timeout) the Config.Fallback mode decides: LocalShare
// (default) enforces quota/N locally, N being the live processes last counted
// through Redis heartbeats; FailOpen admits; FailClosed rejects. Each fallback
// decision calls Config.OnDegraded. Shared mode returns by itself when Redis
// answers again.
//
// A Limiter is safe for concurrent use.
package quota
