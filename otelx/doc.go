// Package otelx is sluice's OpenTelemetry vocabulary: the span attribute keys,
// the metric instruments and a per-layer Recorder that every sluice layer uses
// to say what it decided.
//
// It imports the OpenTelemetry API only. Providers come from options and fall
// back to the globals (otel.GetTracerProvider, otel.GetMeterProvider), which
// are no-ops until the application installs an SDK:
//
//	tel := otelx.New(otelx.WithTracerProvider(tp), otelx.WithMeterProvider(mp))
//	rec := tel.Recorder(sluice.LayerBulkhead, "vendor")
//	rec.Allowed(ctx)
//	rec.Rejected(ctx, sluice.NewError(sluice.LayerBulkhead, sluice.ReasonQueueTimeout, nil))
//
// Users rarely call this package directly: middleware and outbound accept a
// *Telemetry through their options (or build one from the global providers).
package otelx
