package middleware

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

// Deadline gives each request a time budget: the rest of the chain sees a
// context whose deadline is at most budget from now (an earlier deadline
// already on the request is kept). Outbound calls made with the request's
// context inherit it, so sluice's outbound chain refuses waits (backoff,
// Retry-After, queues) that cannot finish in time, and the admission queue
// waits no longer than it. The context is canceled when the handler returns.
// Deadline rejects nothing itself. budget must be positive.
func Deadline(budget time.Duration) gin.HandlerFunc {
	checkBudget(budget)
	return func(c *gin.Context) {
		ctx, cancel := context.WithTimeout(c.Request.Context(), budget)
		defer cancel()
		c.Request = c.Request.WithContext(ctx)
		c.Next()
	}
}

// DeadlineHandler is Deadline for net/http.
func DeadlineHandler(budget time.Duration) func(http.Handler) http.Handler {
	checkBudget(budget)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), budget)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

func checkBudget(budget time.Duration) {
	if budget <= 0 {
		panic("middleware: Deadline: budget must be positive")
	}
}
