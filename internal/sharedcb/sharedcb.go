package sharedcb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-go/sluice/internal/redisx"
	"github.com/sluice-go/sluice/internal/rkey"
)

// State is the fleet's breaker state as this process knows it.
type State int

const (
	Closed State = iota
	Open
	HalfOpen
)

func (s State) String() string {
	return [...]string{"closed", "open", "half_open"}[s]
}

// Defaults of Config.
const (
	DefaultQuorum     = 2
	DefaultWindow     = 10 * time.Second
	DefaultOpenFor    = 30 * time.Second
	DefaultProbeLease = 5 * time.Second
	DefaultRefresh    = time.Second
)

// Config configures a Breaker; the zero value uses the defaults.
type Config struct {
	// Quorum is how many distinct processes must report their local breaker
	// open within Window to open the fleet. Zero means 2.
	Quorum int
	// Window: zero means 10s.
	Window time.Duration
	// OpenFor is how long a quorum (or a failed probe) opens the fleet. Zero
	// means 30s.
	OpenFor time.Duration
	// ProbeLease is the half-open period: one TryProbe in the fleet wins per
	// lease. Zero means 5s.
	ProbeLease time.Duration
	// Refresh is the period of the PTTL safety net. Zero means 1s.
	Refresh time.Duration
	// OnChange, if set, is called from the subscriber or refresh goroutine
	// when the cached state changes (connect it to otelx Recorder.CircuitState).
	OnChange func(State)
}

// Breaker is this process's view of a fleet breaker. Create it with New and
// stop its goroutines with Close.
type Breaker struct {
	g       *redisx.Guard
	cfg     Config
	id      string
	channel string
	keys    []string // open, tripped, reports, probe

	openUntil atomic.Int64 // unix ns; 0 = not open
	tripped   atomic.Bool
	last      atomic.Int32 // last State reported to OnChange

	// mu orders updates of the cached state; gen counts them, so that a
	// periodic refresh whose read from Redis was overtaken by a newer update
	// (a report that opened the fleet, a pub/sub message) is dropped instead
	// of writing a stale state over it.
	mu  sync.Mutex
	gen uint64

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New returns a Breaker named name. It does no I/O itself; it starts a
// subscriber and a refresh goroutine, stopped by Close.
func New(g *redisx.Guard, name string, cfg Config) *Breaker {
	if g == nil {
		panic("sharedcb: nil guard")
	}
	if name == "" {
		panic("sharedcb: empty name")
	}
	if cfg.Quorum < 0 || cfg.Window < 0 || cfg.OpenFor < 0 || cfg.ProbeLease < 0 || cfg.Refresh < 0 {
		panic("sharedcb: negative value in Config")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if cfg.Quorum == 0 {
		cfg.Quorum = DefaultQuorum
	}
	def(&cfg.Window, DefaultWindow)
	def(&cfg.OpenFor, DefaultOpenFor)
	def(&cfg.ProbeLease, DefaultProbeLease)
	def(&cfg.Refresh, DefaultRefresh)
	var rb [6]byte
	_, _ = rand.Read(rb[:])
	b := &Breaker{
		g: g, cfg: cfg, stop: make(chan struct{}),
		id:      strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(rb[:]),
		channel: rkey.Key(name, "cb"),
		keys: []string{rkey.Key(name, "cb:open"), rkey.Key(name, "cb:tripped"),
			rkey.Key(name, "cb:reports"), rkey.Key(name, "cb:probe")},
	}
	b.wg.Add(2)
	go b.subscribe()
	go b.refreshLoop()
	return b
}

// State returns the cached fleet state. It never calls Redis.
func (b *Breaker) State() State {
	if u := b.openUntil.Load(); u != 0 && time.Now().UnixNano() < u {
		return Open
	}
	if b.tripped.Load() {
		return HalfOpen
	}
	return Closed
}

// set records a state learned from Redis: open for pttl (<= 0: not open),
// tripped or not.
func (b *Breaker) set(pttl time.Duration, tripped bool) {
	b.mu.Lock()
	b.gen++
	b.store(pttl, tripped)
	b.mu.Unlock()
	b.notify()
}

// setIfCurrent is set for a state read while the generation was gen: it is
// dropped when another update came in since.
func (b *Breaker) setIfCurrent(gen uint64, pttl time.Duration, tripped bool) {
	b.mu.Lock()
	if b.gen != gen {
		b.mu.Unlock()
		return
	}
	b.gen++
	b.store(pttl, tripped)
	b.mu.Unlock()
	b.notify()
}

func (b *Breaker) generation() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.gen
}

// store writes the cached state; b.mu is held.
func (b *Breaker) store(pttl time.Duration, tripped bool) {
	if pttl > 0 {
		b.openUntil.Store(time.Now().Add(pttl).UnixNano())
	} else {
		b.openUntil.Store(0)
	}
	b.tripped.Store(tripped || pttl > 0)
}

func (b *Breaker) notify() {
	s := b.State()
	if old := State(b.last.Swap(int32(s))); old != s && b.cfg.OnChange != nil {
		b.cfg.OnChange(s)
	}
}

// reportScript: ZADD this reporter, drop old ones, open when the quorum is met.
// KEYS open, tripped, reports. ARGV id, window ms, quorum, open ms, channel.
// Returns the open key's PTTL (> 0 when open).
var reportScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window)
redis.call('PEXPIRE', KEYS[3], window)
local pttl = redis.call('PTTL', KEYS[1])
if pttl > 0 then return pttl end
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[3]) then
  local ms = tonumber(ARGV[4])
  redis.call('SET', KEYS[1], '1', 'PX', ms)
  redis.call('SET', KEYS[2], '1', 'PX', ms * 10 + 60000)
  redis.call('DEL', KEYS[3])
  redis.call('PUBLISH', ARGV[5], 'open ' .. ms)
  return ms
end
return 0
`)

// openScript opens for ARGV[1] ms unless open longer; publishes.
// KEYS open, tripped, reports, probe. ARGV ms, channel.
var openScript = redis.NewScript(`
local ms = tonumber(ARGV[1])
local pttl = redis.call('PTTL', KEYS[1])
if pttl >= ms then return pttl end
redis.call('SET', KEYS[1], '1', 'PX', ms)
redis.call('SET', KEYS[2], '1', 'PX', ms * 10 + 60000)
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('PUBLISH', ARGV[2], 'open ' .. ms)
return ms
`)

// closeScript closes the fleet breaker; publishes. KEYS open, tripped, reports, probe.
var closeScript = redis.NewScript(`
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('PUBLISH', ARGV[1], 'closed')
return 0
`)

// stateScript reads {open PTTL, tripped}.
var stateScript = redis.NewScript(`
return {redis.call('PTTL', KEYS[1]), redis.call('EXISTS', KEYS[2])}
`)

// probeScript takes the probe lease only while the fleet is half-open (not
// open, but tripped), so a process acting on a stale cached state cannot
// probe a fleet that just closed or re-opened.
// KEYS open, tripped, reports, probe. ARGV id, lease ms.
var probeScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
if redis.call('SET', KEYS[4], ARGV[1], 'NX', 'PX', tonumber(ARGV[2])) then return 1 end
return 0
`)

// ReportOpen records that this process's local breaker opened. The fleet opens
// when Quorum processes reported within Window. It reports whether the fleet
// is open.
func (b *Breaker) ReportOpen(ctx context.Context) (bool, error) {
	res, err := b.g.Run(ctx, reportScript, b.keys[:3], b.id, b.cfg.Window.Milliseconds(), b.cfg.Quorum,
		b.cfg.OpenFor.Milliseconds(), b.channel)
	if err != nil {
		return b.State() == Open, err
	}
	if ms, _ := res.(int64); ms > 0 {
		b.set(time.Duration(ms)*time.Millisecond, true)
		return true, nil
	}
	return false, nil
}

// OpenFor opens the fleet at once for d (a vendor-wide signal such as a 503
// with Retry-After), unless it is already open for longer. Without Redis it
// opens this process only.
func (b *Breaker) OpenFor(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	res, err := b.g.Run(ctx, openScript, b.keys, max(d.Milliseconds(), 1), b.channel)
	if err != nil {
		b.set(d, true)
		return err
	}
	if ms, _ := res.(int64); ms > 0 {
		b.set(time.Duration(ms)*time.Millisecond, true)
	}
	return nil
}

// TryProbe reports whether this process holds the fleet's half-open probe
// lease (SET NX PX ProbeLease, taken only while the fleet is half-open in
// Redis): exactly one caller in the fleet wins per lease. Without an answer
// from Redis it returns false and the error: no lease was taken, and the
// caller's local breaker alone decides whether the call goes.
func (b *Breaker) TryProbe(ctx context.Context) (bool, error) {
	res, err := b.g.Run(ctx, probeScript, b.keys, b.id, b.cfg.ProbeLease.Milliseconds())
	if err != nil {
		return false, err
	}
	n, _ := res.(int64)
	return n == 1, nil
}

// ReportSuccess closes the fleet breaker after a good probe.
func (b *Breaker) ReportSuccess(ctx context.Context) error {
	b.set(0, false)
	_, err := b.g.Run(ctx, closeScript, b.keys, b.channel)
	return err
}

// ReportFailure re-opens the fleet for OpenFor after a failed probe.
func (b *Breaker) ReportFailure(ctx context.Context) error { return b.OpenFor(ctx, b.cfg.OpenFor) }

// Refresh reads the state from Redis now (the refresh goroutine does this
// every Config.Refresh).
func (b *Breaker) Refresh(ctx context.Context) error {
	gen := b.generation()
	res, err := b.g.Run(ctx, stateScript, b.keys[:2])
	if err != nil {
		return err
	}
	a, _ := res.([]any)
	if len(a) != 2 {
		return nil
	}
	pttl, _ := a[0].(int64)
	tripped, _ := a[1].(int64)
	b.setIfCurrent(gen, time.Duration(pttl)*time.Millisecond, tripped == 1)
	return nil
}

// Close stops the goroutines. It is idempotent.
func (b *Breaker) Close() error {
	b.closeOnce.Do(func() {
		close(b.stop)
		b.wg.Wait()
	})
	return nil
}

func (b *Breaker) refreshLoop() {
	defer b.wg.Done()
	t := time.NewTicker(b.cfg.Refresh)
	defer t.Stop()
	for {
		_ = b.Refresh(context.Background())
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
	}
}

func (b *Breaker) subscribe() {
	defer b.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ps := b.g.Client().Subscribe(ctx, b.channel)
	defer ps.Close()
	ch := ps.Channel()
	for {
		select {
		case <-b.stop:
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			if m.Payload == "closed" {
				b.set(0, false)
			} else if ms, found := strings.CutPrefix(m.Payload, "open "); found {
				if n, err := strconv.ParseInt(ms, 10, 64); err == nil {
					b.set(time.Duration(n)*time.Millisecond, true)
				}
			}
		}
	}
}

// OpenRemaining returns how long the cached open state lasts, zero when the
// fleet is not open. It never calls Redis.
func (b *Breaker) OpenRemaining() time.Duration {
	if u := b.openUntil.Load(); u != 0 {
		return max(0, time.Duration(u-time.Now().UnixNano()))
	}
	return 0
}

// RedisHealthy reports whether the breaker's Redis health breaker is closed,
// for the status page.
func (b *Breaker) RedisHealthy() bool { return b.g.Healthy() }
