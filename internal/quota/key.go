package quota

import "github.com/sluice-go/sluice/internal/rkey"

// Key kinds.
const (
	KindRequests = "req"
	KindCost     = "cost"
	KindCooldown = "cooldown"
	KindMembers  = "members"
)

// Key returns the quota's key of kind for name: rkey.Key, the one key shape
// every Redis-backed sluice layer uses.
func Key(name, kind string) string { return rkey.Key(name, kind) }
