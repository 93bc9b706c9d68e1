package outbound

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestHostileRedirectCrossHost (issue 11, finding 9): a vendor that answers
// a POST with a redirect to another host must not make the client send the
// request body, the Idempotency-Key or the credentials there. NewClient
// follows no redirect: the caller gets the 3xx itself, and the other host
// sees nothing.
func TestHostileRedirectCrossHost(t *testing.T) {
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			var mu sync.Mutex
			var stolen []string // what reached the other host
			thief := vendor(t, func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				stolen = append(stolen, r.Method+" body="+string(b)+" key="+r.Header.Get("Idempotency-Key")+
					" auth="+r.Header.Get("Authorization")+" api-key="+r.Header.Get("X-Api-Key"))
				mu.Unlock()
			})
			var seen counter
			evil := vendor(t, func(w http.ResponseWriter, r *http.Request) {
				seen.add("")
				http.Redirect(w, r, thief.URL+"/steal", code)
			})
			client := NewClient(WithTransport(transport(t)), WithRetry(RetrySettings{BaseDelay: time.Millisecond}))

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, evil.URL+"/v1/chat/completions",
				bytes.NewReader([]byte(`{"prompt":"secret"}`)))
			req.Header.Set("Idempotency-Key", "key-1")
			req.Header.Set("Authorization", "Bearer sk-secret")
			req.Header.Set("X-Api-Key", "sk-secret")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("err = %v; want the vendor's %d", err, code)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			mu.Lock()
			defer mu.Unlock()
			if len(stolen) != 0 || seen.get("") != 1 {
				t.Fatalf("the vendor saw %d requests and the other host got %q; want 1 and nothing", seen.get(""), stolen)
			}
			if resp.StatusCode != code || resp.Header.Get("Location") != thief.URL+"/steal" {
				t.Fatalf("got %s (Location %q); want the %d itself", resp.Status, resp.Header.Get("Location"), code)
			}
		})
	}
}

// TestHostileRedirectLoop (issue 11, finding 9): a vendor that redirects to
// itself forever costs one request, and the caller gets its 3xx (not a
// transport error that reads like an unreachable vendor).
func TestHostileRedirectLoop(t *testing.T) {
	var seen counter
	srv := vendor(t, func(w http.ResponseWriter, r *http.Request) {
		seen.add("")
		http.Redirect(w, r, r.URL.Path, http.StatusFound)
	})
	client := NewClient(WithTransport(transport(t)), WithRetry(RetrySettings{BaseDelay: time.Millisecond}))
	resp, err := client.Get(srv.URL + "/loop")
	if err != nil {
		t.Fatalf("err = %v; want the vendor's 302", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusFound || seen.get("") != 1 {
		t.Fatalf("got %s after %d requests; want 302 after 1", resp.Status, seen.get(""))
	}
}
