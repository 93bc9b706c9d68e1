package outbound

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/connlimit"
)

// Defaults of NewTransport, for every option not given.
const (
	DefaultMaxConns              = 100
	DefaultIdleConnTimeout       = 90 * time.Second
	DefaultPoolTimeout           = 5 * time.Second
	DefaultConnectTimeout        = 5 * time.Second
	DefaultTLSHandshakeTimeout   = 10 * time.Second
	DefaultResponseHeaderTimeout = 30 * time.Second
	DefaultWriteTimeout          = 10 * time.Second
	DefaultReadIdleTimeout       = 30 * time.Second
)

// Transport is the bottom layer of the outbound chain: an http.RoundTripper
// over a net/http Transport that holds a hard cap on open sockets and bounds
// every phase of a request with its own timeout. Build one with NewTransport;
// the zero value is not usable. It is safe for concurrent use, and like
// http.Transport it should be created once and reused.
//
// Every rejection or expiry it causes is a *sluice.Error with layer
// transport, matchable with errors.Is against sluice.ErrPoolTimeout,
// ErrConnectTimeout, ErrTLSHandshakeTimeout, ErrResponseHeaderTimeout,
// ErrWriteTimeout and ErrReadIdleTimeout, and wrapping the underlying error.
// A request ended by its caller's context returns that context's error
// (context.Canceled or context.DeadlineExceeded, or its cause) untouched: it
// is not the transport's doing.
type Transport struct {
	base  *http.Transport
	limit *connlimit.Limiter
	cfg   transportConfig

	// causes[p] is the cancellation cause of a request whose timer fired in
	// phase p; its identity tells our timeouts from the caller's.
	causes [exchangeDone]error
	// connectCause and tlsCause mark a dial or handshake that we timed out.
	connectCause, tlsCause error

	sweeping atomic.Bool // an idle-connection sweeper is running
}

// TransportOption configures NewTransport.
type TransportOption func(*transportConfig)

type transportConfig struct {
	maxConns              int
	maxConnsPerHost       int
	maxIdleConnsPerHost   int
	idleConnTimeout       time.Duration
	poolTimeout           time.Duration
	connectTimeout        time.Duration
	tlsHandshakeTimeout   time.Duration
	responseHeaderTimeout time.Duration
	writeTimeout          time.Duration
	readIdleTimeout       time.Duration
	tlsConfig             *tls.Config
	dial                  func(ctx context.Context, network, addr string) (net.Conn, error)
}

func positive(option string, n int) {
	if n <= 0 {
		panic(fmt.Sprintf("outbound: %s: n must be > 0, got %d", option, n))
	}
}

func positiveDuration(option string, d time.Duration) {
	if d <= 0 {
		panic(fmt.Sprintf("outbound: %s: d must be > 0, got %s", option, d))
	}
}

// WithMaxConns caps the sockets open to all hosts together at n (default
// DefaultMaxConns, 100). A socket counts from the moment its dial starts until
// it has really closed: dialing, active, idle and closing sockets all hold a
// slot. n must be > 0.
func WithMaxConns(n int) TransportOption {
	positive("WithMaxConns", n)
	return func(c *transportConfig) { c.maxConns = n }
}

// WithMaxConnsPerHost caps the sockets open to one host (host:port) at n,
// counted like WithMaxConns. The default is the total cap, that is, only
// WithMaxConns applies. n must be > 0.
func WithMaxConnsPerHost(n int) TransportOption {
	positive("WithMaxConnsPerHost", n)
	return func(c *transportConfig) { c.maxConnsPerHost = n }
}

// WithMaxIdleConnsPerHost keeps at most n idle keep-alive connections per host
// (default: the per-host cap, so a connection is never closed only because it
// went idle). Idle connections hold socket slots; see NewTransport for how
// they are given up when another host needs a slot. n must be > 0.
func WithMaxIdleConnsPerHost(n int) TransportOption {
	positive("WithMaxIdleConnsPerHost", n)
	return func(c *transportConfig) { c.maxIdleConnsPerHost = n }
}

// WithIdleConnTimeout closes a keep-alive connection that stayed idle for d
// (default DefaultIdleConnTimeout, 90 s). d must be > 0.
func WithIdleConnTimeout(d time.Duration) TransportOption {
	positiveDuration("WithIdleConnTimeout", d)
	return func(c *transportConfig) { c.idleConnTimeout = d }
}

// WithPoolTimeout bounds how long a request waits for a socket slot, under
// the total cap or its host's cap (default DefaultPoolTimeout, 5 s). On expiry
// the request fails with reason pool_timeout (sluice.ErrPoolTimeout). d must
// be > 0.
func WithPoolTimeout(d time.Duration) TransportOption {
	positiveDuration("WithPoolTimeout", d)
	return func(c *transportConfig) { c.poolTimeout = d }
}

// WithConnectTimeout bounds the TCP connect (default DefaultConnectTimeout,
// 5 s); reason connect_timeout. d must be > 0.
func WithConnectTimeout(d time.Duration) TransportOption {
	positiveDuration("WithConnectTimeout", d)
	return func(c *transportConfig) { c.connectTimeout = d }
}

// WithTLSHandshakeTimeout bounds the TLS handshake (default
// DefaultTLSHandshakeTimeout, 10 s); reason tls_handshake_timeout. d must be
// > 0.
func WithTLSHandshakeTimeout(d time.Duration) TransportOption {
	positiveDuration("WithTLSHandshakeTimeout", d)
	return func(c *transportConfig) { c.tlsHandshakeTimeout = d }
}

// WithResponseHeaderTimeout bounds the wait from the request being fully
// written until the response headers have been read (default
// DefaultResponseHeaderTimeout, 30 s); reason response_header_timeout. A
// vendor that generates a whole non-streamed answer before replying needs
// more. d must be > 0.
func WithResponseHeaderTimeout(d time.Duration) TransportOption {
	positiveDuration("WithResponseHeaderTimeout", d)
	return func(c *transportConfig) { c.responseHeaderTimeout = d }
}

// WithWriteTimeout bounds a stalled upload: the longest the transport may
// spend writing one piece of the request body to a peer that does not read it
// (default DefaultWriteTimeout, 10 s); reason write_timeout. Time spent by the
// body's own Read (a slow producer) does not count. d must be > 0.
func WithWriteTimeout(d time.Duration) TransportOption {
	positiveDuration("WithWriteTimeout", d)
	return func(c *transportConfig) { c.writeTimeout = d }
}

// WithReadIdleTimeout bounds the longest one Read of the response body may
// wait for data (default DefaultReadIdleTimeout, 30 s); reason
// read_idle_timeout, returned by that Read. It protects a streamed LLM
// response without capping its length: a stream that keeps producing runs as
// long as it needs, a stalled one ends. Time the caller spends between Reads
// does not count. d must be > 0.
func WithReadIdleTimeout(d time.Duration) TransportOption {
	positiveDuration("WithReadIdleTimeout", d)
	return func(c *transportConfig) { c.readIdleTimeout = d }
}

// WithTLSClientConfig sets the TLS configuration for https hosts (default:
// the zero tls.Config, that is, system roots). The transport clones it per
// connection, fills ServerName from the host when empty, and offers h2 and
// http/1.1 by ALPN when NextProtos is empty. cfg must not be nil.
func WithTLSClientConfig(cfg *tls.Config) TransportOption {
	if cfg == nil {
		panic("outbound: WithTLSClientConfig: cfg must not be nil")
	}
	cfg = cfg.Clone()
	return func(c *transportConfig) { c.tlsConfig = cfg }
}

// WithDialContext replaces the function that opens TCP connections (default:
// a net.Dialer with 30 s keep-alive), for example to resolve names your own
// way. The socket cap and the connect timeout still apply around it: dial
// receives a context that ends at the connect timeout. dial must not be nil.
func WithDialContext(dial func(ctx context.Context, network, addr string) (net.Conn, error)) TransportOption {
	if dial == nil {
		panic("outbound: WithDialContext: dial must not be nil")
	}
	return func(c *transportConfig) { c.dial = dial }
}

// NewTransport returns the outbound transport: the innermost layer of the
// outbound chain, under the call timeout and the attempt span.
//
// # Socket cap
//
// At no instant are more sockets open than WithMaxConns allows (per host:
// WithMaxConnsPerHost), counting those dialing, active, idle and closing. A
// slot is taken before the dial starts and freed only when the socket has
// really closed: the transport half-closes the connection, waits up to one
// second for the peer's own close, then closes it. So a vendor that counts our
// connections never sees more than the cap, even while connections churn. A
// request that finds no idle connection and no free slot waits up to
// WithPoolTimeout, then fails with pool_timeout. Idle connections hold slots;
// while a request waits because the total cap is full, the transport closes
// idle connections (which are, by construction, to other hosts) every few
// milliseconds, so a request to host B never starves behind idle sockets to
// host A. OpenConns reports the slots held, for tests and telemetry.
//
// # HTTP/2
//
// The caps count sockets, whatever protocol is negotiated: every connection,
// h1 or h2, is dialed through the cap. One h2 connection multiplexes many
// concurrent requests (up to the server's SETTINGS_MAX_CONCURRENT_STREAMS,
// often 100 or more), so over h2 the socket cap does not bound concurrent
// requests: use the bulkhead for that. When every h2 connection to a host is
// at its stream limit, net/http dials another one, which takes a slot like any
// socket.
//
// # Timeouts
//
// Each phase of a request has its own bound, all on by default: waiting for a
// slot (WithPoolTimeout), TCP connect (WithConnectTimeout), TLS handshake
// (WithTLSHandshakeTimeout), writing the body (WithWriteTimeout), waiting for
// the response headers (WithResponseHeaderTimeout) and each wait for body
// data (WithReadIdleTimeout). There is deliberately no total timeout here: the
// call timeout layer bounds a whole attempt, and a streamed response may run
// as long as it keeps producing. No timeout can be turned off.
//
// # Cancellation, and how Go differs from the Python guide
//
// In Python (httpx, aiohttp) cancelling a task can leave its pooled socket in
// an unknown state, and the pool timeouts are the main defence. In Go,
// cancelling a request's context really ends it: net/http aborts the
// exchange, closes an h1 socket (releasing its slot once closed) or resets
// the h2 stream. The caller's cancellation is reported as the context's
// error, not as a transport error. The transport timeouts exist to bound each
// phase when nobody cancels.
//
// Redirects, cookies and proxies are not handled here: the transport talks to
// the hosts directly (no HTTP_PROXY), and http.Client does the rest.
//
// NewTransport panics, with a message naming the option, when an option is
// given an invalid value.
func NewTransport(opts ...TransportOption) *Transport {
	cfg := transportConfig{
		maxConns:              DefaultMaxConns,
		idleConnTimeout:       DefaultIdleConnTimeout,
		poolTimeout:           DefaultPoolTimeout,
		connectTimeout:        DefaultConnectTimeout,
		tlsHandshakeTimeout:   DefaultTLSHandshakeTimeout,
		responseHeaderTimeout: DefaultResponseHeaderTimeout,
		writeTimeout:          DefaultWriteTimeout,
		readIdleTimeout:       DefaultReadIdleTimeout,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.maxConnsPerHost == 0 || cfg.maxConnsPerHost > cfg.maxConns {
		cfg.maxConnsPerHost = cfg.maxConns
	}
	if cfg.maxIdleConnsPerHost == 0 || cfg.maxIdleConnsPerHost > cfg.maxConnsPerHost {
		cfg.maxIdleConnsPerHost = cfg.maxConnsPerHost
	}
	if cfg.tlsConfig == nil {
		cfg.tlsConfig = &tls.Config{}
	}
	if cfg.dial == nil {
		cfg.dial = (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext
	}

	t := &Transport{cfg: cfg, limit: connlimit.New(cfg.maxConns, cfg.maxConnsPerHost)}
	t.causes = [exchangeDone]error{
		exchangeWrite:  &timeoutCause{"request body write stalled", cfg.writeTimeout},
		exchangeHeader: &timeoutCause{"no response headers", cfg.responseHeaderTimeout},
		exchangeBody:   &timeoutCause{"no response body data", cfg.readIdleTimeout},
	}
	t.connectCause = &timeoutCause{"connect did not complete", cfg.connectTimeout}
	t.tlsCause = &timeoutCause{"TLS handshake did not complete", cfg.tlsHandshakeTimeout}
	t.base = &http.Transport{
		Proxy:                 nil,
		DialContext:           t.dialContext,
		DialTLSContext:        t.dialTLSContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          cfg.maxConns,
		MaxIdleConnsPerHost:   cfg.maxIdleConnsPerHost,
		IdleConnTimeout:       cfg.idleConnTimeout,
		ExpectContinueTimeout: time.Second,
	}
	return t
}

// timeoutCause is the cancellation cause of a phase that the transport timed
// out; the *sluice.Error returned for it wraps the error net/http reports,
// which is usually this cause.
type timeoutCause struct {
	what string
	d    time.Duration
}

func (c *timeoutCause) Error() string { return "outbound: " + c.what + " within " + c.d.String() }

// Timeout reports true, for callers that test net.Error-style interfaces.
func (c *timeoutCause) Timeout() bool { return true }

// CloseIdleConnections closes the idle keep-alive connections (their slots
// free once they have closed) and cancels dials that no request waits for any
// more. Connections in use are left alone.
func (t *Transport) CloseIdleConnections() { t.base.CloseIdleConnections() }

// OpenConns returns the number of socket slots held: sockets dialing, open or
// closing. It never exceeds WithMaxConns.
func (t *Transport) OpenConns() int { return t.limit.Open() }

var _ http.RoundTripper = (*Transport)(nil)

// transportError is the *sluice.Error for reason, layer transport.
func transportError(reason sluice.Reason, cause error) error {
	return sluice.NewError(sluice.LayerTransport, reason, cause)
}

// phaseReasons maps an exchange phase to the reason of its timeout.
var phaseReasons = [exchangeDone]sluice.Reason{
	exchangeWrite:  sluice.ReasonWriteTimeout,
	exchangeHeader: sluice.ReasonResponseHeaderTimeout,
	exchangeBody:   sluice.ReasonReadIdleTimeout,
}
