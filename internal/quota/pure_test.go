package quota

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sluice-go/sluice/internal/rkey"
)

func TestKey(t *testing.T) {
	for name, want := range map[string]string{
		"openai":     "sluice:{openai}:req",
		"a}b{c":      "sluice:{a%7Db%7Bc}:req",
		"x:y\nz%":    "sluice:{x%3Ay%0Az%25}:req",
		"gpt-4o_1.5": "sluice:{gpt-4o_1.5}:req",
	} {
		if got := rkey.Key(name, KindRequests); got != want {
			t.Errorf("Key(%q) = %q, want %q", name, got, want)
		}
	}
}

func FuzzKey(f *testing.F) {
	for _, s := range []string{"", "a", "{x}", "a:b", "%7B", "\n", "héllo"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		k := rkey.Key(name, KindCost)
		// Exactly one hash tag, and it is the escaped name.
		if strings.Count(k, "{") != 1 || strings.Count(k, "}") != 1 {
			t.Fatalf("%q: braces in %q", name, k)
		}
		tag := k[strings.IndexByte(k, '{')+1 : strings.IndexByte(k, '}')]
		if strings.ContainsAny(tag, ":\n\r %{}") && !strings.Contains(tag, "%") {
			t.Fatalf("raw separator in tag %q", tag)
		}
		// Injective: the tag decodes back to the name.
		back, err := url.PathUnescape(tag)
		if err != nil || back != name {
			t.Fatalf("%q -> %q -> %q (%v)", name, tag, back, err)
		}
		if k != "sluice:{"+tag+"}:cost" {
			t.Fatalf("shape %q", k)
		}
	})
}

func resp(status int, kv ...string) *http.Response {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return &http.Response{StatusCode: status, Header: h}
}

func TestCooldownFromResponse(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		name string
		r    *http.Response
		want time.Duration
		ok   bool
	}{
		{"nil", nil, 0, false},
		{"200", resp(200), 0, false},
		{"429 seconds", resp(429, "Retry-After", "3"), 3 * time.Second, true},
		{"503 seconds", resp(503, "Retry-After", " 2 "), 2 * time.Second, true},
		{"200 ignores Retry-After", resp(200, "Retry-After", "3"), 0, false},
		{"429 ms wins", resp(429, "Retry-After", "3", "retry-after-ms", "1500"), 1500 * time.Millisecond, true},
		{"429 date", resp(429, "Retry-After", now.Add(7*time.Second).Format(http.TimeFormat)), 7 * time.Second, true},
		{"429 past date", resp(429, "Retry-After", now.Add(-7*time.Second).Format(http.TimeFormat)), 0, false},
		{"429 garbage", resp(429, "Retry-After", "soon"), 0, false},
		{"429 negative", resp(429, "Retry-After", "-4"), 0, false},
		{"429 NaN", resp(429, "Retry-After", "NaN", "retry-after-ms", "Inf"), 0, false},
		{"429 huge capped", resp(429, "Retry-After", "1e300"), time.Minute, true},
		{"requests exhausted", resp(200, "x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-requests", "6m0s"), time.Minute, true},
		{"tokens exhausted", resp(200, "x-ratelimit-remaining-tokens", "0", "x-ratelimit-reset-tokens", "20ms"), 20 * time.Millisecond, true},
		{"both exhausted", resp(429, "x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-requests", "0.5s",
			"x-ratelimit-remaining-tokens", "0", "x-ratelimit-reset-tokens", "1s"), time.Second, true},
		{"not exhausted", resp(200, "x-ratelimit-remaining-tokens", "10", "x-ratelimit-reset-tokens", "1s"), 0, false},
		{"reset garbage", resp(200, "x-ratelimit-remaining-tokens", "0", "x-ratelimit-reset-tokens", "1 fortnight"), 0, false},
		{"reset negative", resp(200, "x-ratelimit-remaining-tokens", "0", "x-ratelimit-reset-tokens", "-1s"), 0, false},
	}
	for _, c := range cases {
		got, ok := cooldownAt(c.r, now, 0)
		if got != c.want || ok != c.ok {
			t.Errorf("%s: got %v %v, want %v %v", c.name, got, ok, c.want, c.ok)
		}
	}
	if d, _ := cooldownAt(resp(429, "Retry-After", "30"), now, 5*time.Second); d != 5*time.Second {
		t.Errorf("limit not applied: %v", d)
	}
}

func FuzzCooldownFromResponse(f *testing.F) {
	f.Add(429, "3", "", "0", "6m0s")
	f.Fuzz(func(t *testing.T, status int, ra, ms, rem, reset string) {
		d, ok := CooldownFromResponse(resp(status, "Retry-After", ra, "retry-after-ms", ms,
			"x-ratelimit-remaining-tokens", rem, "x-ratelimit-reset-tokens", reset), time.Minute)
		if ok && (d <= 0 || d > time.Minute) || !ok && d != 0 {
			t.Fatalf("got %v %v", d, ok)
		}
	})
}
