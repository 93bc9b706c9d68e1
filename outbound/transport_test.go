package outbound

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-go/sluice"
)

// testHosts are three host names that the test dialer maps to one loopback
// server; the transport pools them separately. The httptest certificate is
// valid for *.example.com.
var testHosts = []string{"a.example.com", "b.example.com", "c.example.com"}

// protocols are the two ways each server-facing test runs.
var protocols = []string{"h1", "h2"}

// countingListener counts the server's open connections. A connection stops
// counting just before the server closes it, so the count can only be
// lower than the truth, never higher, and a client that frees a slot only
// after the server's close can never push it over the cap. (http.Server's
// ConnState reports StateClosed after the close, which would race.)
type countingListener struct {
	net.Listener
	open, peak, accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted.Add(1)
	n := l.open.Add(1)
	for {
		p := l.peak.Load()
		if n <= p || l.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return &countedConn{Conn: c, l: l}, nil
}

// countedConn hides CloseWrite, so the server's only way to end the
// connection is Close.
type countedConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// testServer is a loopback server speaking h1 or h2 (over TLS), with a
// counting listener.
type testServer struct {
	*httptest.Server
	proto    string
	listener *countingListener
	// unblock is closed at cleanup, before the server closes, to release
	// handlers that stall on purpose.
	unblock chan struct{}
}

func newTestServer(t *testing.T, proto string, h http.HandlerFunc) *testServer {
	t.Helper()
	s := &testServer{proto: proto, unblock: make(chan struct{})}
	s.Server = httptest.NewUnstartedServer(h)
	// Handshakes cut short by abandoned dials are expected here.
	s.Server.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.listener = &countingListener{Listener: s.Server.Listener}
	s.Server.Listener = s.listener
	switch proto {
	case "h1":
		s.Server.Start()
	case "h2":
		s.Server.EnableHTTP2 = true
		s.Server.StartTLS()
	default:
		t.Fatalf("unknown protocol %q", proto)
	}
	t.Cleanup(s.Server.Close)
	t.Cleanup(func() { close(s.unblock) })
	return s
}

// url is the server's URL under one of testHosts.
func (s *testServer) url(host, path string) string {
	scheme := "http"
	if s.proto == "h2" {
		scheme = "https"
	}
	_, port, _ := net.SplitHostPort(s.Listener.Addr().String())
	return scheme + "://" + host + ":" + port + path
}

// options returns what a transport needs to reach s under any test host.
func (s *testServer) options() []TransportOption {
	addr := s.Listener.Addr().String()
	var d net.Dialer
	opts := []TransportOption{WithDialContext(func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	})}
	if s.proto == "h2" {
		opts = append(opts, WithTLSClientConfig(&tls.Config{RootCAs: s.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}))
	}
	return opts
}

// stall blocks until the request is canceled or the test ends.
func (s *testServer) stall(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-s.unblock:
	}
}

// newTestTransport returns a transport closed at cleanup, after checking that
// it holds no socket any more.
func newTestTransport(t *testing.T, opts ...TransportOption) *Transport {
	t.Helper()
	tr := NewTransport(opts...)
	t.Cleanup(func() {
		waitNoOpenConns(t, tr, true)
	})
	return tr
}

// waitNoOpenConns polls until the transport holds no socket slot, closing
// idle connections on each poll if closeIdle. (An h2 connection whose stream
// was reset stays busy until the server acknowledges the reset.)
func waitNoOpenConns(t *testing.T, tr *Transport, closeIdle bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if closeIdle {
			tr.CloseIdleConnections()
		}
		if tr.OpenConns() == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("OpenConns() = %d ten seconds after the last request, want 0", tr.OpenConns())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// get sends a GET through tr.
func get(ctx context.Context, tr http.RoundTripper, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return tr.RoundTrip(req)
}

// wantTransportError checks that err is the transport's *sluice.Error for
// sentinel, wrapping an underlying error.
func wantTransportError(t *testing.T, err, sentinel error) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("error = %v, want %v", err, sentinel)
	}
	e := sluice.ErrorOf(err)
	if e.Layer != sluice.LayerTransport {
		t.Fatalf("layer = %q, want %q", e.Layer, sluice.LayerTransport)
	}
	if e.Err == nil {
		t.Fatalf("%v wraps no underlying error", err)
	}
}

func TestNewTransportPanicsNamingTheOption(t *testing.T) {
	cases := []struct {
		name string
		opt  func() TransportOption
	}{
		{"WithMaxConns", func() TransportOption { return WithMaxConns(0) }},
		{"WithMaxConnsPerHost", func() TransportOption { return WithMaxConnsPerHost(-1) }},
		{"WithMaxIdleConnsPerHost", func() TransportOption { return WithMaxIdleConnsPerHost(0) }},
		{"WithIdleConnTimeout", func() TransportOption { return WithIdleConnTimeout(0) }},
		{"WithPoolTimeout", func() TransportOption { return WithPoolTimeout(-time.Second) }},
		{"WithConnectTimeout", func() TransportOption { return WithConnectTimeout(0) }},
		{"WithTLSHandshakeTimeout", func() TransportOption { return WithTLSHandshakeTimeout(0) }},
		{"WithResponseHeaderTimeout", func() TransportOption { return WithResponseHeaderTimeout(0) }},
		{"WithWriteTimeout", func() TransportOption { return WithWriteTimeout(0) }},
		{"WithReadIdleTimeout", func() TransportOption { return WithReadIdleTimeout(0) }},
		{"WithTLSClientConfig", func() TransportOption { return WithTLSClientConfig(nil) }},
		{"WithDialContext", func() TransportOption { return WithDialContext(nil) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			defer func() {
				msg, _ := recover().(string)
				if !strings.HasPrefix(msg, "outbound: "+c.name+": ") {
					t.Fatalf("panic %q, want one starting with %q", msg, "outbound: "+c.name+": ")
				}
			}()
			NewTransport(c.opt())
		})
	}
}

func TestTransportDoesNotModifyRequest(t *testing.T) {
	s := newTestServer(t, "h1", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	tr := newTestTransport(t, s.options()...)
	body := strings.NewReader("payload")
	req, _ := http.NewRequest(http.MethodPost, s.url(testHosts[0], "/"), body)
	ctx, origBody := req.Context(), req.Body
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if req.Context() != ctx || req.Body != origBody {
		t.Fatal("RoundTrip replaced the caller's request context or body")
	}
	if resp.Request != req {
		t.Fatal("resp.Request is not the caller's request")
	}
}

func TestTransportCallerCancelIsNotATransportError(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			entered := make(chan struct{}, 1)
			var s *testServer
			s = newTestServer(t, proto, func(w http.ResponseWriter, r *http.Request) {
				entered <- struct{}{}
				s.stall(r)
			})
			tr := newTestTransport(t, s.options()...)
			ctx, cancel := context.WithCancel(context.Background())
			go func() { <-entered; cancel() }()
			_, err := get(ctx, tr, s.url(testHosts[0], "/"))
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("error = %v, want context.Canceled", err)
			}
			if e := sluice.ErrorOf(err); e != nil {
				t.Fatalf("caller's cancellation reported as %v", e)
			}
		})
	}
}
