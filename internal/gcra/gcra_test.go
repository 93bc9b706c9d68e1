package gcra

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/store/tests"
	"go.uber.org/goleak"

	"github.com/sluice-go/sluice/internal/redistest"
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

func TestMemoryStoreIsBounded(t *testing.T) {
	s := NewMemoryStore(640, nil)
	rate := limiter.Rate{Period: time.Hour, Limit: 5}
	for i := 0; i < 20_000; i++ {
		_, _ = s.Get(context.Background(), fmt.Sprintf("invented-%d", i), rate)
	}
	if n := s.Len(); n > 640 {
		t.Fatalf("store holds %d keys, bound 640", n)
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
