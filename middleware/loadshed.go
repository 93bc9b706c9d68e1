package middleware

import (
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/failsafe-go/failsafe-go/adaptivelimiter"
	"github.com/failsafe-go/failsafe-go/priority"
	"github.com/gin-gonic/gin"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/otelx"
)

// PriorityHeader is failsafe-go's request priority header: an integer from 0
// (priority.VeryLow) to 4 (priority.VeryHigh).
const PriorityHeader = "X-Failsafe-Priority"

// PriorityFromHeader returns a priority function for WithPriority: the
// integer 0-4 in header name (PriorityHeader if name is ""), else a priority
// that failsafe-go's priority.ContextWithPriority put in the request context,
// else priority.Medium.
func PriorityFromHeader(name string) func(*http.Request) priority.Priority {
	if name == "" {
		name = PriorityHeader
	}
	return func(r *http.Request) priority.Priority {
		if v := r.Header.Get(name); v != "" {
			if n, err := strconv.Atoi(v); err == nil && n >= int(priority.VeryLow) && n <= int(priority.VeryHigh) {
				return priority.Priority(n)
			}
		}
		if p := priority.FromContext(r.Context()); p >= priority.VeryLow && p <= priority.VeryHigh {
			return p
		}
		return priority.Medium
	}
}

// LoadShedder rejects a request at once, with 503 and Retry-After (layer
// load_shedder, reason overloaded), when maxInFlight requests are already
// being served by the rest of the chain. Nothing waits: the excess is shed.
//
// With WithAdaptive the cap is the adaptive limiter's current limit (bounded
// by maxInFlight when positive); with WithPriority, lower priorities are shed
// before the cap is reached so that critical traffic keeps flowing. Without
// WithAdaptive, maxInFlight must be positive. Safe for concurrent use.
func LoadShedder(maxInFlight int, opts ...Option) gin.HandlerFunc {
	s := newShedder(maxInFlight, opts)
	return func(c *gin.Context) {
		permit, e := s.enter(c.Request)
		if e != nil {
			s.cfg.reject(c.Writer, c.Request, s.rec, e)
			c.Abort()
			return
		}
		defer s.exit(c.Request, permit)
		c.Next()
	}
}

// LoadShedderHandler is LoadShedder for net/http.
func LoadShedderHandler(maxInFlight int, opts ...Option) func(http.Handler) http.Handler {
	s := newShedder(maxInFlight, opts)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			permit, e := s.enter(r)
			if e != nil {
				s.cfg.reject(w, r, s.rec, e)
				return
			}
			defer s.exit(r, permit)
			next.ServeHTTP(w, r)
		})
	}
}

type shedder struct {
	cfg      *config
	rec      *otelx.Recorder
	max      int64
	inflight atomic.Int64
}

func newShedder(maxInFlight int, opts []Option) *shedder {
	cfg := newConfig(opts)
	if maxInFlight < 0 || maxInFlight == 0 && cfg.adaptive == nil {
		panic("middleware: LoadShedder: maxInFlight must be positive (or use WithAdaptive)")
	}
	return &shedder{cfg: cfg, rec: cfg.tel.Recorder(sluice.LayerLoadShedder, cfg.policy), max: int64(maxInFlight)}
}

// enter admits the request or returns the rejection. The permit is non-nil
// only in adaptive mode.
func (s *shedder) enter(r *http.Request) (adaptivelimiter.Permit, *sluice.Error) {
	limit := s.max
	if s.cfg.adaptive != nil {
		if l := int64(s.cfg.adaptive.Limit()); limit == 0 || l < limit {
			limit = l
		}
	}
	threshold := limit
	if s.cfg.priority != nil {
		p := s.cfg.priority(r)
		if p < priority.VeryLow || p > priority.VeryHigh {
			p = priority.Medium
		}
		threshold = int64(float64(limit) * s.cfg.shares[p])
	}
	for {
		n := s.inflight.Load()
		if n >= threshold {
			return nil, s.overloaded()
		}
		if s.inflight.CompareAndSwap(n, n+1) {
			break
		}
	}
	var permit adaptivelimiter.Permit
	if s.cfg.adaptive != nil {
		var ok bool
		if permit, ok = s.cfg.adaptive.TryAcquirePermit(); !ok {
			s.inflight.Add(-1)
			return nil, s.overloaded()
		}
	}
	ctx := r.Context()
	s.rec.Allowed(ctx)
	s.rec.ActiveAdd(ctx, 1)
	return permit, nil
}

func (s *shedder) exit(r *http.Request, permit adaptivelimiter.Permit) {
	s.inflight.Add(-1)
	if permit != nil {
		permit.Record()
	}
	s.rec.ActiveAdd(r.Context(), -1)
}

func (s *shedder) overloaded() *sluice.Error {
	e := sluice.NewError(sluice.LayerLoadShedder, sluice.ReasonOverloaded, nil)
	e.RetryAfter = s.cfg.retryAfter
	return e
}
