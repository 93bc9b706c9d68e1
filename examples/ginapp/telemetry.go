package main

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
)

// Telemetry is the app's OpenTelemetry SDK: traces to OTLP/HTTP when
// OTEL_EXPORTER_OTLP_ENDPOINT is set, metrics on /metrics through the
// Prometheus exporter.
type Telemetry struct {
	TP      *sdktrace.TracerProvider
	MP      *sdkmetric.MeterProvider
	Metrics http.Handler
}

// NewTelemetry builds the providers and sets the global propagator (W3C
// traceparent and baggage), which is a no-op until set.
func NewTelemetry(ctx context.Context, cfg Config) (*Telemetry, error) {
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(cfg.ServiceName)))
	if err != nil {
		return nil, err
	}
	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if cfg.OTLP != "" {
		// The endpoint comes from cfg, not from otlptracehttp's own reading
		// of the process environment, so that the value LoadConfig checked
		// is the one used. As the OTLP spec says of the generic variable,
		// the traces path is appended to it. The other OTEL_EXPORTER_OTLP_*
		// variables (headers, timeout, ...) still apply.
		exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(cfg.OTLP+"/v1/traces"))
		if err != nil {
			return nil, err
		}
		topts = append(topts, sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(500*time.Millisecond)))
	}
	tp := sdktrace.NewTracerProvider(topts...)

	// The Go runtime and process metrics every Go service exports (go_*,
	// process_*), and sluice's metrics without the otel_scope_* labels that
	// would otherwise sit on every series.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	pexp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(pexp))
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return &Telemetry{TP: tp, MP: mp, Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}, nil
}

// Shutdown flushes and stops both providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	return errors.Join(t.TP.Shutdown(ctx), t.MP.Shutdown(ctx))
}
