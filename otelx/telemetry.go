package otelx

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-go/sluice"
)

// Metric names of the design contract.
const (
	MetricRequests      = "resilience.requests"
	MetricActive        = "resilience.request.active"
	MetricQueued        = "resilience.request.queued"
	MetricTimeInQueue   = "resilience.request.time_in_queue"
	MetricCircuitState  = "resilience.circuit_breaker.state"
	MetricRetryAttempts = "resilience.retry.attempts"
	MetricDegraded      = "resilience.degraded"
)

// Option configures New.
type Option func(*config)

type config struct {
	tp trace.TracerProvider
	mp metric.MeterProvider
}

// WithTracerProvider sets the tracer provider; nil or absent means
// otel.GetTracerProvider() at the time New is called.
func WithTracerProvider(tp trace.TracerProvider) Option { return func(c *config) { c.tp = tp } }

// WithMeterProvider sets the meter provider; nil or absent means
// otel.GetMeterProvider() at the time New is called.
func WithMeterProvider(mp metric.MeterProvider) Option { return func(c *config) { c.mp = mp } }

// Telemetry holds sluice's tracer and instruments. It is safe for concurrent
// use. The zero value is not usable; a nil *Telemetry records nothing.
type Telemetry struct {
	tp            trace.TracerProvider
	mp            metric.MeterProvider
	tracer        trace.Tracer
	requests      metric.Int64Counter
	active        metric.Int64UpDownCounter
	queued        metric.Int64UpDownCounter
	timeInQueue   metric.Float64Histogram
	circuitState  metric.Int64Gauge
	retryAttempts metric.Int64Counter
	degraded      metric.Int64Counter
}

// New returns a Telemetry on the given (or global) providers. Instrument
// creation errors are reported to otel.Handle and leave a no-op instrument.
func New(opts ...Option) *Telemetry {
	var c config
	for _, o := range opts {
		o(&c)
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	m := c.mp.Meter(ScopeName)
	t := &Telemetry{tp: c.tp, mp: c.mp, tracer: c.tp.Tracer(ScopeName)}
	var err error
	var errs []error
	t.requests, err = m.Int64Counter(MetricRequests, metric.WithUnit("{request}"),
		metric.WithDescription("Decisions of sluice layers, by layer, policy, outcome (allowed or why not) and error.type."))
	errs = append(errs, err)
	t.active, err = m.Int64UpDownCounter(MetricActive, metric.WithUnit("{request}"),
		metric.WithDescription("Requests holding a permit of a concurrency layer."))
	errs = append(errs, err)
	t.queued, err = m.Int64UpDownCounter(MetricQueued, metric.WithUnit("{request}"),
		metric.WithDescription("Requests waiting in a layer's queue."))
	errs = append(errs, err)
	t.timeInQueue, err = m.Float64Histogram(MetricTimeInQueue, metric.WithUnit("s"),
		metric.WithDescription("Time a request waited in a layer's queue, admitted or not."),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
	errs = append(errs, err)
	t.circuitState, err = m.Int64Gauge(MetricCircuitState, metric.WithUnit("{state}"),
		metric.WithDescription("1 for the circuit breaker's current state, 0 for the others."))
	errs = append(errs, err)
	t.retryAttempts, err = m.Int64Counter(MetricRetryAttempts, metric.WithUnit("{attempt}"),
		metric.WithDescription("Retry attempts (resends) made by the retry layer."))
	errs = append(errs, err)
	t.degraded, err = m.Int64Counter(MetricDegraded, metric.WithUnit("{event}"),
		metric.WithDescription("Times a Redis-backed layer fell back to its failure mode."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		otel.Handle(err)
	}
	return t
}

// Tracer returns sluice's tracer.
func (t *Telemetry) Tracer() trace.Tracer { return t.tracer }

// TracerProvider returns the tracer provider t was built on, for the
// instrumentation sluice wraps (otelhttp), so that it reports where sluice's
// own spans go.
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tp }

// MeterProvider returns the meter provider t was built on.
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.mp }

// Recorder returns a recorder for one layer and policy name. Build it once, at
// construction of the layer: it precomputes its attribute sets so that
// recording an allowed decision does not allocate.
func (t *Telemetry) Recorder(layer sluice.Layer, policy string) *Recorder {
	r := &Recorder{t: t, layer: layer, policy: policy, rejected: map[sluice.Reason]rejectAttrs{}}
	base := []attribute.KeyValue{AttrLayer.String(string(layer)), AttrPolicyName.String(policy)}
	baseSet := metric.WithAttributeSet(attribute.NewSet(base...))
	r.baseAdd = []metric.AddOption{baseSet}
	r.baseRecord = []metric.RecordOption{baseSet}
	r.allowed = []metric.AddOption{
		metric.WithAttributeSet(attribute.NewSet(append(base[:2:2], AttrOutcome.String(string(OutcomeAllowed)))...))}
	for _, reason := range layer.Reasons() {
		r.rejected[reason] = newRejectAttrs(base, reason, OutcomeOf(reason))
	}
	r.canceled = newRejectAttrs(base, "canceled", OutcomeCanceled)
	r.zero()
	return r
}

// zero makes the layer's counters exist, at zero, from the moment the layer
// is built: a dashboard or an alert on a rate of rejections sees a series
// before the first rejection (Prometheus' advice for counters with known
// labels), instead of "no data" that looks like a broken scrape.
func (r *Recorder) zero() {
	ctx := context.Background()
	r.t.requests.Add(ctx, 0, r.allowed...)
	for _, a := range r.rejected {
		r.t.requests.Add(ctx, 0, a.metric...)
	}
	switch r.layer {
	case sluice.LayerUserRateLimiter, sluice.LayerGlobalRateLimiter, sluice.LayerCircuitBreaker:
		r.t.degraded.Add(ctx, 0, r.baseAdd...)
	case sluice.LayerRetry:
		r.t.retryAttempts.Add(ctx, 0, r.baseAdd...)
	}
}

type rejectAttrs struct {
	metric []metric.AddOption
	span   []attribute.KeyValue
}

func newRejectAttrs(base []attribute.KeyValue, reason sluice.Reason, o Outcome) rejectAttrs {
	kv := append(base[:2:2], AttrOutcome.String(string(o)), AttrErrorType.String(string(reason)))
	return rejectAttrs{metric: []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(kv...))}, span: kv}
}

// Recorder records one layer's decisions on the span in the context and on
// the metrics. A nil *Recorder records nothing. Safe for concurrent use.
type Recorder struct {
	t      *Telemetry
	layer  sluice.Layer
	policy string
	// The option slices are built once: passing a prebuilt slice to a
	// variadic Add or Record does not allocate, passing one option does.
	baseAdd    []metric.AddOption
	baseRecord []metric.RecordOption
	allowed    []metric.AddOption
	rejected   map[sluice.Reason]rejectAttrs
	canceled   rejectAttrs
	// degradations counts Degraded calls, for the status page.
	degradations atomic.Int64
}

// Layer returns the recorder's layer.
func (r *Recorder) Layer() sluice.Layer { return r.layer }

// Allowed counts an admitted request. It touches no span.
func (r *Recorder) Allowed(ctx context.Context) {
	if r == nil {
		return
	}
	r.t.requests.Add(ctx, 1, r.allowed...)
}

// Rejected counts e and records it on the span in ctx: resilience.layer,
// resilience.outcome, error.type, resilience.policy.name and, when known,
// resilience.retry_after. It does not set the span status: the inbound
// status code or the outbound caller decides that. A nil e is ignored.
func (r *Recorder) Rejected(ctx context.Context, e *sluice.Error) {
	if r == nil || e == nil {
		return
	}
	a, span := r.count(ctx, e)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(a.span...)
	if e.RetryAfter > 0 {
		span.SetAttributes(AttrRetryAfter.Float64(e.RetryAfter.Seconds()))
	}
	if e.Attempts > 0 {
		span.SetAttributes(AttrRetryAttempts.Int(e.Attempts))
	}
}

// count adds e to resilience.requests and returns its attributes and the span
// in ctx.
func (r *Recorder) count(ctx context.Context, e *sluice.Error) (rejectAttrs, trace.Span) {
	a, ok := r.rejected[e.Reason]
	if !ok {
		a = newRejectAttrs([]attribute.KeyValue{AttrLayer.String(string(r.layer)), AttrPolicyName.String(r.policy)},
			e.Reason, OutcomeOf(e.Reason))
	}
	r.t.requests.Add(ctx, 1, a.metric...)
	return a, trace.SpanFromContext(ctx)
}

// RejectedAttempt counts e like Rejected, but records it on the span in ctx
// as an EventRejected event rather than as attributes. Use it for a decision
// about one attempt of a call that a later attempt may make good: the span's
// attributes then state only the call's final verdict (see SetVerdict). A nil
// e is ignored.
func (r *Recorder) RejectedAttempt(ctx context.Context, e *sluice.Error) {
	if r == nil || e == nil {
		return
	}
	a, span := r.count(ctx, e)
	if !span.IsRecording() {
		return
	}
	attrs := a.span
	if e.RetryAfter > 0 {
		attrs = append(attrs[:len(attrs):len(attrs)], AttrRetryAfter.Float64(e.RetryAfter.Seconds()))
	}
	span.AddEvent(EventRejected, trace.WithAttributes(attrs...))
}

// SetVerdict records a call's final rejection e on span: resilience.layer,
// resilience.outcome, error.type and, when known, resilience.retry_after and
// resilience.retry.attempts, and the status Error with the reason as its
// description. It counts nothing: the deciding layer's Recorder did. A nil e
// or a span that is not recording is ignored.
func SetVerdict(span trace.Span, e *sluice.Error) {
	if e == nil || !span.IsRecording() {
		return
	}
	span.SetAttributes(AttrLayer.String(string(e.Layer)), AttrOutcome.String(string(OutcomeOf(e.Reason))),
		AttrErrorType.String(string(e.Reason)))
	if e.RetryAfter > 0 {
		span.SetAttributes(AttrRetryAfter.Float64(e.RetryAfter.Seconds()))
	}
	if e.Attempts > 0 {
		span.SetAttributes(AttrRetryAttempts.Int(e.Attempts))
	}
	span.SetStatus(codes.Error, string(e.Reason))
}

// Canceled counts a request whose caller gave up while this layer held it
// (outcome canceled, error.type canceled) and records it on the span.
func (r *Recorder) Canceled(ctx context.Context) {
	if r == nil {
		return
	}
	r.t.requests.Add(ctx, 1, r.canceled.metric...)
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(r.canceled.span...)
	}
}

// QueueWait records the time a request waited in this layer's queue, on the
// histogram and as resilience.queue.wait_time on the span.
func (r *Recorder) QueueWait(ctx context.Context, d time.Duration) {
	if r == nil {
		return
	}
	r.t.timeInQueue.Record(ctx, d.Seconds(), r.baseRecord...)
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(AttrQueueWait.Float64(d.Seconds()))
	}
}

// ActiveAdd adds n (1 or -1) to the requests holding this layer's permits.
func (r *Recorder) ActiveAdd(ctx context.Context, n int64) {
	if r == nil {
		return
	}
	r.t.active.Add(ctx, n, r.baseAdd...)
}

// QueuedAdd adds n (1 or -1) to the requests waiting in this layer's queue.
func (r *Recorder) QueuedAdd(ctx context.Context, n int64) {
	if r == nil {
		return
	}
	r.t.queued.Add(ctx, n, r.baseAdd...)
}

// Degradations returns how many times Degraded was called on r (0 for a nil
// r): the layer's resilience.degraded count since it was built, read by the
// status page.
func (r *Recorder) Degradations() int64 {
	if r == nil {
		return 0
	}
	return r.degradations.Load()
}

// Degraded counts a fallback of a Redis-backed layer and marks the span in
// ctx with resilience.degraded=true.
func (r *Recorder) Degraded(ctx context.Context) {
	if r == nil {
		return
	}
	r.degradations.Add(1)
	r.t.degraded.Add(ctx, 1, r.baseAdd...)
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(AttrDegraded.Bool(true), AttrLayer.String(string(r.layer)))
	}
}

// CircuitState records the breaker's current state (CircuitClosed,
// CircuitOpen or CircuitHalfOpen): 1 for it and 0 for the others.
func (r *Recorder) CircuitState(ctx context.Context, state string) {
	if r == nil {
		return
	}
	for _, s := range [...]string{CircuitClosed, CircuitOpen, CircuitHalfOpen} {
		v := int64(0)
		if s == state {
			v = 1
		}
		r.t.circuitState.Record(ctx, v, metric.WithAttributes(AttrLayer.String(string(r.layer)),
			AttrPolicyName.String(r.policy), AttrCircuitState.String(s)))
	}
}

// RetryAttempt counts one resend by the retry layer.
func (r *Recorder) RetryAttempt(ctx context.Context) {
	if r == nil {
		return
	}
	r.t.retryAttempts.Add(ctx, 1, r.baseAdd...)
}

// MarkError sets the span in ctx to status Error with the error's reason as
// description, for 5xx-class outcomes.
func MarkError(ctx context.Context, e *sluice.Error) {
	if e == nil {
		return
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetStatus(codes.Error, string(e.Reason))
	}
}
