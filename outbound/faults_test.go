package outbound

// The vendor fault matrix: one misbehaving loopback vendor per row, called
// through a client with every layer (retry 3 attempts with 10–50ms backoff
// and MaxRetryAfter 5s, breaker, a generous local rate limit, bulkhead 1/0,
// attempt timeout 3s) over NewTransport with 300ms connect, TLS, header,
// write, read-idle and pool timeouts. Each call is a POST with an
// Idempotency-Key (replay-safe, as the example app sends it) under an 8s
// deadline unless the row says otherwise.
//
// | row                      | vendor does                                   | the caller gets                                                              |
// |--------------------------|-----------------------------------------------|------------------------------------------------------------------------------|
// | refused                  | nothing listens on the port                   | retry/retries_exhausted after 3, wrapping ECONNREFUSED (no sluice layer)     |
// | connect stalled          | dial never completes                          | retry/retries_exhausted after 3, wrapping transport/connect_timeout          |
// | dns not found            | vendor.invalid: NXDOMAIN (simulated in dial)  | the *net.DNSError as is, 1 attempt: not transient, no sluice layer           |
// | tls handshake stalled    | TCP accept, never speaks TLS                  | retry/retries_exhausted after 3, wrapping transport/tls_handshake_timeout    |
// | headers stalled          | reads the request, never answers              | retry/retries_exhausted after 3, wrapping transport/response_header_timeout  |
// | body stalled             | 200 and a chunk, then nothing                 | Do succeeds; the body Read fails with transport/read_idle_timeout            |
// | slow drip                | 200, then one byte every 600ms                | Do succeeds; the body Read fails with transport/read_idle_timeout            |
// | reset mid-body           | 200, 100 of 1000 bytes, then RST              | Do succeeds; the body Read fails with ECONNRESET (no sluice layer)           |
// | 429/503 Retry-After: 1   | always that status, delta seconds             | retry/retries_exhausted after 3 wrapping *StatusError, RetryAfter 1s, ≥2s    |
// | 429/503 HTTP-date        | always that status, a date ~2s ahead          | retry/retries_exhausted after 3 wrapping *StatusError, RetryAfter in (0,2s]  |
// | 429/503 retry-after-ms   | always that status, retry-after-ms: 200       | retry/retries_exhausted after 3 wrapping *StatusError, RetryAfter 200ms      |
// | Retry-After: soon        | 429, unparseable                              | ignored: backoff; retries_exhausted after 3, RetryAfter 0                    |
// | Retry-After: -5          | 503, negative                                 | ignored: backoff; retries_exhausted after 3, RetryAfter 0                    |
// | Retry-After: huge        | 429, 99999999999 s                            | above MaxRetryAfter: not retried; retries_exhausted after 1, RetryAfter max  |
// | Retry-After past deadline| 503, Retry-After: 3 under a 1.5s deadline     | no wait that cannot finish: retry/deadline_exceeded after 1, RetryAfter 3s   |
//
// Every row must end within 10s, and leave nothing behind: the bulkhead's
// resilience.request.active is back to 0 and a follow-up call to a healthy
// vendor through the same bulkhead of 1 succeeds, the transport holds no
// socket once the client's idle connections are closed, and goleak (TestMain)
// finds no goroutine at the end.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/otelx"
)

const faultTimeout = 300 * time.Millisecond

// faultVendor is what a row's vendor hands the call.
type faultVendor struct {
	url string
	// dial, if set, is the transport's DialContext.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// afterHeaders, if set, runs once the response headers have arrived.
	afterHeaders func()
}

type faultRow struct {
	name     string
	vendor   func(t *testing.T) faultVendor
	deadline time.Duration // of the call; 0 means 8s
	// inBody: the call succeeds with 200 and the fault shows reading the body.
	inBody bool
	check  func(t *testing.T, err error, elapsed time.Duration)
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// silentListener accepts TCP connections and never writes a byte.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { io.Copy(io.Discard, c); c.Close() })
		}
	})
	return ln.Addr().String()
}

// statusVendor always answers code with the header h: v (v may be a func of
// time for HTTP-dates), counting the requests.
func statusVendor(code int, h string, v func() string, n *atomic.Int32) func(t *testing.T) faultVendor {
	return func(t *testing.T) faultVendor {
		s := vendor(t, func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			io.Copy(io.Discard, r.Body)
			w.Header().Set(h, v())
			w.WriteHeader(code)
			io.WriteString(w, `{"error":"slow down"}`)
		})
		return faultVendor{url: s.URL + "/v1/chat/completions"}
	}
}

func constant(s string) func() string { return func() string { return s } }

// wantRetryFailure checks the retry layer's verdict: reason after attempts,
// wrapping cause (a sentinel or target for errors.Is).
func wantRetryFailure(t *testing.T, err error, reason sluice.Reason, attempts int, cause error) *sluice.Error {
	t.Helper()
	e := wantReason(t, err, sluice.LayerRetry, reason)
	if e.Attempts != attempts {
		t.Fatalf("%v: %d attempts, want %d", err, e.Attempts, attempts)
	}
	if cause != nil && !errors.Is(err, cause) {
		t.Fatalf("%v does not wrap %v", err, cause)
	}
	return e
}

// wantStatus checks that err wraps the vendor's status.
func wantStatus(t *testing.T, err error, code int) {
	t.Helper()
	var se *sluice.StatusError
	if !errors.As(err, &se) || se.StatusCode != code {
		t.Fatalf("%v does not wrap the vendor's %d", err, code)
	}
}

func TestVendorFaultMatrix(t *testing.T) {
	var dials atomic.Int32 // dials of the dns row
	type counted struct{ n atomic.Int32 }
	c429, c503, date429, date503, ms429, ms503, soon, neg, huge, late := new(counted), new(counted),
		new(counted), new(counted), new(counted), new(counted), new(counted), new(counted), new(counted), new(counted)
	httpDate := func() string { return time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat) }

	retryAfterRows := func(code int, delta, date, ms *counted) []faultRow {
		name := strconv.Itoa(code)
		return []faultRow{
			{name: name + " Retry-After delta seconds", vendor: statusVendor(code, "Retry-After", constant("1"), &delta.n),
				check: func(t *testing.T, err error, elapsed time.Duration) {
					e := wantRetryFailure(t, err, sluice.ReasonRetriesExhausted, 3, nil)
					wantStatus(t, err, code)
					if e.RetryAfter != time.Second {
						t.Fatalf("RetryAfter = %v, want 1s", e.RetryAfter)
					}
					if elapsed < 2*time.Second {
						t.Fatalf("3 attempts 1s apart took %v: Retry-After not honoured", elapsed)
					}
					if n := delta.n.Load(); n != 3 {
						t.Fatalf("vendor saw %d requests, want 3", n)
					}
				}},
			{name: name + " Retry-After HTTP-date", vendor: statusVendor(code, "Retry-After", httpDate, &date.n),
				check: func(t *testing.T, err error, elapsed time.Duration) {
					e := wantRetryFailure(t, err, sluice.ReasonRetriesExhausted, 3, nil)
					wantStatus(t, err, code)
					// The date has whole seconds: 2s ahead is 1–2s ahead.
					if e.RetryAfter <= 0 || e.RetryAfter > 2*time.Second {
						t.Fatalf("RetryAfter = %v, want in (0, 2s]", e.RetryAfter)
					}
					if elapsed < time.Second {
						t.Fatalf("3 attempts at least ~1s apart took %v: Retry-After not honoured", elapsed)
					}
					if n := date.n.Load(); n != 3 {
						t.Fatalf("vendor saw %d requests, want 3", n)
					}
				}},
			{name: name + " retry-after-ms", vendor: statusVendor(code, "Retry-After-Ms", constant("200"), &ms.n),
				check: func(t *testing.T, err error, elapsed time.Duration) {
					e := wantRetryFailure(t, err, sluice.ReasonRetriesExhausted, 3, nil)
					wantStatus(t, err, code)
					if e.RetryAfter != 200*time.Millisecond {
						t.Fatalf("RetryAfter = %v, want 200ms", e.RetryAfter)
					}
					if elapsed < 400*time.Millisecond {
						t.Fatalf("3 attempts 200ms apart took %v: retry-after-ms not honoured", elapsed)
					}
					if n := ms.n.Load(); n != 3 {
						t.Fatalf("vendor saw %d requests, want 3", n)
					}
				}},
		}
	}

	rows := []faultRow{
		{name: "refused", vendor: func(t *testing.T) faultVendor {
			return faultVendor{url: "http://" + closedPort(t) + "/"}
		}, check: func(t *testing.T, err error, _ time.Duration) {
			wantRetryFailure(t, err, sluice.ReasonRetriesExhausted, 3, syscall.ECONNREFUSED)
		}},
		{name: "connect stalled", vendor: func(t *testing.T) faultVendor {
			var d net.Dialer
			return faultVendor{url: "http://blackhole.test/", dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if strings.HasPrefix(addr, "blackhole.test:") {
					<-ctx.Done() // a SYN into the void
					return nil, ctx.Err()
				}
				return d.DialContext(ctx, network, addr)
			}}
		}, check: func(t *testing.T, err error, _ time.Duration) {
			wantRetryFailure(t, err, sluice.ReasonRetriesExhausted, 3, sluice.ErrConnectTimeout)
		}},
		{name: "dns not found", vendor: func(t *testing.T) faultVendor {
			// .invalid never resolves (RFC 2606); the dial hook says so
			// without asking a resolver, so no packet leaves the machine.
			var d net.Dialer
			return faultVendor{url: "http://vendor.invalid/", dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				host, _, _ := net.SplitHostPort(addr)
				if strings.HasSuffix(host, ".invalid") {
					dials.Add(1)
					return nil, &net.OpError{Op: "dial", Net: network,
						Err: &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}}
				}
				return d.DialContext(ctx, network, addr)
			}}
		}, check: func(t *testing.T, err error, _ time.Duration) {
			var de *net.DNSError
			if !errors.As(err, &de) || !de.IsNotFound {
				t.Fatalf("err = %v, want a not-found *net.DNSError", err)
			}
			if e := sluice.ErrorOf(err); e != nil {
				t.Fatalf("a vendor that does not exist was reported as %s/%s", e.Layer, e.Reason)
			}
			if n := dials.Load(); n != 1 {
				t.Fatalf("%d dials, want 1: NXDOMAIN is not transient", n)
			}
		}},
		{name: "tls handshake stalled", vendor: func(t *testing.T) faultVendor {
			return faultVendor{url: "https://" + silentListener(t) + "/"}
		}, check: func(t *testing.T, err error, _ time.Duration) {
			wantRetryFailure(t, err, sluice.ReasonRetriesExhausted, 3, sluice.ErrTLSHandshakeTimeout)
		}},
		{name: "headers stalled", vendor: func(t *testing.T) faultVendor {
			var s *testServer
			s = newTestServer(t, "h1", func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body); s.stall(r) })
			return faultVendor{url: s.URL + "/"}
		}, check: func(t *testing.T, err error, _ time.Duration) {
			wantRetryFailure(t, err, sluice.ReasonRetriesExhausted, 3, sluice.ErrResponseHeaderTimeout)
		}},
		{name: "body stalled", inBody: true, vendor: func(t *testing.T) faultVendor {
			var s *testServer
			s = newTestServer(t, "h1", func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, `{"choices":[`)
				w.(http.Flusher).Flush()
				s.stall(r)
			})
			return faultVendor{url: s.URL + "/"}
		}, check: func(t *testing.T, err error, _ time.Duration) {
			wantReason(t, err, sluice.LayerTransport, sluice.ReasonReadIdleTimeout)
		}},
		{name: "slow drip", inBody: true, vendor: func(t *testing.T) faultVendor {
			var s *testServer
			s = newTestServer(t, "h1", func(w http.ResponseWriter, r *http.Request) {
				tick := time.NewTicker(2 * faultTimeout)
				defer tick.Stop()
				for {
					io.WriteString(w, "x")
					w.(http.Flusher).Flush()
					select {
					case <-tick.C:
					case <-r.Context().Done():
						return
					case <-s.unblock:
						return
					}
				}
			})
			return faultVendor{url: s.URL + "/"}
		}, check: func(t *testing.T, err error, _ time.Duration) {
			wantReason(t, err, sluice.LayerTransport, sluice.ReasonReadIdleTimeout)
		}},
		{name: "reset mid-body", inBody: true, vendor: func(t *testing.T) faultVendor {
			reset := make(chan struct{})
			var once sync.Once
			s := vendor(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				conn, buf, err := w.(http.Hijacker).Hijack()
				if err != nil {
					t.Error(err)
					return
				}
				defer conn.Close()
				fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n%s", strings.Repeat("x", 100))
				buf.Flush()
				<-reset // the client has the headers: a reset now hits the body
				conn.(*net.TCPConn).SetLinger(0)
			})
			t.Cleanup(func() { once.Do(func() { close(reset) }) })
			return faultVendor{url: s.URL + "/", afterHeaders: func() { once.Do(func() { close(reset) }) }}
		}, check: func(t *testing.T, err error, _ time.Duration) {
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("err = %v, want ECONNRESET", err)
			}
			if e := sluice.ErrorOf(err); e != nil {
				t.Fatalf("the vendor's reset was reported as %s/%s", e.Layer, e.Reason)
			}
		}},
	}
	rows = append(rows, retryAfterRows(http.StatusTooManyRequests, c429, date429, ms429)...)
	rows = append(rows, retryAfterRows(http.StatusServiceUnavailable, c503, date503, ms503)...)
	rows = append(rows,
		faultRow{name: "Retry-After soon", vendor: statusVendor(http.StatusTooManyRequests, "Retry-After", constant("soon"), &soon.n),
			check: func(t *testing.T, err error, _ time.Duration) {
				e := wantRetryFailure(t, err, sluice.ReasonRetriesExhausted, 3, nil)
				wantStatus(t, err, http.StatusTooManyRequests)
				if e.RetryAfter != 0 {
					t.Fatalf("RetryAfter = %v from a garbage header, want 0", e.RetryAfter)
				}
			}},
		faultRow{name: "Retry-After negative", vendor: statusVendor(http.StatusServiceUnavailable, "Retry-After", constant("-5"), &neg.n),
			check: func(t *testing.T, err error, _ time.Duration) {
				e := wantRetryFailure(t, err, sluice.ReasonRetriesExhausted, 3, nil)
				wantStatus(t, err, http.StatusServiceUnavailable)
				if e.RetryAfter != 0 {
					t.Fatalf("RetryAfter = %v from a negative header, want 0", e.RetryAfter)
				}
			}},
		faultRow{name: "Retry-After huge", vendor: statusVendor(http.StatusTooManyRequests, "Retry-After", constant("99999999999"), &huge.n),
			check: func(t *testing.T, err error, _ time.Duration) {
				e := wantRetryFailure(t, err, sluice.ReasonRetriesExhausted, 1, nil)
				wantStatus(t, err, http.StatusTooManyRequests)
				if e.RetryAfter != time.Duration(math.MaxInt64) {
					t.Fatalf("RetryAfter = %v, want the saturated maximum", e.RetryAfter)
				}
				if n := huge.n.Load(); n != 1 {
					t.Fatalf("vendor saw %d requests, want 1", n)
				}
			}},
		faultRow{name: "Retry-After past deadline", deadline: 1500 * time.Millisecond,
			vendor: statusVendor(http.StatusServiceUnavailable, "Retry-After", constant("3"), &late.n),
			check: func(t *testing.T, err error, _ time.Duration) {
				e := wantRetryFailure(t, err, sluice.ReasonDeadlineExceeded, 1, nil)
				wantStatus(t, err, http.StatusServiceUnavailable)
				if e.RetryAfter != 3*time.Second {
					t.Fatalf("RetryAfter = %v, want 3s", e.RetryAfter)
				}
			}},
	)

	healthy := vendor(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body); io.WriteString(w, "ok") })
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			// Each row has its own vendor, transport, client and telemetry;
			// most of a row's time is a vendor's Retry-After, so rows
			// overlap their waits.
			t.Parallel()
			v := row.vendor(t)
			tel := newTelemetry(t)
			ts := TransportSettings{ConnectTimeout: faultTimeout, TLSHandshakeTimeout: faultTimeout,
				ResponseHeaderTimeout: faultTimeout, ReadIdleTimeout: faultTimeout,
				WriteTimeout: faultTimeout, PoolTimeout: faultTimeout, DialContext: v.dial}
			tr := NewTransport(ts)
			c := NewClient(WithTransport(tr), WithTelemetry(tel.tel), WithName("faults"),
				WithRetry(RetrySettings{MaxAttempts: 3, BaseDelay: 10 * time.Millisecond,
					MaxDelay: 50 * time.Millisecond, MaxRetryAfter: 5 * time.Second}),
				WithCircuitBreaker(BreakerSettings{}),
				WithLocalRateLimit(LocalRateLimitSettings{Requests: 1000, Period: time.Second, Bursty: true}),
				WithBulkhead(BulkheadSettings{MaxConcurrent: 1}),
				WithAttemptTimeout(AttemptTimeoutSettings{Timeout: 3 * time.Second}))
			deadline := row.deadline
			if deadline == 0 {
				deadline = 8 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()

			begin := time.Now()
			err := faultCall(t, ctx, c, v, row.inBody)
			elapsed := time.Since(begin)
			t.Logf("%s after %v", err, elapsed.Round(time.Millisecond))
			row.check(t, err, elapsed)
			if elapsed > 10*time.Second {
				t.Fatalf("the fault took %v to surface, want at most 10s", elapsed)
			}

			// Nothing leaked: no bulkhead permit (the gauge, and a call that a
			// held permit would refuse with bulkhead_full), no socket.
			if n := tel.sum(t, otelx.MetricActive, string(otelx.AttrLayer), string(sluice.LayerBulkhead)); n != 0 {
				t.Fatalf("bulkhead active = %d after the call, want 0", n)
			}
			fctx, fcancel := context.WithTimeout(context.Background(), 8*time.Second)
			defer fcancel()
			resp, err := c.Do(faultRequest(t, fctx, healthy.URL+"/"))
			if err != nil {
				t.Fatalf("follow-up call to a healthy vendor: %v", err)
			}
			readClose(resp)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("follow-up call: %s", resp.Status)
			}
			waitClientConnsClosed(t, c, tr)
		})
	}
}

// faultCall makes the row's call and returns its error: from Do, or for a
// fault in the body, from reading it.
func faultCall(t *testing.T, ctx context.Context, c *Client, v faultVendor, inBody bool) error {
	t.Helper()
	resp, err := c.Do(faultRequest(t, ctx, v.url))
	if !inBody {
		if err == nil {
			readClose(resp)
			t.Fatalf("got %s, want an error", resp.Status)
		}
		return err
	}
	if err != nil {
		t.Fatalf("Do: %v; want the fault in the body", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("got %s, want 200 and a broken body", resp.Status)
	}
	if v.afterHeaders != nil {
		v.afterHeaders()
	}
	_, err = io.ReadAll(resp.Body)
	if err == nil {
		t.Fatal("the body read to the end, want an error")
	}
	return err
}

// faultRequest is the app's kind of call: a POST made replay-safe by an
// Idempotency-Key.
func faultRequest(t *testing.T, ctx context.Context, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader([]byte(`{"model":"m"}`)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "fault-matrix")
	return req
}

// waitClientConnsClosed closes the client's idle connections and polls until
// the transport holds no socket slot.
func waitClientConnsClosed(t *testing.T, c *Client, tr *Transport) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.CloseIdleConnections()
		if tr.OpenConns() == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("OpenConns() = %d ten seconds after the calls, want 0", tr.OpenConns())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
