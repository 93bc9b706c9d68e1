package status

import (
	"context"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-go/sluice"
)

// RecentRejections is how many of the most recent rejections a Registry
// keeps, of every layer together.
const RecentRejections = 32

// probeTimeout bounds one snapshot's probes together (a vendor quota's probe
// asks Redis, each call bounded by its own RedisTimeout too).
const probeTimeout = time.Second

// Registry holds the layers a status page shows. Register layers by giving
// the Registry to their settings (the Status field of the middleware
// settings, outbound.WithStatus); serve it by mounting it (it is an
// http.Handler). The zero value is not usable: use NewRegistry. A nil
// *Registry registers nothing. It is safe for concurrent use.
type Registry struct {
	snap    sync.Mutex // serializes snapshots (their probes)
	mu      sync.Mutex // guards entries and seq
	entries []*Reporter
	seq     uint64 // registration order
	now     func() time.Time

	ring  [RecentRejections]atomic.Pointer[Rejection]
	count atomic.Uint64 // rejections pushed into ring
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry { return &Registry{now: time.Now} }

// Probe fills in a layer's current state for a snapshot: its gauges,
// breaker, quota and Redis sections (Layer, Policy, Side and Rejections are
// filled in by the Registry). It runs when the page is read, never on the
// request path, one probe at a time; ctx bounds any I/O it does.
type Probe func(ctx context.Context, l *Layer)

// Register adds a layer to the page and returns its Reporter, on which the
// layer reports its rejections. sluice's layers register themselves when
// given the Registry in their settings; Register is for a layer of your own.
// probe may be nil (the layer then shows its rejections only). On a nil
// Registry, Register returns a nil *Reporter, whose methods do nothing.
func (r *Registry) Register(layer sluice.Layer, policy string, probe Probe) *Reporter {
	if r == nil {
		return nil
	}
	p := &Reporter{reg: r, layer: layer, policy: policy, probe: probe, counts: map[sluice.Reason]*atomic.Int64{}}
	for _, reason := range layer.Reasons() {
		p.counts[reason] = new(atomic.Int64)
	}
	r.mu.Lock()
	r.seq++
	p.seq = r.seq
	r.entries = append(r.entries, p)
	r.mu.Unlock()
	return p
}

// Reporter is one registered layer: it counts the layer's rejections by
// reason and records them among the Registry's recent rejections. A nil
// *Reporter does nothing. It is safe for concurrent use.
type Reporter struct {
	reg    *Registry
	seq    uint64
	layer  sluice.Layer
	policy string
	probe  Probe
	counts map[sluice.Reason]*atomic.Int64 // read-only after Register
	other  atomic.Int64                    // reasons the layer's vocabulary does not list
}

// Rejected records a rejection: counted under the Reporter's layer when e is
// its own, and kept among the Registry's recent rejections under e's layer
// and reason (a chain reports its calls' final verdicts on its outermost
// layer's Reporter, whichever layer decided). Only e's layer, reason and
// RetryAfter are kept, never its message or cause. A nil e is ignored.
func (p *Reporter) Rejected(e *sluice.Error) {
	if p == nil || e == nil {
		return
	}
	if e.Layer == p.layer {
		if c := p.counts[e.Reason]; c != nil {
			c.Add(1)
		} else {
			p.other.Add(1)
		}
	}
	r := p.reg
	i := r.count.Add(1) - 1
	r.ring[i%RecentRejections].Store(&Rejection{Time: r.now(), Layer: string(e.Layer), Policy: p.policy,
		Reason: string(e.Reason), RetryAfterSeconds: e.RetryAfter.Seconds()})
}

// Unregister removes the layer from the page (its past rejections stay among
// the recent ones). outbound.RoundTripper.Close unregisters its layers.
func (p *Reporter) Unregister() {
	if p == nil {
		return
	}
	r := p.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, e := range r.entries {
		if e == p {
			r.entries = append(r.entries[:i:i], r.entries[i+1:]...)
			return
		}
	}
}

// Snapshot returns the state of every registered layer, inbound layers
// first, each side in registration order (a chain's layers in its canonical
// order), and the most recent rejections, newest first. Snapshots run one at
// a time.
func (r *Registry) Snapshot(ctx context.Context) Snapshot {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	r.snap.Lock()
	defer r.snap.Unlock()
	r.mu.Lock()
	entries := slices.Clone(r.entries)
	r.mu.Unlock()
	s := Snapshot{Time: r.now(), Layers: make([]Layer, 0, len(entries))}
	for _, p := range entries {
		l := Layer{Layer: string(p.layer), Policy: p.policy, Side: side(p.layer)}
		if p.probe != nil {
			p.probe(ctx, &l)
		}
		for _, reason := range p.layer.Reasons() {
			l.Rejections = append(l.Rejections, ReasonCount{Reason: string(reason), Count: p.counts[reason].Load()})
		}
		if n := p.other.Load(); n > 0 {
			l.Rejections = append(l.Rejections, ReasonCount{Reason: "other", Count: n})
		}
		s.Layers = append(s.Layers, l)
	}
	// Inbound layers first, then outbound: the canonical order, whichever
	// was built first.
	sort.SliceStable(s.Layers, func(i, j int) bool { return s.Layers[i].Side == "inbound" && s.Layers[j].Side != "inbound" })
	n := r.count.Load()
	for i := uint64(0); i < min(n, RecentRejections); i++ {
		if rej := r.ring[(n-1-i)%RecentRejections].Load(); rej != nil {
			s.Recent = append(s.Recent, *rej)
		}
	}
	// Writers racing the read above may leave the ring briefly out of order.
	sort.SliceStable(s.Recent, func(i, j int) bool { return s.Recent[i].Time.After(s.Recent[j].Time) })
	return s
}

func side(l sluice.Layer) string {
	if l.Inbound() {
		return "inbound"
	}
	return "outbound"
}
