package main

import (
	"net/http"

	"github.com/failsafe-go/failsafe-go/priority"
	"github.com/redis/go-redis/v9"

	"github.com/sluice-go/sluice/middleware"
	"github.com/sluice-go/sluice/otelx"
	"github.com/sluice-go/sluice/outbound"
)

// apiKey is who a request counts against: the user rate limit, the fair
// queue and the critical keys all read it.
var apiKey = middleware.KeyFromHeader("X-API-Key")

// priority is a request's priority: VeryHigh for the keys in
// SLUICE_CRITICAL_KEYS, Medium for the rest. It is a function of the API key,
// the caller's identity, never of a header the caller picks its priority
// with. (This example takes the key on trust; a real service authenticates
// it first.) With the load shedder's default shares, Medium may fill 80% of
// its cap and VeryHigh all of it, so the critical keys are shed last.
func (a *App) priority(r *http.Request) priority.Priority {
	if _, ok := a.critical[apiKey(r)]; ok {
		return priority.VeryHigh
	}
	return priority.Medium
}

// shedderSettings is the load shedder: with SLUICE_CRITICAL_KEYS set it is
// priority-aware, so the other keys may fill 80% of SLUICE_MAX_INFLIGHT and
// the critical keys all of it; without, every request may fill all of it.
func (a *App) shedderSettings(sl *otelx.Telemetry) middleware.LoadShedderSettings {
	s := middleware.LoadShedderSettings{MaxInFlight: a.cfg.MaxInflight, Telemetry: sl, Status: a.status}
	if len(a.critical) > 0 {
		s.Priority = a.priority
	}
	return s
}

// queueSettings is the admission queue: priority first (the critical keys),
// then, unless SLUICE_FAIR_QUEUE=false, turns shared fairly across API keys.
func (a *App) queueSettings(sl *otelx.Telemetry) middleware.AdmissionQueueSettings {
	cfg := a.cfg
	s := middleware.AdmissionQueueSettings{MaxActive: cfg.QueueActive, MaxWaiting: cfg.QueueWaiting,
		Timeout: cfg.QueueTimeout, Telemetry: sl, Priority: a.priority, Status: a.status}
	if cfg.FairQueue {
		s.Key = apiKey
	}
	return s
}

// breakerSettings is the vendor's circuit breaker: with Redis (REDIS_URL
// set) it is shared by the fleet.
func (a *App) breakerSettings(rc redis.UniversalClient) outbound.BreakerSettings {
	if rc == nil {
		return outbound.BreakerSettings{}
	}
	return outbound.BreakerSettings{Shared: &outbound.SharedBreakerSettings{Client: rc, Name: "ginapp_vendor"}}
}

// vendorLimitOptions is the vendor quota: SLUICE_VENDOR_RATE requests and, if
// set, SLUICE_VENDOR_TOKENS tokens, fleet-wide through Redis when REDIS_URL is
// set (falling back to this pod's share while Redis is down), in this process
// otherwise.
func (a *App) vendorLimitOptions(rc redis.UniversalClient) []outbound.Option {
	cfg := a.cfg
	var opts []outbound.Option
	if cfg.VendorRate.Limit <= 0 && cfg.VendorTokens.Limit <= 0 {
		return opts
	}
	s := outbound.GlobalRateLimitSettings{Client: rc, Name: "ginapp_vendor", MaxWait: cfg.VendorQueueTimeout}
	if cfg.VendorRate.Limit > 0 {
		s.Requests, s.Period = int(cfg.VendorRate.Limit), cfg.VendorRate.Period
	}
	if cfg.VendorTokens.Limit > 0 {
		s.Tokens, s.TokensPeriod = cfg.VendorTokens.Limit, cfg.VendorTokens.Period
		s.EstimateCost = estimateTokens
	}
	return append(opts, outbound.WithGlobalRateLimit(s))
}

// estimateTokens reserves about a token per 4 bytes of the request plus room
// for the answer; the vendor's usage.total_tokens then refunds or surcharges
// the difference.
func estimateTokens(req *http.Request) int64 {
	return max(req.ContentLength, 0)/4 + 64
}
