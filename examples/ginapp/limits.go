package main

import (
	"github.com/sluice-go/sluice/outbound"
)

// vendorLimitOptions is the vendor quota: SLUICE_VENDOR_RATE (and
// SLUICE_VENDOR_TOKENS) fleet-wide through Redis when REDIS_URL is set, in
// this process otherwise.
func (a *App) vendorLimitOptions() []outbound.Option {
	cfg := a.cfg
	if cfg.VendorRate.Limit <= 0 {
		return nil
	}
	return []outbound.Option{outbound.WithRateLimit(outbound.RateLimitSettings{
		Requests: uint(cfg.VendorRate.Limit), Period: cfg.VendorRate.Period, MaxWait: cfg.VendorQueueTimeout,
	})}
}
