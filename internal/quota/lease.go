package quota

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/redisx"
)

// Lease mode. A process leases a batch of capacity from the shared GCRA in
// one script (leaseScript) and spends it in-process, one decision at a time,
// with no Redis call; it asks for the next lease in the background when the
// one it holds runs low. A lease never takes more than the bucket holds at
// that instant, so the leases granted in any window obey the GCRA's own
// bound (rate × window + burst); what a process spends in a window is
// those, plus what it held when the window began, at most MaxLease. Hence
// the fleet's bound: in any window W, at most
//
//	rate·W + Burst + P·MaxLease
//
// requests reach the vendor, for P processes (and the same for cost, with
// CostBurst and MaxLeaseCost; surcharges beyond a lease are charged to
// Redis as in per-call mode).
//
// Lease size adapts to the process's own demand: about leaseHorizon of the
// decisions it saw recently (an EWMA of its decision rate), at least 1 and
// at most MaxLease. A quiet process leases one request at a time, which is
// per-call mode; a busy one leases up to MaxLease.

// Defaults and limits of lease mode.
const (
	// DefaultLeaseTTL is the default Config.LeaseTTL.
	DefaultLeaseTTL = time.Second
	// MaxLeaseLimit bounds Config.MaxLease.
	MaxLeaseLimit = 1 << 20
	// leaseHorizon is how much of its own demand a process leases at once.
	leaseHorizon = 250 * time.Millisecond
	// demandWindow is the period of the demand estimate.
	demandWindow = 50 * time.Millisecond
)

// lease is a process's leased capacity and its demand estimate.
type lease struct {
	maxReq, maxCost int64
	ttl             time.Duration
	hasReq, hasCost bool

	mu        sync.Mutex
	req, cost int64     // held, spendable until expires
	expires   time.Time // zero: nothing held
	// retReq and retCost are what the next lease script hands back: expired
	// or surplus capacity.
	retReq, retCost int64
	fetching        bool // a background lease is in flight
	closed          bool // Close began: no more background leases

	// Demand: EWMAs of decisions and cost per second, and the current
	// window's counts.
	rate, costRate float64
	winStart       time.Time
	winN, winCost  int64
}

func newLease(cfg Config) *lease {
	return &lease{maxReq: int64(max(cfg.MaxLease, 1)), maxCost: max(cfg.MaxLeaseCost, 1), ttl: cfg.LeaseTTL,
		hasReq: cfg.Requests > 0, hasCost: cfg.Cost > 0}
}

// observe adds one decision costing cost to the demand estimate. l.mu held.
func (l *lease) observe(now time.Time, n, cost int64) {
	if l.winStart.IsZero() {
		l.winStart = now
	}
	if el := now.Sub(l.winStart); el >= demandWindow {
		// A window that ended: fold its rate in; idle windows since then
		// decay the estimate (halved per window).
		s := el.Seconds()
		windows := float64(el / demandWindow)
		decay := math.Pow(0.5, windows)
		l.rate = decay*l.rate + (1-decay)*float64(l.winN)/s
		l.costRate = decay*l.costRate + (1-decay)*float64(l.winCost)/s
		l.winStart, l.winN, l.winCost = now, 0, 0
	}
	l.winN += n
	l.winCost += cost
}

// want is the lease size for the demand seen so far: about leaseHorizon of
// it, within [1, maxReq] requests and [need, max(maxCost, need)] cost.
// l.mu held.
func (l *lease) want(now time.Time, need int64) (req, cost int64) {
	el := max(now.Sub(l.winStart).Seconds(), leaseHorizon.Seconds())
	r := max(l.rate, float64(l.winN)/el)
	c := max(l.costRate, float64(l.winCost)/el)
	h := leaseHorizon.Seconds()
	req = int64(min(max(math.Ceil(r*h), 1), float64(l.maxReq)))
	cost = int64(min(math.Ceil(c*h), float64(l.maxCost)))
	cost = max(cost, need)
	return req, cost
}

// expire moves a lease past its TTL to the return. l.mu held.
func (l *lease) expire(now time.Time) {
	if !l.expires.IsZero() && !now.Before(l.expires) {
		l.retReq += l.req
		l.retCost += l.cost
		l.req, l.cost, l.expires = 0, 0, time.Time{}
	}
}

// spend takes one request costing cost from the lease, if it holds them.
func (l *lease) spend(now time.Time, cost int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire(now)
	l.observe(now, 1, cost)
	if l.hasReq && l.req < 1 || l.hasCost && l.cost < cost {
		return false
	}
	if l.hasReq {
		l.req--
	}
	l.cost -= cost
	return true
}

// add puts a granted lease into the holding, up to its maxima; the rest is
// returned with the next lease.
func (l *lease) add(now time.Time, req, cost int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire(now)
	if req <= 0 && cost <= 0 {
		return
	}
	l.expires = now.Add(l.ttl)
	l.req += req
	l.cost += cost
	l.trim()
}

// trim moves what exceeds the maxima to the return. l.mu held.
func (l *lease) trim() {
	if d := l.req - l.maxReq; d > 0 {
		l.req -= d
		l.retReq += d
	}
	if d := l.cost - l.maxCost; d > 0 {
		l.cost -= d
		l.retCost += d
	}
}

// giveBack returns a canceled request (or a refund) to the lease.
func (l *lease) giveBack(req, cost int64, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire(now)
	l.expires = now.Add(l.ttl)
	l.req += req
	l.cost += cost
	l.trim()
}

// reconcile applies a cost difference to the lease: a refund (delta < 0)
// goes back to it; a surcharge comes out of it. It returns the surcharge
// the lease could not cover, for Redis.
func (l *lease) reconcile(delta int64, now time.Time) int64 {
	if delta < 0 {
		l.giveBack(0, -delta, now)
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire(now)
	l.observe(now, 0, delta)
	take := min(delta, max(l.cost, 0))
	l.cost -= take
	return delta - take
}

// drop moves the whole holding to the return (a vendor cooldown: what is
// held must not go out when it ends).
func (l *lease) drop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.retReq += l.req
	l.retCost += l.cost
	l.req, l.cost, l.expires = 0, 0, time.Time{}
}

// takeReturn hands out what to return with the next script and forgets it:
// if that script fails it may still have run, so returning it again could
// refund twice; dropped, it costs the fleet only capacity it did not use.
func (l *lease) takeReturn() (req, cost int64) {
	req, cost = l.retReq, l.retCost
	l.retReq, l.retCost = 0, 0
	return req, cost
}

// reserveLeased is Reserve in lease mode.
func (l *Limiter) reserveLeased(ctx context.Context, cost int64, budget time.Duration) (*Reservation, error) {
	now := time.Now()
	if cd := time.Unix(0, l.cooldown.Load()).Sub(now); cd > 0 {
		if cd > budget {
			return nil, &sluice.Error{Layer: sluice.LayerGlobalRateLimiter, Reason: sluice.ReasonVendorCooldown, RetryAfter: cd}
		}
		// A wait behind the cooldown fits the budget: Redis queues it in
		// GCRA order after the cooldown, as in per-call mode.
	} else if l.lease.spend(now, cost) {
		l.maybePrefetch(now)
		return &Reservation{l: l, cost: cost, leased: true}, nil
	}
	lz := l.lease
	lz.mu.Lock()
	wantReq, wantCost := lz.want(now, cost)
	retReq, retCost := lz.takeReturn()
	lz.mu.Unlock()
	st, wait, kr, kc, err := l.runLease(ctx, cost, budget, wantReq, wantCost, retReq, retCost)
	if err != nil {
		if redisx.CallerDone(ctx) {
			return nil, sluice.NewError(sluice.LayerGlobalRateLimiter, sluice.ReasonQueueTimeout, err)
		}
		return l.fallback(ctx, cost, budget, err)
	}
	if st == 0 && wait == 0 {
		// The request's own share (one request and its cost) is a Redis
		// reservation like per-call mode's; the rest is held.
		l.keepLease(time.Now(), kr-min(kr, 1), kc-min(kc, cost))
	}
	return l.decided(ctx, st, wait, cost)
}

// runLease runs leaseScript and parses its reply; a cooldown it reports is
// recorded locally (and drops the holding).
func (l *Limiter) runLease(ctx context.Context, cost int64, budget time.Duration, wantReq, wantCost, retReq, retCost int64) (st int64, wait time.Duration, kr, kc int64, err error) {
	res, err := l.g.Run(ctx, leaseScript, l.keys, l.reqT, l.reqOff, l.costT, l.costOff, cost, budget.Microseconds(),
		l.reqHorizon, l.costHorizon, l.maxCooldownMs, wantReq, wantCost, retReq, retCost)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	a, ok := res.([]any)
	if !ok || len(a) != 5 {
		return 0, 0, 0, 0, fmt.Errorf("quota: unexpected lease reply %v", res)
	}
	st, wait, err = l.parseReply(a[:2])
	if err != nil {
		return 0, 0, 0, 0, err
	}
	kr, _ = a[2].(int64)
	kc, _ = a[3].(int64)
	cd, _ := a[4].(int64)
	// Bounded: never more than asked (the script cannot grant more; a reply
	// that says so anyway is cut back).
	kr = min(max(kr, 0), max(wantReq, 1))
	kc = min(max(kc, 0), max(wantCost, cost))
	if cd > 0 {
		l.setCooldown(time.Now(), time.Duration(min(cd, l.maxCooldownMs))*time.Millisecond)
	}
	return st, wait, kr, kc, nil
}

// maybePrefetch starts a background lease when the holding runs below a
// quarter of what the demand wants, so that the callers rarely wait for
// Redis.
func (l *Limiter) maybePrefetch(now time.Time) {
	lz := l.lease
	lz.mu.Lock()
	wantReq, wantCost := lz.want(now, 0)
	low := lz.hasReq && lz.req*4 < wantReq || lz.hasCost && lz.cost*4 < wantCost
	if !low || lz.fetching || lz.closed || !l.g.Healthy() {
		lz.mu.Unlock()
		return
	}
	lz.fetching = true
	// Ask for a whole lease, not just what tops the holding up: the
	// holding may reach 1.25 leases (never more than the maxima, which
	// add trims to), and a busy process pays a quarter fewer scripts.
	retReq, retCost := lz.takeReturn()
	l.wg.Add(1)
	lz.mu.Unlock()
	go func() {
		defer l.wg.Done()
		// MaxWait 0: a prefetch takes what is there now, never a future
		// turn.
		st, _, kr, kc, err := l.runLease(context.Background(), 0, 0, wantReq, wantCost, retReq, retCost)
		if err == nil && st == 0 {
			l.keepLease(time.Now(), kr, kc)
		}
		lz.mu.Lock()
		lz.fetching = false
		lz.mu.Unlock()
	}()
}

// keepLease holds a granted lease, unless a cooldown began while its script
// ran (a prefetch in flight when the cooldown's message arrived): then, as in
// setCooldown, it goes to the return, so that nothing held goes out when the
// cooldown ends. setCooldown stores the cooldown before it drops, and this
// adds before it reads the cooldown, so one of the two drops whatever lands.
func (l *Limiter) keepLease(now time.Time, req, cost int64) {
	l.lease.add(now, req, cost)
	if time.Unix(0, l.cooldown.Load()).After(now) {
		l.lease.drop()
	}
}

// setCooldown records a cooldown of d from now locally and drops the lease.
func (l *Limiter) setCooldown(now time.Time, d time.Duration) {
	end := now.Add(d).UnixNano()
	for {
		cur := l.cooldown.Load()
		if cur >= end || l.cooldown.CompareAndSwap(cur, end) {
			break
		}
	}
	if l.lease != nil {
		l.lease.drop()
	}
}

// subscribe listens for cooldowns on the quota's channel; on each
// (re)subscription it reads the cooldown key, for one published while the
// connection was down.
func (l *Limiter) subscribe() {
	defer l.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ps := l.g.Client().Subscribe(ctx, l.channel)
	defer ps.Close()
	ch := ps.ChannelWithSubscriptions()
	first := true
	for {
		select {
		case <-l.stop:
			if first {
				close(l.subscribed)
			}
			return
		case m, ok := <-ch:
			if !ok {
				if first {
					close(l.subscribed)
				}
				return
			}
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Kind != "subscribe" {
					continue
				}
				l.readCooldown(ctx)
				if first {
					first = false
					close(l.subscribed)
				}
			case *redis.Message:
				if ms, err := strconv.ParseInt(m.Payload, 10, 64); err == nil && ms > 0 {
					l.setCooldown(time.Now(), time.Duration(min(ms, l.maxCooldownMs))*time.Millisecond)
				}
			}
		}
	}
}

// readCooldown reads the cooldown key's remaining time into the local
// cooldown.
func (l *Limiter) readCooldown(ctx context.Context) {
	var ms int64
	err := l.g.Do(ctx, func(ctx context.Context, c redis.UniversalClient) error {
		d, err := c.PTTL(ctx, l.keys[2]).Result()
		ms = d.Milliseconds()
		return err
	})
	if err == nil && ms > 0 {
		l.setCooldown(time.Now(), time.Duration(min(ms, l.maxCooldownMs))*time.Millisecond)
	}
}

// returnLease hands back what the process holds (at Close; best-effort).
func (l *Limiter) returnLease() {
	if l.lease == nil {
		return
	}
	l.lease.drop()
	l.lease.mu.Lock()
	req, cost := l.lease.takeReturn()
	l.lease.mu.Unlock()
	if req == 0 && cost == 0 {
		return
	}
	var rd, cd float64
	if l.hasReq {
		rd = -float64(req) * l.reqTf
	}
	if l.hasCost {
		cd = -float64(cost) * l.costTf
	}
	_, _ = l.g.Run(context.Background(), adjustScript, l.keys[:2], fus(rd), fus(cd), l.reqHorizon, l.costHorizon)
}

// Snapshot is a Limiter's state as this process knows it, read without
// Redis.
type Snapshot struct {
	// Cooldown is what is left of the vendor cooldown this process knows
	// of; zero when none.
	Cooldown time.Duration
	// Lease reports lease mode; LeasedRequests and LeasedCost are what the
	// process holds (zero in per-call mode).
	Lease                      bool
	LeasedRequests, LeasedCost int64
	// ReturnRequests and ReturnCost are capacity taken from Redis that
	// expired or was surplus, handed back with the next lease script (or
	// at Close): neither spendable here nor in Redis until then.
	ReturnRequests, ReturnCost int64
	// Members is the last count of live processes (1 until counted).
	Members int
}

// Snapshot returns the Limiter's state without calling Redis: cheap enough
// for a status page.
func (l *Limiter) Snapshot() Snapshot {
	s := Snapshot{Members: l.Members(), Cooldown: max(0, time.Until(time.Unix(0, l.cooldown.Load())))}
	if l.lease != nil {
		l.lease.mu.Lock()
		l.lease.expire(time.Now())
		s.Lease, s.LeasedRequests, s.LeasedCost = true, l.lease.req, max(l.lease.cost, 0)
		s.ReturnRequests, s.ReturnCost = l.lease.retReq, max(l.lease.retCost, 0)
		l.lease.mu.Unlock()
	}
	return s
}

// Subscribed is closed once a lease-mode Limiter listens for cooldowns
// (at once for other Limiters).
func (l *Limiter) Subscribed() <-chan struct{} { return l.subscribed }
