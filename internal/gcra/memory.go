package gcra

import (
	"context"
	"sync"
	"time"

	"github.com/ulule/limiter/v3"
)

const shards = 64

// DefaultMaxKeys is the memory store's bound on tracked keys when none is given.
const DefaultMaxKeys = 100_000

// evictScan bounds the entries an insert into a full shard looks at.
const evictScan = 16

// MemoryStore is a GCRA limiter.Store in process memory holding at most
// maxKeys keys. Safe for concurrent use; it starts no goroutine.
//
// A key whose state is full again (its theoretical arrival time has passed)
// is the same as an absent key, so evicting it loses nothing; an insert into
// a full shard first evicts such keys and, when it finds none among the few
// it looks at, evicts one live key, which then starts again with a full
// burst. An abuser inventing keys can therefore cost memory only up to the
// bound, and at worst give some users a fresh burst.
type MemoryStore struct {
	now      func() int64 // ns
	perShard int
	shard    [shards]memShard
}

type memShard struct {
	mu sync.Mutex
	m  map[string]int64 // key -> tat (ns)
	_  [40]byte
}

// NewMemoryStore returns a store bounded to maxKeys keys (0: DefaultMaxKeys).
func NewMemoryStore(maxKeys int, now func() time.Time) *MemoryStore {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	s := &MemoryStore{perShard: max(1, (maxKeys+shards-1)/shards)}
	if now == nil {
		s.now = func() int64 { return time.Now().UnixNano() }
	} else {
		s.now = func() int64 { return now().UnixNano() }
	}
	for i := range s.shard {
		s.shard[i].m = make(map[string]int64)
	}
	return s
}

// Len returns the number of keys held.
func (s *MemoryStore) Len() int {
	n := 0
	for i := range s.shard {
		sh := &s.shard[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

func (s *MemoryStore) shardOf(key string) *memShard {
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return &s.shard[h%shards]
}

// Decide runs one decision for count requests (0: peek).
func (s *MemoryStore) Decide(_ context.Context, key string, count int64, rate limiter.Rate) (Decision, error) {
	interval, tau, ok := params(rate, time.Nanosecond)
	if !ok {
		return denied(rate), nil
	}
	sh := s.shardOf(key)
	sh.mu.Lock()
	now := s.now()
	tat, present := sh.m[key]
	d, next, store := decide(now, tat, interval, tau, count, rate.Limit, time.Nanosecond)
	if store {
		if !present && len(sh.m) >= s.perShard {
			sh.evict(now)
		}
		sh.m[key] = next
	}
	sh.mu.Unlock()
	return d, nil
}

// evict frees one slot: an expired key if one is among the first few, else
// the first key seen (map order is random).
func (sh *memShard) evict(now int64) {
	n := 0
	var victim string
	for k, tat := range sh.m {
		if tat <= now {
			delete(sh.m, k)
			return
		}
		if n == 0 {
			victim = k
		}
		if n++; n >= evictScan {
			break
		}
	}
	delete(sh.m, victim)
}

// Get admits one request.
func (s *MemoryStore) Get(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	d, err := s.Decide(ctx, key, 1, rate)
	return d.Context, err
}

// Increment admits count requests at once, or none.
func (s *MemoryStore) Increment(ctx context.Context, key string, count int64, rate limiter.Rate) (limiter.Context, error) {
	d, err := s.Decide(ctx, key, count, rate)
	return d.Context, err
}

// Peek reports the state without changing it.
func (s *MemoryStore) Peek(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	d, err := s.Decide(ctx, key, 0, rate)
	return d.Context, err
}

// Reset forgets key's state.
func (s *MemoryStore) Reset(_ context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	sh := s.shardOf(key)
	sh.mu.Lock()
	delete(sh.m, key)
	sh.mu.Unlock()
	return limiter.Context{Limit: rate.Limit, Remaining: rate.Limit, Reset: time.Now().Unix()}, nil
}
