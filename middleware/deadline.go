package middleware

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

// DeadlineGrace is how long past a request's deadline Deadline keeps the
// connection open for the handler: time to answer 504, or to end a stream
// with an in-band error, after the deadline ends its work. The connection's
// read and write deadlines are the request's deadline plus this grace, so the
// context's own deadline always ends the work first: a read deadline at the
// same instant would race it and make net/http cancel the request as if its
// client had gone (context.Canceled, answered 499, instead of 504).
const DeadlineGrace = time.Second

// DeadlineSettings configures Deadline and DeadlineHandler.
type DeadlineSettings struct {
	// Budget is the most time a request may take, from the moment Deadline
	// sees it. Required (positive).
	Budget time.Duration
}

// Deadline gives each request a time budget: the rest of the chain sees a
// context whose deadline is at most Budget from now (an earlier deadline
// already on the request is kept). Outbound calls made with the request's
// context inherit it, so sluice's outbound chain refuses waits (backoff,
// Retry-After, queues) that cannot finish in time, and the admission queue
// waits no longer than it. The context is canceled when the handler returns.
//
// The budget bounds the connection too, through http.ResponseController: the
// request's body must be read, and every write done, by the deadline plus
// DeadlineGrace, so a client that stops reading
// (a stream it never consumes) makes the handler's Write fail instead of
// blocking it, and whatever the handler holds (a vendor permit, an open
// stream) is released. net/http's HTTP/1 and HTTP/2 servers support these
// deadlines, and clear them after the response; with a ResponseWriter that
// does not (and does not Unwrap to one that does), only the context is
// bounded.
//
// Wire it first after otelgin, so the budget starts when the request
// arrives and every wait (the admission queue's included) counts against it.
// Deadline rejects nothing itself. Panics if Budget is not positive.
func Deadline(s DeadlineSettings) gin.HandlerFunc {
	budget := checkBudget(s)
	return func(c *gin.Context) {
		ctx, cancel := withDeadline(c.Writer, c.Request, budget)
		defer cancel()
		c.Request = c.Request.WithContext(ctx)
		c.Next()
	}
}

// DeadlineHandler is Deadline for net/http.
func DeadlineHandler(s DeadlineSettings) func(http.Handler) http.Handler {
	budget := checkBudget(s)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := withDeadline(w, r, budget)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// withDeadline returns r's context bounded by budget, and bounds the
// connection's reads and writes by the deadline plus DeadlineGrace.
func withDeadline(w http.ResponseWriter, r *http.Request, budget time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(r.Context(), budget)
	dl, _ := ctx.Deadline()
	setConnDeadlines(w, dl.Add(DeadlineGrace))
	return ctx, cancel
}

// connDeadlines is what net/http's HTTP/1 and HTTP/2 ResponseWriters
// implement, and what http.ResponseController looks for.
type connDeadlines interface {
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// setConnDeadlines is http.ResponseController's SetReadDeadline and
// SetWriteDeadline without its allocations (a controller, and an error for
// each call on a writer that does not support them): it unwraps w (gin's
// ResponseWriter and other wrappers have Unwrap) to the first writer that
// sets deadlines, and does nothing if there is none.
func setConnDeadlines(w http.ResponseWriter, t time.Time) {
	for {
		switch x := w.(type) {
		case connDeadlines:
			_ = x.SetReadDeadline(t)
			_ = x.SetWriteDeadline(t)
			return
		case interface{ Unwrap() http.ResponseWriter }:
			w = x.Unwrap()
		default:
			return
		}
	}
}

func checkBudget(s DeadlineSettings) time.Duration {
	if s.Budget <= 0 {
		panic("middleware: Deadline: Budget must be positive")
	}
	return s.Budget
}
