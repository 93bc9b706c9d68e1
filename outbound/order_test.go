package outbound

import (
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/otelx"
)

// openTransport counts attempts whose response body is still open (or whose
// round trip is still running): a socket held on behalf of a call.
type openTransport struct {
	next http.RoundTripper
	open atomic.Int64
}

type openRelease struct{ o *openTransport }

func (r openRelease) BodyDone() { r.o.open.Add(-1) }

func (o *openTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	o.open.Add(1)
	resp, err := o.next.RoundTrip(req)
	if err != nil {
		o.open.Add(-1)
		return nil, err
	}
	releaseOnClose(resp, openRelease{o})
	return resp, nil
}

// TestBackoffHoldsNothing pins the canonical order: when a backoff (here a
// Retry-After wait) starts, the call holds no bulkhead permit, no rate-limit
// wait and no socket, whatever order the options were given in.
func TestBackoffHoldsNothing(t *testing.T) {
	orders := map[string]func(ot http.RoundTripper, tel *otelx.Telemetry) []Option{
		"canonical": func(ot http.RoundTripper, tel *otelx.Telemetry) []Option {
			return []Option{WithTelemetry(tel), WithRetry(RetrySettings{BaseDelay: time.Millisecond}),
				WithCircuitBreaker(BreakerSettings{}), WithLocalRateLimit(LocalRateLimitSettings{Requests: 1000, Period: time.Second, Bursty: true}),
				WithBulkhead(BulkheadSettings{MaxConcurrent: 1}), WithAttemptTimeout(AttemptTimeoutSettings{Timeout: 10 * time.Second}), WithTransport(ot)}
		},
		"reversed": func(ot http.RoundTripper, tel *otelx.Telemetry) []Option {
			return []Option{WithTransport(ot), WithAttemptTimeout(AttemptTimeoutSettings{Timeout: 10 * time.Second}), WithBulkhead(BulkheadSettings{MaxConcurrent: 1}),
				WithLocalRateLimit(LocalRateLimitSettings{Requests: 1000, Period: time.Second, Bursty: true}),
				WithCircuitBreaker(BreakerSettings{}), WithRetry(RetrySettings{BaseDelay: time.Millisecond}), WithTelemetry(tel)}
		},
	}
	for name, opts := range orders {
		t.Run(name, func(t *testing.T) {
			var handling atomic.Int64
			var seen counter
			srv := vendor(t, func(w http.ResponseWriter, r *http.Request) {
				handling.Add(1)
				defer handling.Add(-1)
				if seen.add(r.URL.Path) == 1 && r.URL.Path == "/call" {
					w.Header().Set("Retry-After-Ms", "50")
					w.WriteHeader(http.StatusServiceUnavailable)
					_, _ = io.WriteString(w, "busy")
					return
				}
				_, _ = io.WriteString(w, "ok")
			})
			ot := &openTransport{next: transport(t)}
			var tm *telemetry
			var client *Client
			var checked atomic.Int64
			tm = newTelemetry(t, onStart{name: otelx.SpanBackoff, fn: func() {
				checked.Add(1)
				if n := tm.sum(t, otelx.MetricActive, string(otelx.AttrLayer), string(sluice.LayerBulkhead)); n != 0 {
					t.Errorf("bulkhead permits held during backoff: %d", n)
				}
				if n := ot.open.Load(); n != 0 {
					t.Errorf("attempts with an open socket during backoff: %d", n)
				}
				if n := handling.Load(); n != 0 {
					t.Errorf("vendor still handling %d requests during backoff", n)
				}
				// The bulkhead (size 1, no wait) must admit another call now.
				resp, err := client.Get(srv.URL + "/probe")
				if err != nil {
					t.Errorf("probe during backoff: %v", err)
					return
				}
				_ = resp.Body.Close()
			}})
			client = NewClient(opts(ot, tm.tel)...)
			resp, err := client.Get(srv.URL + "/call")
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != 200 || seen.get("/call") != 2 {
				t.Fatalf("status %d after %d attempts; want 200 after 2", resp.StatusCode, seen.get("/call"))
			}
			if checked.Load() != 1 {
				t.Fatalf("backoff spans: %d, want 1", checked.Load())
			}
			if n := ot.open.Load(); n != 0 {
				t.Fatalf("open attempts after the call: %d", n)
			}
		})
	}
}
