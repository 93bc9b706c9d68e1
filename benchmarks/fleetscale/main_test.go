package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluice-go/sluice/internal/testenv"
)

func TestMain(m *testing.M) {
	if s := os.Getenv(workerEnv); s != "" { // re-run as a worker by measure
		workerMain(s)
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// A short run of the harness with 2 worker processes, per-call and lease
// mode: the vendor never sees more than each mode's bound allows, the workers
// were admitted and saw no other errors, per-call mode ran about one script
// per admitted request, and the latency histogram holds every admitted call.
func TestFleetscaleSmoke(t *testing.T) {
	testenv.Long(t) // worker processes sharing a quota for 2s per mode
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not on the PATH")
		}
		t.Skip("redis-server is not on the PATH")
	}
	h, err := newHarness()
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	var rows []row
	for _, lease := range []bool{false, true} {
		r, err := h.run(rowSpec{procs: 2, rate: 50, burst: 5, lease: lease, dur: 2 * time.Second, goroutines: 2})
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	var b strings.Builder
	printTable(&b, rows)
	t.Log("\n" + b.String())
	for _, r := range rows {
		if r.admitted == 0 || r.errors != 0 {
			t.Errorf("%s: %d admitted, %d errors; want some admitted and no errors", mode(r.lease), r.admitted, r.errors)
		}
		// The quota decides on Redis's clock; the vendor stamps arrivals a
		// hop later, so allow a request or two of jitter at a window's edge.
		if r.maxWindow > r.bound+2 || r.total > r.totalBound+2 {
			t.Errorf("%s: the vendor saw %d in 1s (bound %d) and %d in all (bound %d)", mode(r.lease), r.maxWindow, r.bound, r.total, r.totalBound)
		}
		var n int64
		for _, c := range r.lat {
			n += c
		}
		if n < r.admitted {
			t.Errorf("%s: %d latencies for %d admitted", mode(r.lease), n, r.admitted)
		}
	}
	if r := rows[0]; r.trips < r.admitted || r.trips > 2*r.admitted+20 {
		t.Errorf("per-call: %d round trips for %d admitted; want about one each plus heartbeats", r.trips, r.admitted)
	}
}
