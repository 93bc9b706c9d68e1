// Package status serves a live status page of sluice's layers, like expvar
// or net/http/pprof: an http.Handler you mount on an internal listener.
//
//	reg := status.NewRegistry()
//	r.Use(middleware.LoadShedder(middleware.LoadShedderSettings{MaxInFlight: 100, Status: reg}))
//	client := outbound.NewClient(outbound.WithName("openai"), outbound.WithStatus(reg), ...)
//	admin := http.NewServeMux()
//	admin.Handle("/debug/sluice", reg) // on 127.0.0.1 or a cluster-internal port
//
// The page shows, for every layer registered with the Registry, its caps and
// current use (in flight, queued, sockets open, each of its cap), a circuit
// breaker's state here and fleet-wide with the time until it half-opens, a
// vendor quota's remaining burst, next free slot and cooldown, the health of
// the Redis it uses and how often it fell back, and its rejections by reason;
// below, the most recent rejections of every layer. GET with ?format=json
// returns the same data as JSON (Snapshot). The HTML refreshes itself every
// two seconds with a meta refresh: no script, no external asset, it works
// offline.
//
// Cost: a registered layer's state is read from the counters it keeps anyway,
// only when the page is read. Nothing is added to the request path of a
// layer that is not registered; a registered one counts its rejections by
// reason and keeps the last ones in a fixed ring (a few atomic operations
// per rejection, none per admitted request), and a registered bulkhead counts
// its permits (two atomic additions per call). A snapshot runs one probe at
// a time; a vendor quota's probe makes one Redis call, bounded by its
// RedisTimeout.
//
// What the page never shows: API keys, user ids or any rate-limit key, Redis
// addresses or passwords, URLs, error messages. It shows layer and policy
// names, numbers, states and reasons, nothing that comes from a request.
// Still, it describes your capacity to whoever reads it: mount it where only
// operators reach it (an admin listener on loopback or a cluster-internal
// port), never on the public listener.
package status
