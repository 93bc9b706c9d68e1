package main

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"
	limiter "github.com/ulule/limiter/v3"
	"go.opentelemetry.io/contrib/instrumentation/github.com/gin-gonic/gin/otelgin"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/sluice-go/sluice/examples/ginapp/internal/fakellm"
	"github.com/sluice-go/sluice/fleet"
	"github.com/sluice-go/sluice/internal/redisx"
	"github.com/sluice-go/sluice/middleware"
	"github.com/sluice-go/sluice/otelx"
	"github.com/sluice-go/sluice/outbound"
	"github.com/sluice-go/sluice/status"
)

// App is the example service: the inbound stack in canonical order in front
// of POST /v1/chat, and an outbound client with every layer in front of the
// vendor.
type App struct {
	cfg       Config
	tel       *Telemetry
	engine    *gin.Engine
	client    *outbound.Client
	transport *outbound.Transport // the client's sockets, closed by Close
	vendorURL string
	fake      *fakellm.Vendor       // nil when VENDOR_URL is set
	redis     redis.UniversalClient // user rate limit store
	fleet     redis.UniversalClient // vendor quota and shared breaker: dedicated, no retries
	critical  map[string]struct{}   // SLUICE_CRITICAL_KEYS
	closers   []func()
	status    *status.Registry // every layer, for GET /debug/sluice
	stopping  atomic.Bool      // set when shutdown begins: /readyz answers 503
}

// NewApp wires the app. It does no I/O that can fail when Redis is down: the
// Redis-backed layers fall back until it answers.
func NewApp(ctx context.Context, cfg Config) (*App, error) {
	tel, err := NewTelemetry(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	a := &App{cfg: cfg, tel: tel, vendorURL: cfg.VendorURL, status: status.NewRegistry(), critical: map[string]struct{}{}}
	for _, k := range cfg.CriticalKeys {
		a.critical[k] = struct{}{}
	}
	if a.vendorURL == "" {
		v, err := fakellm.Start(fakellm.Config{Latency: cfg.FakeLatency, Capacity: cfg.FakeCapacity,
			Rate: cfg.FakeRate, ErrorRate: cfg.FakeErrorRate, Seed: 1, StreamInterval: 20 * time.Millisecond})
		if err != nil {
			return nil, err
		}
		a.fake = v
		a.vendorURL = v.URL()
		a.closers = append(a.closers, v.Close)
	}
	if cfg.RedisURL != "" {
		opt, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("config: REDIS_URL: %w", err)
		}
		rc := fleet.NewClient(opt) // tight timeouts, no retries
		a.redis = rc
		a.closers = append(a.closers, func() { _ = rc.Close() })
		fopt, err := redisx.NewClientOptions(cfg.RedisURL) // parses only: no I/O
		if err != nil {
			return nil, fmt.Errorf("config: REDIS_URL: %w", err)
		}
		fc := redis.NewClient(fopt)
		a.fleet = fc
		a.closers = append(a.closers, func() { _ = fc.Close() })
	}
	sl := otelx.New(otelx.WithTracerProvider(tel.TP), otelx.WithMeterProvider(tel.MP))
	a.client = a.newClient(sl)
	// The chain's Redis heartbeat and subscriber stop before the clients close.
	a.closers = append(a.closers, func() { _ = a.client.Close() })
	a.engine = a.newEngine(sl)
	return a, nil
}

func (a *App) newClient(sl *otelx.Telemetry) *outbound.Client {
	cfg := a.cfg
	a.transport = outbound.NewTransport(outbound.TransportSettings{
		MaxConns:    cfg.VendorMaxConns,
		PoolTimeout: cfg.VendorQueueTimeout,
	})
	opts := []outbound.Option{
		outbound.WithName("vendor"),
		outbound.WithTransport(a.transport),
		outbound.WithTelemetry(sl),
		outbound.WithStatus(a.status),
		outbound.WithAttemptSpanOptions(otelhttp.WithTracerProvider(a.tel.TP), otelhttp.WithMeterProvider(a.tel.MP)),
		outbound.WithRetry(outbound.RetrySettings{MaxAttempts: cfg.RetryAttempts}),
		outbound.WithCircuitBreaker(a.breakerSettings(a.fleet)),
		outbound.WithBulkhead(outbound.BulkheadSettings{MaxConcurrent: cfg.VendorConcurrency, MaxWait: cfg.VendorQueueTimeout,
			Adaptive: cfg.VendorAdaptive}),
		outbound.WithAttemptTimeout(outbound.AttemptTimeoutSettings{Timeout: cfg.AttemptTimeout, Streaming: true}),
	}
	opts = append(opts, a.vendorLimitOptions(a.fleet)...)
	return outbound.NewClient(opts...)
}

func (a *App) newEngine(sl *otelx.Telemetry) *gin.Engine {
	cfg := a.cfg
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Recovery())
	_ = r.SetTrustedProxies(nil) // keys come from X-API-Key; never trust X-Forwarded-For here
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/metrics", gin.WrapH(a.tel.Metrics))
	r.GET("/readyz", a.readyz)
	// The status page, read-only and secret-free; in production mount it on
	// an admin listener, not the public one (docs/operations.md).
	r.GET("/debug/sluice", gin.WrapH(a.status))

	var store limiter.Store
	if a.redis != nil {
		store = middleware.NewGCRAStore(a.redis, middleware.RedisStoreSettings{Prefix: "ginapp_user"})
	} else {
		store = middleware.NewMemoryStore(middleware.MemoryStoreSettings{})
	}
	api := r.Group("/v1",
		otelgin.Middleware(cfg.ServiceName, otelgin.WithTracerProvider(a.tel.TP), otelgin.WithMeterProvider(a.tel.MP)),
		// The budget starts when the request arrives: the body and the queue
		// wait count against it.
		middleware.Deadline(middleware.DeadlineSettings{Budget: cfg.RequestTimeout}),
		middleware.LoadShedder(a.shedderSettings(sl)),
		requireAPIKey,
		middleware.UserRateLimit(middleware.UserRateLimitSettings{Store: store, Rate: cfg.UserRate,
			Key: apiKey, Telemetry: sl, Status: a.status}),
		// A slow upload must not hold an admission slot: the body is whole
		// before the request joins the queue.
		middleware.BufferBody(middleware.BufferBodySettings{MaxBytes: maxChatBody, Timeout: cfg.BodyTimeout}),
		middleware.AdmissionQueue(a.queueSettings(sl)),
	)
	api.POST("/chat", a.chatHandler)
	return r
}

// requireAPIKey answers 401 to a request without X-API-Key: the key is who
// the user rate limit counts against.
func requireAPIKey(c *gin.Context) {
	if c.GetHeader("X-API-Key") == "" {
		writeError(c, http.StatusUnauthorized, "auth", "missing_api_key", "send your key in X-API-Key", 0)
		return
	}
	c.Next()
}

// Handler is the app's http.Handler.
func (a *App) Handler() http.Handler { return a.engine }

// Close releases the outbound chain (its Redis heartbeat and subscriber, its
// idle connections), the Redis clients and the fake vendor, and flushes
// telemetry.
func (a *App) Close(ctx context.Context) error {
	// The client's Transport is the outbound chain, which has no
	// CloseIdleConnections: close the sockets on the transport itself, before
	// the fake vendor goes, so that no connection is left to read a dead peer.
	a.transport.CloseIdleConnections()
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	return a.tel.Shutdown(ctx)
}
