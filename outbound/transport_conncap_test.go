package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-go/sluice"
)

// TestTransportMaxConnsHoldsUnderLoad: 500 goroutines to three hosts through
// MaxConns 8 never make the server see more than 8 connections, and each
// request succeeds or fails with pool_timeout.
func TestTransportMaxConnsHoldsUnderLoad(t *testing.T) {
	const maxConns, goroutines = 8, 500
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			var tr *Transport
			var trPeak atomic.Int64
			s := newTestServer(t, proto, func(w http.ResponseWriter, r *http.Request) {
				if n := int64(tr.OpenConns()); n > trPeak.Load() {
					trPeak.Store(n) // racy max is fine: we only need to see a violation
				}
				io.WriteString(w, "ok")
			})
			tr = newTestTransport(t, s.settings(TransportSettings{MaxConns: maxConns, PoolTimeout: 5 * time.Second}))

			var ok, poolTimeouts atomic.Int64
			errs := make(chan error, goroutines)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range goroutines {
				wg.Go(func() {
					<-start
					resp, err := get(context.Background(), tr, s.url(testHosts[i%len(testHosts)], "/"))
					if n := int64(tr.OpenConns()); n > trPeak.Load() {
						trPeak.Store(n)
					}
					if err != nil {
						if errors.Is(err, sluice.ErrPoolTimeout) {
							poolTimeouts.Add(1)
							return
						}
						errs <- err
						return
					}
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err != nil {
						errs <- err
						return
					}
					if proto == "h2" && resp.ProtoMajor != 2 {
						errs <- fmt.Errorf("negotiated %s, want HTTP/2", resp.Proto)
						return
					}
					ok.Add(1)
				})
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("request failed with %v, want success or pool_timeout", err)
			}
			if p := s.listener.peak.Load(); p > maxConns {
				t.Errorf("server saw %d connections open at once, cap is %d", p, maxConns)
			}
			if p := trPeak.Load(); p > maxConns {
				t.Errorf("OpenConns() reached %d, cap is %d", p, maxConns)
			}
			if ok.Load() == 0 {
				t.Errorf("no request succeeded (%d pool timeouts)", poolTimeouts.Load())
			}
			t.Logf("%s: %d ok, %d pool_timeout, %d connections accepted, peak %d open",
				proto, ok.Load(), poolTimeouts.Load(), s.listener.accepted.Load(), s.listener.peak.Load())
		})
	}
}

// holdConn sends a GET whose handler stalls, and returns once the server has
// the request, so its connection is busy until the test ends.
func holdConn(t *testing.T, tr *Transport, url string, entered <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := get(ctx, tr, url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the held request never reached the server")
	}
}

func TestTransportPoolTimeoutTotalCap(t *testing.T) {
	entered := make(chan struct{}, 1)
	var s *testServer
	s = newTestServer(t, "h1", func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		s.stall(r)
	})
	tr := newTestTransport(t, s.settings(TransportSettings{MaxConns: 1, PoolTimeout: 200 * time.Millisecond}))
	holdConn(t, tr, s.url(testHosts[0], "/"), entered)

	begin := time.Now()
	_, err := get(context.Background(), tr, s.url(testHosts[1], "/"))
	wantTransportError(t, err, sluice.ErrPoolTimeout)
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("pool timeout of 200ms took %s", d)
	}
	if n := tr.OpenConns(); n != 1 {
		t.Fatalf("OpenConns() = %d with one held connection, want 1", n)
	}
}

func TestTransportPoolTimeoutPerHostCap(t *testing.T) {
	entered := make(chan struct{}, 1)
	var s *testServer
	s = newTestServer(t, "h1", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			entered <- struct{}{}
			s.stall(r)
			return
		}
		io.WriteString(w, "ok")
	})
	tr := newTestTransport(t, s.settings(TransportSettings{
		MaxConns: 4, MaxConnsPerHost: 1, PoolTimeout: 200 * time.Millisecond}))
	holdConn(t, tr, s.url(testHosts[0], "/hold"), entered)

	_, err := get(context.Background(), tr, s.url(testHosts[0], "/"))
	wantTransportError(t, err, sluice.ErrPoolTimeout)

	// Another host is not held up by the first host's cap.
	resp, err := get(context.Background(), tr, s.url(testHosts[1], "/"))
	if err != nil {
		t.Fatalf("request to another host: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// TestTransportIdleConnsDoNotStarveOtherHosts: with one slot held by an idle
// connection to host A, a request to host B still gets through.
func TestTransportIdleConnsDoNotStarveOtherHosts(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			s := newTestServer(t, proto, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
			tr := newTestTransport(t, s.settings(TransportSettings{MaxConns: 1, PoolTimeout: 5 * time.Second}))
			for _, host := range []string{testHosts[0], testHosts[1], testHosts[0]} {
				resp, err := get(context.Background(), tr, s.url(host, "/"))
				if err != nil {
					t.Fatalf("GET %s: %v", host, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if p := s.listener.peak.Load(); p > 1 {
				t.Fatalf("server saw %d connections open at once, cap is 1", p)
			}
		})
	}
}
