// Package sluice holds the vocabulary shared by every sluice layer: the layer
// names, the rejection reasons and the one error type that carries them.
//
// The layers themselves live in sub-packages:
//
//   - middleware: inbound Gin middlewares (load shedder, per-user rate limit,
//     admission queue, deadline);
//   - outbound: the http.RoundTripper chain (retry, circuit breaker, global and
//     local rate limits, bulkhead, call timeout, transport);
//   - otelx: OpenTelemetry attribute keys and instruments;
//   - status: a live status page of the layers, an http.Handler to mount on
//     an internal listener.
//
// Every rejection is an *Error. Match a condition with errors.Is and read the
// details with errors.As:
//
//	resp, err := client.Do(req)
//	if errors.Is(err, sluice.ErrQueueTimeout) {
//		// overloaded: fail fast, do not retry
//	}
//	var e *sluice.Error
//	if errors.As(err, &e) {
//		log.Printf("layer=%s reason=%s retry_after=%s", e.Layer, e.Reason, e.RetryAfter)
//	}
package sluice
