package quota

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-go/sluice/internal/usage"
)

// endless is a loopback vendor that streams until the client goes away:
// SSE events carrying usage, or one JSON object that never ends.
func endless(t *testing.T, contentType, head, chunk string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		f := w.(http.Flusher)
		if _, err := io.WriteString(w, head); err != nil {
			return
		}
		for r.Context().Err() == nil {
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
			f.Flush()
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// firstRead closes started after the first Read of the body it wraps has
// returned, so that the test closes the body while the caller is reading.
type firstRead struct {
	io.ReadCloser
	once    sync.Once
	started chan struct{}
}

func (f *firstRead) Read(p []byte) (int, error) {
	n, err := f.ReadCloser.Read(p)
	f.once.Do(func() { close(f.started) })
	return n, err
}

// TestHostileWatcherCloseRacesRead (issue 11, finding 5): closing a watched
// body while another goroutine reads it (the usual way to abort a stream) is
// safe under -race, and the usage callback runs exactly once, whoever wins.
func TestHostileWatcherCloseRacesRead(t *testing.T) {
	const iterations = 100
	watchers := map[string]struct {
		srv   *httptest.Server
		watch func(io.ReadCloser, func(usage.Tokens, bool)) io.ReadCloser
	}{
		"sse": {endless(t, "text/event-stream", "",
			"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":{\"total_tokens\":7}}\n\n"),
			func(rc io.ReadCloser, fn func(usage.Tokens, bool)) io.ReadCloser { return WatchSSE(rc, usage.Auto, fn) }},
		"json": {endless(t, "application/json", `{"usage":{"total_tokens":7},"pad":"`, strings.Repeat("x", 512)),
			func(rc io.ReadCloser, fn func(usage.Tokens, bool)) io.ReadCloser {
				return WatchJSON(rc, 1<<20, usage.Auto, fn)
			}},
	}
	for name, w := range watchers {
		t.Run(name, func(t *testing.T) {
			tr := &http.Transport{}
			t.Cleanup(tr.CloseIdleConnections)
			client := &http.Client{Transport: tr}
			for range iterations {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, w.srv.URL, nil)
				resp, err := client.Do(req)
				if err != nil {
					cancel()
					t.Fatal(err)
				}
				fr := &firstRead{ReadCloser: resp.Body, started: make(chan struct{})}
				var calls atomic.Int32
				body := w.watch(fr, func(usage.Tokens, bool) { calls.Add(1) })
				done := make(chan struct{})
				go func() {
					defer close(done)
					_, _ = io.Copy(io.Discard, body)
				}()
				<-fr.started
				_ = body.Close()
				<-done
				_ = body.Close()
				cancel()
				if n := calls.Load(); n != 1 {
					t.Fatalf("the usage callback ran %d times, want exactly once", n)
				}
			}
		})
	}
}
