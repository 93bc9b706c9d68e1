package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testEnv is the environment every test starts from, on top of the code's
// defaults: limits that stay out of the way unless a test sets them. The
// vendor rate is off and the user rate huge, so that a test trips only the
// layer it means to.
var testEnv = map[string]string{
	"SLUICE_USER_RATE":     "100000-S",
	"SLUICE_VENDOR_RATE":   "off",
	"SLUICE_FAKE_LATENCY":  "1ms",
	"SLUICE_FAKE_CAPACITY": "0",
	"SLUICE_FAKE_RATE":     "0",
}

// config loads a Config through LoadConfig from testEnv overridden by env.
func config(t *testing.T, env map[string]string) Config {
	t.Helper()
	cfg, err := LoadConfig(func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return testEnv[k]
	})
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	return cfg
}

// app is the app under test behind a real loopback server.
type app struct {
	*App
	srv *httptest.Server
}

// startApp starts NewApp(cfg) on httptest, behind the http.Server that main
// runs (newServer: its timeouts and limits); the server and the app close when
// the test ends (after any vendor the test started before, which closes last).
func startApp(t *testing.T, cfg Config) *app {
	t.Helper()
	a, err := NewApp(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewApp: %v", err)
	}
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = newServer(a)
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Close(ctx); err != nil {
			t.Errorf("App.Close: %v", err)
		}
	})
	return &app{App: a, srv: srv}
}

// answer is a whole response, its body read.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) String() string {
	return http.StatusText(a.status) + " " + strings.TrimSpace(string(a.body))
}

// do sends req to the app and reads the whole answer.
func (a *app) do(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", req.Method, req.URL.Path, err)
		return answer{}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("%s %s: reading the body: %v", req.Method, req.URL.Path, err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: body}
}

// chat posts body to /v1/chat as key (no X-API-Key when key is empty). It
// may run on any goroutine.
func (a *app) chat(t *testing.T, key, body string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, a.srv.URL+"/v1/chat", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	return a.do(t, req)
}

func (a *app) get(t *testing.T, path string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, a.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a.do(t, req)
}

// chatAsync runs chat on its own goroutine; receive from the channel for the
// answer.
func (a *app) chatAsync(t *testing.T, key, body string) <-chan answer {
	ch := make(chan answer, 1)
	go func() { ch <- a.chat(t, key, body) }()
	return ch
}

const hello = `{"prompt":"hello"}`

// wantError checks an error answer: the status, the JSON body
// {"error": {"layer", "reason", "message"}} with layer one of layers and
// reason one of reasons, and a Retry-After of at least one whole second when
// wantRetryAfter (none otherwise).
func wantError(t *testing.T, got answer, status int, layers, reasons []string, wantRetryAfter bool) {
	t.Helper()
	if got.status != status {
		t.Errorf("status %d, want %d: %s", got.status, status, got)
	}
	var e errorBody
	if err := json.Unmarshal(got.body, &e); err != nil {
		t.Errorf("body %q is not JSON: %v", got.body, err)
		return
	}
	if !contains(layers, e.Error.Layer) || !contains(reasons, e.Error.Reason) {
		t.Errorf("error %s/%s, want layer in %v and reason in %v: %s", e.Error.Layer, e.Error.Reason,
			layers, reasons, got)
	}
	if e.Error.Message == "" {
		t.Errorf("error without a message: %s", got)
	}
	if ct := got.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	ra := got.header.Get("Retry-After")
	switch {
	case wantRetryAfter && !isWholeSeconds(ra):
		t.Errorf("Retry-After %q, want whole seconds >= 1: %s", ra, got)
	case !wantRetryAfter && ra != "":
		t.Errorf("Retry-After %q on a %d, want none", ra, got.status)
	}
}

func contains(set []string, s string) bool {
	for _, v := range set {
		if v == s {
			return true
		}
	}
	return false
}

func isWholeSeconds(s string) bool {
	if s == "" || s == "0" || strings.TrimLeft(s, "0123456789") != "" {
		return false
	}
	return true
}

func one(s string) []string { return []string{s} }

// completion is an OpenAI-style answer with content and total_tokens.
func completion(content string, tokens int) string {
	b, _ := json.Marshal(map[string]any{
		"choices": []any{map[string]any{"message": map[string]string{"role": "assistant", "content": content}}},
		"usage":   map[string]int{"total_tokens": tokens},
	})
	return string(b)
}

// scriptedVendor is a loopback vendor whose handler the test writes. It
// counts the requests it receives.
type scriptedVendor struct {
	srv      *httptest.Server
	requests atomic.Int64
}

func newVendor(t *testing.T, h http.HandlerFunc) *scriptedVendor {
	t.Helper()
	v := &scriptedVendor{}
	v.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v.requests.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		h(w, r)
	}))
	t.Cleanup(v.srv.Close)
	return v
}

// gateVendor holds every request until the test opens the gate (or the
// request is canceled), then answers 200. It tells the test when each
// request has arrived, which makes overload deterministic: a request that
// arrived holds whatever it holds (a load-shedder slot, an admission token,
// a bulkhead permit) until the gate opens.
type gateVendor struct {
	*scriptedVendor
	arrived chan struct{}
	gate    chan struct{}
	once    sync.Once
}

// newGateVendor starts the vendor. Open the gate before the test returns
// (defer v.open()): the servers' Close waits for the requests it holds.
func newGateVendor(t *testing.T) *gateVendor {
	t.Helper()
	g := &gateVendor{arrived: make(chan struct{}, 1000), gate: make(chan struct{})}
	g.scriptedVendor = newVendor(t, func(w http.ResponseWriter, r *http.Request) {
		g.arrived <- struct{}{}
		select {
		case <-g.gate:
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, completion("ok", 7))
		case <-r.Context().Done():
		}
	})
	return g
}

func (g *gateVendor) open() { g.once.Do(func() { close(g.gate) }) }

// waitArrived waits until n more requests have reached the vendor.
func (g *gateVendor) waitArrived(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for range n {
		select {
		case <-g.arrived:
		case <-timeout:
			t.Fatalf("the vendor did not receive the request in 30s")
		}
	}
}

// vendorEnv returns env with VENDOR_URL set to v.
func vendorEnv(v *scriptedVendor, env map[string]string) map[string]string {
	out := map[string]string{"VENDOR_URL": v.srv.URL}
	for k, val := range env {
		out[k] = val
	}
	return out
}

func mustCompile(p string) *regexp.Regexp { return regexp.MustCompile(p) }
