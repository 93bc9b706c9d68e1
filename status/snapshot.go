package status

import "time"

// Breaker states as the page and its JSON spell them.
const (
	StateClosed   = "closed"
	StateOpen     = "open"
	StateHalfOpen = "half-open"
)

// Snapshot is the status page's data: what GET ?format=json returns.
type Snapshot struct {
	// Time is when the snapshot was taken.
	Time time.Time `json:"time"`
	// Layers are the registered layers: inbound first, then outbound, each
	// in registration order.
	Layers []Layer `json:"layers"`
	// Recent are the most recent rejections (at most RecentRejections),
	// newest first.
	Recent []Rejection `json:"recent_rejections"`
}

// Layer is one layer's state. Only the sections that apply to the layer are
// set.
type Layer struct {
	// Layer is the layer's resilience.layer value (load_shedder,
	// circuit_breaker, ...).
	Layer string `json:"layer"`
	// Policy is its resilience.policy.name: the middleware's Name or the
	// chain's WithName.
	Policy string `json:"policy"`
	// Side is "inbound" or "outbound".
	Side string `json:"side"`
	// Gauges are the layer's current use, each of its cap.
	Gauges []Gauge `json:"gauges,omitempty"`
	// Settings are the layer's fixed settings worth seeing beside its state
	// (a rate, a timeout), as display strings.
	Settings []Setting `json:"settings,omitempty"`
	// Breaker is a circuit breaker's state.
	Breaker *Breaker `json:"breaker,omitempty"`
	// Quota is a rate limit's state.
	Quota *Quota `json:"quota,omitempty"`
	// Redis is the health of the Redis a layer relies on.
	Redis *Redis `json:"redis,omitempty"`
	// Rejections counts the layer's rejections by reason since it was
	// registered, one entry per reason of its vocabulary.
	Rejections []ReasonCount `json:"rejections"`
}

// Gauge is a current use: Value of Max (Max 0 means no cap).
type Gauge struct {
	// Name is what is counted: in_flight, queued, sockets_open, ...
	Name  string `json:"name"`
	Value int64  `json:"value"`
	Max   int64  `json:"max,omitempty"`
}

// Setting is a named, fixed setting.
type Setting struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Breaker is a circuit breaker's state, in this process and, when shared, in
// the fleet.
type Breaker struct {
	// State is StateClosed, StateOpen or StateHalfOpen.
	State string `json:"state"`
	// HalfOpenInSeconds is, while open, the time until it lets a probe
	// through.
	HalfOpenInSeconds float64 `json:"half_open_in_seconds,omitempty"`
	// Fleet is the fleet-wide breaker's state, when the breaker is shared.
	Fleet *FleetBreaker `json:"fleet,omitempty"`
}

// FleetBreaker is a shared breaker's fleet-wide state, as this process last
// knew it.
type FleetBreaker struct {
	State             string  `json:"state"`
	HalfOpenInSeconds float64 `json:"half_open_in_seconds,omitempty"`
}

// Quota is a rate limit's state.
type Quota struct {
	// Source is where the numbers come from: "redis" (the fleet's quota)
	// or "local" (this process's own buckets: an in-process limiter, or the
	// fallback share while Redis is unreachable).
	Source string `json:"source"`
	// RequestsRemaining is how many requests could go at once now (the
	// unused burst); nil without a request quota.
	RequestsRemaining *int64 `json:"requests_remaining,omitempty"`
	// TokensRemaining is the same for the cost quota; nil without one.
	TokensRemaining *int64 `json:"tokens_remaining,omitempty"`
	// NextFreeInSeconds is how long until a one-request call could go
	// without waiting (0: now).
	NextFreeInSeconds float64 `json:"next_free_in_seconds"`
	// CooldownUntil is the end of a vendor cooldown in force, if any.
	CooldownUntil *time.Time `json:"cooldown_until,omitempty"`
	// Members is how many processes share the quota, as last counted.
	Members int `json:"members,omitempty"`
	// Lease is set in lease mode: what this process holds of the quota,
	// spent in memory before it asks Redis again.
	Lease *Lease `json:"lease,omitempty"`
}

// Lease is the part of a fleet quota a process holds in lease mode.
type Lease struct {
	// Requests and Tokens are spendable here without asking Redis.
	Requests int64 `json:"requests"`
	Tokens   int64 `json:"tokens"`
	// ReturnRequests and ReturnTokens expired or were surplus: taken from
	// Redis, handed back with the next lease (or when the chain closes).
	ReturnRequests int64 `json:"return_requests"`
	ReturnTokens   int64 `json:"return_tokens"`
}

// Redis is the health of a layer's Redis.
type Redis struct {
	// Healthy is false while the layer's Redis health breaker is open: the
	// layer is deciding by its failure mode.
	Healthy bool `json:"healthy"`
	// Degraded counts the decisions the layer took by its failure mode
	// (resilience.degraded) since it was built.
	Degraded int64 `json:"degraded"`
}

// ReasonCount is how many rejections a layer made for one reason.
type ReasonCount struct {
	Reason string `json:"reason"`
	Count  int64  `json:"count"`
}

// Rejection is one recent rejection.
type Rejection struct {
	Time              time.Time `json:"time"`
	Layer             string    `json:"layer"`
	Policy            string    `json:"policy"`
	Reason            string    `json:"reason"`
	RetryAfterSeconds float64   `json:"retry_after_seconds,omitempty"`
}
