package main

import (
	"container/heap"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Vendor models how a vendor behaves past its capacity.
type Vendor string

const (
	// VendorDegrade is processor sharing, like an LLM engine batching every
	// request it accepted: C requests or fewer each take L; with n > C in
	// flight each one progresses at C/n of full speed, so all of them slow
	// down together (L × n/C while n stays put). Capacity stays C/L; a
	// request canceled halfway wastes the work already spent on it.
	VendorDegrade Vendor = "degrade"
	// VendorQueue serves C requests at once, each in L, and queues the rest
	// first come first served: slower, never failing.
	VendorQueue Vendor = "queue"
)

// vendor is a loopback server that answers POST /v1/chat/completions after
// one unit of work (L at full speed). It never rejects: past its capacity it
// degrades or queues, per its model. It counts the requests in its handler
// (peak in-flight) and its open sockets (peak sockets).
type vendor struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
	work func(ctx context.Context) bool // false: canceled before done

	conns, inflight         atomic.Int64
	peakConns, peakInflight atomic.Int64
	completed, canceled     atomic.Int64

	ps *sharer // VendorDegrade only
}

// vendorStats is what the vendor saw.
type vendorStats struct {
	PeakInflight int64 // most requests in the handler at once
	PeakConns    int64 // most sockets open at once
	Completed    int64 // requests whose work finished
	Canceled     int64 // requests canceled before their work finished
}

func startVendor(model Vendor, c int, l time.Duration) (*vendor, error) {
	if c < 1 || l <= 0 {
		return nil, fmt.Errorf("vendor: need C >= 1 and L > 0, got %d and %s", c, l)
	}
	v := &vendor{done: make(chan struct{})}
	switch model {
	case VendorDegrade:
		v.ps = newSharer(c, l)
		v.work = v.ps.do
	case VendorQueue:
		slots := make(chan struct{}, c)
		v.work = func(ctx context.Context) bool {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return false
			}
			defer func() { <-slots }()
			t := time.NewTimer(l)
			defer t.Stop()
			select {
			case <-t.C:
				return true
			case <-ctx.Done():
				return false
			}
		}
	default:
		return nil, fmt.Errorf("vendor: unknown model %q", model)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("vendor: listen: %w", err)
	}
	v.ln = ln
	v.srv = &http.Server{Handler: v, ReadHeaderTimeout: 10 * time.Second, ConnState: v.connState}
	go func() {
		defer close(v.done)
		_ = v.srv.Serve(ln)
	}()
	return v, nil
}

func (v *vendor) URL() string { return "http://" + v.ln.Addr().String() + "/v1/chat/completions" }

// Close closes the listener and every connection, and stops the scheduler.
func (v *vendor) Close() {
	_ = v.srv.Close()
	<-v.done
	if v.ps != nil {
		v.ps.stop()
	}
}

// SetCapacity changes a degrading vendor's capacity C from now on.
func (v *vendor) SetCapacity(c int) {
	if v.ps != nil {
		v.ps.setC(c)
	}
}

// Inflight is the requests in the handler now.
func (v *vendor) Inflight() int64 { return v.inflight.Load() }

func (v *vendor) Stats() vendorStats {
	return vendorStats{PeakInflight: v.peakInflight.Load(), PeakConns: v.peakConns.Load(),
		Completed: v.completed.Load(), Canceled: v.canceled.Load()}
}

func (v *vendor) connState(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		storeMax(&v.peakConns, v.conns.Add(1))
	case http.StateClosed, http.StateHijacked:
		v.conns.Add(-1)
	}
}

func (v *vendor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
		http.NotFound(w, r)
		return
	}
	storeMax(&v.peakInflight, v.inflight.Add(1))
	defer v.inflight.Add(-1)
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	if !v.work(r.Context()) {
		v.canceled.Add(1)
		return
	}
	v.completed.Add(1)
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"choices":[{"message":{"role":"assistant","content":"ok"}}],"usage":{"total_tokens":42}}`+"\n")
}

func storeMax(peak *atomic.Int64, n int64) {
	for {
		p := peak.Load()
		if n <= p || peak.CompareAndSwap(p, n) {
			return
		}
	}
}

// sharer is egalitarian processor sharing with capacity c: each of the n
// jobs in service progresses at min(1, c/n) of full speed, and a job needs l
// at full speed. It keeps a virtual clock that advances at that rate, so a job
// arriving at virtual time V finishes when the clock reaches V+l, and one
// goroutine wakes each job when its time comes.
type sharer struct {
	c    float64
	l    float64 // seconds of work per job
	mu   sync.Mutex
	virt float64 // virtual seconds
	last time.Time
	jobs jobHeap
	wake chan struct{}
	quit chan struct{}
	gone chan struct{}
}

type job struct {
	finish float64 // virtual time at which the job is done
	done   chan struct{}
	idx    int
}

func newSharer(c int, l time.Duration) *sharer {
	s := &sharer{c: float64(c), l: l.Seconds(), last: time.Now(),
		wake: make(chan struct{}, 1), quit: make(chan struct{}), gone: make(chan struct{})}
	go s.run()
	return s
}

func (s *sharer) stop() {
	close(s.quit)
	<-s.gone
}

// setC changes the capacity from now on (a vendor whose capacity steps).
func (s *sharer) setC(c int) {
	s.mu.Lock()
	s.advance(time.Now())
	s.c = float64(c)
	s.mu.Unlock()
	s.poke()
}

// rate is each job's speed with n jobs in service.
func (s *sharer) rate() float64 {
	if n := float64(len(s.jobs)); n > s.c {
		return s.c / n
	}
	return 1
}

// advance moves the virtual clock to now; s.mu held.
func (s *sharer) advance(now time.Time) {
	if len(s.jobs) > 0 {
		s.virt += now.Sub(s.last).Seconds() * s.rate()
	}
	s.last = now
}

func (s *sharer) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// do runs one job; false if ctx ended first (the job leaves, its work so far
// wasted).
func (s *sharer) do(ctx context.Context) bool {
	j := &job{done: make(chan struct{})}
	s.mu.Lock()
	s.advance(time.Now())
	j.finish = s.virt + s.l
	heap.Push(&s.jobs, j)
	s.mu.Unlock()
	s.poke()
	select {
	case <-j.done:
		return true
	case <-ctx.Done():
	}
	s.mu.Lock()
	finished := j.idx < 0
	if !finished {
		s.advance(time.Now())
		heap.Remove(&s.jobs, j.idx)
	}
	s.mu.Unlock()
	s.poke()
	return finished
}

func (s *sharer) run() {
	defer close(s.gone)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		s.mu.Lock()
		s.advance(time.Now())
		// Finish every job within 50µs of done: the timer is no finer.
		for len(s.jobs) > 0 && s.jobs[0].finish <= s.virt+50e-6 {
			close(heap.Pop(&s.jobs).(*job).done)
		}
		next := time.Hour
		if len(s.jobs) > 0 {
			next = time.Duration(math.Ceil((s.jobs[0].finish - s.virt) / s.rate() * 1e9))
		}
		s.mu.Unlock()
		t.Reset(next)
		select {
		case <-t.C:
		case <-s.wake:
		case <-s.quit:
			return
		}
	}
}

// jobHeap orders jobs by finish time; idx is -1 once a job has left.
type jobHeap []*job

func (h jobHeap) Len() int           { return len(h) }
func (h jobHeap) Less(i, j int) bool { return h[i].finish < h[j].finish }
func (h jobHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *jobHeap) Push(x any) {
	j := x.(*job)
	j.idx = len(*h)
	*h = append(*h, j)
}
func (h *jobHeap) Pop() any {
	old := *h
	j := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	j.idx = -1
	return j
}
