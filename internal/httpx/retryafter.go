// Package httpx holds HTTP helpers shared by sluice's packages: Retry-After
// parsing and bounded draining of response bodies.
package httpx

import (
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DrainLimit is how much of a response body Drain reads before closing it, so
// that a small error body does not cost its connection.
const DrainLimit = 4 << 10

// Drain reads at most DrainLimit bytes of body and closes it. A nil body is a
// no-op.
func Drain(body io.ReadCloser) {
	if body == nil {
		return
	}
	_, _ = io.CopyN(io.Discard, body, DrainLimit)
	_ = body.Close()
}

// RetryAfter returns the wait a vendor asked for in h, and whether it asked.
// It understands, in this order of preference:
//
//   - retry-after-ms: milliseconds, possibly fractional (OpenAI, Anthropic);
//   - Retry-After as delta seconds, possibly fractional;
//   - Retry-After as an HTTP-date (RFC 9110 §10.2.3), relative to now; a date
//     in the past means zero.
//
// Negative, NaN, infinite and unparseable values are ignored.
func RetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	if v := h.Get("Retry-After-Ms"); v != "" {
		if d, ok := parseNumber(v, time.Millisecond); ok {
			return d, true
		}
	}
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if d, ok := parseNumber(v, time.Second); ok {
		return d, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, t.Sub(now)), true
	}
	return 0, false
}

func parseNumber(v string, unit time.Duration) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if n, err := strconv.ParseUint(v, 10, 64); err == nil || isRange(err) {
		// Whole numbers, the form RFC 9110 defines, are exact: a float64
		// holds only 53 bits, which would round large values.
		if err != nil || n > uint64(math.MaxInt64/int64(unit)) {
			return time.Duration(math.MaxInt64), true
		}
		return time.Duration(n) * unit, true
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	ns := math.Ceil(f * float64(unit))
	// float64(math.MaxInt64) rounds up to 2^63, which does not fit: converting
	// it to an int64 gives a negative number, so saturate at equality too.
	if ns >= float64(math.MaxInt64) {
		return time.Duration(math.MaxInt64), true
	}
	return time.Duration(ns), true
}

func isRange(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// ShouldRetryHeader reads x-should-retry: it returns (true, true) for "true",
// (false, true) for "false" and (_, false) when absent or anything else.
func ShouldRetryHeader(h http.Header) (retry, present bool) {
	switch h.Get("X-Should-Retry") {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}
