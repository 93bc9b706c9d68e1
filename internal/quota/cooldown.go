package quota

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultMaxCooldown caps CooldownFromResponse when its limit is zero.
const DefaultMaxCooldown = time.Minute

// CooldownFromResponse reads how long the vendor asks every caller to stay
// away, capped at limit (zero means DefaultMaxCooldown):
//
//   - a 429 or 503 with retry-after-ms (milliseconds) or Retry-After (delta
//     seconds or an HTTP-date);
//   - any response whose x-ratelimit-remaining-requests or
//     x-ratelimit-remaining-tokens is 0, for its x-ratelimit-reset-requests or
//     x-ratelimit-reset-tokens (OpenAI's Go-style durations: "1s", "6m0s",
//     "20ms", "0.5s"); the longer one wins.
//
// Garbage, negative or past values are ignored. It reports false when there is
// nothing to honour. It never panics on a nil response.
func CooldownFromResponse(resp *http.Response, limit time.Duration) (time.Duration, bool) {
	return cooldownAt(resp, time.Now(), limit)
}

func cooldownAt(resp *http.Response, now time.Time, limit time.Duration) (time.Duration, bool) {
	if resp == nil {
		return 0, false
	}
	if limit <= 0 {
		limit = DefaultMaxCooldown
	}
	h := resp.Header
	var d time.Duration
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if v, ok := parseFloat(h.Get("Retry-After-Ms")); ok {
			d = durationOf(v, float64(time.Millisecond))
		} else if v, ok := parseFloat(h.Get("Retry-After")); ok {
			d = durationOf(v, float64(time.Second))
		} else if t, err := http.ParseTime(strings.TrimSpace(h.Get("Retry-After"))); err == nil {
			d = t.Sub(now)
		}
	}
	for _, kind := range []string{"requests", "tokens"} {
		if strings.TrimSpace(h.Get("X-Ratelimit-Remaining-"+kind)) != "0" {
			continue
		}
		if r, err := time.ParseDuration(strings.TrimSpace(h.Get("X-Ratelimit-Reset-" + kind))); err == nil && r > d {
			d = r
		}
	}
	if d <= 0 {
		return 0, false
	}
	return min(d, limit), true
}

func parseFloat(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0, false
	}
	return v, true
}

// durationOf converts v units to a Duration, saturating instead of overflowing.
func durationOf(v, unit float64) time.Duration {
	f := v * unit
	if f >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(f)
}
