package quota

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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
	// MaxWait is the longest Reserve waits for a turn; it never waits past the
	// context's deadline. Zero means never wait: over the limit Reserve fails
	// with rate_limited (queue_timeout when MaxWait > 0).
	MaxWait time.Duration
	// Fallback is the failure mode; the zero value is LocalShare.
	Fallback FailureMode
	// OnDegraded, if set, is called for each decision taken without Redis
	// (connect it to otelx Recorder.Degraded).
	OnDegraded func(ctx context.Context)
	// Heartbeat is how often a LocalShare limiter registers itself in Redis to
	// count the live processes; a process counts as live for 3 heartbeats.
	// Zero means 1s.
	Heartbeat time.Duration
}

// Limiter is a fleet-wide quota. Create it with New and stop it with Close.
// It is safe for concurrent use.
type Limiter struct {
	g    *redisx.Guard
	cfg  Config
	keys []string // req, cost, cooldown
	mkey string   // members

	// Intervals and burst offsets in µs, as script arguments.
	reqT, reqOff, costT, costOff string
	costTf                       float64
	hasReq, hasCost              bool

	id       string
	members  atomic.Int64 // last known live process count, >= 1
	cooldown atomic.Int64 // local cooldown end, unix ns (used without Redis)

	mu      sync.Mutex
	reqLim  *rate.Limiter
	costLim *rate.Limiter

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
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

func build(g *redisx.Guard, name string, cfg Config) *Limiter {
	if name == "" {
		panic("quota: empty name")
	}
	if cfg.Requests < 0 || cfg.Burst < 0 || cfg.Cost < 0 || cfg.CostBurst < 0 || cfg.MaxWait < 0 || cfg.Heartbeat < 0 {
		panic("quota: negative value in Config")
	}
	if cfg.Requests == 0 && cfg.Cost == 0 {
		panic("quota: Config needs Requests or Cost")
	}
	if cfg.Fallback < LocalShare || cfg.Fallback > FailClosed {
		panic("quota: unknown Fallback " + strconv.Itoa(int(cfg.Fallback)))
	}
	l := &Limiter{g: g, cfg: cfg, stop: make(chan struct{}), done: make(chan struct{})}
	l.keys = []string{rkey.Key(name, KindRequests), rkey.Key(name, KindCost), rkey.Key(name, KindCooldown)}
	l.mkey = rkey.Key(name, KindMembers)
	l.reqT, l.reqOff, l.costT, l.costOff = "0", "0", "0", "0"
	if cfg.Requests > 0 {
		if cfg.Per <= 0 {
			panic("quota: Requests needs Per > 0")
		}
		if l.cfg.Burst == 0 {
			l.cfg.Burst = 1
		}
		t := float64(cfg.Per.Microseconds()) / float64(cfg.Requests)
		if t < 1 {
			panic("quota: more than one request per microsecond")
		}
		l.hasReq = true
		l.reqT, l.reqOff = us(t), us(t*float64(l.cfg.Burst))
	}
	if cfg.Cost > 0 {
		if cfg.CostPer <= 0 {
			panic("quota: Cost needs CostPer > 0")
		}
		if l.cfg.CostBurst == 0 {
			l.cfg.CostBurst = cfg.Cost
		}
		l.costTf = float64(cfg.CostPer.Microseconds()) / float64(cfg.Cost)
		if l.costTf < 0.001 {
			panic("quota: more than 1000 cost units per microsecond")
		}
		l.hasCost = true
		l.costT, l.costOff = us(l.costTf), us(l.costTf*float64(l.cfg.CostBurst))
	}
	if l.cfg.Heartbeat == 0 {
		l.cfg.Heartbeat = DefaultHeartbeat
	}
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
	if cfg.Fallback == LocalShare && g != nil {
		go l.heartbeat()
	} else {
		close(l.done)
	}
	return l
}

func us(f float64) string { return strconv.FormatFloat(f, 'f', 3, 64) }

// Members returns the last known number of live processes sharing the quota
// (1 until counted; only a LocalShare limiter counts).
func (l *Limiter) Members() int { return int(l.members.Load()) }

// Close stops the heartbeat and removes this process from the count
// (best-effort). It is idempotent.
func (l *Limiter) Close() error {
	l.closeOnce.Do(func() {
		close(l.stop)
		<-l.done
		if l.cfg.Fallback == LocalShare && l.g != nil {
			_, _ = l.g.Run(context.Background(), membersScript, []string{l.mkey}, l.id, 0, "0")
		}
	})
	return nil
}

// Reservation is an admitted request. Its methods are safe to call on nil.
type Reservation struct {
	l        *Limiter
	cost     int64
	wait     time.Duration
	degraded bool // decided by the local buckets, without Redis
	local    bool // by a NewLocal limiter: not a fallback, not Degraded
	// reqN and costN are what a decision taken without Redis took from the
	// local buckets, handed back by Cancel.
	reqN, costN int
	mu          sync.Mutex
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

// Reserve admits one request costing cost (ignored without a cost quota) in
// one Redis round trip. When the quota is exhausted, the script reserves the
// next free slot if it comes within MaxWait and before ctx's deadline, and
// Reserve sleeps until it (a guaranteed turn); if ctx ends first the slot is
// refunded (best-effort). Otherwise it returns, without waiting, a
// *sluice.Error of layer global_rate_limiter with reason vendor_cooldown
// (during a cooldown), rate_limited (MaxWait == 0) or queue_timeout, and
// RetryAfter set to the exact time until a slot frees up.
func (l *Limiter) Reserve(ctx context.Context, cost int64) (*Reservation, error) {
	if cost < 0 || !l.hasCost {
		cost = 0
	}
	budget := l.budget(ctx)
	if l.g == nil {
		return l.local(ctx, cost, budget, nil, false)
	}
	res, err := l.g.Run(ctx, reserveScript, l.keys, l.reqT, l.reqOff, l.costT, l.costOff, cost, budget.Microseconds())
	if err != nil {
		if redisx.CallerDone(ctx) {
			return nil, sluice.NewError(sluice.LayerGlobalRateLimiter, sluice.ReasonQueueTimeout, err)
		}
		return l.fallback(ctx, cost, budget, err)
	}
	st, waitUs, perr := parseReply(res)
	if perr != nil {
		return nil, perr
	}
	wait := time.Duration(waitUs) * time.Microsecond
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

func parseReply(res any) (int64, int64, error) {
	a, ok := res.([]any)
	if ok && len(a) == 2 {
		st, ok1 := a[0].(int64)
		w, ok2 := a[1].(int64)
		if ok1 && ok2 {
			return st, w, nil
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
// may push later callers' turns into the future). Later calls reconcile
// against the last actualCost. Without Redis the surcharge is applied to the
// local share; refunds are then dropped.
func (r *Reservation) Reconcile(ctx context.Context, actualCost int64) error {
	if r == nil || !r.l.hasCost || actualCost < 0 {
		return nil
	}
	r.mu.Lock()
	delta := actualCost - r.cost
	r.cost = actualCost
	canceled := r.canceled
	r.mu.Unlock()
	if delta == 0 || canceled {
		return nil
	}
	return r.l.adjust(ctx, 0, delta, r.degraded)
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
	cost := r.cost
	r.mu.Unlock()
	if r.degraded {
		r.l.refundLocal(r.reqN, r.costN)
		return nil
	}
	var req int64
	if r.l.hasReq {
		req = -1
	}
	return r.l.adjust(ctx, req, -cost, false)
}

func (l *Limiter) adjust(ctx context.Context, req, cost int64, local bool) error {
	if !local && l.g != nil {
		rd := "0"
		if req != 0 {
			rd = "-" + l.reqT
		}
		cd := strconv.FormatFloat(float64(cost)*l.costTf, 'f', 3, 64)
		_, err := l.g.Run(ctx, adjustScript, l.keys[:2], rd, cd)
		if err == nil || l.cfg.Fallback != LocalShare {
			return err
		}
	}
	if cost > 0 {
		l.mu.Lock()
		n := int(min(cost, int64(l.costLim.Burst())))
		l.costLim.ReserveN(time.Now(), n) // debt: later local callers wait
		l.mu.Unlock()
	}
	return nil
}

// Cooldown stops every process sharing the quota from calling the vendor for
// d (Redis's clock), unless a longer cooldown is already set. It is also
// recorded locally for the LocalShare fallback.
func (l *Limiter) Cooldown(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	end := time.Now().Add(d).UnixNano()
	for {
		cur := l.cooldown.Load()
		if cur >= end || l.cooldown.CompareAndSwap(cur, end) {
			break
		}
	}
	if l.g == nil {
		return nil
	}
	_, err := l.g.Run(ctx, cooldownScript, l.keys[2:3], max(d.Milliseconds(), 1))
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
	now := time.Now()
	var waited time.Duration
	if end := time.Unix(0, l.cooldown.Load()); now.Before(end) {
		d := end.Sub(now)
		if d > budget {
			return nil, &sluice.Error{Layer: sluice.LayerGlobalRateLimiter, Reason: sluice.ReasonVendorCooldown, RetryAfter: d, Err: cause}
		}
		if err := sleep(ctx, d); err != nil {
			return nil, sluice.NewError(sluice.LayerGlobalRateLimiter, sluice.ReasonQueueTimeout, err)
		}
		waited, budget, now = d, budget-d, time.Now()
	}
	l.mu.Lock()
	var rr, cr *rate.Reservation
	delay := time.Duration(0)
	if l.hasReq {
		rr = l.reqLim.ReserveN(now, 1)
		delay = max(delay, rr.DelayFrom(now))
	}
	if l.hasCost && cost > 0 {
		cr = l.costLim.ReserveN(now, int(min(cost, int64(l.costLim.Burst()))))
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
		e := l.overLimit(delay).(*sluice.Error)
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
	// A local reservation is handed back by Cancel; Reconcile then charges
	// surcharges to the local buckets.
	res := &Reservation{l: l, cost: cost, wait: waited + delay, degraded: true, local: !degraded}
	if rr != nil {
		res.reqN = 1
	}
	if cr != nil {
		res.costN = int(min(cost, int64(l.costLim.Burst())))
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
