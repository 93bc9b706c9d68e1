package httpx

import (
	"io"
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
