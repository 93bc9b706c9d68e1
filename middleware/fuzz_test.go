package middleware

import (
	"cmp"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/rkey"
)

// keyScripter is a redis.Scripter that admits every request and records the
// keys the store sends, as Redis would receive them.
type keyScripter struct {
	redis.Scripter
	mu   sync.Mutex
	keys []string
}

func (s *keyScripter) EvalSha(_ context.Context, _ string, keys []string, _ ...any) *redis.Cmd {
	s.mu.Lock()
	s.keys = append(s.keys, keys...)
	s.mu.Unlock()
	now := time.Now().UnixMicro()
	return redis.NewCmdResult([]any{int64(1), now, now}, nil)
}

func (s *keyScripter) sent() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.keys...)
}

// limitKeyFor sends one request whose X-API-Key header holds value (set
// raw, as a client can send any bytes) through UserRateLimit on a GCRA
// Redis store, and returns the Redis keys the store used.
func limitKeyFor(t *testing.T, policy, value string) []string {
	t.Helper()
	s := &keyScripter{}
	r := gin.New()
	r.Use(UserRateLimit(UserRateLimitSettings{Store: NewGCRAStore(s, RedisStoreSettings{}),
		Rate: limiter.Rate{Period: time.Second, Limit: 10}, Key: KeyFromHeader("X-API-Key"), Name: policy,
		OverLimitCache: -1}))
	r.GET("/", func(c *gin.Context) { c.Status(http.StatusOK) })
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header["X-Api-Key"] = []string{value}
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		t.Fatalf("X-API-Key %q: status %d, want 200 from a store that admits all", value, w.Code)
	}
	return s.sent()
}

// FuzzKeyFromHeader: any X-API-Key value, braces, colons, line breaks and
// invalid UTF-8 included, goes through KeyFromHeader, UserRateLimit and the
// GCRA store's key building without a panic, into exactly one Redis key that
// has one hash tag, no line break, and decodes back to the default prefix,
// the policy, the rate and the value itself; an empty value is not limited;
// two values never share a key.
func FuzzKeyFromHeader(f *testing.F) {
	for _, s := range [][3]string{
		{"default", "alice", "bob"},
		{"default", "a}:gcra\r\nsluice:{b", "b"},
		{"tier:pro", "{x}", "x"},
		{"default", "", "%"},
		{"p", "1000ms:10:x", ":"},
		{"p\n", "\xff\x00", "\u00e9"},
		{"", "x", "y"}, // an empty Name is sluice.DefaultName (the fuzzer's find after the v1 API)
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, policy, v1, v2 string) {
		k1, k2 := limitKeyFor(t, policy, v1), limitKeyFor(t, policy, v2)
		for _, c := range []struct {
			v    string
			keys []string
		}{{v1, k1}, {v2, k2}} {
			if c.v == "" {
				if len(c.keys) != 0 {
					t.Fatalf("an empty key reached the store as %q", c.keys)
				}
				continue
			}
			if len(c.keys) != 1 {
				t.Fatalf("X-API-Key %q: the store sent keys %q, want one", c.v, c.keys)
			}
			checkLimitKey(t, c.keys[0], policy, c.v)
		}
		if v1 != v2 && v1 != "" && v2 != "" && k1[0] == k2[0] {
			t.Fatalf("X-API-Keys %q and %q share the Redis key %q", v1, v2, k1[0])
		}
	})
}

func checkLimitKey(t *testing.T, key, policy, value string) {
	t.Helper()
	if strings.ContainsAny(key, "\r\n") || strings.Count(key, "{") != 1 || strings.Count(key, "}") != 1 {
		t.Fatalf("key %q: want one brace pair and no line break", key)
	}
	tag, ok := strings.CutPrefix(key, "sluice:{")
	if tag, ok = strings.CutSuffix(tag, "}:gcra"); !ok {
		t.Fatalf("key %q is not sluice:{...}:gcra", key)
	}
	prefix, user, ok := strings.Cut(tag, ":")
	if !ok || strings.Contains(user, ":") {
		t.Fatalf("hash tag %q is not <prefix>:<key>", tag)
	}
	if prefix != "user_rate" {
		t.Fatalf("key %q: prefix %q, want user_rate", key, prefix)
	}
	got, err := url.PathUnescape(user)
	if err != nil {
		t.Fatalf("key %q: user part does not decode: %v", key, err)
	}
	// An empty Name is the default name, as the Settings' zero values are.
	if want := rkey.Escape(cmp.Or(policy, sluice.DefaultName)) + ":1000ms:10:" + value; got != want {
		t.Fatalf("key %q decodes to %q, want %q", key, got, want)
	}
}
