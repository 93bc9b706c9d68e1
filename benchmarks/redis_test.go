package benchmarks

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"

	"github.com/sluice-go/sluice/fleet"
	"github.com/sluice-go/sluice/internal/quota"
	"github.com/sluice-go/sluice/internal/redistest"
	"github.com/sluice-go/sluice/internal/redisx"
	"github.com/sluice-go/sluice/middleware"
)

// BenchmarkRedisDecision measures, in one run against one private Redis, a
// PING round trip (the floor), a per-user limit decision (UserRateLimit on the
// GCRA store, through gin) and a global-limiter decision (quota.Reserve, the
// script behind WithGlobalRateLimit) in per-call and in lease mode, each at
// concurrency 1 (one goroutine, a one-connection pool) and 64 (RunParallel
// with 64 goroutines, a 64-connection pool). Compare rows of the same concurrency: ns/op at c64 is
// wall time per decision with 64 in flight, i.e. 1/throughput.
func BenchmarkRedisDecision(b *testing.B) {
	srv := redistest.New(b)
	ctx := context.Background()
	const wide = 64
	newClient := func(b *testing.B, pool int) *redis.Client {
		// Timeouts far above a round trip: a benchmark measures, it must not
		// fail over to the degraded path on a loaded machine.
		c := fleet.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: pool,
			ReadTimeout: time.Second, WriteTimeout: time.Second, PoolTimeout: time.Second})
		b.Cleanup(func() { _ = c.Close() })
		return c
	}
	// parallel runs op at concurrency c: b.Loop for 1, RunParallel with c
	// goroutines otherwise. Each goroutine gets its own index.
	parallel := func(b *testing.B, c int, op func(i int) error) {
		b.ReportAllocs()
		if c == 1 {
			for b.Loop() {
				if err := op(0); err != nil {
					b.Fatal(err)
				}
			}
			return
		}
		b.SetParallelism((c + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		var next atomic.Int64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(1))
			for pb.Next() {
				if err := op(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	for _, c := range []int{1, wide} {
		suffix := "/c" + strconv.Itoa(c)
		b.Run("ping"+suffix, func(b *testing.B) {
			rc := newClient(b, c)
			parallel(b, c, func(int) error { return rc.Ping(ctx).Err() })
		})
		b.Run("user_limit_gcra"+suffix, func(b *testing.B) {
			rc := newClient(b, c)
			store := middleware.NewGCRAStore(rc, middleware.RedisStoreSettings{Prefix: srv.Prefix + b.Name(), Timeout: time.Second})
			h := engine(middleware.UserRateLimit(middleware.UserRateLimitSettings{Store: store, Rate: never,
				Key: middleware.KeyFromHeader("X-API-Key")}))
			var reqs [wide + 1]struct { // one request and writer per goroutine
				req *http.Request
				w   *discard
			}
			for i := range reqs {
				reqs[i].req = httptest.NewRequest("GET", "/v1/chat", nil)
				reqs[i].req.Header.Set("X-API-Key", "user-"+strconv.Itoa(i))
				reqs[i].w = &discard{h: http.Header{}}
			}
			parallel(b, c, func(i int) error {
				r := &reqs[i]
				clear(r.w.h)
				h.ServeHTTP(r.w, r.req)
				if r.w.h.Get("X-Ratelimit-Limit") == "" {
					return errDegraded // no headers: the store was skipped
				}
				return nil
			})
		})
		b.Run("global_limit"+suffix, func(b *testing.B) {
			rc := newClient(b, c)
			// Never limited, so every decision is the full admit path; FailOpen
			// starts no heartbeat.
			l := quota.New(redisx.New(rc, redisx.Options{Timeout: time.Second}), srv.Prefix+b.Name(), quota.Config{
				Requests: 1_000_000, Per: time.Second, Burst: 1_000_000, Fallback: quota.FailOpen,
			})
			b.Cleanup(func() { _ = l.Close() })
			parallel(b, c, func(int) error {
				r, err := l.Reserve(ctx, 1)
				if err == nil && r.Degraded() {
					return errDegraded
				}
				return err
			})
		})
		b.Run("global_lease"+suffix, func(b *testing.B) {
			rc := newClient(b, c)
			// The same quota in lease mode: most decisions are spent from
			// the process's lease, without Redis.
			l := quota.New(redisx.New(rc, redisx.Options{Timeout: time.Second}), srv.Prefix+b.Name(), quota.Config{
				Requests: 1_000_000, Per: time.Second, Burst: 1_000_000, Fallback: quota.FailOpen,
				Lease: true, MaxLease: 10_000,
			})
			b.Cleanup(func() { _ = l.Close() })
			parallel(b, c, func(int) error {
				r, err := l.Reserve(ctx, 1)
				if err == nil && r.Degraded() {
					return errDegraded
				}
				return err
			})
		})
	}
}

type benchError string

func (e benchError) Error() string { return string(e) }

const errDegraded = benchError("the decision was taken without Redis")

// TestOverLimitCacheSavesRedis floods a Redis-backed per-user limit with one
// abusive key until 10,000 requests were rejected, with the over-limit cache
// on (the default) and off (OverLimitCache: -1), and counts the scripts
// Redis ran (INFO commandstats: EVALSHA + EVAL). Off, each rejection costs a
// round trip; on, only the requests up to the first rejection do.
func TestOverLimitCacheSavesRedis(t *testing.T) {
	srv := redistest.Start(t) // private: commandstats must count only this test
	rc := fleet.NewClient(&redis.Options{Addr: srv.Addr, ReadTimeout: time.Second,
		WriteTimeout: time.Second, PoolTimeout: time.Second})
	defer rc.Close()
	admin := srv.Client()
	ctx := context.Background()
	const (
		limit    = 10
		rejected = 10_000
	)
	rate := limiter.Rate{Period: time.Hour, Limit: limit} // the 11th request waits minutes
	scripts := map[string]int64{}
	for _, tc := range []struct {
		name  string
		cache int
	}{
		{"cache_on", 0},
		{"cache_off", -1},
	} {
		store := middleware.NewGCRAStore(rc, middleware.RedisStoreSettings{Prefix: tc.name, Timeout: time.Second})
		h := engine(middleware.UserRateLimit(middleware.UserRateLimitSettings{Store: store, Rate: rate,
			Key: middleware.KeyFromHeader("X-API-Key"), OverLimitCache: tc.cache}))
		if err := admin.ConfigResetStat(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		var ok, no int
		for i := 0; no < rejected && i < limit+rejected; i++ { // bounded: exactly limit+rejected requests
			req := httptest.NewRequest("GET", "/v1/chat", nil)
			req.Header.Set("X-API-Key", "abuser")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			switch w.Code {
			case http.StatusOK:
				ok++
			case http.StatusTooManyRequests:
				no++
			default:
				t.Fatalf("%s: status %d", tc.name, w.Code)
			}
		}
		if ok != limit || no != rejected {
			t.Fatalf("%s: %d allowed, %d rejected; want %d and %d", tc.name, ok, no, limit, rejected)
		}
		info, err := admin.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		scripts[tc.name] = cmdCalls(info, "evalsha") + cmdCalls(info, "eval")
		t.Logf("%s: %d scripts on Redis for %d allowed + %d rejected requests", tc.name, scripts[tc.name], ok, no)
	}
	// Off: one script per request. On: the allowed ones and the first
	// rejection; a little slack for a NOSCRIPT reload.
	if got := scripts["cache_off"]; got < limit+rejected {
		t.Errorf("cache off: %d scripts; want one per request (%d)", got, limit+rejected)
	}
	if got := scripts["cache_on"]; got > limit+5 {
		t.Errorf("cache on: %d scripts for %d rejected requests; want about %d (the allowed ones and the first rejection)",
			got, rejected, limit+1)
	}
}

func cmdCalls(info, name string) int64 {
	for line := range strings.Lines(info) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+name+":calls="); ok {
			n, _ := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
			return n
		}
	}
	return 0
}
