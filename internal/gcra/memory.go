package gcra

import (
	"context"
	"time"

	"github.com/ulule/limiter/v3"

	"github.com/sluice-go/sluice/internal/ttlmap"
)

// DefaultMaxKeys is the memory store's bound when none is given.
const DefaultMaxKeys = 100_000

// MemoryStore is a GCRA limiter.Store in process memory, bounded in bytes:
// it holds at most maxKeys × ttlmap.MaxEntryBytes (128 B) of accounted
// memory, so at least maxKeys keys of any length. A key longer than 64 bytes
// is kept as its SHA-256 digest (two keys share a state only if their
// digests collide). Safe for concurrent use; it starts no goroutine.
//
// A key whose state is full again (its theoretical arrival time has passed)
// is the same as an absent key, so it is let go at no cost: lazily, by a
// sweep each shard runs every so many new keys, and first when room is
// needed. When a full shard finds no such key among the few it looks at, it
// evicts a live one, which then starts again with a full burst. An abuser
// inventing keys, however long, can therefore cost memory only up to the
// bound, and at worst give some users a fresh burst.
type MemoryStore struct {
	now func() int64 // ns
	m   *ttlmap.Map
}

// NewMemoryStore returns a store with room for maxKeys keys (0:
// DefaultMaxKeys) on the clock now (nil: time.Now).
func NewMemoryStore(maxKeys int, now func() time.Time) *MemoryStore {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	s := &MemoryStore{m: ttlmap.New(ttlmap.ForKeys(maxKeys))}
	if now == nil {
		s.now = func() int64 { return time.Now().UnixNano() }
	} else {
		s.now = func() int64 { return now().UnixNano() }
	}
	return s
}

// Len returns the number of keys held, expired ones not yet let go included.
func (s *MemoryStore) Len() int { return s.m.Len() }

// Bytes returns the accounted memory held, at most maxKeys × 128 bytes.
func (s *MemoryStore) Bytes() int64 { return s.m.Bytes() }

// Decide runs one decision for count requests (0: peek).
func (s *MemoryStore) Decide(_ context.Context, key string, count int64, rate limiter.Rate) (Decision, error) {
	interval, tau, ok := params(rate, time.Nanosecond)
	if !ok {
		return denied(rate), nil
	}
	var d Decision
	now := s.now()
	s.m.Update(key, now, func(tat int64) (int64, bool) {
		var next int64
		var store bool
		d, next, store = decide(now, tat, interval, tau, count, rate.Limit, time.Nanosecond)
		return next, store
	})
	return d, nil
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
	s.m.Delete(key)
	return limiter.Context{Limit: rate.Limit, Remaining: rate.Limit, Reset: time.Unix(0, s.now()).Unix()}, nil
}
