package outbound

import (
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/otelx"
	"github.com/sluice-go/sluice/status"
)

// NewClient returns a *Client whose Transport is the outbound chain built by
// NewRoundTripper (a *RoundTripper). The client has no Timeout of its own:
// bound a call with its request's context deadline, which every layer
// honours. Call Close when done with it: a chain with WithGlobalRateLimit or
// a shared breaker (BreakerSettings.Shared) runs goroutines until then.
//
// The client follows no redirect: a 3xx response is returned to the caller
// as it came, Location header and body included (close it like any other).
// A vendor API does not redirect its calls; one that does is misconfigured
// or hostile, and following it would replay the request's body, its
// Idempotency-Key and every credential header other than Authorization to
// wherever the vendor points (net/http strips only Authorization, Cookie and
// WWW-Authenticate, and only when the domain changes), while a redirect loop
// would cost ten requests and end in an error that reads like an unreachable
// vendor. The retry layer does not retry a 3xx, and the breaker counts it as
// a success. To follow redirects, set the returned client's CheckRedirect,
// knowingly. An http.Client you build yourself around NewRoundTripper has
// net/http's default (up to 10 redirects); give it
//
//	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
//
// for the same behaviour.
//
// NewClient panics, with a message starting "outbound: ", on impossible
// settings (see each option). It is safe for concurrent use.
func NewClient(opts ...Option) *Client {
	rt := NewRoundTripper(opts...)
	return &Client{Client: http.Client{Transport: rt, CheckRedirect: noRedirects}, chain: rt}
}

// Client is an http.Client over the outbound chain, built by NewClient. Use
// it as an http.Client (Do, Get, Post, CloseIdleConnections); Close releases
// the chain. It is safe for concurrent use.
type Client struct {
	http.Client
	chain *RoundTripper
}

// Close closes the chain NewClient built (RoundTripper.Close), even if
// Transport has been replaced since: it stops the Redis-backed layers'
// background work and closes idle connections. It is idempotent.
func (c *Client) Close() error { return c.chain.Close() }

// noRedirects is NewClient's redirect policy: return the 3xx to the caller.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// NewRoundTripper returns the outbound chain as an http.RoundTripper, in the
// canonical order whatever the order of opts:
//
//	pipeline span → policies → retry → circuit breaker → global rate limiter →
//	local rate limiter → bulkhead → call timeout → attempt span → transport
//
// Layers whose option is absent are left out; the spans and the transport are
// always there. See the package documentation for why this order. Call Close
// when done with it.
func NewRoundTripper(opts ...Option) *RoundTripper {
	c := config{name: sluice.DefaultName}
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
	out := &RoundTripper{transport: c.transport}
	e := &env{tel: c.tel, name: c.name, closers: &out.closers}

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
	if c.status != nil {
		registerStatus(c.status, out, &c)
	}
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
	// slotPolicies is WithPolicies': failsafe-go policies that wrap the
	// whole chain, so every execution they start passes every layer.
	slotPolicies slot = iota
	slotRetry
	slotCircuitBreaker
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
	status          *status.Registry
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
// sluice.DefaultName ("default").
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

// BulkheadSettings configures WithBulkhead.
type BulkheadSettings struct {
	// MaxConcurrent caps the calls that hold a connection to the vendor at
	// once. Required: at least 1 (it is the one number that must fit the
	// vendor's contract, so it has no default).
	MaxConcurrent int
	// MaxWait is how long a call waits for a permit, never past its
	// context's deadline; when the wait runs out the call fails with
	// bulkhead/queue_timeout. Default 0: no waiting, a full bulkhead fails
	// the call at once with bulkhead/bulkhead_full. Waiters are served
	// highest priority first (failsafe-go's priority.FromContext, which
	// middleware.AdmissionQueueSettings.Priority sets on the inbound side;
	// none is priority.Medium), first come first served within a priority.
	MaxWait time.Duration
	// Adaptive makes the cap follow the vendor's capacity, with
	// MaxConcurrent as its ceiling: it starts at MaxConcurrent, shrinks to
	// the concurrency at which the vendor's latency (to the response
	// headers) was its least when the latency rises more than 20% above that
	// baseline, shrinks by a quarter when the vendor answers 429 or 503 or a
	// call times out, and otherwise grows by a quarter (at least one) per
	// window of calls that used it at the baseline latency, never below 1. A window is at least one baseline latency and
	// max(4, cap) calls. The transport's socket cap still holds. Default
	// false: the cap is MaxConcurrent.
	Adaptive bool
}

// WithBulkhead caps the calls that hold a connection to the vendor at
// MaxConcurrent. The permit is held until the response body is closed or
// read to its end (EOF or an error), so a streamed response counts for its
// whole life. Panics if MaxConcurrent < 1 or MaxWait < 0.
func WithBulkhead(s BulkheadSettings) Option {
	if s.MaxConcurrent < 1 {
		panic("outbound: WithBulkhead: MaxConcurrent must be at least 1")
	}
	if s.MaxWait < 0 {
		panic("outbound: WithBulkhead: negative MaxWait")
	}
	return func(c *config) {
		c.setSlot(slotBulkhead, bulkheadLayer{max: s.MaxConcurrent, maxWait: s.MaxWait, adaptive: s.Adaptive}, "WithBulkhead")
	}
}

// AttemptTimeoutSettings configures WithAttemptTimeout.
type AttemptTimeoutSettings struct {
	// Timeout bounds each attempt. Required: positive.
	Timeout time.Duration
	// Streaming makes Timeout bound the attempt only until the response
	// headers arrive; after that the body may outlive it, and the
	// transport's read-idle timeout (TransportSettings.ReadIdleTimeout)
	// guards the stream. Default false: Timeout bounds the attempt until its
	// response body is closed or read to its end.
	Streaming bool
}

// WithAttemptTimeout bounds each attempt, from the moment it passes the
// bulkhead until its response body is closed or read to its end (EOF or an
// error), or with Streaming until its response headers arrive. When it
// fires the attempt's request is canceled, which closes its socket, and the
// attempt fails with call_timeout/call_timeout (which the retry layer may
// retry). Panics if Timeout <= 0.
func WithAttemptTimeout(s AttemptTimeoutSettings) Option {
	if s.Timeout <= 0 {
		panic("outbound: WithAttemptTimeout: Timeout must be positive")
	}
	return func(c *config) {
		c.setSlot(slotCallTimeout, callTimeoutLayer{d: s.Timeout, stream: s.Streaming}, "WithAttemptTimeout")
	}
}
