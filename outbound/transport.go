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

// Defaults of NewTransport, for every TransportSettings field left zero.
const (
	DefaultMaxConns              = 100
	DefaultIdleConnTimeout       = 90 * time.Second
	DefaultPoolTimeout           = 5 * time.Second
	DefaultConnectTimeout        = 5 * time.Second
	DefaultTLSHandshakeTimeout   = 10 * time.Second
	DefaultResponseHeaderTimeout = 30 * time.Second
	DefaultWriteTimeout          = 10 * time.Second
	DefaultReadIdleTimeout       = 30 * time.Second
	// DefaultMaxResponseHeaderBytes bounds a response's headers at 64 KiB
	// (net/http's own default is 10 MB). LLM vendors send 1 to 3 KiB;
	// nginx in front of a service refuses upstream headers over 4 or 8 KiB
	// by default and Envoy over 60 KiB, so no working vendor comes near it,
	// while 100 connections can then hold at most 6.4 MiB of headers
	// instead of 1 GB.
	DefaultMaxResponseHeaderBytes = 64 << 10
)

// Transport is the bottom layer of the outbound chain: an http.RoundTripper
// over a net/http Transport that holds a hard cap on open sockets and bounds
// every phase of a request with its own timeout, and bounds the size of the
// response headers it reads. Build one with NewTransport;
// the zero value is not usable. It is safe for concurrent use, and like
// http.Transport it should be created once and reused.
//
// Every rejection or expiry it causes is a *sluice.Error with layer
// transport, matchable with errors.Is against sluice.ErrPoolTimeout,
// ErrConnectTimeout, ErrTLSHandshakeTimeout, ErrResponseHeaderTimeout,
// ErrWriteTimeout, ErrReadIdleTimeout and ErrResponseHeaderTooLarge, and
// wrapping the underlying error.
// A request ended by its caller's context returns that context's error
// (context.Canceled or context.DeadlineExceeded, or its cause) untouched: it
// is not the transport's doing.
type Transport struct {
	base  *http.Transport
	limit *connlimit.Limiter
	cfg   TransportSettings // with defaults

	// causes[p] is the cancellation cause of a request whose timer fired in
	// phase p; its identity tells our timeouts from the caller's.
	causes [exchangeDone]error
	// connectCause and tlsCause mark a dial or handshake that we timed out.
	connectCause, tlsCause error

	sweeping atomic.Bool // an idle-connection sweeper is running
}

// TransportSettings configures NewTransport. The zero value is usable:
// every field left zero means its documented default, and a negative number
// or duration panics, naming the field. No timeout can be turned off.
type TransportSettings struct {
	// MaxConns caps the sockets open to all hosts together. A socket counts
	// from the moment its dial starts until it has really closed: dialing,
	// active, idle and closing sockets all hold a slot. Default
	// DefaultMaxConns (100).
	MaxConns int
	// MaxConnsPerHost caps the sockets open to one host (host:port), counted
	// like MaxConns. Default (or above MaxConns): MaxConns, that is, only
	// the total cap applies.
	MaxConnsPerHost int
	// MaxIdleConnsPerHost keeps at most this many idle keep-alive
	// connections per host. Default (or above MaxConnsPerHost): the per-host
	// cap, so a connection is never closed only because it went idle. Idle
	// connections hold socket slots; see NewTransport for how they are given
	// up when another host needs a slot.
	MaxIdleConnsPerHost int
	// IdleConnTimeout closes a keep-alive connection that stayed idle this
	// long. Default DefaultIdleConnTimeout (90s).
	IdleConnTimeout time.Duration
	// PoolTimeout bounds how long a request waits for a socket slot, under
	// the total cap or its host's cap; on expiry the request fails with
	// reason pool_timeout (sluice.ErrPoolTimeout). Default
	// DefaultPoolTimeout (5s).
	PoolTimeout time.Duration
	// ConnectTimeout bounds the TCP connect; reason connect_timeout.
	// Default DefaultConnectTimeout (5s).
	ConnectTimeout time.Duration
	// TLSHandshakeTimeout bounds the TLS handshake; reason
	// tls_handshake_timeout. Default DefaultTLSHandshakeTimeout (10s).
	TLSHandshakeTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait from the request being fully
	// written until the response headers have been read; reason
	// response_header_timeout. A vendor that generates a whole non-streamed
	// answer before replying needs more. Default
	// DefaultResponseHeaderTimeout (30s).
	ResponseHeaderTimeout time.Duration
	// WriteTimeout bounds a stalled upload: the longest the transport may
	// spend writing one piece of the request body to a peer that does not
	// read it; reason write_timeout. Time spent by the body's own Read (a
	// slow producer) does not count. Default DefaultWriteTimeout (10s).
	WriteTimeout time.Duration
	// ReadIdleTimeout bounds the longest one Read of the response body may
	// wait for data; reason read_idle_timeout, returned by that Read. It
	// protects a streamed LLM response without capping its length: a stream
	// that keeps producing runs as long as it needs, a stalled one ends.
	// Time the caller spends between Reads does not count. Default
	// DefaultReadIdleTimeout (30s).
	ReadIdleTimeout time.Duration
	// MaxResponseHeaderBytes bounds the response headers (status line and
	// header fields, as net/http counts them) the transport reads. A vendor
	// that sends more over HTTP/1 has its connection closed once that many
	// bytes have been read, and the request fails with reason
	// response_header_too_large (sluice.ErrResponseHeaderTooLarge), which
	// is not retried and which the circuit breaker counts as a vendor
	// failure. Over HTTP/2 the bound is also announced to the vendor
	// (SETTINGS_MAX_HEADER_LIST_SIZE); one that exceeds it slightly has its
	// stream reset, with the same reason, and one that exceeds it by more
	// than net/http tolerates (twice the room left in one frame) has its
	// connection closed with an HTTP/2 PROTOCOL_ERROR, returned as net/http
	// reports it. Either way no more than about this many bytes of headers
	// are held per connection. Default DefaultMaxResponseHeaderBytes
	// (64 KiB).
	MaxResponseHeaderBytes int
	// TLSClientConfig is the TLS configuration for https hosts. NewTransport
	// keeps a clone; the transport clones that per connection, fills
	// ServerName from the host when empty, and offers h2 and http/1.1 by
	// ALPN when NextProtos is empty. Default nil: the zero tls.Config, that
	// is, system roots.
	TLSClientConfig *tls.Config
	// DialContext opens TCP connections, for example to resolve names your
	// own way. The socket cap and the connect timeout still apply around it:
	// it receives a context that ends at ConnectTimeout. Default nil: a
	// net.Dialer with 30s keep-alive.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// withDefaults returns s with every zero field set to its default, and
// panics on a negative one.
func (s TransportSettings) withDefaults() TransportSettings {
	ints := []struct {
		name string
		v    *int
		def  int
	}{
		{"MaxConns", &s.MaxConns, DefaultMaxConns},
		{"MaxConnsPerHost", &s.MaxConnsPerHost, 0},
		{"MaxIdleConnsPerHost", &s.MaxIdleConnsPerHost, 0},
		{"MaxResponseHeaderBytes", &s.MaxResponseHeaderBytes, DefaultMaxResponseHeaderBytes},
	}
	for _, f := range ints {
		if *f.v < 0 {
			panic(fmt.Sprintf("outbound: NewTransport: negative %s: %d", f.name, *f.v))
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"IdleConnTimeout", &s.IdleConnTimeout, DefaultIdleConnTimeout},
		{"PoolTimeout", &s.PoolTimeout, DefaultPoolTimeout},
		{"ConnectTimeout", &s.ConnectTimeout, DefaultConnectTimeout},
		{"TLSHandshakeTimeout", &s.TLSHandshakeTimeout, DefaultTLSHandshakeTimeout},
		{"ResponseHeaderTimeout", &s.ResponseHeaderTimeout, DefaultResponseHeaderTimeout},
		{"WriteTimeout", &s.WriteTimeout, DefaultWriteTimeout},
		{"ReadIdleTimeout", &s.ReadIdleTimeout, DefaultReadIdleTimeout},
	}
	for _, f := range durations {
		if *f.v < 0 {
			panic(fmt.Sprintf("outbound: NewTransport: negative %s: %s", f.name, *f.v))
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if s.MaxConnsPerHost == 0 || s.MaxConnsPerHost > s.MaxConns {
		s.MaxConnsPerHost = s.MaxConns
	}
	if s.MaxIdleConnsPerHost == 0 || s.MaxIdleConnsPerHost > s.MaxConnsPerHost {
		s.MaxIdleConnsPerHost = s.MaxConnsPerHost
	}
	if s.TLSClientConfig == nil {
		s.TLSClientConfig = &tls.Config{}
	} else {
		s.TLSClientConfig = s.TLSClientConfig.Clone()
	}
	if s.DialContext == nil {
		s.DialContext = (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext
	}
	return s
}

// NewTransport returns the outbound transport: the innermost layer of the
// outbound chain, under the call timeout and the attempt span.
//
// # Socket cap
//
// At no instant are more sockets open than MaxConns allows (per host:
// MaxConnsPerHost), counting those dialing, active, idle and closing. A
// slot is taken before the dial starts and freed only when the socket has
// really closed: the transport half-closes the connection, waits up to one
// second for the peer's own close, then closes it. So a vendor that counts our
// connections never sees more than the cap, even while connections churn. A
// request that finds no idle connection and no free slot waits up to
// PoolTimeout, then fails with pool_timeout. Idle connections hold slots;
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
// slot (PoolTimeout), TCP connect (ConnectTimeout), TLS handshake
// (TLSHandshakeTimeout), writing the body (WriteTimeout), waiting for the
// response headers (ResponseHeaderTimeout) and each wait for body data
// (ReadIdleTimeout). There is deliberately no total timeout here: the
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
// the hosts directly (no HTTP_PROXY), and http.Client does the rest (the one
// NewClient returns follows no redirect).
//
// NewTransport panics, with a message naming the field, when a field is
// negative.
func NewTransport(s TransportSettings) *Transport {
	cfg := s.withDefaults()
	t := &Transport{cfg: cfg, limit: connlimit.New(cfg.MaxConns, cfg.MaxConnsPerHost)}
	t.causes = [exchangeDone]error{
		exchangeWrite:  &timeoutCause{"request body write stalled", cfg.WriteTimeout},
		exchangeHeader: &timeoutCause{"no response headers", cfg.ResponseHeaderTimeout},
		exchangeBody:   &timeoutCause{"no response body data", cfg.ReadIdleTimeout},
	}
	t.connectCause = &timeoutCause{"connect did not complete", cfg.ConnectTimeout}
	t.tlsCause = &timeoutCause{"TLS handshake did not complete", cfg.TLSHandshakeTimeout}
	t.base = &http.Transport{
		Proxy:                  nil,
		DialContext:            t.dialContext,
		DialTLSContext:         t.dialTLSContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           cfg.MaxConns,
		MaxIdleConnsPerHost:    cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:        cfg.IdleConnTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: int64(cfg.MaxResponseHeaderBytes),
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
// closing. It never exceeds MaxConns.
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
