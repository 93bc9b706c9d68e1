// Package middleware protects a Gin service under load: a request
// deadline, a load shedder, a per-user rate limiter, a body buffer and an
// admission queue, each a gin.HandlerFunc with a net/http twin
// (func(http.Handler) http.Handler) that takes the same settings. Each is
// configured by one settings struct whose zero fields take the documented
// defaults; a setting given to a middleware it does not concern does not
// compile.
//
// Wire them in this order, the same everywhere in sluice's docs:
//
//	otelgin → Deadline → LoadShedder → UserRateLimit → BufferBody → AdmissionQueue → handler
//
// otelgin first, so every decision is recorded on the server span. Deadline
// next: the request's budget starts when it arrives, so the body's arrival
// and the queue wait count against it, and the admission queue never waits
// past it. Then the cheapest rejections (the shedder, then the per-user
// limit). BufferBody just before the queue: a request takes its place there
// only once its bounded body has arrived, so a slow upload never holds an
// admission slot. The admission queue last, closest to the work it protects.
//
//	r := gin.New()
//	rdb := fleet.NewClient(&redis.Options{Addr: "redis:6379"}) // tight timeouts, no retries
//	r.Use(
//		otelgin.Middleware("chat"),
//		middleware.Deadline(middleware.DeadlineSettings{Budget: 10 * time.Second}),
//		middleware.LoadShedder(middleware.LoadShedderSettings{
//			MaxInFlight: 200, Priority: middleware.PriorityFromHeader("")}),
//		middleware.UserRateLimit(middleware.UserRateLimitSettings{
//			Store: middleware.NewGCRAStore(rdb, middleware.RedisStoreSettings{}),
//			Rate:  limiter.Rate{Period: time.Second, Limit: 10},
//			Key:   middleware.KeyFromHeader("X-API-Key")}),
//		middleware.BufferBody(middleware.BufferBodySettings{MaxBytes: 64 << 10, Timeout: 10 * time.Second}), // 413, 408
//		middleware.AdmissionQueue(middleware.AdmissionQueueSettings{MaxActive: 32, MaxWaiting: 64, Timeout: 2 * time.Second}),
//	)
//	r.POST("/v1/chat", chat)
//	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
//
// Deadline bounds the connection too: the request's body must arrive, and
// every write be done, one second (DeadlineGrace) after its deadline, so a client that stops reading a stream cannot hold the handler,
// nor what the handler holds (a vendor permit), past the deadline. Give the
// http.Server the usual bounds as well (ReadHeaderTimeout, IdleTimeout, and
// ReadTimeout and WriteTimeout no shorter than what Deadline allows): a
// slow client is then cut off wherever it stalls.
//
// The user rate limiter keys requests with a KeyFunc on the *http.Request:
// KeyFromHeader (an API key), KeyFromContext (an identity an authentication
// middleware put in the request's context; gin's c.Set values are not
// reachable from the request, see KeyFromContext) or KeyFromRemoteAddr (the
// peer's IP, never a header such as X-Forwarded-For, which any client can
// write).
//
// Every rejection names its layer as in sluice's vocabulary and is written in
// one place (WriteRejection, replaceable with each settings' Responder): it
// writes sluice.ProblemOf(err), the same answer sluice gives outbound errors
// — 503 for load_shedder (overloaded) and admission_queue (queue_full,
// queue_timeout), 429 for user_rate_limiter (rate_limited) —, Retry-After in
// whole seconds rounded up, and the JSON body
//
//	{"error": {"layer": "...", "reason": "...", "message": "..."}}
//
// BufferBody's refusals (413, 408, 400) use the same body with the layer
// "request".
//
// Each middleware records its decisions with otelx (the settings'
// Telemetry, default on the global providers): resilience.requests, active
// and queued counts, time in queue, and on the request's span (otelgin's
// server span) the attributes resilience.layer, resilience.outcome,
// error.type and resilience.policy.name (the settings' Name, default
// sluice.DefaultName). A 503 marks the span Error; a 429 leaves it Unset
// unless UserRateLimitSettings.SpanErrorOn429.
//
// The user rate limiter speaks ulule/limiter's Store interface. Its default
// store is NewMemoryStore (bounded, smooth GCRA); fleets share NewGCRAStore
// (Redis, smooth, one round trip) or ulule's own fixed window
// (NewFixedWindowRedisStore). A Redis outage never panics: the limiter
// fails open by default (UserRateLimitSettings.FailureMode), counts it, and
// skips Redis for a health period so that it costs at most one timeout per
// period.
package middleware
