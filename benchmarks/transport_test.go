package benchmarks

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sluice-go/sluice/outbound"
)

// BenchmarkTransport compares outbound.NewTransport with a plain
// http.Transport configured alike (same idle pool), on loopback h1 with
// keep-alive, GET of a small body, in parallel.
func BenchmarkTransport(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"choices":[{"message":{"content":"ok"}}]}`)
	}))
	defer srv.Close()

	plain := &http.Transport{
		MaxIdleConns:        100,
		MaxIdleConnsPerHost: 100,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	defer plain.CloseIdleConnections()
	sluice := outbound.NewTransport(outbound.TransportSettings{})
	defer sluice.CloseIdleConnections()

	for _, bc := range []struct {
		name string
		rt   http.RoundTripper
	}{{"plain", plain}, {"sluice", sluice}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL, nil)
					resp, err := bc.rt.RoundTrip(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}
