// Package overlimit remembers, in process, which keys are over their limit
// and until when, so that a flood from one abusive key is rejected without a
// store round trip per request.
package overlimit

import (
	"sync"
	"time"
)

const shards = 32

// DefaultMaxKeys bounds the cache when no bound is given.
const DefaultMaxKeys = 10_000

// Cache maps a key to the time until which it is rejected. It holds at most
// about maxKeys keys; when a shard is full an expired entry, else an
// arbitrary one, is dropped (forgetting only costs one store call later).
// Safe for concurrent use; the zero value is not usable.
type Cache struct {
	perShard int
	shard    [shards]struct {
		mu sync.RWMutex
		m  map[string]int64 // key -> until (Unix ns)
		_  [32]byte
	}
}

// New returns a cache bounded to about maxKeys keys (0: DefaultMaxKeys).
func New(maxKeys int) *Cache {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	c := &Cache{perShard: max(1, (maxKeys+shards-1)/shards)}
	for i := range c.shard {
		c.shard[i].m = make(map[string]int64)
	}
	return c
}

func (c *Cache) idx(key string) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % shards)
}

// Until returns the time until which key is rejected, if that is after now.
func (c *Cache) Until(key string, now time.Time) (time.Time, bool) {
	sh := &c.shard[c.idx(key)]
	sh.mu.RLock()
	u, ok := sh.m[key]
	sh.mu.RUnlock()
	if !ok || u <= now.UnixNano() {
		return time.Time{}, false
	}
	return time.Unix(0, u), true
}

// Reject records that key is rejected until until.
func (c *Cache) Reject(key string, until, now time.Time) {
	sh := &c.shard[c.idx(key)]
	n := now.UnixNano()
	sh.mu.Lock()
	if _, ok := sh.m[key]; !ok && len(sh.m) >= c.perShard {
		evicted := false
		for k, u := range sh.m {
			if u <= n {
				delete(sh.m, k)
				evicted = true
			}
		}
		if !evicted {
			for k := range sh.m {
				delete(sh.m, k)
				break
			}
		}
	}
	sh.m[key] = until.UnixNano()
	sh.mu.Unlock()
}
