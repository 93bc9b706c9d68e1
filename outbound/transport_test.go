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
	"reflect"
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

// settings returns ts with what a transport needs to reach s under any test
// host.
func (s *testServer) settings(ts TransportSettings) TransportSettings {
	addr := s.Listener.Addr().String()
	var d net.Dialer
	ts.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
	if s.proto == "h2" {
		ts.TLSClientConfig = &tls.Config{RootCAs: s.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	}
	return ts
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
func newTestTransport(t *testing.T, s TransportSettings) *Transport {
	t.Helper()
	tr := NewTransport(s)
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

// TestNewTransportPanicsNamingTheField: a negative number or duration is a
// programmer error, refused at construction with the field's name.
func TestNewTransportPanicsNamingTheField(t *testing.T) {
	for field, s := range map[string]TransportSettings{
		"MaxConns":               {MaxConns: -1},
		"MaxConnsPerHost":        {MaxConnsPerHost: -1},
		"MaxIdleConnsPerHost":    {MaxIdleConnsPerHost: -1},
		"IdleConnTimeout":        {IdleConnTimeout: -time.Second},
		"PoolTimeout":            {PoolTimeout: -time.Second},
		"ConnectTimeout":         {ConnectTimeout: -time.Second},
		"TLSHandshakeTimeout":    {TLSHandshakeTimeout: -time.Second},
		"ResponseHeaderTimeout":  {ResponseHeaderTimeout: -time.Second},
		"WriteTimeout":           {WriteTimeout: -time.Second},
		"ReadIdleTimeout":        {ReadIdleTimeout: -time.Second},
		"MaxResponseHeaderBytes": {MaxResponseHeaderBytes: -1},
	} {
		t.Run(field, func(t *testing.T) {
			want := "outbound: NewTransport: negative " + field + ": "
			if msg := panicText(func() { NewTransport(s) }); !strings.HasPrefix(msg, want) {
				t.Fatalf("panic %q, want one starting with %q", msg, want)
			}
		})
	}
}

// TestNewTransportDefaults: every field left zero takes its documented
// default, the per-host caps never exceed the total, and the TLS
// configuration is the transport's own copy.
func TestNewTransportDefaults(t *testing.T) {
	tr := NewTransport(TransportSettings{})
	got := tr.cfg
	want := TransportSettings{MaxConns: DefaultMaxConns, MaxConnsPerHost: DefaultMaxConns,
		MaxIdleConnsPerHost: DefaultMaxConns, IdleConnTimeout: DefaultIdleConnTimeout,
		PoolTimeout: DefaultPoolTimeout, ConnectTimeout: DefaultConnectTimeout,
		TLSHandshakeTimeout: DefaultTLSHandshakeTimeout, ResponseHeaderTimeout: DefaultResponseHeaderTimeout,
		WriteTimeout: DefaultWriteTimeout, ReadIdleTimeout: DefaultReadIdleTimeout,
		MaxResponseHeaderBytes: DefaultMaxResponseHeaderBytes}
	if got.TLSClientConfig == nil || got.DialContext == nil {
		t.Fatal("default TLSClientConfig or DialContext missing")
	}
	got.TLSClientConfig, got.DialContext = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("defaults = %+v\nwant %+v", got, want)
	}
	if tr.base.MaxResponseHeaderBytes != DefaultMaxResponseHeaderBytes || tr.base.IdleConnTimeout != DefaultIdleConnTimeout {
		t.Fatalf("net/http transport got MaxResponseHeaderBytes %d, IdleConnTimeout %s",
			tr.base.MaxResponseHeaderBytes, tr.base.IdleConnTimeout)
	}

	tlsCfg := &tls.Config{ServerName: "vendor.test"}
	tr = NewTransport(TransportSettings{MaxConns: 4, MaxConnsPerHost: 8, MaxIdleConnsPerHost: 9, TLSClientConfig: tlsCfg})
	tlsCfg.ServerName = "elsewhere.test" // the caller's later change does not reach the transport
	if tr.cfg.MaxConnsPerHost != 4 || tr.cfg.MaxIdleConnsPerHost != 4 || tr.cfg.TLSClientConfig.ServerName != "vendor.test" {
		t.Fatalf("got MaxConnsPerHost %d, MaxIdleConnsPerHost %d, ServerName %q; want 4, 4, vendor.test",
			tr.cfg.MaxConnsPerHost, tr.cfg.MaxIdleConnsPerHost, tr.cfg.TLSClientConfig.ServerName)
	}
}

func TestTransportDoesNotModifyRequest(t *testing.T) {
	s := newTestServer(t, "h1", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	tr := newTestTransport(t, s.settings(TransportSettings{}))
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
			tr := newTestTransport(t, s.settings(TransportSettings{}))
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
