package middleware

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"
	"go.opentelemetry.io/otel/codes"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/fleet"
	"github.com/sluice-go/sluice/internal/gcra"
	"github.com/sluice-go/sluice/internal/redistest"
	"github.com/sluice-go/sluice/otelx"
)

func limitedEngine(mw ...gin.HandlerFunc) *gin.Engine {
	r := gin.New()
	r.Use(mw...)
	r.GET("/", func(c *gin.Context) { c.Status(http.StatusOK) })
	return r
}

func userReq(user string) *http.Request {
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-API-Key", user)
	return req
}

// TestUserRateLimit429: over the limit, 429 with Retry-After, X-RateLimit-*
// and the JSON body; the span carries the attributes and stays Unset.
func TestUserRateLimit429(t *testing.T) {
	tm := newTelemetry(t)
	r := tm.engine()
	r.Use(UserRateLimit(UserRateLimitSettings{Rate: limiter.Rate{Period: time.Minute, Limit: 2},
		Key: KeyFromHeader("X-API-Key"), Telemetry: tm.tel, Name: "free"}))
	r.GET("/", func(c *gin.Context) { c.Status(http.StatusOK) })
	for i := 0; i < 2; i++ {
		w := serve(r, userReq("alice"))
		if w.Code != 200 || w.Header().Get("X-RateLimit-Limit") != "2" ||
			w.Header().Get("X-RateLimit-Remaining") != strconv.Itoa(1-i) || w.Header().Get("X-RateLimit-Reset") == "" {
			t.Fatalf("request %d: %d %v", i, w.Code, w.Header())
		}
	}
	w := serve(r, userReq("alice"))
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("third request %d, want 429", w.Code)
	}
	// A 2-per-minute rate re-admits one request every 30 s.
	if ra, _ := strconv.Atoi(w.Header().Get("Retry-After")); ra < 29 || ra > 30 {
		t.Fatalf("Retry-After %q, want 29..30", w.Header().Get("Retry-After"))
	}
	if w.Header().Get("X-RateLimit-Remaining") != "0" || w.Header().Get("X-RateLimit-Limit") != "2" {
		t.Fatalf("429 headers %v", w.Header())
	}
	if b := decodeBody(t, w); b.Error.Layer != "user_rate_limiter" || b.Error.Reason != "rate_limited" {
		t.Fatalf("body %+v", b)
	}
	if w := serve(r, userReq("bob")); w.Code != 200 {
		t.Fatalf("another user got %d", w.Code)
	}
	spans := tm.serverSpans(otelx.AttrLayer.String("user_rate_limiter"), otelx.AttrErrorType.String("rate_limited"),
		otelx.AttrPolicyName.String("free"))
	if len(spans) != 1 || statusOf(spans[0]) == codes.Error {
		t.Fatalf("%d rate-limited spans, status %v; want 1, not Error", len(spans), spans)
	}
	if n := tm.sum(t, otelx.MetricRequests, otelx.AttrLayer.String("user_rate_limiter"), otelx.AttrOutcome.String("allowed")); n != 3 {
		t.Fatalf("allowed %d, want 3", n)
	}
}

func TestUserRateLimitSpanErrorOption(t *testing.T) {
	tm := newTelemetry(t)
	r := tm.engine()
	r.Use(UserRateLimit(UserRateLimitSettings{Rate: limiter.Rate{Period: time.Minute, Limit: 1},
		Key: KeyFromHeader("X-API-Key"), Telemetry: tm.tel, SpanErrorOn429: true}))
	r.GET("/", func(c *gin.Context) {})
	serve(r, userReq("a"))
	serve(r, userReq("a"))
	spans := tm.serverSpans(otelx.AttrErrorType.String("rate_limited"))
	if len(spans) != 1 || statusOf(spans[0]) != codes.Error {
		t.Fatalf("want one Error span, got %d", len(spans))
	}
}

// TestRulesOnOneStoreNeverShareCounters: two rules of the same rate but
// different names, and two rules of different rates, on one store.
func TestRulesOnOneStoreNeverShareCounters(t *testing.T) {
	for name, store := range map[string]limiter.Store{
		"memory": NewMemoryStore(MemoryStoreSettings{}),
		"gcra":   NewGCRAStore(redistest.New(t).Client(), RedisStoreSettings{Prefix: "rules-" + strconv.FormatInt(time.Now().UnixNano(), 36)}),
	} {
		t.Run(name, func(t *testing.T) {
			key := KeyFromHeader("X-API-Key")
			perSecond := UserRateLimit(UserRateLimitSettings{Store: store, Rate: limiter.Rate{Period: time.Second, Limit: 2}, Key: key, Name: "burst"})
			perHour := UserRateLimit(UserRateLimitSettings{Store: store, Rate: limiter.Rate{Period: time.Hour, Limit: 2}, Key: key, Name: "burst"})
			gold := UserRateLimit(UserRateLimitSettings{Store: store, Rate: limiter.Rate{Period: time.Hour, Limit: 2}, Key: key, Name: "gold"})
			for _, mw := range []gin.HandlerFunc{perSecond, perHour, gold} {
				r := limitedEngine(mw)
				for i := 0; i < 2; i++ {
					if w := serve(r, userReq("u")); w.Code != 200 {
						t.Fatalf("request %d got %d: a counter is shared", i, w.Code)
					}
				}
				if w := serve(r, userReq("u")); w.Code != 429 {
					t.Fatalf("third got %d", w.Code)
				}
			}
		})
	}
}

// TestThreeUsersGetTheirShareOnRedis: 3 users at 10/s each, hammered for 3 s
// through the GCRA store on a real Redis. Each user's admissions are within
// the algorithm's bound for the measured time (burst 10 + 10 per second), none
// affects another, and no 100 ms slice admits more than the burst (+1 that the
// slice's length itself refills, +1 for timestamps taken by the client).
func TestThreeUsersGetTheirShareOnRedis(t *testing.T) {
	srv := redistest.New(t)
	store := NewGCRAStore(srv.Client(), RedisStoreSettings{Prefix: srv.Prefix, Timeout: time.Second})
	rate := limiter.Rate{Period: time.Second, Limit: 10}
	r := limitedEngine(UserRateLimit(UserRateLimitSettings{Store: store, Rate: rate, Key: KeyFromHeader("X-API-Key")}))

	users := []string{"u1", "u2", "u3"}
	admitted := make([][]time.Duration, len(users))
	var mu sync.Mutex
	start := time.Now()
	stop := start.Add(3 * time.Second)
	var wg sync.WaitGroup
	for ui, u := range users {
		for g := 0; g < 2; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					w := serve(r, userReq(u))
					if w.Code == 200 {
						at := time.Since(start)
						mu.Lock()
						admitted[ui] = append(admitted[ui], at)
						mu.Unlock()
					} else if w.Code != 429 {
						t.Errorf("status %d", w.Code)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	for ui, times := range admitted {
		n := len(times)
		upper := 10 + int(elapsed.Seconds()*10) + 1
		// Generous lower bound: half the share of the time actually measured.
		lower := int(3 * 10 / 2)
		if n > upper || n < lower {
			t.Errorf("user %s admitted %d in %s, want %d..%d", users[ui], n, elapsed, lower, upper)
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		for i := range times {
			j := i
			for j < len(times) && times[j]-times[i] < 100*time.Millisecond {
				j++
			}
			if j-i > 10+2 {
				t.Errorf("user %s: %d admitted within 100ms from %s", users[ui], j-i, times[i])
				break
			}
		}
		t.Logf("user %s: %d admitted in %s", users[ui], n, elapsed)
	}
}

// countingStore counts the calls that reach the store.
type countingStore struct {
	gcra.Decider
	limiter.Store
	n atomic.Int64
}

func (s *countingStore) Decide(ctx context.Context, key string, count int64, rate limiter.Rate) (gcra.Decision, error) {
	s.n.Add(1)
	return s.Decider.Decide(ctx, key, count, rate)
}

// TestRedisOutageFailsOpenAndCostsOneTimeoutPerHealthPeriod: with Redis
// paused (nothing answers: every call is a timeout) and then killed, requests
// are served, nothing panics, each is counted as degraded, and Redis is tried
// at most once per health period.
func TestRedisOutageFailsOpenAndCostsOneTimeoutPerHealthPeriod(t *testing.T) {
	srv := redistest.Start(t)
	client := fleet.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = client.Close() })
	inner := NewGCRAStore(client, RedisStoreSettings{Prefix: srv.Prefix})
	hook := &countingStore{Decider: inner.(gcra.Decider), Store: inner}
	tm := newTelemetry(t)
	const period = 200 * time.Millisecond
	const workers = 4
	r := limitedEngine(UserRateLimit(UserRateLimitSettings{Store: hook,
		Rate: limiter.Rate{Period: time.Second, Limit: 1000}, Key: KeyFromHeader("X-API-Key"),
		Telemetry: tm.tel, HealthPeriod: period}))
	if w := serve(r, userReq("u")); w.Code != 200 || w.Header().Get("X-RateLimit-Limit") == "" {
		t.Fatalf("healthy: %d %v", w.Code, w.Header())
	}

	for _, outage := range []struct {
		name        string
		start, stop func()
	}{
		{"paused", srv.Pause, srv.Resume},
		{"killed", srv.Kill, srv.Restart},
	} {
		outage.start()
		before := hook.n.Load()
		degradedBefore := tm.sum(t, otelx.MetricDegraded)
		start := time.Now()
		n := 0
		for time.Since(start) < 3*period || n < 50 {
			var wg sync.WaitGroup
			for i := 0; i < workers; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if w := serve(r, userReq(fmt.Sprint("u", i))); w.Code != 200 {
						t.Errorf("%s: status %d, want 200 (fail open)", outage.name, w.Code)
					}
				}()
			}
			wg.Wait()
			n += workers
		}
		elapsed := time.Since(start)
		tries := hook.n.Load() - before
		// The requests in flight when Redis went away (one per worker), then
		// one probe per period, plus one probe in flight at the end.
		if maxTries := int64(workers + elapsed/period + 1); tries > maxTries {
			t.Errorf("%s: %d store calls for %d requests in %s, want at most %d", outage.name, tries, n, elapsed, maxTries)
		}
		if d := tm.sum(t, otelx.MetricDegraded) - degradedBefore; d != int64(n) {
			t.Errorf("%s: degraded %d, want %d", outage.name, d, n)
		}
		t.Logf("%s: %d requests, %d store calls in %s", outage.name, n, tries, elapsed)
		outage.stop()
		// Back to normal: within a few periods a request is limited by Redis again.
		deadline := time.Now().Add(10 * time.Second)
		for serve(r, userReq("u")).Header().Get("X-RateLimit-Limit") == "" {
			if time.Now().After(deadline) {
				t.Fatalf("%s: Redis not used again after recovery", outage.name)
			}
			time.Sleep(period / 4) // polling the breaker's probe, not settling
		}
	}
}

func TestRedisOutageFailClosed(t *testing.T) {
	srv := redistest.Start(t)
	client := fleet.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = client.Close() })
	r := limitedEngine(UserRateLimit(UserRateLimitSettings{Store: NewGCRAStore(client, RedisStoreSettings{}),
		Rate: limiter.Rate{Period: time.Second, Limit: 1000}, Key: KeyFromHeader("X-API-Key"),
		FailureMode: sluice.FailClosed, HealthPeriod: 3 * time.Second}))
	srv.Kill()
	for i := 0; i < 3; i++ {
		w := serve(r, userReq("u"))
		if w.Code != 429 || w.Header().Get("Retry-After") != "3" {
			t.Fatalf("fail closed: %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
		}
	}
}

// TestOverLimitFloodCostsRedisAlmostNothing: 10,000 requests from one user
// already over the limit, 4 at a time, cost at most one script call per
// concurrent worker (those that raced the first rejection into the cache),
// counted by the server's own INFO commandstats.
func TestOverLimitFloodCostsRedisAlmostNothing(t *testing.T) {
	srv := redistest.Start(t)
	client := fleet.NewClient(&redis.Options{Addr: srv.Addr, ReadTimeout: time.Second, WriteTimeout: time.Second})
	t.Cleanup(func() { _ = client.Close() })
	admin := srv.Client()
	r := limitedEngine(UserRateLimit(UserRateLimitSettings{Store: NewGCRAStore(client, RedisStoreSettings{Timeout: time.Second}),
		Rate: limiter.Rate{Period: time.Minute, Limit: 5}, Key: KeyFromHeader("X-API-Key")}))
	for i := 0; i < 5; i++ {
		if w := serve(r, userReq("abuser")); w.Code != 200 {
			t.Fatalf("request %d: %d", i, w.Code)
		}
	}
	ctx := context.Background()
	if err := admin.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	const workers, total = 4, 10_000
	var wg sync.WaitGroup
	var rejected atomic.Int64
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < total/workers; i++ {
				if serve(r, userReq("abuser")).Code == 429 {
					rejected.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if rejected.Load() != total {
		t.Fatalf("%d of %d rejected", rejected.Load(), total)
	}
	info, err := admin.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := scriptCalls(info)
	t.Logf("flood of %d over-limit requests: %d EVALSHA/EVAL calls (INFO commandstats)", total, calls)
	if calls > workers {
		t.Fatalf("%d script calls for the flood, want at most %d", calls, workers)
	}
	if calls < 1 {
		t.Fatalf("no script call at all: the stats do not count what the test thinks")
	}
}

// scriptCalls sums calls= of cmdstat_evalsha and cmdstat_eval.
func scriptCalls(info string) int {
	n := 0
	for _, line := range strings.Split(info, "\n") {
		if !strings.HasPrefix(line, "cmdstat_evalsha:") && !strings.HasPrefix(line, "cmdstat_eval:") {
			continue
		}
		for _, f := range strings.Split(strings.SplitN(line, ":", 2)[1], ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				c, _ := strconv.Atoi(strings.TrimSpace(v))
				n += c
			}
		}
	}
	return n
}

// TestFixedWindowRedisStoreIsLazyAndWorks: ulule's store, built with Redis
// down, neither fails nor panics at construction, and limits once Redis is up.
func TestFixedWindowRedisStoreIsLazyAndWorks(t *testing.T) {
	srv := redistest.Start(t)
	srv.Kill()
	client := fleet.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = client.Close() })
	store := NewFixedWindowRedisStore(client, RedisStoreSettings{Prefix: srv.Prefix})
	r := limitedEngine(UserRateLimit(UserRateLimitSettings{Store: store, Rate: limiter.Rate{Period: time.Minute, Limit: 2},
		Key: KeyFromHeader("X-API-Key"), HealthPeriod: time.Millisecond}))
	if w := serve(r, userReq("u")); w.Code != 200 {
		t.Fatalf("Redis down: %d, want 200 (fail open)", w.Code)
	}
	srv.Restart()
	codes := ""
	for i := 0; i < 3; i++ {
		codes += strconv.Itoa(serve(r, userReq("u")).Code)
	}
	if codes != "200200429" {
		t.Fatalf("codes %s, want 200 200 429", codes)
	}
}

// TestKeyFromRemoteAddrIgnoresForwardedFor: the key is the peer's IP;
// a spoofed X-Forwarded-For (or X-Real-IP) neither escapes the limit nor
// spends another's, even on a gin engine that trusts every proxy (gin's
// default, which KeyFromRemoteAddr does not consult).
func TestKeyFromRemoteAddrIgnoresForwardedFor(t *testing.T) {
	r := gin.New() // trusts X-Forwarded-For from everyone: c.ClientIP() would be spoofed
	r.Use(UserRateLimit(UserRateLimitSettings{Rate: limiter.Rate{Period: time.Minute, Limit: 1}, Key: KeyFromRemoteAddr()}))
	r.GET("/", func(c *gin.Context) {})
	codes := ""
	for i := 0; i < 2; i++ {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = net.JoinHostPort("192.0.2.1", strconv.Itoa(1234+i)) // a new connection, same peer
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i))
		req.Header.Set("X-Real-IP", fmt.Sprintf("198.51.100.%d", i))
		codes += strconv.Itoa(serve(r, req).Code)
	}
	other := httptest.NewRequest("GET", "/", nil)
	other.RemoteAddr = "[2001:db8::1]:443"
	other.Header.Set("X-Forwarded-For", "192.0.2.1") // claims the limited peer's IP
	codes += strconv.Itoa(serve(r, other).Code)
	if codes != "200429200" {
		t.Fatalf("codes %s, want 200 429 200: a header moved a request to another key", codes)
	}
	for addr, want := range map[string]string{"192.0.2.1:80": "192.0.2.1", "[2001:db8::1]:443": "2001:db8::1", "192.0.2.7": "192.0.2.7"} {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = addr
		if got := KeyFromRemoteAddr()(req); got != want {
			t.Errorf("RemoteAddr %q: key %q, want %q", addr, got, want)
		}
	}
}
