package quota

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/redisx"
	"github.com/sluice-go/sluice/internal/rkey"
)

// FailureMode is what a Limiter does when Redis cannot be reached.
type FailureMode int

const (
	// LocalShare enforces this process's share of the quota locally: the
	// quota divided by the number of live processes last counted through
	// Redis (1 if never counted). The default.
	LocalShare FailureMode = iota
	// FailOpen admits every request.
	FailOpen
	// FailClosed rejects every request with rate_limited.
	FailClosed
)

// DefaultHeartbeat is the default Config.Heartbeat.
const DefaultHeartbeat = time.Second

// MaxWindow is the longest time span a Config may describe: Per, CostPer,
// MaxWait, MaxCooldown and each window below must be at most this long, so
// that the script's arithmetic (in microseconds, on Redis's clock) stays
// exact and every duration fits a time.Duration. The windows are the request
// burst's (Burst·Per/Requests), the cost burst's (CostBurst·CostPer/Cost)
// and MaxCost's (MaxCost·CostPer/Cost).
const MaxWindow = 366 * 24 * time.Hour

// Config configures a Limiter. At least one of Requests and Cost must be set.
type Config struct {
	// Requests per Per: the request quota. Zero means no request limit.
	Requests int
	Per      time.Duration
	// Burst is how many requests may go at once after an idle spell. Zero
	// means 1 (evenly spaced).
	Burst int
	// Cost per CostPer: the cost quota (e.g. LLM tokens). Zero means none.
	Cost    int64
	CostPer time.Duration
	// CostBurst is how much cost may go at once. Zero means Cost (one
	// period's budget). A single request costing more than CostBurst is still
	// admitted, after the bucket has drained enough (it goes into debt).
	CostBurst int64
	// MaxCost is the most one request can be charged: an estimate given to
	// Reserve or an actual cost given to Reconcile above it counts as
	// MaxCost (a negative estimate counts as 0; a negative actual cost is
	// ignored). Zero means CostBurst. It also bounds the debt that
	// surcharges can run up: however many requests report more than they
	// reserved, the bucket is never more than MaxCost below empty. Without
	// Redis a request is charged at most the local bucket's burst.
	MaxCost int64
	// MaxWait is the longest Reserve waits for a turn; it never waits past the
	// context's deadline. Zero means never wait: over the limit Reserve fails
	// with rate_limited (queue_timeout when MaxWait > 0).
	MaxWait time.Duration
	// MaxCooldown caps the pause that Cooldown sets. Zero means
	// DefaultMaxCooldown.
	MaxCooldown time.Duration
	// Fallback is the failure mode; the zero value is LocalShare.
	Fallback FailureMode
	// OnDegraded, if set, is called for each decision taken without Redis
	// (connect it to otelx Recorder.Degraded).
	OnDegraded func(ctx context.Context)
	// Heartbeat is how often a LocalShare limiter registers itself in Redis to
	// count the live processes; a process counts as live for 3 heartbeats.
	// Zero means 1s.
	Heartbeat time.Duration

	// Lease turns on lease mode (see Limiter): the process leases capacity
	// from the shared GCRA in one script and spends it locally, with no
	// Redis call per decision. Ignored by NewLocal.
	Lease bool
	// MaxLease is the most requests a process holds in lease mode. Zero
	// means Burst. The fleet's slack over the quota is at most the number
	// of processes times MaxLease.
	MaxLease int
	// MaxLeaseCost is the most cost units a process holds in lease mode.
	// Zero means the cost quota's share of the time MaxLease requests take
	// (Cost·MaxLease·Per/(Requests·CostPer)), or CostBurst/10 without a
	// request quota; at least 1. A request costing more is leased alone.
	MaxLeaseCost int64
	// LeaseTTL is how long leased capacity may be spent; what is left is
	// handed back with the next lease (or at Close). Zero means
	// DefaultLeaseTTL.
	LeaseTTL time.Duration
}

// Limiter is a fleet-wide quota. Create it with New and stop it with Close.
// It is safe for concurrent use.
//
// Bounds: no key that a Limiter writes lives longer than, for the request
// key, the request burst window plus MaxWait; for the cost key, the cost
// burst window plus the longer of MaxWait and the MaxCost window; for the
// cooldown key, MaxCooldown; for the members key, six heartbeats. A key
// found longer-lived (left by another version, or written by hand) is cut
// back to its bound when read, so processes sharing a name must share these
// settings. No wait and no RetryAfter exceeds MaxCooldown + MaxWait + the
// request interval (Per/Requests) + twice the MaxCost window, and every
// RetryAfter is positive.
type Limiter struct {
	g    *redisx.Guard
	cfg  Config
	keys []string // req, cost, cooldown
	mkey string   // members

	// Intervals, burst offsets and horizons (the most a TAT may run ahead
	// of now) in µs, as script arguments.
	reqT, reqOff, costT, costOff string
	reqHorizon, costHorizon      string
	reqTf, costTf                float64
	hasReq, hasCost              bool
	maxCost                      int64         // what one request is charged at most
	maxRetry                     time.Duration // the bound on every wait and RetryAfter
	maxCooldownMs                int64

	id       string
	channel  string // the cooldown channel ("" without Redis)
	lease    *lease // lease mode only
	wg       sync.WaitGroup
	members  atomic.Int64 // last known live process count, >= 1
	cooldown atomic.Int64 // local cooldown end, unix ns (used without Redis)

	mu      sync.Mutex
	reqLim  *rate.Limiter
	costLim *rate.Limiter

	stop       chan struct{}
	done       chan struct{}
	subscribed chan struct{} // closed once the cooldown channel is subscribed (or never will be)
	closeOnce  sync.Once
}

// NewLocal returns a Limiter that never uses Redis: the whole quota is
// enforced in this process (GCRA-equivalent token buckets from
// golang.org/x/time/rate), cooldowns are local, and no decision counts as
// degraded. Config.Fallback, OnDegraded and Heartbeat are ignored. It panics
// on an invalid Config.
func NewLocal(name string, cfg Config) *Limiter {
	cfg.Fallback = FailOpen // validated like New, but starts no heartbeat
	l := build(nil, name, cfg)
	l.cfg.OnDegraded = nil
	return l
}

// New returns a Limiter named name on g. It does no I/O (a LocalShare limiter
// starts a heartbeat goroutine, stopped by Close). It panics on an invalid
// Config.
func New(g *redisx.Guard, name string, cfg Config) *Limiter {
	if g == nil {
		panic("quota: nil guard")
	}
	return build(g, name, cfg)
}

// Validate reports what makes cfg impossible, in a message without a
// package prefix: no quota, a quota without its period, a negative value, an
// unknown Fallback, a quota finer than the script counts (more than one
// request or 1000 cost units per microsecond), or a window longer than
// MaxWindow. New and NewLocal panic with it.
func (cfg Config) Validate() error {
	_, err := cfg.withDefaults()
	return err
}

// withDefaults validates cfg and fills its zero-value defaults.
func (cfg Config) withDefaults() (Config, error) {
	switch {
	case cfg.Requests < 0 || cfg.Burst < 0 || cfg.Cost < 0 || cfg.CostBurst < 0 || cfg.MaxCost < 0 ||
		cfg.Per < 0 || cfg.CostPer < 0 || cfg.MaxWait < 0 || cfg.MaxCooldown < 0 || cfg.Heartbeat < 0:
		return cfg, errors.New("negative value in Config")
	case cfg.Requests == 0 && cfg.Cost == 0:
		return cfg, errors.New("Config needs Requests or Cost")
	case cfg.Fallback < LocalShare || cfg.Fallback > FailClosed:
		return cfg, errors.New("unknown Fallback " + strconv.Itoa(int(cfg.Fallback)))
	case cfg.Requests > 0 && cfg.Per == 0:
		return cfg, errors.New("Requests needs Per > 0")
	case cfg.Cost > 0 && cfg.CostPer == 0:
		return cfg, errors.New("Cost needs CostPer > 0")
	case cfg.MaxLease < 0 || cfg.MaxLeaseCost < 0 || cfg.LeaseTTL < 0:
		return cfg, errors.New("negative lease setting in Config")
	case cfg.MaxLease > MaxLeaseLimit:
		return cfg, fmt.Errorf("MaxLease above %d", MaxLeaseLimit)
	case cfg.LeaseTTL > MaxWindow:
		return cfg, fmt.Errorf("LeaseTTL is longer than %s", MaxWindow)
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.MaxCooldown == 0 {
		cfg.MaxCooldown = DefaultMaxCooldown
	}
	if cfg.Burst == 0 {
		cfg.Burst = 1
	}
	if cfg.CostBurst == 0 {
		cfg.CostBurst = cfg.Cost
	}
	if cfg.MaxCost == 0 {
		cfg.MaxCost = cfg.CostBurst
	}
	if cfg.MaxLease == 0 {
		cfg.MaxLease = min(cfg.Burst, MaxLeaseLimit)
	}
	if cfg.MaxLeaseCost == 0 && cfg.Cost > 0 {
		if cfg.Requests > 0 {
			// The cost quota over the time MaxLease requests take.
			f := float64(cfg.Cost) * float64(cfg.MaxLease) * cfg.Per.Seconds() /
				(float64(cfg.Requests) * cfg.CostPer.Seconds())
			cfg.MaxLeaseCost = int64(min(math.Ceil(f), float64(cfg.CostBurst)))
		} else {
			cfg.MaxLeaseCost = cfg.CostBurst / 10
		}
		cfg.MaxLeaseCost = max(cfg.MaxLeaseCost, 1)
	}
	type window struct {
		what string
		d    float64 // µs, as float64: a product of two int64s may overflow
	}
	windows := []window{{"MaxWait", us(cfg.MaxWait)}, {"MaxCooldown", us(cfg.MaxCooldown)}}
	if cfg.Requests > 0 {
		if us(cfg.Per) < float64(cfg.Requests) {
			return cfg, errors.New("more than one request per microsecond")
		}
		t := us(cfg.Per) / float64(cfg.Requests)
		windows = append(windows, window{"the request period", us(cfg.Per)},
			window{"the request burst window", t * float64(cfg.Burst)})
	}
	if cfg.Cost > 0 {
		t := us(cfg.CostPer) / float64(cfg.Cost)
		if t < 0.001 {
			return cfg, errors.New("more than 1000 cost units (tokens) per microsecond")
		}
		windows = append(windows, window{"the cost period", us(cfg.CostPer)},
			window{"the cost burst window", t * float64(cfg.CostBurst)},
			window{"the MaxCost window (MaxCost at the cost rate)", t * float64(cfg.MaxCost)})
	}
	for _, w := range windows {
		if w.d > us(MaxWindow) {
			return cfg, fmt.Errorf("%s is longer than %s", w.what, MaxWindow)
		}
	}
	return cfg, nil
}

func us(d time.Duration) float64 { return float64(d.Microseconds()) }

func build(g *redisx.Guard, name string, cfg Config) *Limiter {
	if name == "" {
		panic("quota: empty name")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		panic("quota: " + err.Error())
	}
	l := &Limiter{g: g, cfg: cfg, stop: make(chan struct{}), done: make(chan struct{}), subscribed: make(chan struct{})}
	l.keys = []string{rkey.Key(name, KindRequests), rkey.Key(name, KindCost), rkey.Key(name, KindCooldown)}
	l.mkey = rkey.Key(name, KindMembers)
	l.reqT, l.reqOff, l.costT, l.costOff, l.reqHorizon, l.costHorizon = "0", "0", "0", "0", "0", "0"
	l.maxCooldownMs = cfg.MaxCooldown.Milliseconds()
	maxWait := us(cfg.MaxWait)
	retry := maxWait + us(cfg.MaxCooldown)
	if cfg.Requests > 0 {
		t := us(cfg.Per) / float64(cfg.Requests)
		l.reqTf = t
		l.hasReq = true
		l.reqT, l.reqOff = fus(t), fus(t*float64(cfg.Burst))
		l.reqHorizon = fus(t*float64(cfg.Burst) + maxWait)
		retry += t
	}
	if cfg.Cost > 0 {
		l.costTf = us(cfg.CostPer) / float64(cfg.Cost)
		l.hasCost = true
		l.maxCost = cfg.MaxCost
		maxCostWindow := l.costTf * float64(cfg.MaxCost)
		l.costT, l.costOff = fus(l.costTf), fus(l.costTf*float64(cfg.CostBurst))
		l.costHorizon = fus(l.costTf*float64(cfg.CostBurst) + max(maxWait, maxCostWindow))
		retry += 2 * maxCostWindow
	}
	l.maxRetry = time.Duration(math.Ceil(retry))*time.Microsecond + time.Millisecond
	var b [6]byte
	_, _ = rand.Read(b[:])
	l.id = strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
	l.members.Store(1)
	l.reqLim = rate.NewLimiter(rate.Inf, 1)
	l.costLim = rate.NewLimiter(rate.Inf, 1)
	l.setShare(1)
	// A new rate.Limiter starts full at its construction burst; SetBurst adds
	// no tokens, so start the local buckets full at their real burst.
	l.reqLim = rate.NewLimiter(l.reqLim.Limit(), l.reqLim.Burst())
	l.costLim = rate.NewLimiter(l.costLim.Limit(), l.costLim.Burst())
	if g != nil {
		// Every Redis-backed limiter announces its cooldowns, so that
		// lease-mode processes in a mixed fleet hear of them at once.
		l.channel = rkey.Key(name, KindCooldownChannel)
	}
	if cfg.Lease && g != nil {
		l.lease = newLease(cfg)
		l.wg.Add(1)
		go l.subscribe()
	} else {
		close(l.subscribed)
	}
	if cfg.Fallback == LocalShare && g != nil {
		go l.heartbeat()
	} else {
		close(l.done)
	}
	return l
}

// fus formats µs for the scripts.
func fus(f float64) string { return strconv.FormatFloat(f, 'f', 3, 64) }

// Members returns the last known number of live processes sharing the quota
// (1 until counted; only a LocalShare limiter counts).
func (l *Limiter) Members() int { return int(l.members.Load()) }

// Close stops the heartbeat and removes this process from the count
// (best-effort). It is idempotent.
func (l *Limiter) Close() error {
	l.closeOnce.Do(func() {
		close(l.stop)
		<-l.done
		if l.lease != nil {
			l.lease.mu.Lock()
			l.lease.closed = true // no background lease starts after this
			l.lease.mu.Unlock()
		}
		l.wg.Wait()
		l.returnLease()
		if l.cfg.Fallback == LocalShare && l.g != nil {
			_, _ = l.g.Run(context.Background(), membersScript, []string{l.mkey}, l.id, 0, "0")
		}
	})
	return nil
}

// Reservation is an admitted request. Its methods are safe to call on nil.
type Reservation struct {
	l        *Limiter
	wait     time.Duration
	degraded bool // decided by the local buckets, without Redis
	local    bool // by a NewLocal limiter: not a fallback, not Degraded
	leased   bool // spent from this process's lease: Cancel gives it back to the lease
	mu       sync.Mutex
	cost     int64 // what the request is charged now, within [0, MaxCost]
	// reqN and costN are what the request holds in the local buckets, handed
	// back by Cancel and moved by Reconcile.
	reqN, costN int
	canceled    bool
}

// Wait is how long Reserve waited for the turn.
func (r *Reservation) Wait() time.Duration {
	if r == nil {
		return 0
	}
	return r.wait
}

// Degraded reports whether the decision was taken without Redis.
func (r *Reservation) Degraded() bool { return r != nil && r.degraded && !r.local }

// Reserve admits one request costing cost (ignored without a cost quota;
// below 0 it counts as 0, above MaxCost as MaxCost) in one Redis round trip.
// When the quota is exhausted, the script reserves the next free slot if it
// comes within MaxWait and before ctx's deadline, and Reserve sleeps until it
// (a guaranteed turn); if ctx ends first the slot is refunded (best-effort).
// Otherwise it returns, without waiting, a *sluice.Error of layer
// global_rate_limiter with reason vendor_cooldown (during a cooldown),
// rate_limited (MaxWait == 0) or queue_timeout, and RetryAfter set to the
// exact time until a slot frees up (positive, and within the Limiter's
// bounds).
func (l *Limiter) Reserve(ctx context.Context, cost int64) (*Reservation, error) {
	cost = l.clampCost(cost)
	budget := l.budget(ctx)
	if l.g == nil {
		return l.local(ctx, cost, budget, nil, false)
	}
	if l.lease != nil {
		return l.reserveLeased(ctx, cost, budget)
	}
	res, err := l.g.Run(ctx, reserveScript, l.keys, l.reqT, l.reqOff, l.costT, l.costOff, cost, budget.Microseconds(),
		l.reqHorizon, l.costHorizon, l.maxCooldownMs)
	if err != nil {
		if redisx.CallerDone(ctx) {
			return nil, sluice.NewError(sluice.LayerGlobalRateLimiter, sluice.ReasonQueueTimeout, err)
		}
		return l.fallback(ctx, cost, budget, err)
	}
	st, wait, perr := l.parseReply(res)
	if perr != nil {
		return nil, perr
	}
	return l.decided(ctx, st, wait, cost)
}

// decided turns a script's decision (status st: 0 admitted after wait, 2 a
// vendor cooldown of wait, else over the limit until wait) into Reserve's
// answer, waiting out an admitted turn; a caller that gives up meanwhile
// gets its reservation refunded.
func (l *Limiter) decided(ctx context.Context, st int64, wait time.Duration, cost int64) (*Reservation, error) {
	switch st {
	case 0:
		r := &Reservation{l: l, cost: cost, wait: wait}
		if err := sleep(ctx, wait); err != nil {
			_ = r.Cancel(context.WithoutCancel(ctx))
			return nil, sluice.NewError(sluice.LayerGlobalRateLimiter, sluice.ReasonQueueTimeout, err)
		}
		return r, nil
	case 2:
		return nil, &sluice.Error{Layer: sluice.LayerGlobalRateLimiter, Reason: sluice.ReasonVendorCooldown, RetryAfter: wait}
	default:
		return nil, l.overLimit(wait)
	}
}

// clampCost bounds a cost from outside (an estimate or a vendor's usage) to
// [0, MaxCost], before any arithmetic; 0 without a cost quota.
func (l *Limiter) clampCost(cost int64) int64 {
	if !l.hasCost {
		return 0
	}
	return min(max(cost, 0), l.maxCost)
}

func (l *Limiter) overLimit(retry time.Duration) error {
	reason := sluice.ReasonQueueTimeout
	if l.cfg.MaxWait == 0 {
		reason = sluice.ReasonRateLimited
	}
	return &sluice.Error{Layer: sluice.LayerGlobalRateLimiter, Reason: reason, RetryAfter: retry}
}

// budget is how long Reserve may wait: MaxWait, capped by ctx's deadline.
func (l *Limiter) budget(ctx context.Context) time.Duration {
	b := l.cfg.MaxWait
	if dl, ok := ctx.Deadline(); ok {
		b = min(b, max(time.Until(dl), 0))
	}
	return b
}

// parseReply reads the script's {status, µs}. The wait is bounded (the
// script cannot exceed maxRetry with the values it is given; a reply that
// does anyway is cut back to it) and, for a refusal, positive.
func (l *Limiter) parseReply(res any) (int64, time.Duration, error) {
	a, ok := res.([]any)
	if ok && len(a) == 2 {
		st, ok1 := a[0].(int64)
		w, ok2 := a[1].(int64)
		if ok1 && ok2 {
			wait := time.Duration(min(max(w, 0), l.maxRetry.Microseconds())) * time.Microsecond
			if st != 0 && wait <= 0 {
				wait = time.Microsecond
			}
			return st, wait, nil
		}
	}
	return 0, 0, fmt.Errorf("quota: unexpected script reply %v", res)
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Reconcile charges the difference between actualCost and the cost reserved:
// a refund when the request used less, a surcharge when it used more (which
// may push later callers' turns into the future, by at most one MaxCost
// beyond an empty bucket whatever the number of surcharges). An actualCost
// above MaxCost counts as MaxCost; a negative one is ignored (the estimate
// stands). Later calls reconcile against the last actualCost. A reservation
// decided in-process (NewLocal, or a fallback without Redis) moves the local
// buckets, refunds included; when Redis fails during Reconcile, a LocalShare
// limiter charges a surcharge to the local share and drops a refund.
func (r *Reservation) Reconcile(ctx context.Context, actualCost int64) error {
	if r == nil || !r.l.hasCost || actualCost < 0 {
		return nil
	}
	actualCost = r.l.clampCost(actualCost)
	r.mu.Lock()
	delta := actualCost - r.cost
	r.cost = actualCost
	if delta == 0 || r.canceled {
		r.mu.Unlock()
		return nil
	}
	if r.degraded {
		r.costN = r.l.moveLocal(r.costN, actualCost)
		r.mu.Unlock()
		return nil
	}
	r.mu.Unlock() // no lock held across a Redis call
	if r.l.lease != nil {
		// Lease mode: a refund goes back to the lease, a surcharge comes
		// out of it first; only the debt beyond it is charged to Redis.
		if delta = r.l.lease.reconcile(delta, time.Now()); delta == 0 {
			return nil
		}
	}
	return r.l.adjust(ctx, 0, delta)
}

// Cancel refunds the reservation (best-effort) when the request was not sent.
// It is idempotent.
func (r *Reservation) Cancel(ctx context.Context) error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	if r.canceled {
		r.mu.Unlock()
		return nil
	}
	r.canceled = true
	if r.degraded {
		r.l.refundLocal(r.reqN, r.costN)
		r.mu.Unlock()
		return nil
	}
	cost := r.cost
	r.mu.Unlock()
	var req int64
	if r.l.hasReq {
		req = -1
	}
	if r.leased {
		r.l.lease.giveBack(-req, cost, time.Now())
		return nil
	}
	return r.l.adjust(ctx, req, -cost)
}

// adjust moves the Redis TATs by req requests and cost units (negative:
// refunds). When Redis fails, a LocalShare limiter charges a surcharge to
// its local share.
func (l *Limiter) adjust(ctx context.Context, req, cost int64) error {
	rd := "0"
	if req != 0 {
		rd = fus(float64(req) * l.reqTf)
	}
	cd := fus(float64(cost) * l.costTf)
	_, err := l.g.Run(ctx, adjustScript, l.keys[:2], rd, cd, l.reqHorizon, l.costHorizon)
	if err == nil || l.cfg.Fallback != LocalShare {
		return err
	}
	if cost > 0 {
		l.moveLocal(0, cost)
	}
	return nil
}

// moveLocal moves what a request holds in the local cost bucket from held to
// want tokens, and returns what it then holds. want is capped at the
// bucket's burst, and a surcharge stops where the bucket would be more than
// one MaxCost (or burst, if smaller) below empty, so that no number of
// surcharges locks the local quota for longer than the Limiter's bounds.
func (l *Limiter) moveLocal(held int, want int64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	burst := int64(l.costLim.Burst())
	n := int(min(want, burst))
	now := time.Now()
	if n > held {
		room := l.costLim.TokensAt(now) + float64(min(burst, l.maxCost))
		n = held + max(0, min(n-held, int(room)))
	}
	if n != held {
		l.costLim.ReserveN(now, n-held) // negative: a refund
	}
	return n
}

// Cooldown stops every process sharing the quota from calling the vendor for
// d (Redis's clock; at most Config.MaxCooldown), unless a longer cooldown is
// already set. It is also recorded locally for the LocalShare fallback.
func (l *Limiter) Cooldown(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	d = min(d, l.cfg.MaxCooldown)
	end := time.Now().Add(d).UnixNano()
	for {
		cur := l.cooldown.Load()
		if cur >= end || l.cooldown.CompareAndSwap(cur, end) {
			break
		}
	}
	if l.lease != nil {
		l.lease.drop()
	}
	if l.g == nil {
		return nil
	}
	_, err := l.g.Run(ctx, cooldownScript, l.keys[2:3], max(d.Milliseconds(), 1), l.channel)
	return err
}

// setShare sizes the local limiters for n live processes.
func (l *Limiter) setShare(n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.hasReq {
		l.reqLim.SetLimit(rate.Limit(float64(l.cfg.Requests) / l.cfg.Per.Seconds() / float64(n)))
		l.reqLim.SetBurst(max(1, l.cfg.Burst/int(n)))
	}
	if l.hasCost {
		l.costLim.SetLimit(rate.Limit(float64(l.cfg.Cost) / l.cfg.CostPer.Seconds() / float64(n)))
		l.costLim.SetBurst(int(max(1, min(l.cfg.CostBurst/n, math.MaxInt32))))
	}
}

func (l *Limiter) heartbeat() {
	defer close(l.done)
	window := 3 * l.cfg.Heartbeat.Milliseconds()
	t := time.NewTicker(l.cfg.Heartbeat)
	defer t.Stop()
	for {
		res, err := l.g.Run(context.Background(), membersScript, []string{l.mkey}, l.id, window, "1")
		if n, ok := res.(int64); err == nil && ok && n >= 1 && n != l.members.Load() {
			l.members.Store(n)
			l.setShare(n)
		}
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
	}
}

// fallback decides without Redis, per the failure mode.
func (l *Limiter) fallback(ctx context.Context, cost int64, budget time.Duration, cause error) (*Reservation, error) {
	if l.cfg.OnDegraded != nil {
		l.cfg.OnDegraded(ctx)
	}
	switch l.cfg.Fallback {
	case FailOpen:
		return &Reservation{l: l, cost: cost, degraded: true}, nil
	case FailClosed:
		return nil, sluice.NewError(sluice.LayerGlobalRateLimiter, sluice.ReasonRateLimited, cause)
	}
	return l.local(ctx, cost, budget, cause, true)
}

// local decides with the in-process buckets: the local share of a LocalShare
// fallback (degraded), or the whole quota of a NewLocal limiter.
func (l *Limiter) local(ctx context.Context, cost int64, budget time.Duration, cause error, degraded bool) (*Reservation, error) {
	var waited time.Duration
	if d := time.Until(time.Unix(0, l.cooldown.Load())); d > 0 {
		if d > budget {
			return nil, &sluice.Error{Layer: sluice.LayerGlobalRateLimiter, Reason: sluice.ReasonVendorCooldown, RetryAfter: d, Err: cause}
		}
		if err := sleep(ctx, d); err != nil {
			return nil, sluice.NewError(sluice.LayerGlobalRateLimiter, sluice.ReasonQueueTimeout, err)
		}
		waited, budget = d, budget-d
	}
	l.mu.Lock()
	// Read the clock under the lock, never before it: a rate.Limiter given a
	// time older than its last rewinds to it and credits the span between
	// them again, so times read before the lock, which goroutines queued on
	// it hand in out of order, over-admit (tenfold under contention).
	now := time.Now()
	var rr, cr *rate.Reservation
	delay := time.Duration(0)
	costN := 0
	if l.hasReq {
		rr = l.reqLim.ReserveN(now, 1)
		delay = max(delay, rr.DelayFrom(now))
	}
	if l.hasCost && cost > 0 {
		costN = int(min(cost, int64(l.costLim.Burst())))
		cr = l.costLim.ReserveN(now, costN)
		delay = max(delay, cr.DelayFrom(now))
	}
	if delay > budget {
		if rr != nil {
			rr.CancelAt(now)
		}
		if cr != nil {
			cr.CancelAt(now)
		}
		l.mu.Unlock()
		e := l.overLimit(max(delay, time.Microsecond)).(*sluice.Error)
		e.Err = cause
		return nil, e
	}
	l.mu.Unlock()
	if err := sleep(ctx, delay); err != nil {
		l.mu.Lock()
		if rr != nil {
			rr.Cancel()
		}
		if cr != nil {
			cr.Cancel()
		}
		l.mu.Unlock()
		return nil, sluice.NewError(sluice.LayerGlobalRateLimiter, sluice.ReasonQueueTimeout, err)
	}
	// A local reservation is handed back by Cancel and moved by Reconcile.
	res := &Reservation{l: l, cost: cost, wait: waited + delay, degraded: true, local: !degraded, costN: costN}
	if rr != nil {
		res.reqN = 1
	}
	return res, nil
}

// refundLocal gives tokens back to the local buckets. rate.Reservation.Cancel
// refunds only a reservation whose time has not come yet; a negative ReserveN
// adds the tokens back whenever (the bucket is capped at its burst again on
// its next use).
func (l *Limiter) refundLocal(req, cost int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if req > 0 {
		l.reqLim.ReserveN(now, -req)
	}
	if cost > 0 {
		l.costLim.ReserveN(now, -cost)
	}
}
