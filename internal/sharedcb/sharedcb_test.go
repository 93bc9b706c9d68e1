package sharedcb

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-go/sluice/internal/redistest"
	"github.com/sluice-go/sluice/internal/redisx"
	"github.com/sluice-go/sluice/internal/rkey"
)

func guardFor(t testing.TB, url string) *redisx.Guard {
	t.Helper()
	opt, err := redisx.NewClientOptions(url)
	if err != nil {
		t.Fatal(err)
	}
	// These tests are about the fleet state, not about outages (none pauses
	// Redis; the one without Redis dials a closed port, refused at once), so
	// a 50ms timeout missed on a loaded machine must not open the guard's
	// health breaker and fail a probe: give every call time.
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = 2*time.Second, 2*time.Second, 2*time.Second, 2*time.Second
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return redisx.New(c, redisx.Options{Timeout: 2 * time.Second})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling
	}
}

func subscribed(t *testing.T, s *redistest.Server, channel string, n int64) func() bool {
	c := s.Client()
	return func() bool { return c.PubSubNumSub(context.Background(), channel).Val()[channel] >= n }
}

// One report does not open the fleet; the second process's does, and every
// instance sees it; one probe wins per lease; success closes everywhere.
func TestQuorumProbeClose(t *testing.T) {
	s := redistest.New(t)
	var bs []*Breaker
	// Each instance's state changes, as OnChange reports them: polling
	// State could miss a 300ms open on a loaded machine.
	var changesMu sync.Mutex
	var changes [3][]State
	for i := 0; i < 3; i++ {
		b := New(guardFor(t, s.URL), s.Prefix, Config{Quorum: 2, OpenFor: 300 * time.Millisecond, ProbeLease: time.Minute,
			OnChange: func(st State) {
				changesMu.Lock()
				changes[i] = append(changes[i], st)
				changesMu.Unlock()
			}})
		t.Cleanup(func() { _ = b.Close() })
		bs = append(bs, b)
	}
	saw := func(i int, want State) func() bool {
		return func() bool {
			changesMu.Lock()
			defer changesMu.Unlock()
			return slices.Contains(changes[i], want)
		}
	}
	waitFor(t, "subscriptions", subscribed(t, s, bs[0].channel, 3))
	ctx := context.Background()
	if open, err := bs[0].ReportOpen(ctx); open || err != nil {
		t.Fatalf("one report opened the fleet: %v %v", open, err)
	}
	if open, _ := bs[0].ReportOpen(ctx); open {
		t.Fatal("the same process reporting twice met the quorum")
	}
	if err := bs[2].Refresh(ctx); err != nil || bs[2].State() != Closed {
		t.Fatalf("state %v %v", bs[2].State(), err)
	}
	if open, err := bs[1].ReportOpen(ctx); !open || err != nil {
		t.Fatalf("quorum not met: %v %v", open, err)
	}
	for i := range bs {
		waitFor(t, "open on "+strconv.Itoa(i), saw(i, Open))
	}
	for i, b := range bs {
		waitFor(t, "half-open on "+strconv.Itoa(i), func() bool { return b.State() == HalfOpen })
	}
	var wins int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, b := range bs {
		for j := 0; j < 5; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if won, _ := b.TryProbe(ctx); won {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d probes won, want 1", wins)
	}
	if err := bs[0].ReportSuccess(ctx); err != nil {
		t.Fatal(err)
	}
	for i, b := range bs {
		waitFor(t, "closed on "+strconv.Itoa(i), func() bool { return b.State() == Closed })
	}
}

// Redis down from the start: construction works, OpenFor opens this process,
// the state ends at its expiry, TryProbe defers to the local breaker, Close
// leaves no goroutine.
func TestRedisDown(t *testing.T) {
	url := "redis://127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)) + "/0"
	b := New(guardFor(t, url), "down", Config{})
	defer b.Close()
	ctx := context.Background()
	const d = 100 * time.Millisecond
	t0 := time.Now()
	if err := b.OpenFor(ctx, d); err == nil {
		t.Fatal("no error with Redis down")
	}
	// Open for d from the call on; a loaded machine may reach this line
	// after d, when half-open is right.
	if st := b.State(); st != Open && time.Since(t0) < d {
		t.Fatalf("state %v, want open", st)
	}
	waitFor(t, "half-open", func() bool { return b.State() == HalfOpen })
	if won, err := b.TryProbe(ctx); won || err == nil {
		t.Fatalf("TryProbe without Redis = %v, %v; want no lease and the error, so the local breaker decides", won, err)
	}
	_ = b.ReportSuccess(ctx)
	if b.State() != Closed {
		t.Fatalf("state %v after success", b.State())
	}
}

// Regression: a process whose cached state is still half-open must not win a
// probe lease after another process closed (or re-opened) the fleet; the
// fleet test saw a second probe 2ms after the closing one.
func TestStaleHalfOpenCannotProbe(t *testing.T) {
	s := redistest.New(t)
	a := New(guardFor(t, s.URL), s.Prefix, Config{})
	defer a.Close()
	b := New(guardFor(t, s.URL), s.Prefix, Config{})
	defer b.Close()
	ctx := context.Background()
	// Open for an hour, ended below by deleting the key as its expiry would:
	// a short open could end before the first TryProbe on a loaded machine.
	if err := a.OpenFor(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if won, _ := b.TryProbe(ctx); won {
		t.Fatal("probe won while the fleet is open")
	}
	rc := s.Client()
	if err := rc.Del(ctx, rkey.Key(s.Prefix, "cb:open")).Err(); err != nil {
		t.Fatal(err)
	}
	if err := a.Refresh(ctx); err != nil || a.State() != HalfOpen {
		t.Fatalf("after the open period: state %v (%v), want half-open", a.State(), err)
	}
	if won, _ := a.TryProbe(ctx); !won {
		t.Fatal("no probe in half-open")
	}
	if err := a.ReportSuccess(ctx); err != nil {
		t.Fatal(err)
	}
	if won, _ := b.TryProbe(ctx); won {
		t.Fatal("probe won after the fleet closed")
	}
	if err := a.ReportFailure(ctx); err != nil {
		t.Fatal(err)
	}
	if won, _ := b.TryProbe(ctx); won {
		t.Fatal("probe won after the fleet re-opened")
	}
}

// TestStaleRefreshCannotOverwriteANewerOpen is the regression test for a
// refresh that read "closed" from Redis just before a report opened the
// fleet, then wrote "closed" over the newer open (which made the outbound
// layer close a local breaker that should have stayed open).
func TestStaleRefreshCannotOverwriteANewerOpen(t *testing.T) {
	b := &Breaker{cfg: Config{OpenFor: time.Minute}}
	gen := b.generation()         // a refresh starts reading Redis: closed
	b.set(time.Minute, true)      // meanwhile the fleet opens
	b.setIfCurrent(gen, 0, false) // the refresh's stale answer arrives
	if got := b.State(); got != Open {
		t.Fatalf("state %v after a stale refresh, want Open", got)
	}
	b.setIfCurrent(b.generation(), 0, false) // a current answer applies
	if got := b.State(); got != Closed {
		t.Fatalf("state %v after a current refresh, want Closed", got)
	}
}
