package connlimit

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestTotalAndPerKeyCaps(t *testing.T) {
	l := New(3, 2)
	ctx := context.Background()
	for _, k := range []string{"a", "a", "b"} {
		if err := l.Acquire(ctx, k, time.Second, nil); err != nil {
			t.Fatalf("Acquire(%s) = %v, want a slot", k, err)
		}
	}
	if got := l.Open(); got != 3 {
		t.Fatalf("Open() = %d, want 3", got)
	}
	// Full in total: a third key waits, and times out.
	if err := l.Acquire(ctx, "c", 10*time.Millisecond, nil); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Acquire(c) on a full limiter = %v, want ErrTimeout", err)
	}
	l.Release("b")
	// "a" is at its per-key cap even though a slot is free.
	if err := l.Acquire(ctx, "a", 10*time.Millisecond, nil); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Acquire(a) over its per-key cap = %v, want ErrTimeout", err)
	}
	if err := l.Acquire(ctx, "c", time.Second, nil); err != nil {
		t.Fatalf("Acquire(c) with a free slot = %v", err)
	}
}

func TestReleaseGrantsWaiterThatFits(t *testing.T) {
	l := New(2, 1)
	ctx := context.Background()
	_ = l.Acquire(ctx, "a", time.Second, nil)
	_ = l.Acquire(ctx, "b", time.Second, nil)
	waiting := make(chan struct{})
	gotA, gotC := make(chan error, 1), make(chan error, 1)
	go func() { gotA <- l.Acquire(ctx, "a", time.Minute, func() { waiting <- struct{}{} }) }()
	<-waiting
	go func() { gotC <- l.Acquire(ctx, "c", time.Minute, func() { waiting <- struct{}{} }) }()
	<-waiting
	if !l.Starved() {
		t.Fatal("Starved() = false with waiters under a full total cap")
	}
	// Freeing b's slot cannot serve the older waiter for a (per-key cap) but serves c.
	l.Release("b")
	if err := <-gotC; err != nil {
		t.Fatalf("waiter for c = %v, want a slot", err)
	}
	select {
	case err := <-gotA:
		t.Fatalf("waiter for a got %v while a is at its cap", err)
	default:
	}
	l.Release("a")
	if err := <-gotA; err != nil {
		t.Fatalf("waiter for a = %v, want a slot", err)
	}
	if got := l.Open(); got != 2 {
		t.Fatalf("Open() = %d, want 2", got)
	}
}

func TestAcquireHonoursContext(t *testing.T) {
	l := New(1, 1)
	_ = l.Acquire(context.Background(), "a", time.Second, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Acquire(ctx, "a", time.Minute, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire with a canceled context = %v, want context.Canceled", err)
	}
	l.Release("a")
	if got := l.Open(); got != 0 {
		t.Fatalf("Open() = %d after releasing everything, want 0", got)
	}
}
