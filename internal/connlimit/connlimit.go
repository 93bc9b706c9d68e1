// Package connlimit is a counting semaphore with a total cap and a per-key
// cap, for the outbound transport's socket slots.
//
// A slot is taken with Acquire before a socket is dialed and given back with
// Release when the socket has closed. Waiters are served in arrival order
// among those that fit: a waiter blocked only by its own key's cap never holds
// up a waiter for another key.
package connlimit

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrTimeout is returned by Acquire when no slot frees within the wait.
var ErrTimeout = errors.New("connlimit: no free slot within the wait")

// Limiter caps slots in total and per key. Its zero value is not usable; call
// New. It is safe for concurrent use.
type Limiter struct {
	max, maxPerKey int

	mu      sync.Mutex
	total   int
	perKey  map[string]int
	waiters []*waiter
}

type waiter struct {
	key     string
	ready   chan struct{} // closed when the slot is granted
	granted bool          // guarded by Limiter.mu
}

// New returns a Limiter with max slots in total and maxPerKey per key.
func New(max, maxPerKey int) *Limiter {
	return &Limiter{max: max, maxPerKey: maxPerKey, perKey: make(map[string]int)}
}

// fitsLocked reports whether one more slot for key fits.
func (l *Limiter) fitsLocked(key string) bool {
	return l.total < l.max && l.perKey[key] < l.maxPerKey
}

func (l *Limiter) takeLocked(key string) {
	l.total++
	l.perKey[key]++
}

// Acquire takes a slot for key, waiting at most wait for one to free. It
// returns ErrTimeout when the wait expires and ctx's error when ctx ends
// first. On a nil error the caller owns a slot and must Release it.
//
// onWait, if not nil, is called once (without the lock held) when Acquire has
// to wait, after the waiter is queued.
func (l *Limiter) Acquire(ctx context.Context, key string, wait time.Duration, onWait func()) error {
	l.mu.Lock()
	if l.fitsLocked(key) {
		l.takeLocked(key)
		l.mu.Unlock()
		return nil
	}
	w := &waiter{key: key, ready: make(chan struct{})}
	l.waiters = append(l.waiters, w)
	l.mu.Unlock()

	if onWait != nil {
		onWait()
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var err error
	select {
	case <-w.ready:
		return nil
	case <-timer.C:
		err = ErrTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if w.granted { // granted while we were giving up: keep it
		return nil
	}
	for i, x := range l.waiters {
		if x == w {
			l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
			break
		}
	}
	return err
}

// Release gives back a slot for key and hands freed capacity to the oldest
// waiters that fit.
func (l *Limiter) Release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.perKey[key]
	if n <= 0 || l.total <= 0 {
		panic("connlimit: Release without Acquire")
	}
	if n == 1 {
		delete(l.perKey, key)
	} else {
		l.perKey[key] = n - 1
	}
	l.total--
	if len(l.waiters) == 0 {
		return
	}
	kept := l.waiters[:0]
	for _, w := range l.waiters {
		if l.fitsLocked(w.key) {
			l.takeLocked(w.key)
			w.granted = true
			close(w.ready)
			continue
		}
		kept = append(kept, w)
	}
	for i := len(kept); i < len(l.waiters); i++ {
		l.waiters[i] = nil
	}
	l.waiters = kept
}

// Open returns the number of slots held.
func (l *Limiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// Starved reports whether some waiter is queued while the total cap is full,
// that is, whether freeing a slot held for another key would help.
func (l *Limiter) Starved() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.waiters) > 0 && l.total >= l.max
}

// Waiting returns the number of dials waiting for a slot.
func (l *Limiter) Waiting() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.waiters)
}
