package sluice

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-go/sluice/internal/redistest"
)

// TestReadmeWiringAnswersRight copies the README's wiring example into a new
// module (a replace directive points at this checkout), fills in its three
// placeholders (the vendor URL, the Redis address, the listen address) and
// its request budget, runs it against a loopback vendor, and checks what its
// handler answers: a vendor 429 becomes 503 with Retry-After, the request's
// deadline 504, and no answer ever echoes the vendor's URL.
func TestReadmeWiringAnswersRight(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the README's example with the go command")
	}
	t.Parallel() // the go command's time, overlapping the docs' snippets
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	sec := string(readme)
	i := strings.Index(sec, "## Wiring it")
	if i < 0 {
		t.Fatal("README.md has no \"## Wiring it\" section")
	}
	m := regexp.MustCompile("(?s)```go\n(.*?)```").FindStringSubmatch(sec[i:])
	if m == nil {
		t.Fatal("no Go snippet under \"## Wiring it\"")
	}
	code := m[1]

	var mode atomic.Value // "ok", "429", "hang"
	mode.Store("ok")
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case "429":
			w.Header().Set("Retry-After", "30")
			http.Error(w, "quota exceeded at "+r.Host, http.StatusTooManyRequests)
		case "hang":
			select {
			case <-r.Context().Done():
			case <-time.After(20 * time.Second):
			}
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"answer":"42"}`)
		}
	}))
	defer vendor.Close()
	srv := redistest.Start(t)
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(redistest.FreePort(t)))

	for _, r := range []struct{ name, re, with string }{
		{"vendorURL", `vendorURL\s*=\s*"[^"]*"`, fmt.Sprintf("vendorURL = %q", vendor.URL+"/v1/answer")},
		{"redisAddr", `redisAddr\s*=\s*"[^"]*"`, fmt.Sprintf("redisAddr = %q", srv.Addr)},
		{"listenAddr", `listenAddr\s*=\s*"[^"]*"`, fmt.Sprintf("listenAddr = %q", listen)},
		{"requestBudget", `requestBudget\s*=\s*[^\n]*`, "requestBudget = 2 * time.Second"},
	} {
		re := regexp.MustCompile(r.re)
		if !re.MatchString(code) {
			t.Fatalf("the README's example has no %s placeholder (%s)", r.name, r.re)
		}
		code = re.ReplaceAllLiteralString(code, r.with)
	}

	dir := t.TempDir()
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	mod := regexp.MustCompile(`(?m)^module .*$`).ReplaceAllString(string(gomod), "module readmecheck") +
		"\nrequire github.com/sluice-go/sluice v0.0.0\n\nreplace github.com/sluice-go/sluice => " + root + "\n"
	gosum, err := os.ReadFile("go.sum")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"go.mod": []byte(mod), "go.sum": gosum, "main.go": []byte(code)} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "readme-app")
	build := exec.Command("go", "build", "-mod=mod", "-o", bin, ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("the README's example does not build in a new module: %v\n%s", err, out)
	}
	app := exec.Command(bin)
	app.Stdout, app.Stderr = io.Discard, io.Discard
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Process.Kill(); _ = app.Wait() })
	waitListening(t, listen, 30*time.Second)

	call := func() (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+listen+"/v1/answer", nil)
		req.Header.Set("X-API-Key", "alice")
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("calling the README's app: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if strings.Contains(string(b), vendor.Listener.Addr().String()) || strings.Contains(string(b), "/v1/answer") {
			t.Errorf("the answer echoes the vendor's URL: %s", b)
		}
		return resp, string(b)
	}
	checkError := func(body, layer, reason string) {
		t.Helper()
		var v struct {
			Error struct{ Layer, Reason, Message string }
		}
		if err := json.Unmarshal([]byte(body), &v); err != nil || v.Error.Layer != layer || v.Error.Reason != reason {
			t.Errorf("body %q, want the JSON error %s/%s", body, layer, reason)
		}
	}

	if resp, body := call(); resp.StatusCode != http.StatusOK || !strings.Contains(body, "42") {
		t.Fatalf("a healthy vendor: %d %s", resp.StatusCode, body)
	}
	mode.Store("hang")
	if resp, body := call(); resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("the request's deadline: %d %s, want 504", resp.StatusCode, body)
	}
	mode.Store("429")
	resp, body := call()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a vendor 429: %d Retry-After %q %s, want 503 with a Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	checkError(body, ProblemLayerVendor, "vendor_rate_limited")
}

// waitListening polls until addr accepts a connection (the app is up), for
// at most d: a bound on a program starting, not a timing assertion.
func waitListening(t *testing.T, addr string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the README's app did not listen on %s within %s: %v", addr, d, err)
		}
		time.Sleep(50 * time.Millisecond) // polling a process that is starting
	}
}
