package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// newTestApp builds the app on its defaults (the embedded fake vendor,
// in-memory stores), closed at cleanup.
func newTestApp(tb testing.TB) *App {
	tb.Helper()
	cfg, err := LoadConfig(func(string) string { return "" })
	if err != nil {
		tb.Fatal(err)
	}
	app, err := NewApp(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = app.Close(context.Background()) })
	return app
}

// wantErrorBody checks the app's JSON error shape:
// {"error": {"layer": "...", "reason": "...", "message": "..."}}.
func wantErrorBody(tb testing.TB, status int, body []byte) {
	tb.Helper()
	var e struct {
		Error *struct {
			Layer, Reason, Message *string
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil || e.Error.Layer == nil ||
		e.Error.Reason == nil || e.Error.Message == nil || *e.Error.Layer == "" || *e.Error.Reason == "" {
		tb.Fatalf("%d with body %q, want the JSON error shape", status, body)
	}
}

// FuzzChatInput sends arbitrary bytes as the POST /v1/chat body. Properties:
// the app never panics (gin.Recovery would answer 500), the status is one of
// 200, 400, 413, 429, 502, 503, 504, and every other answer carries the JSON
// error shape. Each input has its own X-API-Key, so the user rate limit does
// not hide the handler from the fuzzer.
func FuzzChatInput(f *testing.F) {
	for _, s := range []string{
		`{"prompt":"hello"}`,
		`{"prompt":"hello","stream":true}`,
		`{"prompt":"   "}`,
		`{"prompt":1}`,
		`{"prompt":"a","stream":"yes"}`,
		`{"prompt":"\u0000\ud800"}`,
		`[]`, `null`, ``, `{`, `{"prompt":"x"}{"prompt":"y"}`,
		"\xff\xfe\x00",
		`{"prompt":"` + strings.Repeat("x", maxChatBody) + `"}`,
		strings.Repeat("[", 10000),
	} {
		f.Add([]byte(s))
	}
	app := newTestApp(f)
	h := app.Handler()
	var n atomic.Int64
	allowed := map[int]bool{200: true, 400: true, 413: true, 429: true, 502: true, 503: true, 504: true}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v1/chat", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-API-Key", fmt.Sprintf("fuzz-%d", n.Add(1)))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if !allowed[w.Code] {
			t.Fatalf("body %q: status %d, body %q", body, w.Code, w.Body.Bytes())
		}
		if w.Code != http.StatusOK {
			wantErrorBody(t, w.Code, w.Body.Bytes())
		}
	})
}

// rawExchange writes req (headers and body) on a fresh connection to addr
// while reading the answer, as a client that keeps sending does, and returns
// the status and body.
func rawExchange(t *testing.T, addr string, req io.Reader) (int, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	wg.Go(func() { _, _ = io.Copy(conn, req) }) // fails once the server hangs up; that is expected
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestOversizedInputRefused: a 1 MiB body gets 413 with the JSON error shape
// and a 1 MiB header gets 431, from the server main runs (newServer), and
// the server keeps serving.
func TestOversizedInputRefused(t *testing.T) {
	app := newTestApp(t)
	srv := newServer(app)
	srv.ErrorLog = nil
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	addr := ln.Addr().String()

	const mib = 1 << 20
	body := `{"prompt":"` + strings.Repeat("x", mib-len(`{"prompt":""}`)) + `"}`
	status, b := rawExchange(t, addr, io.MultiReader(strings.NewReader(fmt.Sprintf(
		"POST /v1/chat HTTP/1.1\r\nHost: %s\r\nX-API-Key: big-body\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
		addr, len(body))), strings.NewReader(body)))
	if status != http.StatusRequestEntityTooLarge {
		t.Fatalf("1 MiB body: status %d, want 413; body %q", status, b)
	}
	wantErrorBody(t, status, b)

	status, b = rawExchange(t, addr, strings.NewReader(fmt.Sprintf(
		"POST /v1/chat HTTP/1.1\r\nHost: %s\r\nX-API-Key: big-header\r\nX-Padding: %s\r\nContent-Length: 2\r\n\r\n{}",
		addr, strings.Repeat("p", mib))))
	if status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("1 MiB header: status %d, want 431; body %q", status, b)
	}

	c := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("healthz after the oversized requests: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz after the oversized requests: %s", resp.Status)
	}
}
