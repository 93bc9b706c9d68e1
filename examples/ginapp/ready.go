package main

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

// readyPingTimeout bounds /readyz's Redis ping: a probe must answer fast
// whatever Redis does.
const readyPingTimeout = 100 * time.Millisecond

// readyz answers whether the app can serve: 200 while it serves, Redis or
// not, and 503 once shutdown has begun. Redis unreachable (two pings within
// readyPingTimeout fail) makes it degraded, which the body says: the layers
// then decide by their failure modes (GET /debug/sluice shows which, and how
// often), and taking the pod out of rotation would only move its load to
// pods that have the same Redis problem.
//
//	{"status": "ready"}
//	{"status": "degraded", "redis": "unreachable"}
//	{"status": "shutting_down"}
func (a *App) readyz(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	if a.stopping.Load() {
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "shutting_down"})
		return
	}
	if a.redis == nil {
		c.JSON(http.StatusOK, gin.H{"status": "ready", "redis": "none"})
		return
	}
	if !a.redisHealthy(c.Request.Context()) {
		c.JSON(http.StatusOK, gin.H{"status": "degraded", "redis": "unreachable"})
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready", "redis": "ok"})
}

// redisHealthy pings Redis, twice if need be: the client's timeouts are
// tight (fleet.NewClient), and one slow dial is not an outage. The layers'
// own health breakers are not asked: with no traffic they stay open after
// Redis is back, until a call probes it.
func (a *App) redisHealthy(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, readyPingTimeout)
	defer cancel()
	for range 2 {
		if a.redis.Ping(ctx).Err() == nil {
			return true
		}
	}
	return false
}
