package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if s := os.Getenv(workerEnv); s != "" { // re-run as a worker by measure
		workerMain(s)
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// A short run of the harness with 2 worker processes: the vendor never sees
// more than the quota allows, the workers were admitted and saw no other
// errors, and Redis ran about one script per admitted request.
func TestFleetscaleSmoke(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not on the PATH")
		}
		t.Skip("redis-server is not on the PATH")
	}
	const rate, burst = 50, 5
	dur := 2 * time.Second
	rows, err := measure([]int{2}, rate, burst, dur, 2)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	printTable(&b, rows, rate, burst, dur, 2)
	t.Log("\n" + b.String())
	r := rows[0]
	if r.admitted == 0 || r.errors != 0 {
		t.Errorf("%d admitted, %d errors; want some admitted and no errors", r.admitted, r.errors)
	}
	// The quota decides on Redis's clock; the vendor stamps arrivals a hop
	// later, so allow a request or two of jitter at a window's edge.
	if r.maxWindow > r.bound+2 || r.total > r.totalBound+2 {
		t.Errorf("the vendor saw %d in 1s (bound %d) and %d in all (bound %d)", r.maxWindow, r.bound, r.total, r.totalBound)
	}
	if r.scripts < r.admitted || r.scripts > 2*r.admitted+20 {
		t.Errorf("%d scripts for %d admitted; want about one each plus heartbeats", r.scripts, r.admitted)
	}
}
