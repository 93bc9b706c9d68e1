package quota

// Key kinds: the quota's keys are rkey.Key(name, kind).
const (
	KindRequests = "req"
	KindCost     = "cost"
	KindCooldown = "cooldown"
	KindMembers  = "members"
	// KindCooldownChannel is the pub/sub channel (not a key) on which
	// Cooldown announces a cooldown to lease-mode processes.
	KindCooldownChannel = "cooldown-ch"
)
