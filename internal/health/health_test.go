package health

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBreakerSkipsThenLetsOneProbeThrough(t *testing.T) {
	b := New(time.Second)
	t0 := time.Unix(100, 0)
	if !b.Allow(t0) {
		t.Fatal("healthy breaker refused")
	}
	b.Failure(t0)
	if b.Allow(t0.Add(999 * time.Millisecond)) {
		t.Fatal("allowed within the period after a failure")
	}
	var probes atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b.Allow(t0.Add(time.Second)) {
				probes.Add(1)
			}
		}()
	}
	wg.Wait()
	if probes.Load() != 1 {
		t.Fatalf("%d probes after the period, want exactly 1", probes.Load())
	}
	b.Success()
	if !b.Healthy() || !b.Allow(t0.Add(time.Second)) {
		t.Fatal("not healthy after a successful probe")
	}
}
