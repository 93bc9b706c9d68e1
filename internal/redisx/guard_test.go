package redisx

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-go/sluice/internal/redistest"
)

var echo = redis.NewScript(`return ARGV[1]`)

func newGuard(t *testing.T, url string, o Options) (*Guard, *atomic.Int64) {
	t.Helper()
	opt, err := NewClientOptions(url)
	if err != nil {
		t.Fatal(err)
	}
	var dials atomic.Int64
	d := &net.Dialer{Timeout: opt.DialTimeout}
	opt.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return d.DialContext(ctx, network, addr)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return New(c, o), &dials
}

func TestNewClientOptionsIsTight(t *testing.T) {
	opt, err := NewClientOptions("redis://127.0.0.1:1/0?dial_timeout=5s&max_retries=3")
	if err != nil {
		t.Fatal(err)
	}
	if opt.DialTimeout > 100*time.Millisecond || opt.ReadTimeout > 100*time.Millisecond ||
		opt.WriteTimeout > 100*time.Millisecond || opt.PoolTimeout > 100*time.Millisecond {
		t.Fatalf("timeouts not tight: %+v", opt)
	}
	if opt.MaxRetries != -1 || !opt.ContextTimeoutEnabled {
		t.Fatalf("MaxRetries=%d ContextTimeoutEnabled=%v", opt.MaxRetries, opt.ContextTimeoutEnabled)
	}
	if _, err := NewClientOptions("http://nope"); err == nil {
		t.Fatal("bad URL accepted")
	}
}

// Construction does no I/O; with nothing listening the first call fails, the
// breaker opens and the next calls fail without dialing.
func TestRedisDownFromTheStart(t *testing.T) {
	port := redistest.FreePort(t)
	g, dials := newGuard(t, "redis://127.0.0.1:"+strconv.Itoa(port)+"/0", Options{HealthPeriod: time.Hour})
	if n := dials.Load(); n != 0 {
		t.Fatalf("New dialed %d times", n)
	}
	ctx := context.Background()
	if _, err := g.Run(ctx, echo, nil, "x"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("first call: %v, want ErrUnavailable", err)
	}
	if g.Healthy() {
		t.Fatal("healthy after a refused connection")
	}
	before := dials.Load()
	for i := 0; i < 100; i++ {
		if _, err := g.Run(ctx, echo, nil, "x"); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if n := dials.Load() - before; n != 0 {
		t.Fatalf("open breaker dialed %d times", n)
	}
}

// Exactly one probe goes through when the period ends, concurrent callers fail
// fast meanwhile, and the probe's success closes the breaker.
func TestExactlyOneProbe(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialed here
	defer c.Close()
	var changes []bool
	var mu sync.Mutex
	g := New(c, Options{HealthPeriod: 50 * time.Millisecond, OnStateChange: func(h bool) {
		mu.Lock()
		changes = append(changes, h)
		mu.Unlock()
	}})
	ctx := context.Background()
	boom := errors.New("i/o timeout")
	if err := g.Do(ctx, func(context.Context, redis.UniversalClient) error { return boom }); !errors.Is(err, ErrUnavailable) || !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}
	// Poll until the probe is let through; it blocks until released.
	release := make(chan struct{})
	probeIn := make(chan struct{})
	probeDone := make(chan error)
	go func() {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			err := g.Do(ctx, func(context.Context, redis.UniversalClient) error {
				close(probeIn)
				<-release
				return nil
			})
			if err == nil {
				probeDone <- nil
				return
			}
			time.Sleep(5 * time.Millisecond) // polling
		}
		probeDone <- errors.New("no probe let through")
	}()
	select {
	case <-probeIn:
	case err := <-probeDone:
		t.Fatal(err)
	}
	var calls atomic.Int64
	for i := 0; i < 50; i++ {
		err := g.Do(ctx, func(context.Context, redis.UniversalClient) error { calls.Add(1); return nil })
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call during probe: %v", err)
		}
	}
	if calls.Load() != 0 {
		t.Fatalf("%d calls reached Redis during the probe", calls.Load())
	}
	close(release)
	if err := <-probeDone; err != nil {
		t.Fatal(err)
	}
	if !g.Healthy() {
		t.Fatal("probe success did not close the breaker")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != 2 || changes[0] || !changes[1] {
		t.Fatalf("state changes %v, want [false true]", changes)
	}
}

// Answers from Redis (script errors, redis.Nil) and the caller's own
// cancellation never open the breaker.
func TestAnswersDoNotOpen(t *testing.T) {
	s := redistest.New(t)
	g, _ := newGuard(t, s.URL, Options{HealthPeriod: time.Hour})
	ctx := context.Background()
	if _, err := g.Run(ctx, redis.NewScript(`return redis.error_reply("ERR nope")`), nil); err == nil || errors.Is(err, ErrUnavailable) {
		t.Fatalf("script error: %v", err)
	}
	err := g.Do(ctx, func(ctx context.Context, c redis.UniversalClient) error {
		return c.Get(ctx, s.Key("missing")).Err()
	})
	if !errors.Is(err, redis.Nil) {
		t.Fatalf("got %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := g.Run(cctx, echo, nil, "x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: %v", err)
	}
	if !g.Healthy() {
		t.Fatal("an answer opened the breaker")
	}
}

// go-redis's Script.Run survives SCRIPT FLUSH (EVALSHA gets NOSCRIPT, EVAL runs).
func TestRunSurvivesScriptFlush(t *testing.T) {
	s := redistest.New(t)
	g, _ := newGuard(t, s.URL, Options{})
	ctx := context.Background()
	sc := redis.NewScript(`return "` + s.Prefix + `"`)
	for i := 0; i < 3; i++ {
		res, err := g.Run(ctx, sc, nil)
		if err != nil || res != s.Prefix {
			t.Fatalf("run %d: %v %v", i, res, err)
		}
		if err := s.Client().ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// A paused Redis (SIGSTOP) costs one timeout per health period, not one per
// call; a killed one costs nothing; recovery is automatic.
func TestPauseKillRecover(t *testing.T) {
	s := redistest.Start(t)
	const period = 200 * time.Millisecond
	g, _ := newGuard(t, s.URL, Options{HealthPeriod: period})
	ctx := context.Background()
	if _, err := g.Run(ctx, echo, nil, "x"); err != nil {
		t.Fatal(err)
	}
	for _, outage := range []string{"pause", "kill"} {
		if outage == "pause" {
			s.Pause()
		} else {
			s.Kill()
		}
		start := time.Now()
		slow, calls := 0, 0
		var worst time.Duration
		for time.Since(start) < time.Second {
			t0 := time.Now()
			_, err := g.Run(ctx, echo, nil, "x")
			d := time.Since(t0)
			calls++
			if err == nil {
				t.Fatalf("%s: call succeeded", outage)
			}
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("%s: %v does not match ErrUnavailable", outage, err)
			}
			if d > g.Timeout()/2 {
				slow++
			}
			worst = max(worst, d)
		}
		// One slow call to open, then at most one probe per period (plus
		// one for a period boundary and a loaded machine).
		if limit := int(time.Since(start)/period) + 2; slow > limit {
			t.Fatalf("%s: %d of %d calls waited on Redis, limit %d", outage, slow, calls, limit)
		}
		t.Logf("%s: %d calls, %d slow, worst %v", outage, calls, slow, worst)
		if outage == "pause" {
			s.Resume()
		} else {
			s.Restart()
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := g.Run(ctx, echo, nil, "x"); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no recovery", outage)
			}
			time.Sleep(10 * time.Millisecond) // polling
		}
		if !g.Healthy() {
			t.Fatalf("%s: unhealthy after a success", outage)
		}
	}
}

// CheckDeadlines refuses the go-redis clients that ignore context deadlines
// (ContextTimeoutEnabled false), whatever their kind, and trusts the rest.
func TestCheckDeadlines(t *testing.T) {
	off := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialed
	on := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	clusterOff := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	clusterOn := redis.NewClusterClient(NewClusterOptions([]string{"127.0.0.1:1"}))
	t.Cleanup(func() { _, _, _, _ = off.Close(), on.Close(), clusterOff.Close(), clusterOn.Close() })
	type wrapped struct{ *redis.Client }
	for _, c := range []any{off, clusterOff, wrapped{off}} {
		if err := CheckDeadlines(c); err == nil {
			t.Errorf("%T without ContextTimeoutEnabled accepted", c)
		}
	}
	for _, c := range []any{on, clusterOn, wrapped{on}, nil, struct{}{}} {
		if err := CheckDeadlines(c); err != nil {
			t.Errorf("%T refused: %v", c, err)
		}
	}
}
