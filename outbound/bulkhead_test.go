package outbound

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/failsafe-go/failsafe-go/priority"

	"github.com/sluice-go/sluice"
)

// handlerTransport calls a vendor's handler directly, so that a test can run
// in a synctest bubble (no sockets) on fake time.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	w := httptest.NewRecorder()
	t.h.ServeHTTP(w, r)
	if r.Body != nil {
		_ = r.Body.Close()
	}
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	resp := w.Result()
	resp.Request = r
	return resp, nil
}

func TestBulkheadServesHighestPriorityFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var mu sync.Mutex
		var order []string
		c := NewClient(WithTransport(handlerTransport{http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			order = append(order, r.URL.Query().Get("n"))
			mu.Unlock()
			<-release
		})}), WithBulkhead(BulkheadSettings{MaxConcurrent: 1, MaxWait: time.Hour}))
		defer c.Close()
		var wg sync.WaitGroup
		call := func(name string, p priority.Priority) {
			ctx := context.Background()
			if p >= 0 {
				ctx = priority.ContextWithPriority(ctx, p)
			}
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://vendor.test/?n="+name, nil)
			wg.Go(func() {
				resp, err := c.Do(req)
				if err != nil {
					t.Errorf("%s: %v", name, err)
					return
				}
				resp.Body.Close()
			})
			synctest.Wait()
		}
		call("holder", priority.Low)
		call("verylow", priority.VeryLow)
		call("none", -1) // no priority in the context: Medium
		call("veryhigh", priority.VeryHigh)
		call("medium", priority.Medium)
		call("high", priority.High)
		for range 6 {
			release <- struct{}{}
			synctest.Wait()
		}
		wg.Wait()
		want := []string{"holder", "veryhigh", "high", "none", "medium", "verylow"}
		if !slices.Equal(order, want) {
			t.Fatalf("vendor saw %v, want %v", order, want)
		}
	})
}

// sharingVendor serves c(t) calls at once in lat each; with n > c in flight
// at its arrival a call takes lat·n/c (it shares the vendor with the rest),
// and with reject set it answers 503 instead. It counts calls in flight
// (peak per phase) and 200s.
type sharingVendor struct {
	lat      time.Duration
	capAt    func(time.Duration) int
	start    time.Time
	reject   bool
	inflight atomic.Int64
	mu       sync.Mutex
	peak     map[int]int64 // phase -> most in flight, after its first 2 s
	served   map[int]int
}

func (v *sharingVendor) phase(at time.Duration) int { return int(at / (20 * time.Second)) }

func (v *sharingVendor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := v.inflight.Add(1)
	defer v.inflight.Add(-1)
	at := time.Since(v.start)
	c := v.capAt(at)
	v.mu.Lock()
	if at%(20*time.Second) >= 2*time.Second {
		v.peak[v.phase(at)] = max(v.peak[v.phase(at)], n)
	}
	v.mu.Unlock()
	if v.reject && n > int64(c) {
		time.Sleep(v.lat / 20) // a refusal costs a round trip too
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	time.Sleep(time.Duration(float64(v.lat) * max(1, float64(n)/float64(c))))
	v.mu.Lock()
	v.served[v.phase(time.Since(v.start))]++
	v.mu.Unlock()
}

// TestAdaptiveBulkheadFindsCapacity: 32 callers in a closed loop against a
// vendor whose capacity steps 16 → 6 → 16 (20 s each, 100 ms per call) under
// an adaptive bulkhead of ceiling 16. In each phase, after 2 s of
// convergence, the vendor never has more than 1.2·capacity+1 calls (the
// gradient's tolerance and its one-call probe) and serves at least 90% of
// its capacity. With reject set the vendor answers 503 past its capacity
// instead of slowing down.
func TestAdaptiveBulkheadFindsCapacity(t *testing.T) {
	for _, reject := range []bool{false, true} {
		t.Run("reject="+strconv.FormatBool(reject), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				v := &sharingVendor{lat: 100 * time.Millisecond, start: time.Now(), reject: reject,
					peak: map[int]int64{}, served: map[int]int{},
					capAt: func(at time.Duration) int {
						if at >= 20*time.Second && at < 40*time.Second {
							return 6
						}
						return 16
					}}
				c := NewClient(WithTransport(handlerTransport{v}),
					WithBulkhead(BulkheadSettings{MaxConcurrent: 16, MaxWait: time.Hour, Adaptive: true}))
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				var wg sync.WaitGroup
				for range 32 {
					wg.Go(func() {
						for ctx.Err() == nil {
							req, _ := http.NewRequestWithContext(ctx, "POST", "http://vendor.test/", nil)
							if resp, err := c.Do(req); err == nil {
								_, _ = io.Copy(io.Discard, resp.Body)
								resp.Body.Close()
							}
						}
					})
				}
				wg.Wait()
				for p, capacity := range []int{16, 6, 16} {
					peak, served := v.peak[p], v.served[p]
					t.Logf("phase %d (capacity %d): peak in flight %d, served %d (%.0f%% of capacity)",
						p, capacity, peak, served, 100*float64(served)/(float64(capacity)*200))
					hi := min(int64(float64(capacity)*1.2)+1, 16) // 16: the ceiling
					if peak > hi {
						t.Errorf("phase %d: peak in flight %d, want at most %d", p, peak, hi)
					}
					if min := 0.9 * float64(capacity) * 200; float64(served) < min {
						t.Errorf("phase %d: served %d, want at least %.0f", p, served, min)
					}
				}
			})
		})
	}
}

// TestBulkheadQueueTimeoutIsOverloadSignal: a waiter that runs out of
// MaxWait fails with bulkhead/queue_timeout, on fake time, and after exactly
// MaxWait.
func TestBulkheadQueueTimeoutOnFakeTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		c := NewClient(WithTransport(handlerTransport{http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release })}),
			WithBulkhead(BulkheadSettings{MaxConcurrent: 1, MaxWait: 300 * time.Millisecond}))
		defer c.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			if resp, err := c.Get("http://vendor.test/"); err == nil {
				resp.Body.Close()
			}
		}()
		synctest.Wait()
		start := time.Now()
		_, err := c.Get("http://vendor.test/")
		wantReason(t, err, sluice.LayerBulkhead, sluice.ReasonQueueTimeout)
		if d := time.Since(start); d != 300*time.Millisecond {
			t.Errorf("gave up after %s, want 300ms", d)
		}
		close(release)
		<-done
	})
}
