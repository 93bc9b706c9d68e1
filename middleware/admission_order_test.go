package middleware

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/failsafe-go/failsafe-go/priority"
)

// orderedQueue serves AdmissionQueueHandler on fake time: each request names
// itself (X-Name), its priority (X-Prio, trusted here: it is a test) and its
// key (X-Key). The handler records who entered, with the priority its
// context carries, and holds its slot until release.
type orderedQueue struct {
	h       http.Handler
	q       *queue
	release chan struct{}
	mu      sync.Mutex
	entered []string
	codes   map[string]int
	reasons map[string]string
}

func newOrderedQueue(maxActive, maxWaiting int, fair bool) *orderedQueue {
	o := &orderedQueue{release: make(chan struct{}), codes: map[string]int{}, reasons: map[string]string{}}
	s := AdmissionQueueSettings{MaxActive: maxActive, MaxWaiting: maxWaiting, Timeout: time.Hour,
		Priority: PriorityFromHeader("X-Prio")}
	if fair {
		s.Key = KeyFromHeader("X-Key")
		s.Weight = func(r *http.Request) int { n, _ := strconv.Atoi(r.Header.Get("X-Weight")); return n }
	}
	o.q = newQueue(s, nil)
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.entered = append(o.entered, fmt.Sprintf("%s@%d", r.Header.Get("X-Name"), priority.FromContext(r.Context())))
		o.mu.Unlock()
		<-o.release
	})
	o.h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, ok := o.q.enter(w, r)
		if !ok {
			return
		}
		defer o.q.exit(r)
		inner.ServeHTTP(w, r)
	})
	return o
}

// send starts a request and waits until it is blocked: in the handler or in
// the queue, or answered.
func (o *orderedQueue) send(name string, prio int, key string) {
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-Name", name)
	req.Header.Set("X-Prio", strconv.Itoa(prio))
	req.Header.Set("X-Key", key)
	go func() {
		w := httptest.NewRecorder()
		o.h.ServeHTTP(w, req)
		o.mu.Lock()
		defer o.mu.Unlock()
		o.codes[name] = w.Code
		if w.Code != http.StatusOK {
			o.reasons[name] = w.Header().Get("Retry-After") + " " + w.Body.String()
		}
	}()
	synctest.Wait()
}

// next lets the active request finish and returns who entered.
func (o *orderedQueue) next() []string {
	o.release <- struct{}{}
	synctest.Wait()
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.entered)
}

func TestAdmissionQueuePriorityOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newOrderedQueue(1, 10, false)
		o.send("holder", 2, "")
		for i, p := range []int{0, 2, 4, 1, 4} {
			o.send(fmt.Sprintf("r%d", i), p, "")
		}
		var got []string
		for range 6 {
			got = o.next()
		}
		// The priority travels in the context (@n), for the outbound side.
		want := []string{"holder@2", "r2@4", "r4@4", "r1@2", "r3@1", "r0@0"}
		if !slices.Equal(got, want) {
			t.Fatalf("entered %v, want %v", got, want)
		}
		if st := o.q.wq.Stats(); st.Active != 0 || st.Waiting != 0 || st.Keys != 0 {
			t.Fatalf("queue left with %+v", st)
		}
	})
}

func TestAdmissionQueueDisplacesLowPriority(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newOrderedQueue(1, 2, false)
		o.send("holder", 2, "")
		o.send("low1", 0, "")
		o.send("low2", 0, "")
		o.send("low3", 0, "") // full, displaces nobody
		o.send("critical", 4, "")
		o.mu.Lock()
		for name, want := range map[string]int{"low3": 503, "low2": 503} {
			if o.codes[name] != want {
				t.Errorf("%s: %d, want %d", name, o.codes[name], want)
			}
			if r := o.reasons[name]; r != `1 {"error":{"layer":"admission_queue","reason":"queue_full","message":"too many requests are waiting; retry later"}}`+"\n" {
				t.Errorf("%s answered %q", name, r)
			}
		}
		o.mu.Unlock()
		var got []string
		for range 3 {
			got = o.next()
		}
		if want := []string{"holder@2", "critical@4", "low1@0"}; !slices.Equal(got, want) {
			t.Fatalf("entered %v, want %v", got, want)
		}
	})
}

// TestAdmissionQueueFairAcrossKeys: a heavy key that filled the room first
// gives up places to light keys, and the freed slots go round the keys, not
// to the heavy key's backlog.
func TestAdmissionQueueFairAcrossKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newOrderedQueue(1, 6, true)
		o.send("holder", 2, "heavy")
		for i := range 8 { // 6 wait, 2 refused
			o.send(fmt.Sprintf("h%d", i), 2, "heavy")
		}
		o.send("a0", 2, "a")
		o.send("b0", 2, "b")
		o.send("a1", 2, "a")
		var got []string
		for range 7 {
			got = o.next()
		}
		want := []string{"holder@2", "h0@2", "a0@2", "b0@2", "h1@2", "a1@2", "h2@2"}
		if !slices.Equal(got, want) {
			t.Fatalf("entered %v, want %v", got, want)
		}
		o.mu.Lock()
		var refused []string
		for n, c := range o.codes {
			if c == http.StatusServiceUnavailable {
				refused = append(refused, n)
			}
		}
		o.mu.Unlock()
		slices.Sort(refused)
		// h6 and h7 found the room full; h5, h4, h3 gave their places to a0, b0, a1.
		if want := []string{"h3", "h4", "h5", "h6", "h7"}; !slices.Equal(refused, want) {
			t.Fatalf("refused %v, want %v", refused, want)
		}
		if st := o.q.wq.Stats(); st.Waiting != 0 || st.Keys != 0 {
			t.Fatalf("queue left with %+v", st)
		}
	})
}

// TestAdmissionQueueFairShares: at saturation with every key backlogged, a
// key of weight 2 gets twice the slots of a key of weight 1, and a light key
// asking less than its share gets all it asks.
func TestAdmissionQueueFairShares(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		served := map[string]int{}
		var mu sync.Mutex
		h := AdmissionQueueHandler(AdmissionQueueSettings{MaxActive: 2, MaxWaiting: 12, Timeout: time.Hour,
			Key:    KeyFromHeader("X-Key"),
			Weight: func(r *http.Request) int { return map[string]int{"gold": 2}[r.Header.Get("X-Key")] },
		})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(100 * time.Millisecond) // one service time
			mu.Lock()
			served[r.Header.Get("X-Key")]++
			mu.Unlock()
		}))
		var wg sync.WaitGroup
		send := func(key string) {
			wg.Go(func() {
				req := httptest.NewRequest("GET", "/", nil)
				req.Header.Set("X-Key", key)
				h.ServeHTTP(httptest.NewRecorder(), req)
			})
		}
		// For 10 s (capacity 20/s, 200 in all), offer 100/s: light 2/s,
		// heavy 68/s, gold 30/s.
		tick := time.NewTicker(10 * time.Millisecond)
		for i := range 1000 {
			<-tick.C
			switch {
			case i%50 == 0:
				send("light")
			case i%10 < 7:
				send("heavy")
			default:
				send("gold")
			}
		}
		tick.Stop()
		wg.Wait()
		t.Logf("served %v", served)
		// The light key asks 20, under its share (a quarter of 200): it gets
		// them all. FIFO would serve it in proportion to its 2%: about 4.
		if served["light"] != 20 {
			t.Errorf("light served %d, want all its 20 (its share is 50)", served["light"])
		}
		// heavy and gold split the rest 1:2 (give or take a turn).
		if g, hv := served["gold"], served["heavy"]; g < 2*hv-6 || g > 2*hv+6 {
			t.Errorf("gold %d, heavy %d: want gold about twice heavy", g, hv)
		}
	})
}
