// Package middleware protects a Gin service under load: a load shedder, a
// per-user rate limiter, an admission queue and a request deadline, each a
// gin.HandlerFunc (and, where cheap, a func(http.Handler) http.Handler for
// net/http).
//
// Wire them in the canonical order, cheapest rejection first and the
// admission queue closest to the work it protects:
//
//	r := gin.New()
//	if err := r.SetTrustedProxies([]string{"10.0.0.0/8"}); err != nil { // or nil: trust none
//		log.Fatal(err)
//	}
//	rdb := middleware.NewRedisClient(&redis.Options{Addr: "redis:6379"})
//	r.Use(
//		otelgin.Middleware("chat"),
//		middleware.Deadline(10*time.Second), // optional: the queue wait counts against it
//		middleware.LoadShedder(200, middleware.WithPriority(middleware.PriorityFromHeader(""))),
//		middleware.UserRateLimit(middleware.NewGCRAStore(rdb, middleware.RedisStoreOptions{}),
//			limiter.Rate{Period: time.Second, Limit: 10}, middleware.KeyFromHeader("X-API-Key")),
//		middleware.AdmissionQueue(32, 64, 2*time.Second),
//	)
//	r.POST("/v1/chat", chat)
//
// Warning: gin trusts X-Forwarded-For from every proxy by default, so
// c.ClientIP() is whatever the client says. Call SetTrustedProxies before
// keying a limit by KeyFromClientIP; prefer an API key or an authenticated
// user id (KeyFromHeader, KeyFromContext).
//
// Every rejection names its layer as in sluice's vocabulary and is written in
// one place (WriteRejection, replaceable with WithResponder): status from
// sluice.HTTPStatus — 503 for load_shedder (overloaded) and admission_queue
// (queue_full, queue_timeout), 429 for user_rate_limiter (rate_limited) —,
// Retry-After in whole seconds rounded up, and the JSON body
//
//	{"error": {"layer": "...", "reason": "...", "message": "..."}}
//
// Each middleware records its decisions with otelx (WithTelemetry, default
// on the global providers): resilience.requests, active and queued counts,
// time in queue, and on the request's span (otelgin's server span) the
// attributes resilience.layer, resilience.outcome, error.type and
// resilience.policy.name. A 503 marks the span Error; a 429 leaves it Unset
// unless WithRateLimitSpanError.
//
// The user rate limiter speaks ulule/limiter's Store interface. Its default
// store is NewMemoryStore (bounded, smooth GCRA); fleets share NewGCRAStore
// (Redis, smooth, one round trip) or ulule's own fixed window
// (NewFixedWindowRedisStore). A Redis outage never panics: the limiter fails
// open by default (WithFailureMode), counts it, and skips Redis for a health
// period so that it costs at most one timeout per period.
package middleware
