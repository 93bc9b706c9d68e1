package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-go/sluice/internal/redistest"
)

// chatOnce posts one chat and returns the status.
func chatOnce(t *testing.T, h http.Handler) int {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/v1/chat", strings.NewReader(`{"prompt":"hi"}`))
	req.Header.Set("X-API-Key", "k1")
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code
}

// TestAppStartsWithRedisDownAndCloses: the app wires the global rate limit
// and the shared breaker against a Redis that is not running, answers a chat
// on its local fallbacks, and Close releases every goroutine (goleak).
func TestAppStartsWithRedisDownAndCloses(t *testing.T) {
	srv := redistest.Start(t)
	srv.Kill()
	for _, redisURL := range []string{srv.URL, ""} {
		env := map[string]string{"REDIS_URL": redisURL, "SLUICE_VENDOR_TOKENS": "100000-M", "SLUICE_FAKE_LATENCY": "1ms"}
		cfg, err := LoadConfig(func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		app, err := NewApp(context.Background(), cfg)
		if err != nil {
			t.Fatalf("REDIS_URL=%q: %v", redisURL, err)
		}
		if code := chatOnce(t, app.Handler()); code != http.StatusOK {
			t.Errorf("REDIS_URL=%q: chat answered %d; want 200", redisURL, code)
		}
		if err := app.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
