package middleware

import (
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"

	"github.com/sluice-go/sluice/internal/redistest"
)

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestHostileManyHugeKeys (issue 11, finding 6): clients inventing huge keys
// (2,000 API keys of 60 KiB, each sent until it is over its limit, so that it
// also lands in the over-limit cache) must not grow the heap by more than the
// documented bound: the memory store and the over-limit cache keep a key of
// more than 64 bytes as its 32-byte SHA-256 digest, so each entry costs at
// most MaxEntryBytes whatever the key's length. Before the fix the keys were
// kept whole: 2,000 keys grew the heap by about 125 MiB.
func TestHostileManyHugeKeys(t *testing.T) {
	r := limitedEngine(UserRateLimit(UserRateLimitSettings{Store: NewMemoryStore(MemoryStoreSettings{}),
		Rate: limiter.Rate{Period: time.Hour, Limit: 1}, Key: KeyFromHeader("X-API-Key")}))
	const keys, keyLen = 2000, 60 << 10
	pad := strings.Repeat("k", keyLen-8)
	before := heapInUse()
	for i := 0; i < keys; i++ {
		key := pad + strconv.FormatInt(int64(10_000_000+i), 10) // distinct, 60 KiB, garbage after the loop
		if w := serve(r, userReq(key)); w.Code != http.StatusOK {
			t.Fatalf("first request of key %d: %d", i, w.Code)
		}
		if w := serve(r, userReq(key)); w.Code != http.StatusTooManyRequests {
			t.Fatalf("second request of key %d: %d, want 429", i, w.Code)
		}
	}
	after := heapInUse()
	growth := int64(after) - int64(before)
	t.Logf("heap grew by %.2f MiB for %d keys of %d KiB", float64(growth)/(1<<20), keys, keyLen>>10)
	// 2,000 entries in the store and 2,000 in the cache, at most
	// MaxEntryBytes (128 B) each: about 0.5 MiB. 8 MiB leaves room for the
	// maps' growth and the runtime's own noise, and is still 15 times less
	// than one 60 KiB key per entry.
	if growth > 8<<20 {
		t.Fatalf("heap grew by %.1f MiB for %d keys, want < 8 MiB", float64(growth)/(1<<20), keys)
	}
	runtime.KeepAlive(r)
}

// TestHostileRedisStoreClientIgnoringDeadlines (issue 11, finding 7): a
// go-redis client built without ContextTimeoutEnabled ignores the store's
// Timeout, so a stalled Redis (SIGSTOP) held each request for go-redis's
// ReadTimeout (about 5 s) despite the documented 50 ms. The Redis stores now
// refuse such a client with a message naming the fix, and with the fix alone
// (go-redis defaults otherwise) a request to a paused Redis stays within a
// generous bound of the Timeout.
func TestHostileRedisStoreClientIgnoringDeadlines(t *testing.T) {
	srv := redistest.Start(t)
	plain := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = plain.Close() })
	for name, f := range map[string]func(){
		"NewGCRAStore":             func() { NewGCRAStore(plain, RedisStoreSettings{}) },
		"NewFixedWindowRedisStore": func() { NewFixedWindowRedisStore(plain, RedisStoreSettings{}) },
	} {
		msg := func() (msg string) {
			defer func() { msg = fmt.Sprint(recover()) }()
			f()
			return
		}()
		if !strings.HasPrefix(msg, "middleware: "+name+": ") || !strings.Contains(msg, "ContextTimeoutEnabled: true") {
			t.Errorf("%s with a default client: panic %q; want a middleware: %s: panic naming ContextTimeoutEnabled", name, msg, name)
		}
	}

	rc := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rc.Close() })
	// A health period of 1ns lets every request probe the stalled Redis.
	r := limitedEngine(UserRateLimit(UserRateLimitSettings{Store: NewGCRAStore(rc, RedisStoreSettings{Prefix: srv.Prefix}),
		Rate: limiter.Rate{Period: time.Second, Limit: 1000}, Key: KeyFromHeader("X-API-Key"), HealthPeriod: time.Nanosecond}))
	if w := serve(r, userReq("alice")); w.Code != http.StatusOK {
		t.Fatalf("before the stall: %d", w.Code)
	}
	srv.Pause()
	defer srv.Resume()
	var worst time.Duration
	for i := 0; i < 20; i++ {
		start := time.Now()
		if w := serve(r, userReq("alice")); w.Code != http.StatusOK {
			t.Errorf("request %d with Redis paused: %d; want served (FailOpen)", i, w.Code)
		}
		worst = max(worst, time.Since(start))
	}
	t.Logf("slowest of 20 requests with Redis paused (Timeout 50ms): %v", worst)
	if worst > time.Second {
		t.Errorf("slowest request took %v with Redis paused; want about the Timeout (50ms), < 1s", worst)
	}
}
