// Package ttlmap is the in-process state of sluice's local limiters: a
// sharded map from a string key to a deadline (Unix nanoseconds), bounded in
// bytes, in which an entry whose deadline has passed is the same as no entry.
// The memory GCRA store keeps a key's theoretical arrival time in it and the
// over-limit cache the time until which a key is rejected; for both, a past
// deadline means "nothing to remember", so expired entries are let go.
//
// Memory is bounded whatever the keys: a key longer than MaxKeyBytes is kept
// as its SHA-256 digest, so that no entry costs more than MaxEntryBytes of
// accounted memory, and the bytes held (key bytes plus EntryOverhead per
// entry) never exceed the Map's budget. Two distinct keys share an entry
// only if their SHA-256 digests collide, which nobody knows how to make
// happen; a key of exactly 32 bytes is hashed too, so that a key can never
// pose as another key's digest.
//
// Expired entries go three ways, none of which needs a goroutine: an update
// that finds its key expired and does not store drops it; every time a shard
// has taken a quarter of its capacity in new keys it sweeps out all its
// expired entries (amortized, a few entries looked at per insert); and an
// insert into a full shard evicts expired entries first, then, if it sees
// none among the first few it looks at, live ones. Evicting a live entry
// forgets it: for a limiter that is a fresh burst for one key, never memory.
package ttlmap

import (
	"crypto/sha256"
	"sync"
)

// Size bounds, in bytes.
const (
	// MaxKeyBytes is the longest key kept as it is; longer keys (and keys of
	// exactly sha256.Size bytes) are kept as their SHA-256 digest.
	MaxKeyBytes = 64
	// EntryOverhead is what an entry is charged besides its key's bytes:
	// the map slot (string header and value) with the table's slack, and
	// the rounding of the key's allocation.
	EntryOverhead = 64
	// MaxEntryBytes is the most any one entry is charged.
	MaxEntryBytes = MaxKeyBytes + EntryOverhead
)

const (
	shards = 64
	// evictScan is how many entries an insert into a full shard looks at
	// for an expired one before it evicts live ones.
	evictScan = 16
)

// Map is safe for concurrent use; the zero value is not usable.
type Map struct {
	perShard   int64 // byte budget of each shard
	sweepEvery int   // new keys a shard takes between two sweeps
	shard      [shards]shard
}

type shard struct {
	mu       sync.Mutex
	m        map[string]int64
	bytes    int64 // accounted bytes held
	inserted int   // new keys since the last sweep
	_        [24]byte
}

// New returns a Map that holds at most maxBytes accounted bytes, and at
// least maxBytes/MaxEntryBytes keys of any length (more shorter ones). It is
// rounded up so that every shard can hold one entry of any size.
func New(maxBytes int64) *Map {
	per := max((maxBytes+shards-1)/shards, MaxEntryBytes)
	m := &Map{perShard: per, sweepEvery: max(1, int(per/MaxEntryBytes/4))}
	for i := range m.shard {
		m.shard[i].m = make(map[string]int64)
	}
	return m
}

// ForKeys returns the budget that holds n keys of any length.
func ForKeys(n int) int64 { return int64(n) * MaxEntryBytes }

// Get returns key's deadline if it is after now.
func (m *Map) Get(key string, now int64) (int64, bool) {
	k, sh := m.locate(key)
	sh.mu.Lock()
	d, ok := sh.m[k]
	sh.mu.Unlock()
	if !ok || d <= now {
		return 0, false
	}
	return d, true
}

// Update calls f, under the key's shard lock, with key's deadline (0 when
// absent or not after now). If f returns store=true the deadline becomes
// next (an entry whose next is not after now is the same as none); if it
// returns false the entry is left alone, or dropped if it had expired.
func (m *Map) Update(key string, now int64, f func(deadline int64) (next int64, store bool)) {
	k, sh := m.locate(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	d, present := sh.m[k]
	if present && d <= now {
		d = 0
	}
	next, store := f(d)
	switch {
	case store && present:
		sh.m[k] = next
	case store:
		sh.insert(k, next, now, m)
	case present && d == 0:
		sh.remove(k)
	}
}

// Delete forgets key.
func (m *Map) Delete(key string) {
	k, sh := m.locate(key)
	sh.mu.Lock()
	if _, ok := sh.m[k]; ok {
		sh.remove(k)
	}
	sh.mu.Unlock()
}

// Len returns the number of entries held, expired ones included.
func (m *Map) Len() int {
	n := 0
	for i := range m.shard {
		sh := &m.shard[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// Bytes returns the accounted bytes held; it never exceeds the budget.
func (m *Map) Bytes() int64 {
	var n int64
	for i := range m.shard {
		sh := &m.shard[i]
		sh.mu.Lock()
		n += sh.bytes
		sh.mu.Unlock()
	}
	return n
}

// locate returns the form key is kept in and its shard.
func (m *Map) locate(key string) (string, *shard) {
	if len(key) > MaxKeyBytes || len(key) == sha256.Size {
		sum := digest(key)
		key = string(sum[:])
	}
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return key, &m.shard[h%shards]
}

// digest returns key's SHA-256 without copying a long key whole.
func digest(key string) [sha256.Size]byte {
	var buf [1024]byte
	if len(key) <= len(buf) {
		return sha256.Sum256(buf[:copy(buf[:], key)])
	}
	h := sha256.New()
	for len(key) > 0 {
		n := copy(buf[:], key)
		h.Write(buf[:n])
		key = key[n:]
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

func charge(k string) int64 { return int64(len(k)) + EntryOverhead }

// insert adds k, first making room within the budget.
func (sh *shard) insert(k string, d, now int64, m *Map) {
	if sh.inserted++; sh.inserted >= m.sweepEvery {
		sh.inserted = 0
		for key, dl := range sh.m {
			if dl <= now {
				sh.remove(key)
			}
		}
	}
	need := charge(k)
	for sh.bytes+need > m.perShard { // never empty here: perShard >= MaxEntryBytes
		victim, n := "", 0
		for key, dl := range sh.m { // map order is random
			if dl <= now {
				victim = key
				break
			}
			if n == 0 {
				victim = key
			}
			if n++; n >= evictScan {
				break
			}
		}
		sh.remove(victim)
	}
	sh.m[k] = d
	sh.bytes += need
}

func (sh *shard) remove(k string) {
	delete(sh.m, k)
	sh.bytes -= charge(k)
}
