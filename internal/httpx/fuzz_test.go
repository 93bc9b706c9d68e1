package httpx

import (
	"math"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// FuzzRetryAfter feeds arbitrary Retry-After and retry-after-ms values, and
// an arbitrary whole number of seconds, to RetryAfter. Properties:
//
//   - it never panics and never returns a negative duration;
//   - a value it ignores yields (0, false);
//   - delta seconds round-trip: "n" means n seconds exactly, saturating at
//     the largest duration; and "n" milliseconds in retry-after-ms likewise.
func FuzzRetryAfter(f *testing.F) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, s := range []struct {
		ms, ra string
		n      uint64
	}{
		{"", "", 0},
		{"", "2", 2},
		{"", "1.5", 1},
		{"", "-3", 3},
		{"", "soon", 60},
		{"", "NaN", 1},
		{"", "+Inf", 1},
		{"", "1e300", 1 << 62},
		{"", "9223372036.854775808", 9223372036},
		{"", now.Add(7 * time.Second).Format(http.TimeFormat), 7},
		{"", "Sunday, 06-Nov-94 08:49:37 GMT", 0},
		{"", "Fri, 31 Dec 9999 23:59:59 GMT", math.MaxUint64},
		{"250", "9", 250},
		{"x", "3", 3},
		{"-1", "", 1},
		{"9223372036854.775808", "", 1},
		{" 0x1p4 ", " 12 ", 12},
	} {
		f.Add(s.ms, s.ra, s.n)
	}
	f.Fuzz(func(t *testing.T, ms, ra string, n uint64) {
		h := http.Header{}
		if ms != "" {
			h["Retry-After-Ms"] = []string{ms}
		}
		if ra != "" {
			h["Retry-After"] = []string{ra}
		}
		d, ok := RetryAfter(h, now)
		if d < 0 {
			t.Fatalf("RetryAfter(ms=%q, ra=%q) = %v: negative", ms, ra, d)
		}
		if !ok && d != 0 {
			t.Fatalf("RetryAfter(ms=%q, ra=%q) = %v, false: a value it ignores must be zero", ms, ra, d)
		}

		want := time.Duration(math.MaxInt64)
		if n <= uint64(math.MaxInt64/int64(time.Second)) {
			want = time.Duration(n) * time.Second
		}
		if got, ok := RetryAfter(http.Header{"Retry-After": {strconv.FormatUint(n, 10)}}, now); !ok || got != want {
			t.Fatalf("Retry-After: %d = %v, %v; want %v, true", n, got, ok, want)
		}
		want = time.Duration(math.MaxInt64)
		if n <= uint64(math.MaxInt64/int64(time.Millisecond)) {
			want = time.Duration(n) * time.Millisecond
		}
		if got, ok := RetryAfter(http.Header{"Retry-After-Ms": {strconv.FormatUint(n, 10)}}, now); !ok || got != want {
			t.Fatalf("retry-after-ms: %d = %v, %v; want %v, true", n, got, ok, want)
		}
	})
}
