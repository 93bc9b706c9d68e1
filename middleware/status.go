package middleware

import (
	"context"
	"strconv"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/gcra"
	"github.com/sluice-go/sluice/status"
)

// The status page's probes of the middlewares: each reads, when the page is
// read, counters the layer keeps anyway. Registering sets the rejecter's
// Reporter, so a rejection is also kept for the page; an unregistered layer
// pays a nil check on its rejection path and nothing on its allow path.

func (s *shedder) register(reg *status.Registry, name string) {
	s.status = reg.Register(sluice.LayerLoadShedder, name, func(_ context.Context, l *status.Layer) {
		limit := s.max
		if s.adaptive != nil {
			if a := int64(s.adaptive.Limit()); limit == 0 || a < limit {
				limit = a
			}
			l.Settings = append(l.Settings, status.Setting{Name: "cap", Value: "adaptive"})
		}
		l.Gauges = append(l.Gauges, status.Gauge{Name: "in_flight", Value: s.inflight.Load(), Max: limit})
		if s.priority != nil {
			l.Settings = append(l.Settings, status.Setting{Name: "priority", Value: "lowest shed first"})
		}
	})
}

func (q *queue) register(reg *status.Registry, name string) {
	q.status = reg.Register(sluice.LayerAdmissionQueue, name, func(_ context.Context, l *status.Layer) {
		st := q.wq.Stats()
		l.Gauges = append(l.Gauges,
			status.Gauge{Name: "active", Value: int64(st.Active), Max: int64(st.Limit)},
			status.Gauge{Name: "queued", Value: int64(st.Waiting), Max: int64(st.MaxWaiting)})
		l.Settings = append(l.Settings, status.Setting{Name: "max wait", Value: q.timeout.String()})
		if q.priority != nil {
			l.Settings = append(l.Settings, status.Setting{Name: "order", Value: "highest priority first"})
		}
		if q.key != nil {
			l.Settings = append(l.Settings, status.Setting{Name: "fair share", Value: strconv.Itoa(st.Keys) + " keys waiting"})
		}
	})
}

func (u *userLimit) register(reg *status.Registry, name string, mode sluice.FailureMode) {
	if mode == sluice.FailureModeDefault {
		mode = sluice.FailOpen // UserRateLimitSettings.FailureMode's default
	}
	_, memory := u.store.(*gcra.MemoryStore)
	u.status = reg.Register(sluice.LayerUserRateLimiter, name, func(_ context.Context, l *status.Layer) {
		l.Settings = append(l.Settings,
			status.Setting{Name: "rate", Value: strconv.FormatInt(u.rate.Limit, 10) + " per " + u.rate.Period.String() + " per user"})
		if u.cache != nil {
			l.Gauges = append(l.Gauges, status.Gauge{Name: "users_over_limit_cached", Value: int64(u.cache.Len())})
		}
		if !memory {
			l.Settings = append(l.Settings, status.Setting{Name: "failure mode", Value: mode.String()})
			l.Redis = &status.Redis{Healthy: u.breaker.Healthy(), Degraded: u.rec.Degradations()}
		}
	})
}
