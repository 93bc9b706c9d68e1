package waitq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// harness runs waiters in a synctest bubble and records, in order, the
// names of those admitted and how the others ended.
type harness struct {
	t     *testing.T
	q     *Queue
	mu    sync.Mutex
	order []string
	ends  map[string]error
}

func newHarness(t *testing.T, limit, maxWaiting int) *harness {
	return &harness{t: t, q: New(limit, maxWaiting), ends: map[string]error{}}
}

// join adds a waiter named name and returns Join's error; a waiter waits for
// up to an hour in its own goroutine.
func (h *harness) join(name string, prio int, key string, weight int) error {
	w, err := h.q.Join(prio, key, weight)
	if err != nil || w == nil {
		return err
	}
	go func() {
		err := h.q.Wait(context.Background(), w, time.Hour)
		h.mu.Lock()
		defer h.mu.Unlock()
		if err == nil {
			h.order = append(h.order, name)
		} else {
			h.ends[name] = err
		}
	}()
	return nil
}

// drain releases one slot at a time and returns who got them.
func (h *harness) drain(n int) []string {
	for range n {
		h.q.Release()
		synctest.Wait()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.order)
}

func TestHighestPriorityFirstFIFOWithin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, 1, 10)
		if w, err := h.q.Join(0, "", 1); w != nil || err != nil {
			t.Fatalf("first Join: %v %v, want the free slot", w, err)
		}
		for i, p := range []int{0, 2, 4, 2, 0, 3} {
			if err := h.join(fmt.Sprintf("p%d#%d", p, i), p, "", 1); err != nil {
				t.Fatal(err)
			}
		}
		got := h.drain(6)
		want := []string{"p4#2", "p3#5", "p2#1", "p2#3", "p0#0", "p0#4"}
		if !slices.Equal(got, want) {
			t.Fatalf("admitted %v, want %v", got, want)
		}
		h.q.Release()
		if st := h.q.Stats(); st != (Stats{Limit: 1, MaxWaiting: 10}) {
			t.Fatalf("stats after all left: %+v", st)
		}
	})
}

func TestHigherPriorityDisplacesNewestLowest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, 1, 3)
		h.q.Join(2, "", 1) // holds the slot
		for _, n := range []string{"low-old", "low-new", "mid"} {
			p := 0
			if n == "mid" {
				p = 1
			}
			if err := h.join(n, p, "", 1); err != nil {
				t.Fatal(err)
			}
		}
		// Full: a VeryLow newcomer displaces nobody.
		if err := h.join("low-late", 0, "", 1); !errors.Is(err, ErrFull) {
			t.Fatalf("low newcomer: %v, want ErrFull", err)
		}
		if err := h.join("high", 4, "", 1); err != nil {
			t.Fatalf("high newcomer refused: %v", err)
		}
		synctest.Wait()
		h.mu.Lock()
		if len(h.ends) != 1 || !errors.Is(h.ends["low-new"], ErrDisplaced) {
			t.Errorf("ends %v, want low-new displaced", h.ends)
		}
		h.mu.Unlock()
		if got, want := h.drain(3), []string{"high", "mid", "low-old"}; !slices.Equal(got, want) {
			t.Fatalf("admitted %v, want %v", got, want)
		}
		h.q.Release()
	})
}

func TestRoundRobinAcrossKeysWeighted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, 1, 100)
		h.q.Join(0, "x", 1)
		// a floods first; b and c arrive after. FIFO would serve a×6 first.
		for i := range 6 {
			h.join(fmt.Sprintf("a%d", i), 2, "a", 1)
		}
		for i := range 3 {
			h.join(fmt.Sprintf("b%d", i), 2, "b", 1)
			h.join(fmt.Sprintf("c%d", i), 2, "c", 2)
		}
		got := h.drain(12)
		want := []string{"a0", "b0", "c0", "c1", "a1", "b1", "c2", "a2", "b2", "a3", "a4", "a5"}
		if !slices.Equal(got, want) {
			t.Fatalf("admitted %v, want %v", got, want)
		}
		h.q.Release()
		if st := h.q.Stats(); st.Keys != 0 || st.Active != 0 {
			t.Fatalf("stats %+v: want no sub-queue and no slot left", st)
		}
	})
}

func TestFairDisplacement(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, 1, 4)
		h.q.Join(2, "x", 1)
		for i := range 4 {
			h.join(fmt.Sprintf("a%d", i), 2, "a", 1)
		}
		if err := h.join("a-late", 2, "a", 1); !errors.Is(err, ErrFull) {
			t.Fatalf("the heavy key's newcomer: %v, want ErrFull", err)
		}
		// b takes a's newest places until the two are even.
		for i := range 2 {
			if err := h.join(fmt.Sprintf("b%d", i), 2, "b", 1); err != nil {
				t.Fatalf("b%d refused: %v", i, err)
			}
		}
		if err := h.join("b2", 2, "b", 1); !errors.Is(err, ErrFull) {
			t.Fatalf("b2: %v, want ErrFull (a and b are even)", err)
		}
		// c has none: it displaces the newest of the first of the heaviest.
		if err := h.join("c0", 2, "c", 1); err != nil {
			t.Fatalf("c0 refused: %v", err)
		}
		// A lower priority displaces nobody at a higher one, fairness or not.
		if err := h.join("d0", 1, "d", 1); !errors.Is(err, ErrFull) {
			t.Fatalf("d0 at a lower priority: %v, want ErrFull", err)
		}
		synctest.Wait()
		h.mu.Lock()
		var displaced []string
		for n, err := range h.ends {
			if errors.Is(err, ErrDisplaced) {
				displaced = append(displaced, n)
			}
		}
		h.mu.Unlock()
		slices.Sort(displaced)
		if want := []string{"a1", "a2", "a3"}; !slices.Equal(displaced, want) {
			t.Fatalf("displaced %v, want %v", displaced, want)
		}
		if got, want := h.drain(4), []string{"a0", "b0", "c0", "b1"}; !slices.Equal(got, want) {
			t.Fatalf("admitted %v, want %v", got, want)
		}
		h.q.Release()
	})
}

// TestPerKeyStateBounded: keys cost nothing once nobody of theirs waits,
// however many came and went, and never more than the waiting room holds.
func TestPerKeyStateBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := New(1, 8)
		q.Join(0, "holder", 1)
		var wg sync.WaitGroup
		for i := range 1000 {
			w, err := q.Join(i%Levels, fmt.Sprintf("k%d", i), 1)
			if err != nil { // full and displacing nobody
				continue
			}
			wg.Go(func() { q.Wait(context.Background(), w, time.Duration(1+i%7)*time.Millisecond) })
			if st := q.Stats(); st.Keys > 8 || st.Waiting > 8 {
				t.Fatalf("after %d keys: %+v, want at most 8 sub-queues and waiters", i, st)
			}
		}
		wg.Wait()
		if st := q.Stats(); st.Keys != 0 || st.Waiting != 0 || st.Active != 1 {
			t.Fatalf("after every waiter left: %+v", st)
		}
		for i := range q.levels {
			if q.levels[i].cur != nil {
				t.Fatalf("level %d still has a ring", i)
			}
		}
		q.Release()
	})
}

func TestTimeoutAndCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := New(1, 4)
		q.Join(0, "", 1)
		w, _ := q.Join(0, "", 1)
		start := time.Now()
		if err := q.Wait(context.Background(), w, 3*time.Second); !errors.Is(err, ErrTimeout) {
			t.Fatalf("Wait: %v, want ErrTimeout", err)
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Fatalf("timed out after %s, want 3s", d)
		}
		ctx, cancel := context.WithCancel(context.Background())
		w, _ = q.Join(0, "", 1)
		go func() {
			time.Sleep(time.Second)
			cancel()
		}()
		if err := q.Wait(ctx, w, time.Hour); !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait: %v, want context.Canceled", err)
		}
		if st := q.Stats(); st.Waiting != 0 || st.Active != 1 {
			t.Fatalf("%+v", st)
		}
		q.Release()
		if st := q.Stats(); st.Active != 0 {
			t.Fatalf("%+v", st)
		}
	})
}

// TestAdmittedAsCanceledReleases: a waiter handed a slot just as its caller
// gave up gives the slot back, to the next waiter.
func TestAdmittedAsCanceledReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := New(1, 4)
		q.Join(0, "", 1)
		w1, _ := q.Join(0, "", 1)
		w2, _ := q.Join(0, "", 1)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		q.Release() // hands the slot to w1, whose context is already done
		if err := q.Wait(ctx, w1, time.Hour); !errors.Is(err, context.Canceled) {
			t.Fatalf("w1: %v", err)
		}
		if err := q.Wait(context.Background(), w2, time.Hour); err != nil {
			t.Fatalf("w2 did not get the slot w1 gave back: %v", err)
		}
		q.Release()
		if st := q.Stats(); st.Active != 0 || st.Waiting != 0 {
			t.Fatalf("%+v", st)
		}
	})
}

func TestSetLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := New(1, 10)
		q.Join(0, "", 1)
		var ws []*Waiter
		for range 3 {
			w, _ := q.Join(0, "", 1)
			ws = append(ws, w)
		}
		q.SetLimit(3) // two waiters in at once
		for _, w := range ws[:2] {
			if err := q.Wait(context.Background(), w, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		q.SetLimit(1) // three active, one waiting: two releases free no slot
		q.Release()
		q.Release()
		if st := q.Stats(); st.Active != 1 || st.Waiting != 1 {
			t.Fatalf("after lowering: %+v", st)
		}
		q.Release() // now at the limit: the waiter gets it
		if err := q.Wait(context.Background(), ws[2], time.Hour); err != nil {
			t.Fatal(err)
		}
		q.Release()
		if st := q.Stats(); st.Active != 0 || st.Limit != 1 {
			t.Fatalf("%+v", st)
		}
	})
}

// TestNoWaitingRoom: MaxWaiting 0 refuses everyone once the slots are taken,
// whatever their priority.
func TestNoWaitingRoom(t *testing.T) {
	q := New(1, 0)
	if w, err := q.Join(0, "", 1); w != nil || err != nil {
		t.Fatal("first refused")
	}
	if _, err := q.Join(4, "", 1); !errors.Is(err, ErrFull) {
		t.Fatalf("%v, want ErrFull", err)
	}
	q.Release()
}

// TestWeightIsBounded: a weight from outside is clamped to [1, MaxWeight],
// so a key claiming a huge weight still lets the others in every
// MaxWeight turns, and a zero or negative weight counts as 1.
func TestWeightIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, 1, 1000)
		h.q.Join(0, "x", 1)
		for i := range 150 {
			h.join(fmt.Sprintf("a%d", i), 2, "a", 1<<30)
		}
		h.join("b0", 2, "b", -5)
		h.join("b1", 2, "b", 0)
		got := h.drain(152)
		if i := slices.Index(got, "b0"); i != MaxWeight {
			t.Errorf("b0 admitted %dth, want after the %d turns of a", i, MaxWeight)
		}
		// b has weight 1, one turn per round: b1 waits for a's other 50.
		if i := slices.Index(got, "b1"); i != 151 {
			t.Errorf("b1 admitted %dth, want 151 (b has weight 1: one turn per round)", i)
		}
		h.q.Release()
	})
}
