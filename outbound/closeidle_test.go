package outbound

import (
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-go/sluice/internal/redistest"
)

// closeIdleRecorder is a transport that counts CloseIdleConnections calls.
type closeIdleRecorder struct {
	http.RoundTripper
	n atomic.Int32
}

func (c *closeIdleRecorder) CloseIdleConnections() { c.n.Add(1) }

// TestClientCloseIdleConnectionsReachesTransport: http.Client only calls
// CloseIdleConnections on its own Transport, which for NewClient is the
// pipeline span, and that did not forward it, so client.CloseIdleConnections
// (and the example app's Close) left every idle socket open until the idle
// timeout.
func TestClientCloseIdleConnectionsReachesTransport(t *testing.T) {
	rec := &closeIdleRecorder{RoundTripper: transport(t)}
	c := NewClient(WithTransport(rec), WithRetry(RetrySettings{}), WithCircuitBreaker(BreakerSettings{}),
		WithLocalRateLimit(LocalRateLimitSettings{Requests: 100, Period: time.Second, Bursty: true}),
		WithBulkhead(BulkheadSettings{MaxConcurrent: 1}), WithAttemptTimeout(AttemptTimeoutSettings{Timeout: time.Second}))
	c.CloseIdleConnections()
	if got := rec.n.Load(); got != 1 {
		t.Fatalf("transport saw %d CloseIdleConnections calls, want 1", got)
	}

	// And with the real transport: the idle socket is given back.
	srv := vendor(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	tr := NewTransport(TransportSettings{})
	c = NewClient(WithTransport(tr))
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	readClose(resp)
	c.CloseIdleConnections()
	waitNoOpenConns(t, tr, false)
}

// readClose reads resp's body to the end and closes it.
func readClose(resp *http.Response) {
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
}

// TestClientCloseClosesChain: Client.Close closes the chain NewClient built,
// with no type assertion and even after the caller replaced Transport: the
// idle sockets close, and the Redis-backed layers' goroutines stop (goleak
// in TestMain fails the package otherwise: nothing else closes this chain).
func TestClientCloseClosesChain(t *testing.T) {
	srv := redistest.New(t)
	v := vendor(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	tr := NewTransport(TransportSettings{})
	c := NewClient(WithTransport(tr),
		WithCircuitBreaker(BreakerSettings{Shared: &SharedBreakerSettings{Client: srv.Client(), Name: srv.Prefix}}),
		WithGlobalRateLimit(GlobalRateLimitSettings{Client: srv.Client(), Name: srv.Prefix, Requests: 100, Period: time.Second}))
	resp, err := c.Get(v.URL)
	if err != nil {
		t.Fatal(err)
	}
	readClose(resp)
	c.Transport = http.DefaultTransport
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitNoOpenConns(t, tr, false)
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
