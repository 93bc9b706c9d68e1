package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-go/sluice/internal/redistest"
	"github.com/sluice-go/sluice/status"
)

type readiness struct {
	Status string `json:"status"`
	Redis  string `json:"redis"`
}

func readyz(t *testing.T, a *app) (int, readiness) {
	t.Helper()
	got := a.get(t, "/readyz")
	var r readiness
	if err := json.Unmarshal(got.body, &r); err != nil {
		t.Fatalf("/readyz body %q: %v", got.body, err)
	}
	return got.status, r
}

// TestReadyzDegradedWithRedisDown: /readyz is 200 with Redis up (ready) and
// with Redis down (degraded, said in the body), against a real redis-server.
func TestReadyzDegradedWithRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	a := startApp(t, config(t, map[string]string{"REDIS_URL": srv.URL}))
	// With Redis up it is ready: asked up to 20 times, since a ping may miss
	// the client's 50ms timeouts on a loaded machine (each answer is 200).
	var r readiness
	for range 20 {
		var code int
		if code, r = readyz(t, a); code != http.StatusOK {
			t.Fatalf("Redis up: %d %+v, want 200", code, r)
		}
		if r.Status == "ready" {
			break
		}
	}
	if r.Status != "ready" || r.Redis != "ok" {
		t.Errorf("Redis up: %+v, want ready", r)
	}
	srv.Kill()
	if code, r := readyz(t, a); code != http.StatusOK || r.Status != "degraded" || r.Redis != "unreachable" {
		t.Errorf("Redis down: %d %+v, want 200 degraded", code, r)
	}
	if got := a.chat(t, "alice", hello); got.status != http.StatusOK {
		t.Errorf("chat with Redis down: %s (the app serves on its fallbacks)", got)
	}

	b := startApp(t, config(t, nil)) // no Redis at all
	if code, r := readyz(t, b); code != http.StatusOK || r.Status != "ready" || r.Redis != "none" {
		t.Errorf("no Redis: %d %+v", code, r)
	}
}

// TestReadyzShuttingDown: once shutdown begins, /readyz answers 503 for
// SLUICE_SHUTDOWN_DELAY while the app keeps serving, then the listener
// closes and serve returns.
func TestReadyzShuttingDown(t *testing.T) {
	t.Parallel() // its own app; most of its time is the shutdown delay
	// 4s: ample for the few loopback requests below, each bounded by a
	// causal event, even on a loaded machine.
	cfg := config(t, map[string]string{"SLUICE_SHUTDOWN_DELAY": "4s"})
	a, err := NewApp(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- serve(ctx, a, ln) }()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	get := func(path string) (int, string) {
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Fatalf("before shutdown: %d %s", code, body)
	}
	cancel() // the SIGTERM path
	// The flag is set as soon as serve sees ctx done; the app keeps serving
	// for 4s, so the wait below is bounded by a causal event, not a timer.
	for {
		code, body := get("/readyz")
		if code == http.StatusServiceUnavailable {
			if !strings.Contains(body, `"shutting_down"`) {
				t.Errorf("503 body %q", body)
			}
			break
		}
		if code != http.StatusOK {
			t.Fatalf("during shutdown: %d %s", code, body)
		}
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("healthz while draining: %d, want 200 (still serving)", code)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not return 60s after the shutdown began")
	}
}

// TestStatusPageNoSecrets: the status page, HTML and JSON, shows every layer
// by its resilience.layer and policy name, and never a secret planted in the
// configuration: the Redis password of REDIS_URL, the Redis address, an API
// key that was served and one that was rejected.
func TestStatusPageNoSecrets(t *testing.T) {
	const password = "redis-pw-planted-91c3e7"
	srv := redistest.Start(t, "--requirepass", password)
	redisURL := "redis://:" + password + "@" + srv.Addr + "/0"
	const served, limited = "sk-served-planted-5b2f0d", "sk-limited-planted-e8a441"
	a := startApp(t, config(t, map[string]string{"REDIS_URL": redisURL, "SLUICE_USER_RATE": "1-M", "SLUICE_VENDOR_RATE": "1000-S"}))
	if got := a.chat(t, served, hello); got.status != http.StatusOK {
		t.Fatalf("chat: %s", got)
	}
	a.chat(t, limited, hello)
	if got := a.chat(t, limited, hello); got.status != http.StatusTooManyRequests {
		t.Fatalf("second chat of one key: %s, want 429", got)
	}

	js := a.get(t, "/debug/sluice?format=json")
	html := a.get(t, "/debug/sluice")
	for name, page := range map[string]answer{"json": js, "html": html} {
		if page.status != http.StatusOK {
			t.Fatalf("%s: %s", name, page)
		}
		for _, secret := range []string{password, served, limited, srv.Addr, redisURL, "redis://"} {
			if strings.Contains(string(page.body), secret) {
				t.Errorf("the %s page shows %q", name, secret)
			}
		}
	}
	var s status.Snapshot
	if err := json.Unmarshal(js.body, &s); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, l := range s.Layers {
		got[l.Layer] = l.Policy
		if l.Breaker != nil && l.Breaker.State != "closed" {
			t.Errorf("breaker %q, want closed", l.Breaker.State)
		}
		if l.Redis != nil && !l.Redis.Healthy {
			t.Errorf("%s: Redis unhealthy with the password given", l.Layer)
		}
	}
	for _, want := range []string{"load_shedder", "user_rate_limiter", "admission_queue", "retry", "circuit_breaker",
		"global_rate_limiter", "bulkhead", "call_timeout", "transport"} {
		if _, ok := got[want]; !ok {
			t.Errorf("layer %s missing from the page: %v", want, got)
		}
	}
	if got["circuit_breaker"] != "vendor" || got["load_shedder"] != "default" {
		t.Errorf("policies = %v", got)
	}
	if len(s.Recent) == 0 || s.Recent[0].Layer != "user_rate_limiter" || s.Recent[0].Reason != "rate_limited" {
		t.Errorf("recent = %+v", s.Recent)
	}
	if !strings.Contains(string(html.body), `data-layer="user_rate_limiter"`) {
		t.Error("HTML lacks the user rate limiter")
	}
}
