// Package waitq is a counting semaphore whose waiters are served by
// priority, then fairly across keys: the admission queue's and the
// bulkhead's one mechanism.
//
// A Queue holds Limit slots. A caller that finds a free slot (and nobody
// waiting) takes it at once; otherwise it waits in the sub-queue of its key
// at its priority, if the waiting room has space or it can displace someone.
// A slot that frees goes straight to the next waiter (hand-off), chosen as:
//
//   - the highest priority with anyone waiting;
//   - within it, the keys take turns (weighted round robin: a key of weight w
//     is served up to w times per turn), FIFO within a key.
//
// When the waiting room is full, a newcomer displaces the newest waiter of
// the lowest priority below its own; failing that, within its own priority,
// the newest waiter of the key with the most waiters (per unit of weight),
// if that key has at least two more than the newcomer's would have after it
// joined. Otherwise the newcomer is refused (ErrFull).
//
// Memory: a key's sub-queue exists only while it has a waiter, so there are
// never more sub-queues than waiters, nor more waiters than MaxWaiting.
package waitq

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Levels is the number of priorities: 0 (lowest) to Levels-1 (highest),
// failsafe-go's priority.VeryLow to priority.VeryHigh.
const Levels = 5

// MaxWeight bounds a key's weight.
const MaxWeight = 100

var (
	// ErrFull: the waiting room is full and the newcomer displaces nobody.
	ErrFull = errors.New("waitq: full")
	// ErrDisplaced: a waiter gave its place to a newcomer of higher priority
	// or of a key with fewer waiters.
	ErrDisplaced = errors.New("waitq: displaced")
	// ErrTimeout: the wait ran out.
	ErrTimeout = errors.New("waitq: timeout")
)

// Queue is safe for concurrent use.
type Queue struct {
	mu         sync.Mutex
	limit      int
	active     int
	waiting    int
	maxWaiting int
	levels     [Levels]level
}

// New returns a queue of limit slots (at least 1) and at most maxWaiting
// waiters (0: none wait).
func New(limit, maxWaiting int) *Queue {
	return &Queue{limit: max(limit, 1), maxWaiting: max(maxWaiting, 0)}
}

// Waiter is one caller in the waiting room.
type Waiter struct {
	ready      chan struct{} // closed when state leaves stateWaiting
	state      int           // guarded by Queue.mu
	sub        *subqueue
	prev, next *Waiter // within sub, oldest first
}

const (
	stateWaiting = iota
	stateAdmitted
	stateDisplaced
	stateGone // left on its own: timeout or cancellation
)

// level is one priority's waiters: a sub-queue per key, on a ring served in
// weighted round robin.
type level struct {
	subs   map[string]*subqueue
	cur    *subqueue // whose turn it is; nil when the level is empty
	credit int       // what cur may still take this turn
}

type subqueue struct {
	key        string
	weight     int
	n          int
	head, tail *Waiter
	prev, next *subqueue // the level's ring
	lvl        *level
}

// TryAcquire takes a free slot, if there is one and nobody waits for it.
func (q *Queue) TryAcquire() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.active < q.limit && q.waiting == 0 {
		q.active++
		return true
	}
	return false
}

// Join takes a slot (nil, nil), or enters the waiting room (a waiter to pass
// to Wait), or is refused (ErrFull). prio is clamped to [0, Levels) and
// weight to [1, MaxWeight].
func (q *Queue) Join(prio int, key string, weight int) (*Waiter, error) {
	prio = min(max(prio, 0), Levels-1)
	weight = min(max(weight, 1), MaxWeight)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.active < q.limit && q.waiting == 0 {
		q.active++
		return nil, nil
	}
	if q.waiting >= q.maxWaiting {
		victim := q.victimFor(prio, key, weight)
		if victim == nil {
			return nil, ErrFull
		}
		q.remove(victim)
		victim.state = stateDisplaced
		close(victim.ready)
	}
	w := &Waiter{ready: make(chan struct{})}
	q.push(prio, key, weight, w)
	return w, nil
}

// victimFor is whom a newcomer of prio and key displaces from a full room,
// or nil.
func (q *Queue) victimFor(prio int, key string, weight int) *Waiter {
	if q.maxWaiting == 0 {
		return nil
	}
	for p := 0; p < prio; p++ {
		if lv := &q.levels[p]; lv.cur != nil {
			return lv.heaviest().tail
		}
	}
	lv := &q.levels[prio]
	if lv.cur == nil {
		return nil
	}
	h := lv.heaviest()
	mine := 0
	if s := lv.subs[key]; s != nil {
		mine, weight = s.n, s.weight
	}
	// Even the shares, but never so far that the two keys would trade places
	// back and forth: after the swap the newcomer's key has at most what the
	// heaviest has left, per unit of weight.
	if (mine+1)*h.weight <= (h.n-1)*weight {
		return h.tail
	}
	return nil
}

// heaviest is the level's sub-queue with the most waiters per unit of
// weight (the oldest turn wins ties). The level is not empty.
func (lv *level) heaviest() *subqueue {
	best := lv.cur
	for s := lv.cur.next; s != lv.cur; s = s.next {
		if s.n*best.weight > best.n*s.weight {
			best = s
		}
	}
	return best
}

func (q *Queue) push(prio int, key string, weight int, w *Waiter) {
	lv := &q.levels[prio]
	s := lv.subs[key]
	if s == nil {
		if lv.subs == nil {
			lv.subs = make(map[string]*subqueue)
		}
		s = &subqueue{key: key, weight: weight, lvl: lv}
		lv.subs[key] = s
		if lv.cur == nil {
			s.prev, s.next = s, s
			lv.cur, lv.credit = s, s.weight
		} else { // last in the current round: just before cur
			s.prev, s.next = lv.cur.prev, lv.cur
			lv.cur.prev.next = s
			lv.cur.prev = s
		}
	}
	w.sub = s
	w.prev = s.tail
	if s.tail != nil {
		s.tail.next = w
	} else {
		s.head = w
	}
	s.tail = w
	s.n++
	q.waiting++
}

// remove takes w out of the waiting room, and its sub-queue out of its
// level when it was the last.
func (q *Queue) remove(w *Waiter) {
	s := w.sub
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		s.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		s.tail = w.prev
	}
	w.prev, w.next, w.sub = nil, nil, nil
	s.n--
	q.waiting--
	if s.n > 0 {
		return
	}
	lv := s.lvl
	delete(lv.subs, s.key)
	if s.next == s {
		lv.cur, lv.credit = nil, 0
	} else {
		s.prev.next, s.next.prev = s.next, s.prev
		if lv.cur == s {
			lv.cur, lv.credit = s.next, s.next.weight
		}
	}
	s.prev, s.next, s.lvl = nil, nil, nil
}

// next is the waiter a freed slot goes to, or nil; q.mu held.
func (q *Queue) next() *Waiter {
	for p := Levels - 1; p >= 0; p-- {
		lv := &q.levels[p]
		s := lv.cur
		if s == nil {
			continue
		}
		w := s.head
		lv.credit--
		if lv.credit <= 0 { // s's turn is over
			if s.next != s {
				lv.cur, lv.credit = s.next, s.next.weight
			} else {
				lv.credit = s.weight
			}
		}
		q.remove(w)
		return w
	}
	return nil
}

// Wait waits for w's slot for at most maxWait, or until ctx is done. nil:
// the slot is held (Release it). Otherwise ErrDisplaced, ErrTimeout or
// ctx.Err(), and nothing is held.
func (q *Queue) Wait(ctx context.Context, w *Waiter, maxWait time.Duration) error {
	t := time.NewTimer(maxWait)
	defer t.Stop()
	var why error
	select {
	case <-w.ready:
	case <-t.C:
		why = ErrTimeout
	case <-ctx.Done():
		why = ctx.Err()
	}
	q.mu.Lock()
	if w.state == stateWaiting {
		q.remove(w)
		w.state = stateGone
		q.mu.Unlock()
		return why
	}
	st := w.state
	q.mu.Unlock()
	if st == stateDisplaced {
		return ErrDisplaced
	}
	if ctx.Err() != nil { // admitted as the caller gave up: pass it on
		q.Release()
		return ctx.Err()
	}
	return nil
}

// Release frees a slot: it goes to the next waiter, if any.
func (q *Queue) Release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.active > q.limit {
		q.active--
		return
	}
	if w := q.next(); w != nil {
		w.state = stateAdmitted
		close(w.ready)
		return
	}
	q.active--
}

// SetLimit changes the number of slots (at least 1). Raising it admits
// waiters at once; lowering it takes effect as slots are released.
func (q *Queue) SetLimit(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.limit = max(n, 1)
	for q.active < q.limit {
		w := q.next()
		if w == nil {
			return
		}
		q.active++
		w.state = stateAdmitted
		close(w.ready)
	}
}

// Stats is a snapshot.
type Stats struct {
	Limit, Active, Waiting, MaxWaiting int
	Keys                               int // sub-queues, over every priority
}

// Stats returns a snapshot of the queue.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	st := Stats{Limit: q.limit, Active: q.active, Waiting: q.waiting, MaxWaiting: q.maxWaiting}
	for i := range q.levels {
		st.Keys += len(q.levels[i].subs)
	}
	return st
}
