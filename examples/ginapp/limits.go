package main

import (
	"net/http"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-go/sluice/outbound"
)

// vendorLimitOptions is the vendor quota: SLUICE_VENDOR_RATE requests and, if
// set, SLUICE_VENDOR_TOKENS tokens, fleet-wide through Redis when REDIS_URL is
// set (falling back to this pod's share while Redis is down), in this process
// otherwise. With Redis the circuit breaker is shared by the fleet too.
func (a *App) vendorLimitOptions(rc redis.UniversalClient) []outbound.Option {
	cfg := a.cfg
	var opts []outbound.Option
	if rc != nil {
		opts = append(opts, outbound.WithSharedCircuitBreaker(outbound.SharedBreakerSettings{Client: rc, Name: "ginapp_vendor"}))
	}
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
