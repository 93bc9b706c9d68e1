package quota

// Key kinds: the quota's keys are rkey.Key(name, kind).
const (
	KindRequests = "req"
	KindCost     = "cost"
	KindCooldown = "cooldown"
	KindMembers  = "members"
)
