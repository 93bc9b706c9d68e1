// Package adaptive finds a vendor's concurrency from what its calls tell: a
// gradient limiter with additive increase. The outbound bulkhead's adaptive
// mode sets its cap from it.
//
// Calls are recorded in windows of at least one baseline latency and at least
// max(4, limit) calls. At the end of each window:
//
//   - a vendor overload signal (429, 503, a timeout) in the window cuts the
//     limit by a quarter;
//   - else, when the window's median latency is above Tolerance times the
//     baseline, the vendor is queueing or sharing itself among too many
//     calls: the limit becomes the mean in-flight count times
//     baseline/median (rounded), the concurrency at which the latency was the
//     baseline (for a vendor that shares C slots among n calls, n·L·(C/n)/L = C);
//   - else, when the window used at least 80% of the limit, the limit grows
//     by a quarter (at least one), to probe for capacity: a vendor whose
//     capacity came back is found in a few windows, and one step too far
//     shows as latency in the next.
//
// The baseline is the least latency of the last 30 windows, so it follows a
// vendor whose latency rose for good after 30 windows. The limit stays
// within [Min, Max].
package adaptive

import (
	"math"
	"slices"
	"sync"
	"time"
)

// Tolerance is how far above the baseline the median latency may be before
// the limit shrinks.
const Tolerance = 1.2

const (
	decrease    = 0.75 // on an overload signal
	utilized    = 0.8  // share of the limit a window must use to grow it
	minWindowN  = 4
	baselineLen = 30
	maxSamples  = 256 // latencies kept per window for its median
)

// Limiter is safe for concurrent use.
type Limiter struct {
	mu       sync.Mutex
	min, max float64
	limit    float64

	start    time.Time // of the window; zero: none open
	n, good  int
	lats     []time.Duration // the window's good latencies, at most maxSamples
	least    time.Duration
	inflight int
	overload bool
	changed  time.Time // when the limit last changed

	mins  [baselineLen]time.Duration
	nMins int
	next  int
}

// New returns a limiter within [min, max] that starts at initial.
func New(lo, hi, initial int) *Limiter {
	lo = max(lo, 1)
	hi = max(hi, lo)
	return &Limiter{min: float64(lo), max: float64(hi), limit: float64(min(max(initial, lo), hi))}
}

// Limit is the current limit.
func (l *Limiter) Limit() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.limit)
}

// Max is the ceiling the limit never exceeds.
func (l *Limiter) Max() int { return int(l.max) }

// Baseline is the least latency of the recent windows; zero before the first
// window closes.
func (l *Limiter) Baseline() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.baseline()
}

func (l *Limiter) baseline() time.Duration {
	var b time.Duration
	for i := range l.nMins {
		if b == 0 || l.mins[i] < b {
			b = l.mins[i]
		}
	}
	return b
}

// Record adds one call that ended at now: its latency (from its permit to
// its answer), whether the vendor signalled overload, and how many calls were
// in flight when it started, itself included. It returns the limit, and
// whether this call closed a window that changed it. A call that started
// before the limit last changed is left out: it tells of the old limit.
func (l *Limiter) Record(now time.Time, latency time.Duration, overload bool, inflight int) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Add(-latency).Before(l.changed) {
		return int(l.limit), false
	}
	if l.start.IsZero() {
		l.start = now
	}
	l.n++
	if !overload {
		l.good++
		if len(l.lats) < maxSamples {
			l.lats = append(l.lats, latency)
		}
		if l.least == 0 || latency < l.least {
			l.least = latency
		}
	}
	l.inflight += inflight
	l.overload = l.overload || overload
	if l.n < max(minWindowN, int(l.limit)) || now.Sub(l.start) < l.baseline() {
		return int(l.limit), false
	}
	old := l.limit
	l.closeWindow()
	if int(l.limit) == int(old) {
		return int(l.limit), false
	}
	l.changed = now
	return int(l.limit), true
}

func (l *Limiter) closeWindow() {
	if l.least > 0 {
		l.mins[l.next] = l.least
		l.next = (l.next + 1) % baselineLen
		l.nMins = min(l.nMins+1, baselineLen)
	}
	base := l.baseline()
	meanInflight := float64(l.inflight) / float64(l.n)
	switch {
	case l.overload:
		l.limit = max(l.min, l.limit*decrease)
	case base > 0 && len(l.lats) > 0:
		slices.Sort(l.lats)
		median := l.lats[len(l.lats)/2] // a scheduling hiccup moves it less than the mean
		if float64(median) > Tolerance*float64(base) {
			l.limit = max(l.min, min(l.limit, math.Round(meanInflight*float64(base)/float64(median))))
		} else if meanInflight >= utilized*l.limit {
			l.limit = min(l.max, float64(int(l.limit)+max(1, int(l.limit)/4)))
		}
	}
	l.start, l.n, l.good, l.lats, l.least, l.inflight, l.overload = time.Time{}, 0, 0, l.lats[:0], 0, 0, false
}
