package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/priority"
	"github.com/gin-gonic/gin"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/middleware"
	"github.com/sluice-go/sluice/outbound"
)

// vendorBody is the OpenAI-style request both apps send.
const vendorBody = `{"model":"fake-1","messages":[{"role":"user","content":"hi"}]}`

// app is a Gin engine served on a loopback http.Server.
type app struct {
	srv    *http.Server
	ln     net.Listener
	done   chan struct{}
	closer func() // releases the app's outbound client
}

func (a *app) URL() string { return "http://" + a.ln.Addr().String() + "/v1/chat" }

// Close stops the server and every connection to it, then the app's client.
func (a *app) Close() {
	_ = a.srv.Close()
	<-a.done
	a.closer()
}

func serve(h http.Handler, closer func()) (*app, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("app: listen: %w", err)
	}
	a := &app{srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, ln: ln,
		done: make(chan struct{}), closer: closer}
	go func() {
		defer close(a.done)
		_ = a.srv.Serve(ln)
	}()
	return a, nil
}

// startNaive is the app as commonly written: gin.New, one handler, and a
// client with net/http's defaults (http.DefaultTransport's settings, cloned
// so that cells share no pool): no timeout, no cap on sockets or concurrency,
// two idle connections kept per host.
func startNaive(vendorURL string) (*app, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	client := &http.Client{Transport: tr}
	r := gin.New()
	r.POST("/v1/chat", func(c *gin.Context) {
		if !readPrompt(c) {
			return
		}
		req, _ := http.NewRequestWithContext(c.Request.Context(), http.MethodPost, vendorURL,
			bytes.NewReader([]byte(vendorBody)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			c.Status(http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		c.DataFromReader(resp.StatusCode, resp.ContentLength, resp.Header.Get("Content-Type"), resp.Body, nil)
	})
	return serve(r, tr.CloseIdleConnections)
}

// Settings is the sluice stack's tuning; see DefaultSettings for the reasons.
type Settings struct {
	Deadline       time.Duration // middleware.Deadline budget
	MaxInFlight    int           // middleware.LoadShedderSettings.MaxInFlight
	QueueActive    int           // middleware.AdmissionQueueSettings.MaxActive
	QueueWaiting   int           // middleware.AdmissionQueueSettings.MaxWaiting
	QueueTimeout   time.Duration // middleware.AdmissionQueueSettings.Timeout
	Bulkhead       int           // outbound.BulkheadSettings.MaxConcurrent
	BulkheadWait   time.Duration // outbound.BulkheadSettings.MaxWait
	MaxConns       int           // outbound.TransportSettings.MaxConns
	PoolTimeout    time.Duration // outbound.TransportSettings.PoolTimeout
	AttemptTimeout time.Duration // outbound.AttemptTimeoutSettings.Timeout
	MaxAttempts    int           // outbound.RetrySettings.MaxAttempts

	// Issue 14's mechanisms, all off by default (today's FIFO behaviour).
	Fair     bool            // AdmissionQueueSettings.Key: turns across X-API-Key
	Critical map[string]bool // X-API-Keys at priority.VeryHigh in the shedder, queue and bulkhead; nil: no priority
	Adaptive bool            // BulkheadSettings.Adaptive, Bulkhead the ceiling
}

// DefaultSettings tunes the stack for a vendor that serves c at once in l:
//
//   - AdmissionQueue(c, c, 3l): exactly c handlers call the vendor at once, so
//     it is never asked for more than it serves at full speed; c more wait,
//     which keeps a caller ready for every slot the vendor frees (it stays at
//     capacity) and costs at most one service time of queueing (c waiting
//     drain in l at c/l per second). A wait longer than 3l means the vendor
//     slowed down: give up.
//   - LoadShedder(2c): active plus waiting; every request beyond is answered
//     503 at once, without queueing: the fast rejection.
//   - Bulkhead c, socket cap c: the outbound side enforces the vendor's
//     capacity on its own (defence in depth, and the only limit for calls that
//     do not come through the queue). The admission queue already holds
//     callers to c, so the short wait (l/2) and the pool timeout (l) should
//     never fire.
//   - Attempt timeout 3l, 2 attempts, deadline 10l: a vendor that takes three
//     service times is stuck; one retry fits in the deadline. The retry layer
//     never retries an overload signal (bulkhead, queue), so it adds no load
//     when sluice itself says no.
func DefaultSettings(c int, l time.Duration) Settings {
	return Settings{
		Deadline:    10 * l,
		MaxInFlight: 2 * c, QueueActive: c, QueueWaiting: c, QueueTimeout: 3 * l,
		Bulkhead: c, BulkheadWait: l / 2, MaxConns: c, PoolTimeout: l,
		AttemptTimeout: 3 * l, MaxAttempts: 2,
	}
}

// startSluice is the same handler behind the sluice stack.
func startSluice(vendorURL string, s Settings) (*app, error) {
	tr := outbound.NewTransport(outbound.TransportSettings{MaxConns: s.MaxConns, PoolTimeout: s.PoolTimeout})
	client := outbound.NewClient(
		outbound.WithName("vendor"),
		outbound.WithTransport(tr),
		outbound.WithRetry(outbound.RetrySettings{MaxAttempts: s.MaxAttempts}),
		outbound.WithBulkhead(outbound.BulkheadSettings{MaxConcurrent: s.Bulkhead, MaxWait: s.BulkheadWait, Adaptive: s.Adaptive}),
		outbound.WithAttemptTimeout(outbound.AttemptTimeoutSettings{Timeout: s.AttemptTimeout}),
	)
	var keys atomic.Uint64
	apiKey := middleware.KeyFromHeader("X-API-Key")
	var prio func(*http.Request) priority.Priority
	if s.Critical != nil {
		prio = func(r *http.Request) priority.Priority {
			if s.Critical[apiKey(r)] {
				return priority.VeryHigh
			}
			return priority.Medium
		}
	}
	qs := middleware.AdmissionQueueSettings{MaxActive: s.QueueActive, MaxWaiting: s.QueueWaiting,
		Timeout: s.QueueTimeout, Priority: prio}
	if s.Fair {
		qs.Key = apiKey
	}
	r := gin.New()
	r.Use(
		middleware.Deadline(middleware.DeadlineSettings{Budget: s.Deadline}), // first, so the queue wait counts against it
		middleware.LoadShedder(middleware.LoadShedderSettings{MaxInFlight: s.MaxInFlight, Priority: prio}),
		middleware.AdmissionQueue(qs),
	)
	r.POST("/v1/chat", func(c *gin.Context) {
		if !readPrompt(c) {
			return
		}
		ctx := c.Request.Context()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, vendorURL,
			bytes.NewReader([]byte(vendorBody)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", strconv.FormatUint(keys.Add(1), 10)) // replay-safe: one retry allowed
		resp, err := client.Do(req)
		if err != nil {
			writeCallError(c, ctx, err)
			return
		}
		defer resp.Body.Close()
		c.DataFromReader(resp.StatusCode, resp.ContentLength, resp.Header.Get("Content-Type"), resp.Body, nil)
	})
	return serve(r, tr.CloseIdleConnections)
}

// readPrompt reads the client's body, as any real handler does to parse it.
// It matters here: net/http notices that a client went away (and cancels the
// request's context, and with it the vendor call) only once the request body
// has been read to the end.
func readPrompt(c *gin.Context) bool {
	if _, err := io.Copy(io.Discard, http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10)); err != nil {
		c.Status(http.StatusBadRequest)
		return false
	}
	return true
}

// writeCallError answers an outbound error the way the example app does:
// a sluice layer's rejection by sluice.HTTPStatus (an overload is 503 with
// Retry-After), anything else 502, and 504 when the request's own budget ran
// out.
func writeCallError(c *gin.Context, ctx context.Context, err error) {
	e := sluice.ErrorOf(err)
	if e == nil {
		if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
			c.Status(http.StatusGatewayTimeout)
			return
		}
		c.Status(http.StatusBadGateway)
		return
	}
	rej := *e // not ours to change
	if sluice.HTTPStatus(e) == http.StatusServiceUnavailable && rej.RetryAfter <= 0 {
		rej.RetryAfter = time.Second
	}
	middleware.WriteRejection(c.Writer, c.Request, &rej)
	c.Abort()
}
