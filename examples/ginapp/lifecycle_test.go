package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Regression: App.Close left the idle sockets to the vendor open, because it
// looked for CloseIdleConnections on the outbound chain, which has none. An
// external vendor (which outlives the app) saw them open until its own idle
// timeout, and the app's connection goroutines ran on.
func TestCloseClosesVendorConnections(t *testing.T) {
	var open atomic.Int64
	vendor := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, completion("ok", 1))
	}))
	vendor.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	vendor.Start()
	defer vendor.Close()

	cfg := config(t, map[string]string{"VENDOR_URL": vendor.URL})
	a, err := NewApp(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	if got := (&app{App: a, srv: srv}).chat(t, "alice", hello); got.status != http.StatusOK {
		t.Fatalf("chat: %s", got)
	}
	if n := open.Load(); n != 1 {
		t.Fatalf("the vendor has %d connections open after one call, want 1 (kept alive)", n)
	}
	if err := a.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// The vendor sees the close asynchronously; wait for it, generously.
	for deadline := time.Now().Add(20 * time.Second); open.Load() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the vendor still has %d connections open 20s after App.Close", open.Load())
		}
	}
}

// On SIGTERM (ctx canceled) serve stops accepting at once, lets the request
// in flight finish with 200, and returns nil.
func TestServeShutsDownGracefully(t *testing.T) {
	v := newGateVendor(t)
	defer v.open()
	cfg := config(t, vendorEnv(v.scriptedVendor, map[string]string{"SLUICE_SHUTDOWN_GRACE": "60s"}))
	a, err := NewApp(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- serve(ctx, a, ln) }()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	inflight := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/chat", strings.NewReader(hello))
		req.Header.Set("X-API-Key", "alice")
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("the request in flight failed: %v", err)
			inflight <- answer{}
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		inflight <- answer{status: resp.StatusCode, header: resp.Header, body: body}
	}()
	v.waitArrived(t, 1)

	cancel() // the SIGTERM path
	// The listener closes while the request is still held at the vendor.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("serve still accepts connections 20s after the shutdown began")
		}
	}
	select {
	case err := <-served:
		t.Fatalf("serve returned %v with a request in flight", err)
	default:
	}

	v.open()
	if got := <-inflight; got.status != http.StatusOK {
		t.Errorf("the request in flight: %s", got)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not return 30s after the last request finished")
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("a new connection was accepted after serve returned")
	}
}

// serve returns the error when the listener fails, and still closes the app.
func TestServeReturnsListenerError(t *testing.T) {
	a, err := NewApp(context.Background(), config(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if err := serve(context.Background(), a, ln); err == nil || errors.Is(err, http.ErrServerClosed) {
		t.Errorf("serve on a closed listener returned %v, want its error", err)
	}
}

// The demo drives a burst through the app and the fake vendor and prints
// its table. Whatever the load, the vendor never sees more sockets than
// SLUICE_VENDOR_MAX_CONNS nor more concurrent requests than
// SLUICE_VENDOR_CONCURRENCY: both are caps that hold by construction.
func TestDemo(t *testing.T) {
	cfg, err := LoadConfig(demoEnv(getenv(nil)))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := runDemo(cfg, 2*time.Second, &buf); err != nil {
		t.Fatalf("runDemo: %v", err)
	}
	out := buf.String()
	for _, want := range []string{"requests sent", "served (200)", "rejected by", "vendor observed", "How to read it:",
		"API key", "critical", "abuser (heavy)"} {
		if !strings.Contains(out, want) {
			t.Errorf("the demo's output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "vip") {
		t.Errorf("the demo printed the critical API key:\n%s", out)
	}
	if m := regexp.MustCompile(`(?m)^served \(200\)\s+(\d+)`).FindStringSubmatch(out); m == nil || m[1] == "0" {
		t.Errorf("the demo served nothing:\n%s", out)
	}
	for _, c := range []struct {
		row   string
		limit int
	}{{"sockets", cfg.VendorMaxConns}, {"concurrent requests", cfg.VendorConcurrency}} {
		m := regexp.MustCompile(`(?m)^` + c.row + `\s+(\d+)\s+(\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Errorf("no %q row in the demo's output:\n%s", c.row, out)
			continue
		}
		peak, _ := strconv.Atoi(m[1])
		shown, _ := strconv.Atoi(m[2])
		if shown != c.limit {
			t.Errorf("%s: the table shows the cap %d, the configuration says %d", c.row, shown, c.limit)
		}
		if peak < 1 || peak > c.limit {
			t.Errorf("%s: the vendor saw a peak of %d, want 1..%d:\n%s", c.row, peak, c.limit, out)
		}
	}
	if regexp.MustCompile(`(?m)^\s*\d+s\s+sent \d+`).MatchString(out) {
		t.Errorf("progress lines in output that is not a terminal:\n%s", out)
	}
	t.Logf("\n%s", out)
}

// With OTEL_EXPORTER_OTLP_ENDPOINT set, the app exports its spans over
// OTLP/HTTP to that endpoint, and Close flushes them (the batcher's
// goroutine and the exporter's sockets end with it: goleak checks).
func TestTracesExportedAndFlushedOnClose(t *testing.T) {
	var posts atomic.Int64
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" {
			posts.Add(1)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	a, err := NewApp(context.Background(), config(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL}))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	if got := (&app{App: a, srv: srv}).chat(t, "alice", hello); got.status != http.StatusOK {
		t.Errorf("chat: %s", got)
	}
	srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if posts.Load() == 0 {
		t.Error("no spans reached the OTLP endpoint by the end of Close")
	}
}
