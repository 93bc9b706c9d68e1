// Package overlimit remembers, in process, which keys are over their limit
// and until when, so that a flood from one abusive key is rejected without a
// store round trip per request.
package overlimit

import (
	"time"

	"github.com/sluice-go/sluice/internal/ttlmap"
)

// DefaultMaxKeys bounds the cache when no bound is given.
const DefaultMaxKeys = 10_000

// Cache maps a key to the time until which it is rejected. It is bounded in
// bytes: room for maxKeys keys of any length, maxKeys × 128 bytes of
// accounted memory (a key longer than 64 bytes is kept as its SHA-256
// digest). An entry whose time has passed is let go; when full, an expired
// entry, else an arbitrary one, is dropped (forgetting only costs one store
// call later). Safe for concurrent use; the zero value is not usable.
type Cache struct{ m *ttlmap.Map }

// New returns a cache with room for maxKeys keys (0: DefaultMaxKeys).
func New(maxKeys int) *Cache {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	return &Cache{m: ttlmap.New(ttlmap.ForKeys(maxKeys))}
}

// Until returns the time until which key is rejected, if that is after now.
func (c *Cache) Until(key string, now time.Time) (time.Time, bool) {
	u, ok := c.m.Get(key, now.UnixNano())
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(0, u), true
}

// Reject records that key is rejected until until.
func (c *Cache) Reject(key string, until, now time.Time) {
	u := until.UnixNano()
	c.m.Update(key, now.UnixNano(), func(int64) (int64, bool) { return u, true })
}

// Len returns the number of keys held, expired ones not yet let go included.
func (c *Cache) Len() int { return c.m.Len() }
