package outbound

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-go/sluice"
)

// TestHostileShouldRetryOnSuccess (issue 11, finding 4): a vendor that adds
// "x-should-retry: true" to every answer must not make a success (or a
// redirect) be fetched again. The header can only make an error status
// (400 and above) retryable, and "x-should-retry: false" still stops the
// retry of a status DefaultShouldRetry would retry.
func TestHostileShouldRetryOnSuccess(t *testing.T) {
	cases := []struct {
		status   int
		header   string
		attempts int  // the vendor sees this many
		fails    bool // the call ends in retry/retries_exhausted
	}{
		{http.StatusOK, "true", 1, false},
		{http.StatusCreated, "true", 1, false},
		{http.StatusNoContent, "true", 1, false},
		{http.StatusFound, "true", 1, false},
		{http.StatusNotModified, "true", 1, false},
		{http.StatusBadRequest, "true", 3, true},          // the header makes a 4xx retryable
		{http.StatusInternalServerError, "true", 3, true}, // retried anyway
		{http.StatusServiceUnavailable, "false", 1, false},
		{http.StatusOK, "false", 1, false},
	}
	for _, tc := range cases {
		t.Run(strconv.Itoa(tc.status)+"/"+tc.header, func(t *testing.T) {
			var seen counter
			srv := vendor(t, func(w http.ResponseWriter, r *http.Request) {
				seen.add("")
				w.Header().Set("X-Should-Retry", tc.header)
				if tc.status == http.StatusFound {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, "answer")
			})
			client := NewClient(WithTransport(transport(t)), WithRetry(RetrySettings{BaseDelay: time.Millisecond}))
			resp, err := client.Get(srv.URL)
			if tc.fails {
				e := wantReason(t, err, sluice.LayerRetry, sluice.ReasonRetriesExhausted)
				var se *sluice.StatusError
				if !errors.As(err, &se) || se.StatusCode != tc.status || e.Attempts != tc.attempts {
					t.Fatalf("err = %v; want %d attempts wrapping the %d", err, tc.attempts, tc.status)
				}
			} else {
				if err != nil {
					t.Fatalf("err = %v; want the vendor's %d", err, tc.status)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
				}
			}
			if n := seen.get(""); n != tc.attempts {
				t.Fatalf("the vendor saw %d attempts, want %d", n, tc.attempts)
			}
		})
	}
}
