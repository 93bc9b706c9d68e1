package middleware

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/ulule/limiter/v3"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/fleet"
	"github.com/sluice-go/sluice/internal/redistest"
	"github.com/sluice-go/sluice/otelx"

	"github.com/redis/go-redis/v9"
)

// TestSettingsPanicOnImpossibleValues: every constructor refuses an
// impossible setting at construction, naming itself.
func TestSettingsPanicOnImpossibleValues(t *testing.T) {
	rate := limiter.Rate{Period: time.Second, Limit: 1}
	key := KeyFromHeader("X-API-Key")
	rdb := fleet.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled: construction does no I/O
	t.Cleanup(func() { _ = rdb.Close() })
	for _, c := range []struct {
		prefix string
		build  func()
	}{
		{"LoadShedder", func() { LoadShedder(LoadShedderSettings{}) }},
		{"LoadShedder", func() { LoadShedderHandler(LoadShedderSettings{MaxInFlight: -1}) }},
		{"LoadShedder", func() { LoadShedder(LoadShedderSettings{MaxInFlight: 1, RetryAfter: -1}) }},
		{"LoadShedder", func() { LoadShedder(LoadShedderSettings{MaxInFlight: 1, PriorityShares: [5]float64{0, 0, 0, 0, 1.5}}) }},
		{"LoadShedder", func() {
			LoadShedder(LoadShedderSettings{MaxInFlight: 1, PriorityShares: [5]float64{math.NaN(), 1, 1, 1, 1}})
		}},
		{"UserRateLimit", func() { UserRateLimit(UserRateLimitSettings{Rate: rate}) }},
		{"UserRateLimit", func() { UserRateLimitHandler(UserRateLimitSettings{Key: key}) }},
		{"UserRateLimit", func() { UserRateLimit(UserRateLimitSettings{Key: key, Rate: rate, HealthPeriod: -1}) }},
		{"UserRateLimit", func() { UserRateLimit(UserRateLimitSettings{Key: key, Rate: rate, FailureMode: 42}) }},
		{"AdmissionQueue", func() { AdmissionQueue(AdmissionQueueSettings{}) }},
		{"AdmissionQueue", func() { AdmissionQueueHandler(AdmissionQueueSettings{MaxActive: 1, MaxWaiting: -1}) }},
		{"AdmissionQueue", func() { AdmissionQueue(AdmissionQueueSettings{MaxActive: 1, Timeout: -1}) }},
		{"Deadline", func() { Deadline(DeadlineSettings{}) }},
		{"Deadline", func() { DeadlineHandler(DeadlineSettings{Budget: -1}) }},
		{"BufferBody", func() { BufferBody(BufferBodySettings{MaxBytes: -1}) }},
		{"BufferBody", func() { BufferBodyHandler(BufferBodySettings{Timeout: -1}) }},
		{"NewMemoryStore", func() { NewMemoryStore(MemoryStoreSettings{MaxKeys: -1}) }},
		{"NewGCRAStore", func() { NewGCRAStore(rdb, RedisStoreSettings{Timeout: -1}) }},
		{"NewFixedWindowRedisStore", func() { NewFixedWindowRedisStore(rdb, RedisStoreSettings{Timeout: -1}) }},
	} {
		func() {
			defer func() {
				msg, _ := recover().(string)
				if !strings.HasPrefix(msg, "middleware: "+c.prefix+": ") {
					t.Errorf("panic %q, want one starting %q", msg, "middleware: "+c.prefix+": ")
				}
			}()
			c.build()
		}()
	}
}

// TestUserRateLimitHandlerMatchesGin: the net/http limiter and the gin one
// answer the same requests the same way (status, X-RateLimit-*,
// Retry-After, body).
func TestUserRateLimitHandlerMatchesGin(t *testing.T) {
	settings := func() UserRateLimitSettings {
		return UserRateLimitSettings{Rate: limiter.Rate{Period: time.Hour, Limit: 2}, Key: KeyFromHeader("x-api-key")}
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
	std := UserRateLimitHandler(settings())(ok)
	g := gin.New()
	g.Use(UserRateLimit(settings()))
	g.GET("/", gin.WrapF(ok))
	for i, user := range []string{"alice", "alice", "alice", "", "", "", "bob"} {
		a, b := serve(std, userReq(user)), serve(g, userReq(user))
		if a.Code != b.Code || a.Body.String() != b.Body.String() {
			t.Fatalf("request %d (%q): net/http %d %q, gin %d %q", i, user, a.Code, a.Body, b.Code, b.Body)
		}
		for _, h := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "Retry-After", "Cache-Control"} {
			if a.Header().Get(h) != b.Header().Get(h) {
				t.Errorf("request %d: %s net/http %q, gin %q", i, h, a.Header().Get(h), b.Header().Get(h))
			}
		}
		if want := map[int]int{2: 429}[i]; want != 0 && a.Code != want || want == 0 && a.Code != 200 {
			t.Errorf("request %d (%q): %d", i, user, a.Code)
		}
	}
}

// TestWriteRejectionIsProblemOf: the middlewares' default answer is
// sluice's answer for the same error, byte for byte, so inbound and
// outbound errors share one body and one message table.
func TestWriteRejectionIsProblemOf(t *testing.T) {
	for _, l := range sluice.Layers() {
		if !l.Inbound() {
			continue
		}
		for _, reason := range l.Reasons() {
			for _, ra := range []time.Duration{0, 1500 * time.Millisecond, 100 * time.Hour} {
				e := sluice.NewError(l, reason, nil)
				e.RetryAfter = ra
				got, want := httptest.NewRecorder(), httptest.NewRecorder()
				WriteRejection(got, httptest.NewRequest("GET", "/", nil), e)
				sluice.WriteError(want, e)
				if got.Code != want.Code || got.Body.String() != want.Body.String() ||
					got.Header().Get("Retry-After") != want.Header().Get("Retry-After") ||
					got.Header().Get("Content-Type") != want.Header().Get("Content-Type") {
					t.Errorf("%s/%s %v: %d %v %s, want %d %v %s", l, reason, ra,
						got.Code, got.Header(), got.Body, want.Code, want.Header(), want.Body)
				}
			}
		}
	}
}

type stringer struct{ id int }

func (s stringer) String() string { return "user-" + string(rune('0'+s.id)) }

type ctxKey struct{}

func TestKeyFromContext(t *testing.T) {
	key := KeyFromContext(ctxKey{})
	for _, c := range []struct {
		value any
		want  string
	}{
		{nil, ""},
		{"alice", "alice"},
		{stringer{7}, "user-7"},
		{42, ""}, // neither a string nor a Stringer: not limited
	} {
		req := httptest.NewRequest("GET", "/", nil)
		if c.value != nil {
			req = req.WithContext(context.WithValue(req.Context(), ctxKey{}, c.value))
		}
		if got := key(req); got != c.want {
			t.Errorf("value %v: key %q, want %q", c.value, got, c.want)
		}
	}
	// Another key's value is not this one's.
	req := httptest.NewRequest("GET", "/", nil)
	req = req.WithContext(context.WithValue(req.Context(), "ctxKey", "mallory"))
	if got := key(req); got != "" {
		t.Errorf("a value under another key gave %q", got)
	}
}

// TestZeroSettingsTakeTheDocumentedDefaults: BufferBody's 1 MiB, the
// admission queue's 1 s wait and 1 s Retry-After, on a fake clock.
func TestZeroSettingsTakeTheDocumentedDefaults(t *testing.T) {
	h := BufferBodyHandler(BufferBodySettings{})(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	big := httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("x", DefaultMaxBodyBytes+1)))
	if w := serve(h, big); w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(w.Body.String(), "1048576 bytes") {
		t.Errorf("a body of 1 MiB + 1: %d %s, want 413 naming 1048576 bytes", w.Code, w.Body)
	}
	if w := serve(h, httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("x", DefaultMaxBodyBytes)))); w.Code != 200 {
		t.Errorf("a body of 1 MiB: %d", w.Code)
	}

	synctest.Test(t, func(t *testing.T) {
		entered, release := make(chan struct{}), make(chan struct{})
		q := AdmissionQueueHandler(AdmissionQueueSettings{MaxActive: 1, MaxWaiting: 1})(
			http.HandlerFunc(func(http.ResponseWriter, *http.Request) { close(entered); <-release }))
		done := make(chan struct{})
		go func() { serve(q, httptest.NewRequest("GET", "/", nil)); close(done) }()
		<-entered
		start := time.Now()
		w := serve(q, httptest.NewRequest("GET", "/", nil))
		if waited := time.Since(start); waited != DefaultQueueTimeout {
			t.Errorf("waited %v, want the default %v", waited, DefaultQueueTimeout)
		}
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" ||
			!strings.Contains(w.Body.String(), `"queue_timeout"`) {
			t.Errorf("%d %v %s, want 503 queue_timeout with Retry-After 1", w.Code, w.Header(), w.Body)
		}
		close(release)
		<-done
	})
}

// TestRedisOutageFallbackLocal: with FallbackLocal and Redis down, each
// user is still limited, by this process's memory at the full rate; every
// such decision is counted as degraded.
func TestRedisOutageFallbackLocal(t *testing.T) {
	srv := redistest.Start(t)
	client := fleet.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = client.Close() })
	tm := newTelemetry(t)
	r := limitedEngine(UserRateLimit(UserRateLimitSettings{Store: NewGCRAStore(client, RedisStoreSettings{Prefix: srv.Prefix}),
		Rate: limiter.Rate{Period: time.Hour, Limit: 2}, Key: KeyFromHeader("X-API-Key"),
		FailureMode: sluice.FallbackLocal, HealthPeriod: time.Hour, Telemetry: tm.tel}))
	srv.Kill()
	codes := ""
	for _, user := range []string{"alice", "alice", "alice", "bob"} {
		w := serve(r, userReq(user))
		codes += " " + http.StatusText(w.Code)
		if w.Header().Get("X-RateLimit-Limit") != "2" {
			t.Errorf("%s: no X-RateLimit-Limit from the local decision: %v", user, w.Header())
		}
		if w.Code == 429 && w.Header().Get("Retry-After") == "" {
			t.Errorf("429 without Retry-After")
		}
	}
	if codes != " OK OK Too Many Requests OK" {
		t.Fatalf("codes%s, want OK OK 429 OK: the local fallback does not limit", codes)
	}
	if d := tm.sum(t, otelx.MetricDegraded); d != 4 {
		t.Errorf("degraded %d, want 4", d)
	}
}
