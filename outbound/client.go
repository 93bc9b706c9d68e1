package outbound

import (
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/otelx"
)

// NewClient returns an *http.Client whose Transport is the outbound chain
// built by NewRoundTripper (a *RoundTripper). The client has no Timeout of its
// own: bound a call with its request's context deadline, which every layer
// honours. A chain with WithGlobalRateLimit or WithSharedCircuitBreaker holds
// goroutines: release them with c.Transport.(*RoundTripper).Close(), or build
// the chain with NewRoundTripper and keep it.
//
// NewClient panics, with a message starting "outbound: ", on impossible
// settings (see each option). It is safe for concurrent use.
func NewClient(opts ...Option) *http.Client {
	return &http.Client{Transport: NewRoundTripper(opts...)}
}

// NewRoundTripper returns the outbound chain as an http.RoundTripper, in the
// canonical order whatever the order of opts:
//
//	pipeline span → retry → circuit breaker → global rate limiter →
//	local rate limiter → bulkhead → call timeout → attempt span → transport
//
// Layers whose option is absent are left out; the spans and the transport are
// always there. See the package documentation for why this order. Call Close
// when done with it.
func NewRoundTripper(opts ...Option) *RoundTripper {
	c := config{name: "default"}
	for _, o := range opts {
		if o == nil {
			panic("outbound: nil Option")
		}
		o(&c)
	}
	if c.transport == nil {
		c.transport = defaultTransport()
	}
	if c.tel == nil {
		c.tel = otelx.New()
	}
	if c.shared != nil && c.slots[slotCircuitBreaker] == nil {
		panic("outbound: WithSharedCircuitBreaker needs WithCircuitBreaker (the local breaker it shares)")
	}
	out := &RoundTripper{transport: c.transport}
	e := &env{tel: c.tel, name: c.name, shared: c.shared, closers: &out.closers}

	var rt http.RoundTripper = attemptRoundTripper{next: c.transport,
		rec: c.tel.Recorder(sluice.LayerTransport, c.name)}
	// The attempt spans and otelhttp's metrics go to the chain's providers;
	// options given with WithAttemptSpanOptions come later and win.
	spanOpts := append([]otelhttp.Option{otelhttp.WithTracerProvider(c.tel.TracerProvider()),
		otelhttp.WithMeterProvider(c.tel.MeterProvider())}, c.attemptSpanOpts...)
	rt = otelhttp.NewTransport(rt, spanOpts...)
	for s := numSlots - 1; s >= 0; s-- {
		if l := c.slots[s]; l != nil {
			rt = l.wrap(rt, e)
		}
	}
	out.rt = &pipelineRoundTripper{next: rt, tracer: c.tel.Tracer(), policy: otelx.AttrPolicyName.String(c.name)}
	return out
}

// RoundTripper is the outbound chain built by NewRoundTripper. It is safe for
// concurrent use.
type RoundTripper struct {
	rt        http.RoundTripper
	transport http.RoundTripper
	closers   []func() error
	closeOnce sync.Once
	closeErr  error
}

// RoundTrip sends req through the chain.
func (r *RoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	return r.rt.RoundTrip(req)
}

// CloseIdleConnections closes the transport's idle connections, when it has
// a CloseIdleConnections method (http.Client.CloseIdleConnections calls this).
func (r *RoundTripper) CloseIdleConnections() {
	if t, ok := r.transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}

// Close stops what the Redis-backed layers run in the background (the global
// rate limiter's heartbeat, the shared breaker's subscriber and refresh) and
// closes idle connections. It does not close the Redis clients given in the
// settings. Calls made after Close still work, with the fleet state as it
// was last known. It is idempotent and returns nil for a chain without
// Redis-backed layers.
func (r *RoundTripper) Close() error {
	r.closeOnce.Do(func() {
		for i := len(r.closers) - 1; i >= 0; i-- {
			if err := r.closers[i](); err != nil && r.closeErr == nil {
				r.closeErr = err
			}
		}
		r.CloseIdleConnections()
	})
	return r.closeErr
}

// Option configures NewClient and NewRoundTripper.
type Option func(*config)

// slot is a position in the canonical order, outermost first. Each option
// fills its slot; NewRoundTripper composes the filled slots in this order, so
// the order of the options never matters.
type slot int

const (
	slotRetry slot = iota
	slotCircuitBreaker
	// slotGlobalRateLimiter is WithGlobalRateLimit's. WithSharedCircuitBreaker
	// fills no slot: it extends the breaker of slotCircuitBreaker.
	slotGlobalRateLimiter
	slotLocalRateLimiter
	slotBulkhead
	slotCallTimeout
	numSlots
)

// layer is one link of the chain: it wraps next in its RoundTripper.
type layer interface {
	wrap(next http.RoundTripper, e *env) http.RoundTripper
}

// env is what every layer gets at construction.
type env struct {
	tel     *otelx.Telemetry
	name    string
	shared  *SharedBreakerSettings
	closers *[]func() error
}

// onClose registers f to run at RoundTripper.Close.
func (e *env) onClose(f func() error) { *e.closers = append(*e.closers, f) }

type config struct {
	transport       http.RoundTripper
	tel             *otelx.Telemetry
	name            string
	attemptSpanOpts []otelhttp.Option
	slots           [numSlots]layer
	shared          *SharedBreakerSettings
}

// setSlot fills s, refusing to fill it twice: two options for one layer are
// a programming error, not a preference.
func (c *config) setSlot(s slot, l layer, what string) {
	if c.slots[s] != nil {
		panic("outbound: " + what + " given twice")
	}
	c.slots[s] = l
}

// WithTransport sets the RoundTripper that sends each attempt; nil means the
// default transport (NewTransport with its defaults).
func WithTransport(rt http.RoundTripper) Option { return func(c *config) { c.transport = rt } }

// WithTelemetry sets the telemetry; nil or absent means otelx.New() on the
// global providers, at the time NewClient is called.
func WithTelemetry(t *otelx.Telemetry) Option { return func(c *config) { c.tel = t } }

// WithName sets the policy name recorded as resilience.policy.name on every
// span and metric of this chain, typically the vendor's name. Default
// "default".
func WithName(name string) Option { return func(c *config) { c.name = name } }

// WithAttemptSpanOptions passes options to the otelhttp.NewTransport that
// makes each attempt's client span, after the chain's own
// otelhttp.WithTracerProvider and otelhttp.WithMeterProvider (those of
// WithTelemetry), which they may override. otelhttp.WithPropagators chooses
// how the trace context reaches the vendor; the default is the global
// propagator, a no-op until the application sets one.
func WithAttemptSpanOptions(opts ...otelhttp.Option) Option {
	return func(c *config) { c.attemptSpanOpts = append(c.attemptSpanOpts, opts...) }
}

// WithBulkhead caps the calls that hold a connection to the vendor at
// maxConcurrent. A call waits at most maxWait for a permit, and never past its
// context's deadline: when the wait runs out the call fails with
// bulkhead/queue_timeout; with maxWait zero a full bulkhead fails it at once
// with bulkhead/bulkhead_full. The permit is held until the response body is
// closed or read to EOF, so a streamed response counts for its whole life.
// Panics if maxConcurrent < 1 or maxWait < 0.
func WithBulkhead(maxConcurrent int, maxWait time.Duration) Option {
	if maxConcurrent < 1 {
		panic("outbound: WithBulkhead: maxConcurrent must be at least 1")
	}
	if maxWait < 0 {
		panic("outbound: WithBulkhead: negative maxWait")
	}
	return func(c *config) {
		c.setSlot(slotBulkhead, bulkheadLayer{max: maxConcurrent, maxWait: maxWait}, "WithBulkhead")
	}
}

// WithAttemptTimeout bounds each attempt, from the moment it passes the
// bulkhead until its response body is closed or read to EOF. When it fires the
// attempt's request is canceled, which closes its socket, and the attempt
// fails with call_timeout/call_timeout (which the retry layer may retry).
// Panics if d <= 0. See WithStreamingAttemptTimeout for streamed responses.
func WithAttemptTimeout(d time.Duration) Option {
	if d <= 0 {
		panic("outbound: WithAttemptTimeout: duration must be positive")
	}
	return func(c *config) {
		c.setSlot(slotCallTimeout, callTimeoutLayer{d: d}, "WithAttemptTimeout")
	}
}

// WithStreamingAttemptTimeout is WithAttemptTimeout for streams: d bounds the
// attempt only until the response headers arrive. After that the body may
// outlive d, and the transport's read-idle timeout guards the stream.
func WithStreamingAttemptTimeout(d time.Duration) Option {
	if d <= 0 {
		panic("outbound: WithStreamingAttemptTimeout: duration must be positive")
	}
	return func(c *config) {
		c.setSlot(slotCallTimeout, callTimeoutLayer{d: d, stream: true}, "WithAttemptTimeout")
	}
}
