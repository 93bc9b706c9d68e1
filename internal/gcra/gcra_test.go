package gcra

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/store/tests"
	"go.uber.org/goleak"

	"github.com/sluice-go/sluice/internal/redistest"
	"github.com/sluice-go/sluice/internal/ttlmap"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type store interface {
	limiter.Store
	Decider
}

// conformance is the suite every sluice store passes. ulule's
// TestStoreSequentialAccess does not fit GCRA (it expects a denied Get to
// count, so that Peek after 6 Gets of 3 reports Reached while Peek after 3
// does not); this suite pins the GCRA semantics instead.
func conformance(t *testing.T, s store, prefix string) {
	ctx := context.Background()
	rate := limiter.Rate{Period: time.Minute, Limit: 3}
	key := func(k string) string { return prefix + k }

	t.Run("burst then reached", func(t *testing.T) {
		k := key("burst")
		if c, err := s.Peek(ctx, k, rate); err != nil || c.Remaining != 3 || c.Reached || c.Limit != 3 {
			t.Fatalf("fresh peek = %+v, %v", c, err)
		}
		for i := 1; i <= 3; i++ {
			c, err := s.Get(ctx, k, rate)
			if err != nil || c.Reached || c.Remaining != int64(3-i) {
				t.Fatalf("get %d = %+v, %v", i, c, err)
			}
			if until := c.Reset - time.Now().Unix(); until < 0 || until > 61 {
				t.Fatalf("get %d: reset in %ds", i, until)
			}
		}
		for i := 0; i < 3; i++ {
			d, err := s.Decide(ctx, k, 1, rate)
			if err != nil || !d.Reached || d.Remaining != 0 {
				t.Fatalf("over-limit decide = %+v, %v", d, err)
			}
			// One request is re-admitted every 20s; nothing was consumed by denials.
			if d.RetryAfter <= 0 || d.RetryAfter > 20*time.Second {
				t.Fatalf("retry after %s, want (0, 20s]", d.RetryAfter)
			}
		}
		if c, err := s.Peek(ctx, k, rate); err != nil || !c.Reached || c.Remaining != 0 {
			t.Fatalf("exhausted peek = %+v, %v", c, err)
		}
	})

	t.Run("reset", func(t *testing.T) {
		k := key("reset")
		for i := 0; i < 4; i++ {
			_, _ = s.Get(ctx, k, rate)
		}
		if c, err := s.Reset(ctx, k, rate); err != nil || c.Remaining != 3 || c.Reached {
			t.Fatalf("reset = %+v, %v", c, err)
		}
		if c, err := s.Get(ctx, k, rate); err != nil || c.Reached || c.Remaining != 2 {
			t.Fatalf("get after reset = %+v, %v", c, err)
		}
	})

	t.Run("increment is all or nothing", func(t *testing.T) {
		k := key("incr")
		if c, err := s.Increment(ctx, k, 2, rate); err != nil || c.Reached || c.Remaining != 1 {
			t.Fatalf("increment 2 = %+v, %v", c, err)
		}
		if c, err := s.Increment(ctx, k, 2, rate); err != nil || !c.Reached || c.Remaining != 1 {
			t.Fatalf("increment 2 more = %+v, %v", c, err)
		}
		if c, err := s.Get(ctx, k, rate); err != nil || c.Reached {
			t.Fatalf("the last one still fits: %+v, %v", c, err)
		}
	})

	t.Run("keys are isolated, whatever they contain", func(t *testing.T) {
		keys := []string{"a", "a:b", "a}b", "{a}", "a\nb", "a%3Ab", "a b", "", "é"}
		for _, k := range keys {
			if c, err := s.Get(ctx, key("iso")+k, rate); err != nil || c.Remaining != 2 {
				t.Fatalf("first get of %q = %+v, %v (shares state with another key)", k, c, err)
			}
		}
	})

	t.Run("rates admit nothing when zero", func(t *testing.T) {
		if c, err := s.Get(ctx, key("zero"), limiter.Rate{Period: time.Second}); err != nil || !c.Reached {
			t.Fatalf("zero rate = %+v, %v", c, err)
		}
	})

	t.Run("concurrent gets never overshoot", func(t *testing.T) {
		k := key("conc")
		r := limiter.Rate{Period: time.Hour, Limit: 50}
		var mu sync.Mutex
		admitted := 0
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 25; i++ {
					c, err := s.Get(ctx, k, r)
					if err != nil {
						t.Error(err)
						return
					}
					if !c.Reached {
						mu.Lock()
						admitted++
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		if admitted != 50 {
			t.Fatalf("admitted %d of 200 against a burst of 50 per hour, want exactly 50", admitted)
		}
	})
}

func TestMemoryStoreConformance(t *testing.T) {
	conformance(t, NewMemoryStore(0, nil), "")
}

func TestRedisStoreConformance(t *testing.T) {
	srv := redistest.New(t)
	conformance(t, NewRedisStore(srv.Client(), srv.Prefix, time.Second), "")
}

// ulule's concurrent-access test fits GCRA (it only asks for no errors).
func TestMemoryStoreUluleConcurrentAccess(t *testing.T) {
	tests.TestStoreConcurrentAccess(t, NewMemoryStore(0, nil))
}

func TestMemoryStoreRefillsOnInjectedClock(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	s := NewMemoryStore(0, func() time.Time { return now })
	rate := limiter.Rate{Period: time.Second, Limit: 10}
	ctx := context.Background()
	admitted := 0
	// 3 s at 1 ms steps: the burst of 10, then one every 100 ms.
	for i := 0; i < 3000; i++ {
		if d, _ := s.Decide(ctx, "u", 1, rate); !d.Reached {
			admitted++
		}
		now = now.Add(time.Millisecond)
	}
	if want := 10 + 29; admitted < want || admitted > want+1 {
		t.Fatalf("admitted %d in 3s at 10/s with burst 10, want %d..%d", admitted, want, want+1)
	}
}

// TestMemoryStoreResetOnInjectedClock: Reset, like every other operation,
// reads the injected clock, not the wall clock.
func TestMemoryStoreResetOnInjectedClock(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	s := NewMemoryStore(0, func() time.Time { return now })
	rate := limiter.Rate{Period: time.Second, Limit: 2}
	ctx := context.Background()
	for range 3 {
		_, _ = s.Get(ctx, "u", rate)
	}
	c, err := s.Reset(ctx, "u", rate)
	if err != nil {
		t.Fatal(err)
	}
	if c.Reset != now.Unix() || c.Remaining != 2 {
		t.Fatalf("Reset = %+v, want Reset %d (the injected clock) and Remaining 2", c, now.Unix())
	}
	if c, _ := s.Peek(ctx, "u", rate); c.Remaining != 2 {
		t.Fatalf("after Reset, Peek says %d remaining, want 2", c.Remaining)
	}
}

func TestMemoryStoreIsBounded(t *testing.T) {
	s := NewMemoryStore(640, nil)
	rate := limiter.Rate{Period: time.Hour, Limit: 5}
	for i := 0; i < 20_000; i++ {
		_, _ = s.Get(context.Background(), fmt.Sprintf("invented-%d", i), rate)
	}
	if b := s.Bytes(); b > ttlmap.ForKeys(640) {
		t.Fatalf("store holds %d bytes, bound %d (640 keys of the longest form)", b, ttlmap.ForKeys(640))
	}
	if n := s.Len(); n < 640 {
		t.Fatalf("store holds %d keys, room for at least 640", n)
	}
}

func TestRedisKeyIsNamespacedEscapedAndHashTagged(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialed
	t.Cleanup(func() { _ = c.Close() })
	s := NewRedisStore(c, "user rate", 0)
	for key, want := range map[string]string{
		"alice":       "sluice:{user%20rate:alice}:gcra",
		"a}:{b\n":     "sluice:{user%20rate:a%7D%3A%7Bb%0A}:gcra",
		"x%3A":        "sluice:{user%20rate:x%253A}:gcra",
		"t:1000ms:5:": "sluice:{user%20rate:t%3A1000ms%3A5%3A}:gcra",
	} {
		if got := s.Key(key); got != want {
			t.Errorf("Key(%q) = %q, want %q", key, got, want)
		}
	}
}

// TestHostileMemoryStoreLetsExpiredKeysGo (issue 11, finding 6): a key whose
// burst is full again is the same as no key, so the store lets it go rather
// than keep it until memory pressure evicts it. Before the fix such entries
// stayed forever (until a full shard happened to evict them).
func TestHostileMemoryStoreLetsExpiredKeysGo(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	s := NewMemoryStore(6400, func() time.Time { return now })
	rate := limiter.Rate{Period: time.Hour, Limit: 5} // one request keeps a key for 12 min
	ctx := context.Background()
	for i := 0; i < 6400; i++ {
		if d, _ := s.Decide(ctx, fmt.Sprintf("old-%d", i), 1, rate); d.Reached {
			t.Fatalf("old key %d denied", i)
		}
	}
	if n := s.Len(); n != 6400 {
		t.Fatalf("holds %d keys, want all 6400 (room for 6400)", n)
	}
	now = now.Add(13 * time.Minute) // every old key's state is full again
	// An expired key reads as absent, and a peek at it lets it go.
	if d, _ := s.Decide(ctx, "old-0", 0, rate); d.Remaining != 5 || d.Reached {
		t.Fatalf("peek at an expired key = %+v, want a full burst", d)
	}
	if n := s.Len(); n != 6399 {
		t.Fatalf("holds %d keys after the peek, want 6399", n)
	}
	// New keys: each shard sweeps its expired entries every quarter of its
	// capacity in new keys, so 3,200 of them (about 50 per shard, against a
	// sweep every 25) leave only themselves.
	for i := 0; i < 3200; i++ {
		if d, _ := s.Decide(ctx, fmt.Sprintf("new-%d", i), 1, rate); d.Reached {
			t.Fatalf("new key %d denied", i)
		}
	}
	if n := s.Len(); n != 3200 {
		t.Fatalf("holds %d keys, want the 3200 live ones only", n)
	}
}

// TestHostileMemoryStoreHugeKeysAreHashed (issue 11, finding 6): a key is
// charged at most ttlmap.MaxEntryBytes whatever its length, and distinct long
// keys keep distinct states.
func TestHostileMemoryStoreHugeKeysAreHashed(t *testing.T) {
	s := NewMemoryStore(1000, nil)
	rate := limiter.Rate{Period: time.Hour, Limit: 1}
	ctx := context.Background()
	long := strings.Repeat("x", 60<<10)
	keys := []string{long + "a", long + "b", strings.Repeat("y", 32), strings.Repeat("z", 64), strings.Repeat("z", 65)}
	for _, k := range keys {
		if d, _ := s.Decide(ctx, k, 1, rate); d.Reached {
			t.Fatalf("first request of a %d-byte key denied: another key's state", len(k))
		}
	}
	for _, k := range keys {
		if d, _ := s.Decide(ctx, k, 1, rate); !d.Reached {
			t.Fatalf("second request of a %d-byte key admitted: its state was lost", len(k))
		}
	}
	if b, most := s.Bytes(), int64(len(keys))*ttlmap.MaxEntryBytes; b > most {
		t.Fatalf("%d keys hold %d bytes, want at most %d", len(keys), b, most)
	}
}
