package httpx

import (
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		header http.Header
		want   time.Duration
		ok     bool
	}{
		{"absent", http.Header{}, 0, false},
		{"seconds", http.Header{"Retry-After": {"2"}}, 2 * time.Second, true},
		{"fractional seconds", http.Header{"Retry-After": {"1.5"}}, 1500 * time.Millisecond, true},
		{"zero", http.Header{"Retry-After": {"0"}}, 0, true},
		{"negative ignored", http.Header{"Retry-After": {"-3"}}, 0, false},
		{"garbage ignored", http.Header{"Retry-After": {"soon"}}, 0, false},
		{"http-date", http.Header{"Retry-After": {now.Add(7 * time.Second).Format(http.TimeFormat)}}, 7 * time.Second, true},
		{"http-date in the past", http.Header{"Retry-After": {now.Add(-time.Hour).Format(http.TimeFormat)}}, 0, true},
		{"ms", http.Header{"Retry-After-Ms": {"2000"}}, 2 * time.Second, true},
		{"ms wins over seconds", http.Header{"Retry-After-Ms": {"250"}, "Retry-After": {"9"}}, 250 * time.Millisecond, true},
		{"bad ms falls back", http.Header{"Retry-After-Ms": {"x"}, "Retry-After": {"3"}}, 3 * time.Second, true},
		{"huge saturates", http.Header{"Retry-After": {"1e300"}}, time.Duration(1<<63 - 1), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := RetryAfter(tc.header, now)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("RetryAfter = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestShouldRetryHeader(t *testing.T) {
	for v, want := range map[string][2]bool{"true": {true, true}, "false": {false, true}, "": {false, false}, "maybe": {false, false}} {
		h := http.Header{}
		if v != "" {
			h.Set("x-should-retry", v)
		}
		r, p := ShouldRetryHeader(h)
		if [2]bool{r, p} != want {
			t.Errorf("%q: got %v %v want %v", v, r, p, want)
		}
	}
}

type countingCloser struct {
	io.Reader
	read   int
	closed bool
}

func (c *countingCloser) Read(p []byte) (int, error) {
	n, err := c.Reader.Read(p)
	c.read += n
	return n, err
}
func (c *countingCloser) Close() error { c.closed = true; return nil }

func TestDrainIsBounded(t *testing.T) {
	c := &countingCloser{Reader: strings.NewReader(strings.Repeat("x", 1<<20))}
	Drain(c)
	if c.read != DrainLimit || !c.closed {
		t.Fatalf("read %d closed %v; want %d true", c.read, c.closed, DrainLimit)
	}
	Drain(nil)
}

// TestRetryAfterTwoToThe63NanosecondsIsNotNegative: a value whose nanoseconds
// round to exactly 2^63 passed the saturation check (float64(MaxInt64) is
// 2^63) and converted to a negative duration, which the retry layer took for
// "no wait" and retried at once.
func TestRetryAfterTwoToThe63NanosecondsIsNotNegative(t *testing.T) {
	for _, h := range []http.Header{
		{"Retry-After": {"9223372036.854775808"}},
		{"Retry-After": {"9223372036.8547758"}},
		{"Retry-After-Ms": {"9223372036854.775808"}},
	} {
		got, ok := RetryAfter(h, time.Now())
		if !ok || got != time.Duration(math.MaxInt64) {
			t.Errorf("RetryAfter(%v) = %v, %v; want the saturated maximum, true", h, got, ok)
		}
	}
}

// TestRetryAfterLargeDeltaSecondsIsExact: whole seconds went through a
// float64, so "9223372011" came back 512ns off; delta seconds are now parsed
// as integers (found by FuzzRetryAfter).
func TestRetryAfterLargeDeltaSecondsIsExact(t *testing.T) {
	got, ok := RetryAfter(http.Header{"Retry-After": {"9223372011"}}, time.Now())
	if want := 9223372011 * time.Second; !ok || got != want {
		t.Fatalf("RetryAfter = %v, %v; want %v, true", got, ok, want)
	}
	got, ok = RetryAfter(http.Header{"Retry-After": {"99999999999999999999999"}}, time.Now())
	if !ok || got != time.Duration(math.MaxInt64) {
		t.Fatalf("an integer past uint64 = %v, %v; want the saturated maximum", got, ok)
	}
}
