package quota

import (
	"net/http"
	"strings"
	"time"

	"github.com/sluice-go/sluice/internal/httpx"
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
		d, _ = httpx.RetryAfter(h, now)
	}
	for _, k := range rateLimitHeaders {
		if strings.TrimSpace(h.Get(k.remaining)) != "0" {
			continue
		}
		if r, err := time.ParseDuration(strings.TrimSpace(h.Get(k.reset))); err == nil && r > d {
			d = r
		}
	}
	if d <= 0 {
		return 0, false
	}
	return min(d, limit), true
}

// rateLimitHeaders are OpenAI's x-ratelimit-* pairs, canonical so that
// Header.Get need not rewrite them on every response.
var rateLimitHeaders = [...]struct{ remaining, reset string }{
	{"X-Ratelimit-Remaining-Requests", "X-Ratelimit-Reset-Requests"},
	{"X-Ratelimit-Remaining-Tokens", "X-Ratelimit-Reset-Tokens"},
}
