package main

import (
	"context"
	"io"
	"net/http"
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
	"github.com/sluice-go/sluice/status"
)

// chromium returns the path of Debian's chromium, skipping the test without
// it (failing under CI=true, where scripts/ensure-chromium.sh installs it).
func chromium(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("chromium")
	if err != nil {
		msg := "chromium is not on PATH (scripts/ensure-chromium.sh, or apt-get install chromium)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + " [CI=true: a missing browser is a failure]")
		}
		t.Skip(msg)
	}
	return p
}

// browse loads url in headless Chromium and returns the DOM it rendered; with
// shot set it also saves a screenshot there.
func browse(t *testing.T, bin, url, shot string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
		"--no-first-run", "--hide-scrollbars", "--user-data-dir=" + t.TempDir()}
	out, err := exec.CommandContext(ctx, bin, append(args, "--dump-dom", url)...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	if shot != "" {
		cmd := exec.CommandContext(ctx, bin, append(args, "--window-size=1200,860", "--screenshot="+shot, url)...)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("chromium --screenshot: %v\n%s", err, b)
		}
		if st, err := os.Stat(shot); err != nil || st.Size() == 0 {
			t.Fatalf("no screenshot at %s: %v", shot, err)
		}
		t.Logf("screenshot: %s", shot)
	}
	return string(out)
}

// card returns the rendered card of a layer in dom.
func card(t *testing.T, dom, layer string) string {
	t.Helper()
	i := strings.Index(dom, `data-layer="`+layer+`"`)
	if i < 0 {
		t.Fatalf("the rendered page has no %s card", layer)
	}
	rest := dom[i:]
	if j := strings.Index(rest[1:], `data-layer="`); j >= 0 {
		rest = rest[:j+1]
	}
	return rest
}

var gaugeValue = regexp.MustCompile(`data-gauge="([a-z_]+)"[^>]*>[^<]*<b class="value">(-?\d+)</b>`)

// gaugeIn returns the value a rendered card shows for a gauge.
func gaugeIn(t *testing.T, card, name string) int {
	t.Helper()
	for _, m := range gaugeValue.FindAllStringSubmatch(card, -1) {
		if m[1] == name {
			n, _ := strconv.Atoi(m[2])
			return n
		}
	}
	t.Fatalf("no %s gauge in the card:\n%s", name, card)
	return 0
}

// TestStatusPageInBrowser runs the example app for real (loopback server,
// real Redis, a vendor on loopback), drives it into overload and then into a
// vendor outage, and loads GET /debug/sluice in headless Chromium each time:
// under load the admission queue's depth is shown non-zero, during the
// outage the breaker is shown open. Each rendered page is saved as a
// screenshot (go test -artifacts keeps them; docs/status-page*.png were made
// so).
func TestStatusPageInBrowser(t *testing.T) {
	bin := chromium(t)
	srv := redistest.Start(t)
	var outage atomic.Bool
	gate := make(chan struct{})
	arrived := make(chan struct{}, 100)
	v := newVendor(t, func(w http.ResponseWriter, r *http.Request) {
		if outage.Load() {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		arrived <- struct{}{}
		select {
		case <-gate:
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, completion("ok", 7))
		case <-r.Context().Done():
		}
	})
	opened := false
	openGate := func() {
		if !opened {
			opened = true
			close(gate)
		}
	}
	defer openGate()
	a := startApp(t, config(t, vendorEnv(v, map[string]string{
		"REDIS_URL":                 srv.URL,
		"SLUICE_MAX_INFLIGHT":       "8",
		"SLUICE_QUEUE_ACTIVE":       "2",
		"SLUICE_QUEUE_WAITING":      "16",
		"SLUICE_QUEUE_TIMEOUT":      "2m",
		"SLUICE_REQUEST_TIMEOUT":    "3m",
		"SLUICE_VENDOR_CONCURRENCY": "2",
		"SLUICE_VENDOR_RATE":        "100-S",
		// One attempt per chat: the outage's 503 with Retry-After: 30 is
		// within the retry layer's MaxRetryAfter, so with retries each
		// outage chat would wait 30s twice before it failed.
		"SLUICE_RETRY_ATTEMPTS": "1",
	})))
	page := a.srv.URL + "/debug/sluice"
	dir := t.ArtifactDir()

	// Overload: 10 chats against 8 in-flight slots, 2 active at the vendor.
	answers := make(chan answer, 10)
	for range 10 {
		go func() { answers <- a.chat(t, "load-key", hello) }()
	}
	for range 2 {
		select {
		case <-arrived:
		case <-time.After(time.Minute):
			t.Fatal("the vendor did not see the first calls within a minute")
		}
	}
	shed := 0
	for shed < 2 {
		got := <-answers
		wantError(t, got, http.StatusServiceUnavailable, one("load_shedder"), one("overloaded"), true)
		shed++
	}
	// The other 6 wait in the admission queue: wait until the registry says
	// so (each of them has entered, a causal bound, checked generously).
	deadline := time.Now().Add(time.Minute)
	for queued(a.status) != 6 {
		if time.Now().After(deadline) {
			t.Fatalf("the admission queue holds %d after a minute, want 6", queued(a.status))
		}
		time.Sleep(10 * time.Millisecond)
	}
	dom := browse(t, bin, page, filepath.Join(dir, "status-page-overload.png"))
	q := card(t, dom, "admission_queue")
	if n := gaugeIn(t, q, "queued"); n != 6 {
		t.Errorf("the page shows %d queued, want 6", n)
	}
	if n := gaugeIn(t, q, "active"); n != 2 {
		t.Errorf("the page shows %d active, want 2", n)
	}
	if n := gaugeIn(t, card(t, dom, "load_shedder"), "in_flight"); n != 8 {
		t.Errorf("the page shows %d in flight at the load shedder, want 8", n)
	}
	if !strings.Contains(dom, "<td>load_shedder</td>") {
		t.Error("the recent rejections do not show the load shedder's")
	}
	openGate()
	for range 8 {
		if got := <-answers; got.status != http.StatusOK {
			t.Errorf("a queued chat: %s", got)
		}
	}

	// Outage: the vendor answers 503 with Retry-After: 30, a vendor-wide
	// signal that opens the fleet's breaker at once, for 30s.
	outage.Store(true)
	var last answer
	for i := 0; i < 40; i++ {
		last = a.chat(t, "outage-key", hello)
		if strings.Contains(string(last.body), `"circuit_open"`) {
			break
		}
	}
	wantError(t, last, http.StatusServiceUnavailable, one("circuit_breaker"), one("circuit_open"), true)
	dom = browse(t, bin, page, filepath.Join(dir, "status-page-outage.png"))
	cb := card(t, dom, "circuit_breaker")
	if !strings.Contains(cb, `data-fleet-state="open"`) {
		t.Errorf("the page does not show the fleet breaker open:\n%s", cb)
	}
	// This process's own breaker may stay closed: once the fleet is open,
	// calls are refused before they reach it, so it sees one failure only.
	if !strings.Contains(dom, "<td>circuit_breaker</td><td>vendor</td><td>circuit_open</td>") {
		t.Error("the recent rejections do not show circuit_open")
	}
	if strings.Contains(dom, "outage-key") || strings.Contains(dom, "load-key") || strings.Contains(dom, srv.Addr) {
		t.Error("the page shows an API key or the Redis address")
	}
}

func queued(reg *status.Registry) int64 {
	for _, l := range reg.Snapshot(context.Background()).Layers {
		if l.Layer == "admission_queue" {
			for _, g := range l.Gauges {
				if g.Name == "queued" {
					return g.Value
				}
			}
		}
	}
	return -1
}
