// Package outbound makes calls to a vendor API safe under load: an
// http.Client whose transport is a chain of resilience layers built on
// failsafe-go policies.
//
//	client := outbound.NewClient(
//		outbound.WithName("openai"),
//		outbound.WithRetry(outbound.RetrySettings{MaxAttempts: 3}),
//		outbound.WithCircuitBreaker(outbound.BreakerSettings{}),
//		outbound.WithLocalRateLimit(outbound.LocalRateLimitSettings{Requests: 50, Period: time.Second, MaxWait: time.Second}),
//		outbound.WithBulkhead(outbound.BulkheadSettings{MaxConcurrent: 64, MaxWait: 2 * time.Second}),
//		outbound.WithAttemptTimeout(outbound.AttemptTimeoutSettings{Timeout: 30 * time.Second, Streaming: true}),
//	)
//	defer client.Close()
//	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, body)
//	req.Header.Set("Idempotency-Key", key) // makes the POST replay-safe
//	resp, err := client.Do(req)
//	if sluice.IsOverload(err) {
//		// shed: a layer said no, do not retry
//	}
//
// # Configuration
//
// Each layer has one option, which takes that layer's settings struct and
// nothing else (so a setting for another layer does not compile); the doc
// comment of each struct states every field's default, and a field left
// zero takes it. An impossible value panics at construction with
// "outbound: <Option>: ...". The transport is configured the same way,
// with NewTransport(TransportSettings{...}) given to WithTransport.
//
// # Order
//
// Whatever the order of the options, the chain is composed in one canonical
// order, outermost first:
//
//	pipeline span → policies → retry → circuit breaker → global rate limiter →
//	local rate limiter → bulkhead → call timeout → attempt span → transport
//
// and each position is there for a reason:
//
//   - The policies of WithPolicies (failsafe-go's hedgepolicy, fallback,
//     ...) wrap the whole chain, the first given outermost, so every
//     execution they start (a hedge, a fallback's primary) passes retry, the
//     breaker, the limits and the bulkhead like any call. Their executions
//     share the pipeline span; a response they do not return (a hedge's
//     loser) is drained and closed, so it holds no permit and no socket.
//     Their failsafe-go errors come back in sluice's vocabulary.
//   - Retry is outermost, so a backoff or Retry-After wait holds no bulkhead
//     permit, no rate-limit reservation and no socket (a test pins this).
//     Every retry passes the breaker and the limits again.
//   - The breaker comes before the limits, so an open circuit costs no quota
//     and no queueing; it counts vendor failures only (5xx, 429, timeouts,
//     transport errors), never our own rejections or other 4xx.
//   - The global (fleet-wide) limit comes before the local one, and both
//     before the bulkhead: a call waits for a rate permit without holding a
//     concurrency permit.
//   - The bulkhead sits closest to the socket and holds its permit until the
//     response body is closed or read to its end (EOF or an error), so a
//     stream counts for its whole life.
//   - The call timeout bounds one attempt and cancels it, closing its
//     socket; the attempt span (otelhttp) inside it records each attempt,
//     resends marked with http.request.resend_count.
//
// # Errors
//
// Every rejection is a *sluice.Error naming its layer and reason. Overload
// signals (queue_timeout, bulkhead_full, circuit_open, local rate_limited)
// come back after exactly one attempt: they are never retried. The global
// limiter's rate_limited and vendor_cooldown carry the exact RetryAfter and
// are retried like a vendor's Retry-After, only when it fits in the deadline. A caller's own
// cancellation or deadline comes back as its context's error. No wait starts
// that cannot end before the context's deadline: the retry layer fails at
// once with retry/deadline_exceeded, and a queue fails with queue_timeout.
//
// # Retries
//
// Only replay-safe requests are retried: idempotent methods, or any request
// with an Idempotency-Key header (RetrySettings.AddIdempotencyKey adds one).
// Bodies are replayed with GetBody; a response about to be retried is
// drained (at most 4 KiB) and closed first. The vendor's x-should-retry
// header is obeyed for one response: "false" stops its retry, "true" makes an
// error status (400 and above) retryable; a 1xx, 2xx or 3xx response is
// never retried, whatever it says. A failsafe-go budget caps
// pending retries at a share of the calls in flight (see RetrySettings.Budget
// for the exact bound).
//
// # Redirects
//
// NewClient follows no redirect: a 3xx comes back to the caller as the
// response, and a request never leaves for a host the caller did not name.
// Following a vendor's redirect would send the request's body, its
// Idempotency-Key and its API key to wherever the vendor points, and a
// redirect loop would cost ten requests. See NewClient to opt in.
//
// # Bounds on what a vendor sends
//
// Every number a vendor controls is bounded before the chain acts on it:
// response headers at 64 KiB (TransportSettings.MaxResponseHeaderBytes; over it the call
// fails with transport/response_header_too_large), the gaps in a response
// body by the read-idle timeout, a Retry-After by
// RetrySettings.MaxRetryAfter, what is drained of a retried response at
// 4 KiB, and what the global rate limiter reads to learn a call's usage at
// 1 MiB of JSON or 64 KiB per SSE line.
//
// # Fleet state in Redis
//
// WithGlobalRateLimit shares a vendor quota (requests and tokens per period)
// and the vendor's cooldowns across every process using the same Redis and
// name; with a nil Client it limits in this process only.
// BreakerSettings.Shared shares the local breaker's open state, with a
// quorum and one fleet-wide half-open probe. Both take a dedicated
// redis.UniversalClient (standalone or Cluster), do no I/O at construction,
// fall back per their failure mode while Redis is down (counted as
// resilience.degraded) and run goroutines that Close stops:
//
//	rt := outbound.NewRoundTripper(
//		outbound.WithName("openai"),
//		outbound.WithCircuitBreaker(outbound.BreakerSettings{
//			Shared: &outbound.SharedBreakerSettings{Client: rdb}}),
//		outbound.WithGlobalRateLimit(outbound.GlobalRateLimitSettings{Client: rdb,
//			Requests: 500, Period: time.Minute, MaxWait: time.Second}),
//	)
//	defer rt.Close()
//	client := &http.Client{Transport: rt}
//
// # Telemetry
//
// WithTelemetry injects the providers (otelx.New with
// otelx.WithTracerProvider and otelx.WithMeterProvider); without it the
// chain uses the global ones at the time NewClient is called. Each call makes:
//
//   - an internal span sluice.outbound wrapping every attempt, ended when the
//     call fails or its response body is closed or read to its end (EOF or
//     an error). Its attributes state the final verdict only:
//     resilience.layer, resilience.outcome, error.type and
//     resilience.retry_after for a rejection, with resilience.policy.name
//     (WithName) always, resilience.retry.attempts when the retry layer is
//     present and resilience.circuit_breaker.state (at the last attempt's
//     admission) when the breaker is. A rejection of one attempt that a retry made good
//     is a sluice.rejected event on it, not an attribute;
//   - one otelhttp client span per attempt, ended when that attempt's body
//     is closed (the retry layer drains and closes the responses it
//     retries), with http.request.resend_count on resends;
//   - a sluice.retry.backoff span per wait, with resilience.retry.delay
//     (seconds) and resilience.retry.cause (status code, reason or error
//     type).
//
// Metrics: resilience.requests by layer, policy, outcome and error.type
// (transport rejections are counted by the chain, whichever transport sends);
// resilience.request.active and resilience.request.queued; the
// resilience.request.time_in_queue histogram; the
// resilience.circuit_breaker.state gauge; resilience.retry.attempts.
//
// Trace context reaches the vendor (traceparent) through otelhttp's
// propagator, which by default is the global one: a no-op until the
// application sets one, for example
//
//	otel.SetTextMapPropagator(propagation.TraceContext{})
//
// or passes it to this chain alone with
// WithAttemptSpanOptions(otelhttp.WithPropagators(propagation.TraceContext{})).
// Propagation works even when sluice's own telemetry is off (noop providers).
//
// Clients and their RoundTrippers are safe for concurrent use.
package outbound
