package main

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A short run of the harness: every caller got its own answer, with and
// without the hedge policy, and the hedge cost at most one extra request per
// call. Speed is the program's to report, not this test's.
func TestHedgeSmoke(t *testing.T) {
	p := params{calls: 100, workers: 4, fast: 2 * time.Millisecond, slow: 20 * time.Millisecond,
		every: 20, delay: 5 * time.Millisecond}
	rows := measure(p)
	var b strings.Builder
	printTable(&b, p, rows)
	t.Log("\n" + b.String())
	for _, r := range rows {
		if r.errors != 0 {
			t.Errorf("%s: %d calls failed or got another call's answer", r.name, r.errors)
		}
	}
	if rows[0].load != 1 {
		t.Errorf("without hedge the vendor load is %.3fx; want exactly 1x", rows[0].load)
	}
	if rows[1].load > 2 {
		t.Errorf("with hedge the vendor load is %.3fx; want at most one hedge per call", rows[1].load)
	}
}
