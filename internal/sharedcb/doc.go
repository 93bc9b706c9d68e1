// Package sharedcb shares a circuit breaker's open state across a fleet
// through Redis. Each process keeps its own local breaker (the outbound layer
// owns it); this package publishes and consumes the fleet's state:
//
//	b := sharedcb.New(guard, "openai", sharedcb.Config{Quorum: 2})
//	defer b.Close()
//	switch b.State() { // no Redis call: a cached flag
//	case sharedcb.Open:
//		return circuit_open
//	case sharedcb.HalfOpen:
//		won, err := b.TryProbe(ctx) // one probe per fleet per lease
//		if err != nil { break }       // no Redis: the local breaker decides
//		if !won { return circuit_open }
//		if ok := call(); ok { b.ReportSuccess(ctx) } else { b.ReportFailure(ctx) }
//	case sharedcb.Closed:
//		call() // when the local breaker opens: b.ReportOpen(ctx)
//	}
//	// a vendor-wide signal (503 + Retry-After): b.OpenFor(ctx, d)
//
// The open state is the key sluice:{name}:cb:open with a PX expiry, so Redis's
// clock decides when it ends; sluice:{name}:cb:tripped marks that the fleet has
// not yet seen a good probe since (half-open once :cb:open expired). Opening
// and closing publish on the channel sluice:{name}:cb so every process flips
// its flag at once; a periodic PTTL refresh is the safety net for a lost
// message or a reconnect.
//
// Quorum: ReportOpen records this process in the ZSET sluice:{name}:cb:reports
// (scored by Redis's clock); the fleet opens only when Quorum distinct
// processes reported within Window, so one sick pod cannot open it.
//
// Without Redis the last known state is kept (an open state still ends at its
// known expiry) and TryProbe returns an error, leaving the decision to each
// process's local breaker.
//
// A Breaker is safe for concurrent use.
package sharedcb
