package outbound

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-go/sluice"
)

// padHeaders returns n header values of 4000 bytes that hpack cannot
// compress much, so that the bytes on the wire are about the bytes decoded.
func padHeaders(n int) []string {
	rng := rand.New(rand.NewPCG(11, 10))
	out := make([]string, n)
	for i := range out {
		b := make([]byte, 4000)
		for j := range b {
			b[j] = byte('!' + rng.IntN(90))
		}
		out[i] = string(b)
	}
	return out
}

// TestHostileHugeResponseHeaders (issue 11, finding 10): a vendor sending
// far more response headers than any API needs (1 MiB here; net/http alone
// accepts 10 MB per connection) is cut off at DefaultMaxResponseHeaderBytes:
// the call fails with transport/response_header_too_large (over HTTP/2, a
// vendor that overshoots by far gets its connection closed with a protocol
// error instead), and the socket is released. Headers within the bound, or
// within a larger MaxResponseHeaderBytes, pass.
func TestHostileHugeResponseHeaders(t *testing.T) {
	cases := []struct {
		name    string
		headers int // of 4000 bytes
		max     int // MaxResponseHeaderBytes
		wantErr bool
	}{
		{"32KB", 8, 0, false},
		{"just-over-64KiB", 17, 0, true},
		{"1MiB", 256, 0, true},
		{"1MiB-allowed", 256, 2 << 20, false},
	}
	for _, proto := range protocols {
		for _, tc := range cases {
			t.Run(proto+"/"+tc.name, func(t *testing.T) {
				pad := padHeaders(tc.headers)
				s := newTestServer(t, proto, func(w http.ResponseWriter, r *http.Request) {
					for i, v := range pad {
						w.Header().Set("X-Pad-"+strconv.Itoa(i), v)
					}
					w.WriteHeader(http.StatusOK)
				})
				tr := newTestTransport(t, s.settings(TransportSettings{MaxResponseHeaderBytes: tc.max}))
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				resp, err := get(ctx, tr, s.url(testHosts[0], "/"))
				if !tc.wantErr {
					if err != nil {
						t.Fatalf("err = %v; want the vendor's answer", err)
					}
					_ = resp.Body.Close()
					return
				}
				if err == nil {
					_ = resp.Body.Close()
					t.Fatalf("got %s with %d bytes of headers; want an error", resp.Status, 4000*tc.headers)
				}
				if ctx.Err() != nil {
					t.Fatalf("err = %v only at the deadline", err)
				}
				switch {
				case errors.Is(err, sluice.ErrResponseHeaderTooLarge):
					wantTransportError(t, err, sluice.ErrResponseHeaderTooLarge)
					if DefaultShouldRetry(nil, err) {
						t.Fatalf("DefaultShouldRetry(%v) = true; a vendor with huge headers would only do it again", err)
					}
				case proto == "h2" && tc.headers > 17 && strings.Contains(err.Error(), "PROTOCOL_ERROR"):
					// net/http closed the connection: too far over to say why.
				default:
					t.Fatalf("err = %v; want transport/response_header_too_large", err)
				}
				// The failed exchange holds no socket: over HTTP/1 it was
				// closed; over HTTP/2 the connection is gone or idle.
				waitNoOpenConns(t, tr, proto == "h2")
			})
		}
	}
}
