package adaptive

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sharing runs the limiter against a saturated vendor that shares capacity
// c(t) among n calls (processor sharing: each call takes L·max(1, n/c)), on a
// clock of its own, for d. Every round, limit calls start together and end
// together. It returns the limit at each round's end, with the round's end.
func sharing(l *Limiter, start time.Time, d, lat time.Duration, c func(time.Duration) int) (ts []time.Duration, limits []int) {
	now := start
	for now.Sub(start) < d {
		n := l.Limit()
		took := time.Duration(float64(lat) * max(1, float64(n)/float64(c(now.Sub(start)))))
		now = now.Add(took)
		for range n {
			l.Record(now, took, false, n)
		}
		ts, limits = append(ts, now.Sub(start)), append(limits, l.Limit())
	}
	return ts, limits
}

// TestConvergesOnSteppingCapacity: capacity 16, then 6, then 16, 20 s each,
// latency 100 ms at or under capacity. Within 2 s of each step the limit is
// at least the capacity (nothing wasted) and at most Tolerance times it, plus
// the one-call probe (the vendor's latency at most 1.2× plus a call).
func TestConvergesOnSteppingCapacity(t *testing.T) {
	l := New(1, 16, 16)
	capAt := func(at time.Duration) int {
		if at >= 20*time.Second && at < 40*time.Second {
			return 6
		}
		return 16
	}
	ts, limits := sharing(l, time.Unix(0, 0), 60*time.Second, 100*time.Millisecond, capAt)
	bad := 0
	for i, at := range ts {
		phase := at % (20 * time.Second)
		if phase < 2*time.Second {
			continue // converging
		}
		c := capAt(at)
		hi := int(Tolerance*float64(c)) + 1
		if c == 16 {
			hi = 16 // the ceiling
		}
		if limits[i] < c-1 || limits[i] > hi {
			bad++
			if bad < 5 {
				t.Errorf("at %s (capacity %d) limit %d, want %d..%d", at.Round(time.Millisecond), c, limits[i], c-1, hi)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d rounds out of bounds", bad, len(ts))
	}
	if b := l.Baseline(); b != 100*time.Millisecond {
		t.Errorf("baseline %s, want the vendor's 100ms", b)
	}
}

func TestOverloadSignalCutsAQuarter(t *testing.T) {
	l := New(2, 40, 40)
	now := time.Unix(0, 0)
	for range 40 { // one window at the baseline: full use, at the ceiling
		now = now.Add(time.Millisecond)
		l.Record(now, 100*time.Millisecond, false, 40)
	}
	if got := l.Limit(); got != 40 {
		t.Fatalf("limit %d, want 40", got)
	}
	now = now.Add(100 * time.Millisecond)
	for i := range 40 {
		now = now.Add(5 * time.Millisecond)
		l.Record(now, 100*time.Millisecond, i == 0, 40)
	}
	if got := l.Limit(); got != 30 {
		t.Fatalf("after a 429 in the window: limit %d, want 30", got)
	}
	for range 50 { // every call overloaded: down to the floor, never below
		now = now.Add(time.Second)
		for range 40 {
			l.Record(now, time.Millisecond, true, 1)
		}
	}
	if got := l.Limit(); got != 2 {
		t.Fatalf("limit %d, want the floor 2", got)
	}
}

// TestUnusedLimitDoesNotGrow: a window that used under 80% of the limit
// says nothing about capacity above it.
func TestUnusedLimitDoesNotGrow(t *testing.T) {
	l := New(1, 100, 10)
	now := time.Unix(0, 0)
	for range 20 {
		now = now.Add(200 * time.Millisecond)
		for range 10 {
			l.Record(now, 100*time.Millisecond, false, 3)
		}
	}
	if got := l.Limit(); got != 10 {
		t.Fatalf("limit %d, want 10", got)
	}
}

func TestNewClamps(t *testing.T) {
	if got := New(0, 0, 5).Limit(); got != 1 {
		t.Errorf("New(0,0,5): %d, want 1", got)
	}
	if got := New(4, 8, 100).Limit(); got != 8 {
		t.Errorf("New(4,8,100): %d, want 8", got)
	}
	if got := New(4, 8, 0).Limit(); got != 4 {
		t.Errorf("New(4,8,0): %d, want 4", got)
	}
}
