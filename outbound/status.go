package outbound

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/sharedcb"
	"github.com/sluice-go/sluice/status"
)

// WithStatus shows the chain's layers on reg's status page, under the
// chain's WithName: the retry layer's attempts, the breaker's state here and
// in the fleet with the time until it half-opens, the global quota's
// remaining burst, next free slot and cooldown, the bulkhead's permits in use
// and waiting, the transport's sockets open of its cap, the Redis health of
// the shared layers and their degraded decisions, and the calls' rejections
// by layer and reason. RoundTripper.Close removes them.
//
// The page reads counters the layers keep anyway, when it is read; a
// registered chain adds to each call a check of its error and, with a
// bulkhead, two atomic additions. Default (absent or nil): the chain is
// not shown and costs nothing more.
func WithStatus(reg *status.Registry) Option { return func(c *config) { c.status = reg } }

// registerStatus registers the layers of the chain built in out (its rt
// already composed) with reg, in canonical order, and wraps out.rt to report
// the calls' rejections.
func registerStatus(reg *status.Registry, out *RoundTripper, c *config) {
	name := c.name
	reps := map[sluice.Layer]*status.Reporter{}
	add := func(layer sluice.Layer, probe status.Probe) {
		p := reg.Register(layer, name, probe)
		reps[layer] = p
		out.closers = append(out.closers, func() error { p.Unregister(); return nil })
	}
	pipe, _ := out.rt.(*pipelineRoundTripper)
	var rt http.RoundTripper
	if pipe != nil {
		rt = pipe.next
	}
	for rt != nil {
		switch l := rt.(type) {
		case *policiesRoundTripper:
			rt = l.next
		case *retryRoundTripper:
			add(sluice.LayerRetry, l.status)
			rt = l.next
		case *breakerRoundTripper:
			add(sluice.LayerCircuitBreaker, l.status)
			rt = l.next
		case *globalRoundTripper:
			add(sluice.LayerGlobalRateLimiter, l.status)
			rt = l.next
		case *rateLimitRoundTripper:
			rate, _ := c.slots[slotLocalRateLimiter].(localRateLimitLayer)
			add(sluice.LayerLocalRateLimiter, l.statusOf(rate))
			rt = l.next
		case *bulkheadRoundTripper:
			add(sluice.LayerBulkhead, l.status)
			rt = l.next
		case *callTimeoutRoundTripper:
			add(sluice.LayerCallTimeout, l.status)
			rt = l.next
		default:
			rt = nil // the attempt span: the transport is below
		}
	}
	var probe status.Probe
	if t, ok := out.transport.(*Transport); ok {
		probe = t.status
	}
	add(sluice.LayerTransport, probe)
	out.rt = &statusRoundTripper{next: out.rt, reps: reps, outer: reps[firstLayer(reps)]}
}

// firstLayer is the outermost registered layer, which reports the verdicts
// of layers that have no Reporter of their own.
func firstLayer(reps map[sluice.Layer]*status.Reporter) sluice.Layer {
	for _, l := range sluice.Layers() {
		if reps[l] != nil {
			return l
		}
	}
	return sluice.LayerTransport
}

// statusRoundTripper reports each call's rejection, the final verdict, to
// the deciding layer's Reporter.
type statusRoundTripper struct {
	next  http.RoundTripper
	reps  map[sluice.Layer]*status.Reporter
	outer *status.Reporter
}

func (s *statusRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := s.next.RoundTrip(req)
	if err != nil {
		if e := sluice.ErrorOf(err); e != nil {
			p := s.reps[e.Layer]
			if p == nil {
				p = s.outer
			}
			p.Rejected(e)
		}
	}
	return resp, err
}

func (r *retryRoundTripper) status(_ context.Context, l *status.Layer) {
	l.Settings = append(l.Settings, status.Setting{Name: "max attempts", Value: strconv.Itoa(r.s.MaxAttempts)})
}

func (b *breakerRoundTripper) status(_ context.Context, l *status.Layer) {
	st := &status.Breaker{State: statusState(b.cb.State())}
	if st.State == status.StateOpen {
		held := time.Until(time.Unix(0, b.holdUntil.Load()))
		st.HalfOpenInSeconds = max(held, b.cb.RemainingDelay()).Seconds()
	}
	l.Breaker = st
	if b.fleet != nil {
		f := b.fleet.b
		fs := &status.FleetBreaker{State: status.StateClosed}
		switch f.State() {
		case sharedcb.Open:
			fs.State = status.StateOpen
			fs.HalfOpenInSeconds = f.OpenRemaining().Seconds()
		case sharedcb.HalfOpen:
			fs.State = status.StateHalfOpen
		}
		st.Fleet = fs
		l.Redis = &status.Redis{Healthy: f.RedisHealthy(), Degraded: b.rec.Degradations()}
	}
}

// statusState spells a failsafe-go breaker state as the status page does.
func statusState(s circuitbreaker.State) string {
	switch s {
	case circuitbreaker.OpenState:
		return status.StateOpen
	case circuitbreaker.HalfOpenState:
		return status.StateHalfOpen
	}
	return status.StateClosed
}

func (g *globalRoundTripper) status(ctx context.Context, l *status.Layer) {
	s := g.q.Status(ctx)
	q := &status.Quota{Source: "local", NextFreeInSeconds: s.NextFree.Seconds(), Members: s.Members}
	if s.Redis {
		q.Source = "redis"
	}
	if s.HasRequests {
		q.RequestsRemaining = &s.RequestsRemaining
	}
	if s.HasCost {
		q.TokensRemaining = &s.TokensRemaining
	}
	if !s.CooldownUntil.IsZero() {
		q.CooldownUntil = &s.CooldownUntil
	}
	if snap := g.q.Snapshot(); snap.Lease {
		q.Lease = &status.Lease{Requests: snap.LeasedRequests, Tokens: snap.LeasedCost,
			ReturnRequests: snap.ReturnRequests, ReturnTokens: snap.ReturnCost}
	}
	l.Quota = q
	if g.q.HasRedis() {
		l.Redis = &status.Redis{Healthy: s.Healthy, Degraded: g.rec.Degradations()}
	}
}

func (r *rateLimitRoundTripper) statusOf(s localRateLimitLayer) status.Probe {
	return func(_ context.Context, l *status.Layer) {
		kind := "smooth"
		if s.Bursty {
			kind = "bursty"
		}
		l.Settings = append(l.Settings,
			status.Setting{Name: "rate", Value: strconv.FormatUint(uint64(s.Requests), 10) + " per " + s.Period.String() + " (" + kind + ")"},
			status.Setting{Name: "max wait", Value: r.maxWait.String()})
	}
}

func (c *callTimeoutRoundTripper) status(_ context.Context, l *status.Layer) {
	v := c.d.String()
	if c.stream {
		v += " (to response headers)"
	}
	l.Settings = append(l.Settings, status.Setting{Name: "timeout", Value: v})
}

func (t *Transport) status(_ context.Context, l *status.Layer) {
	l.Gauges = append(l.Gauges,
		status.Gauge{Name: "sockets_open", Value: int64(t.limit.Open()), Max: int64(t.cfg.MaxConns)},
		status.Gauge{Name: "dials_waiting", Value: int64(t.limit.Waiting())})
}

// status shows the bulkhead's permits in use of its limit (the adaptive
// limit's current value, with its ceiling, in adaptive mode) and its waiters,
// read from its queue at page load: nothing is counted on the call path.
func (b *bulkheadRoundTripper) status(_ context.Context, l *status.Layer) {
	st := b.wq.Stats()
	l.Gauges = append(l.Gauges,
		status.Gauge{Name: "in_flight", Value: int64(st.Active), Max: int64(st.Limit)},
		status.Gauge{Name: "queued", Value: int64(st.Waiting)})
	if b.limiter != nil {
		l.Settings = append(l.Settings, status.Setting{Name: "adaptive limit",
			Value: strconv.Itoa(b.limiter.Limit()) + " of at most " + strconv.Itoa(b.limiter.Max())},
			status.Setting{Name: "baseline latency", Value: b.limiter.Baseline().String()})
	}
}
