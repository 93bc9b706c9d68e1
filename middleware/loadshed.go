package middleware

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivelimiter"
	"github.com/failsafe-go/failsafe-go/priority"
	"github.com/gin-gonic/gin"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/otelx"
	"github.com/sluice-go/sluice/status"
)

// PriorityHeader is failsafe-go's request priority header: an integer from 0
// (priority.VeryLow) to 4 (priority.VeryHigh).
const PriorityHeader = "X-Failsafe-Priority"

// PriorityFromHeader returns a priority function for
// LoadShedderSettings.Priority: the integer 0-4 in header name
// (PriorityHeader if name is ""), else a priority that failsafe-go's
// priority.ContextWithPriority put in the request context, else
// priority.Medium.
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

// LoadShedderSettings configures LoadShedder and LoadShedderHandler. The
// zero value of each field is its documented default.
type LoadShedderSettings struct {
	// MaxInFlight is the most requests the rest of the chain serves at once;
	// one more is shed. Required (positive) unless Adaptive is set; with
	// Adaptive, a positive MaxInFlight bounds the limiter's cap from above
	// and zero means no bound besides the limiter's own.
	MaxInFlight int
	// Adaptive, if set, gives the cap: a failsafe-go adaptive limiter, which
	// finds it from latency. Requests never wait for the limiter: build it
	// without queueing.
	Adaptive adaptivelimiter.AdaptiveLimiter[any]
	// Priority, if set, makes the shedder priority-aware: it gives each
	// request a priority, and a request of priority p is shed once the
	// in-flight count reaches PriorityShares[p] of the cap, so the lowest
	// priorities are shed first and VeryHigh traffic may use the whole cap.
	// Nil: every request may use the whole cap. PriorityFromHeader is the
	// usual function.
	Priority func(*http.Request) priority.Priority
	// PriorityShares is the share of the cap that each priority, from
	// VeryLow to VeryHigh, may fill, each in [0, 1]. Default (all zero)
	// {0.5, 0.7, 0.8, 0.9, 1}.
	PriorityShares [5]float64
	// RetryAfter is the Retry-After sent with a 503, rounded up to whole
	// seconds. Default 1s.
	RetryAfter time.Duration
	// Name is resilience.policy.name on spans and metrics. Default
	// sluice.DefaultName.
	Name string
	// Telemetry records decisions. Default otelx.New(), on the global
	// providers at construction time.
	Telemetry *otelx.Telemetry
	// Responder writes the rejection. Default WriteRejection.
	Responder Responder
	// Status, if set, shows the shedder on that status page (in flight of
	// its cap, rejections). Default nil: not shown, and no cost.
	Status *status.Registry
}

// defaultShares is LoadShedderSettings.PriorityShares' default.
var defaultShares = [5]float64{0.5, 0.7, 0.8, 0.9, 1}

// LoadShedder rejects a request at once, with 503 and Retry-After (layer
// load_shedder, reason overloaded), when MaxInFlight requests are already
// being served by the rest of the chain. Nothing waits: the excess is shed.
//
// With Adaptive the cap is the adaptive limiter's current limit; with
// Priority, lower priorities are shed before the cap is reached so that
// critical traffic keeps flowing. Panics on impossible settings (no cap,
// a negative MaxInFlight or RetryAfter, a share outside [0, 1]). Safe for
// concurrent use.
func LoadShedder(s LoadShedderSettings) gin.HandlerFunc {
	sh := newShedder(s)
	return func(c *gin.Context) {
		permit, e := sh.enter(c.Request)
		if e != nil {
			sh.reject(c.Writer, c.Request, e)
			c.Abort()
			return
		}
		defer sh.exit(c.Request, permit)
		c.Next()
	}
}

// LoadShedderHandler is LoadShedder for net/http.
func LoadShedderHandler(s LoadShedderSettings) func(http.Handler) http.Handler {
	sh := newShedder(s)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			permit, e := sh.enter(r)
			if e != nil {
				sh.reject(w, r, e)
				return
			}
			defer sh.exit(r, permit)
			next.ServeHTTP(w, r)
		})
	}
}

type shedder struct {
	rejecter
	adaptive   adaptivelimiter.AdaptiveLimiter[any]
	priority   func(*http.Request) priority.Priority
	shares     [5]float64
	retryAfter time.Duration
	max        int64
	inflight   atomic.Int64
}

func newShedder(s LoadShedderSettings) *shedder {
	if s.MaxInFlight < 0 || s.MaxInFlight == 0 && s.Adaptive == nil {
		panic("middleware: LoadShedder: MaxInFlight must be positive (or set Adaptive)")
	}
	if s.RetryAfter < 0 {
		panic("middleware: LoadShedder: negative RetryAfter")
	}
	shares := s.PriorityShares
	if shares == [5]float64{} {
		shares = defaultShares
	}
	for _, v := range shares {
		if !(v >= 0 && v <= 1) { // NaN too
			panic("middleware: LoadShedder: PriorityShares must lie in [0, 1]")
		}
	}
	sh := &shedder{
		rejecter:   newRejecter(sluice.LayerLoadShedder, s.Name, s.Telemetry, s.Responder),
		adaptive:   s.Adaptive,
		priority:   s.Priority,
		shares:     shares,
		retryAfter: orDefault(s.RetryAfter, defaultRetryAfter),
		max:        int64(s.MaxInFlight),
	}
	sh.register(s.Status, policyName(s.Name))
	return sh
}

// enter admits the request or returns the rejection. The permit is non-nil
// only in adaptive mode.
func (s *shedder) enter(r *http.Request) (adaptivelimiter.Permit, *sluice.Error) {
	limit := s.max
	if s.adaptive != nil {
		if l := int64(s.adaptive.Limit()); limit == 0 || l < limit {
			limit = l
		}
	}
	threshold := limit
	if s.priority != nil {
		p := s.priority(r)
		if p < priority.VeryLow || p > priority.VeryHigh {
			p = priority.Medium
		}
		threshold = int64(float64(limit) * s.shares[p])
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
	if s.adaptive != nil {
		var ok bool
		if permit, ok = s.adaptive.TryAcquirePermit(); !ok {
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
	e.RetryAfter = s.retryAfter
	return e
}
