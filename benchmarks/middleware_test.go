package benchmarks

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"
	ulgin "github.com/ulule/limiter/v3/drivers/middleware/gin"
	"github.com/ulule/limiter/v3/drivers/store/memory"

	"github.com/sluice-go/sluice/fleet"
	"github.com/sluice-go/sluice/internal/redistest"
	"github.com/sluice-go/sluice/middleware"
)

func init() { gin.SetMode(gin.ReleaseMode) }

// discard is a reusable ResponseWriter, so that every sub-benchmark pays the
// same harness cost and the differences are the middlewares'.
type discard struct{ h http.Header }

func (w *discard) Header() http.Header         { return w.h }
func (w *discard) Write(b []byte) (int, error) { return len(b), nil }
func (w *discard) WriteHeader(int)             {}

// never is a rate no benchmark reaches.
var never = limiter.Rate{Period: time.Hour, Limit: 1 << 40}

func engine(mw ...gin.HandlerFunc) *gin.Engine {
	r := gin.New()
	r.Use(mw...)
	r.GET("/v1/chat", func(c *gin.Context) { c.Status(http.StatusOK) })
	return r
}

func run(b *testing.B, h http.Handler) {
	req := httptest.NewRequest("GET", "/v1/chat", nil)
	req.Header.Set("X-API-Key", "user-1234")
	w := &discard{h: http.Header{}}
	h.ServeHTTP(w, req)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}

// BenchmarkInbound compares each middleware, and the whole inbound stack on
// memory stores, with bare gin and with ulule's own gin middleware on its
// memory store, in one run.
func BenchmarkInbound(b *testing.B) {
	shedder := middleware.LoadShedderSettings{MaxInFlight: 1 << 20}
	userLimit := middleware.UserRateLimitSettings{Rate: never, Key: middleware.KeyFromHeader("X-API-Key")}
	queue := middleware.AdmissionQueueSettings{MaxActive: 1 << 10, MaxWaiting: 1 << 10, Timeout: time.Second}
	deadline := middleware.DeadlineSettings{Budget: time.Minute}
	cases := []struct {
		name string
		h    http.Handler
	}{
		{"bare_gin", engine()},
		{"load_shedder", engine(middleware.LoadShedder(shedder))},
		{"user_rate_limit_memory", engine(middleware.UserRateLimit(userLimit))},
		{"admission_queue", engine(middleware.AdmissionQueue(queue))},
		{"deadline", engine(middleware.Deadline(deadline))},
		// The stack in the canonical order (otelgin → Deadline → LoadShedder →
		// UserRateLimit → BufferBody → AdmissionQueue → handler) without
		// Deadline, measured alone above, and BufferBody, which a bodiless GET
		// passes at once.
		{"stack", engine(
			middleware.LoadShedder(shedder),
			middleware.UserRateLimit(userLimit),
			middleware.AdmissionQueue(queue),
		)},
		{"ulule_gin_memory", engine(ulgin.NewMiddleware(
			limiter.New(memory.NewStoreWithOptions(limiter.StoreOptions{Prefix: "bench"}), never),
			ulgin.WithKeyGetter(func(c *gin.Context) string { return c.GetHeader("X-API-Key") }),
		))},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) { run(b, c.h) })
	}
}

// BenchmarkInboundRedis compares the Redis-backed user limit (GCRA store,
// one script round trip) with a bare PING round trip on a single-connection
// client, in one run.
func BenchmarkInboundRedis(b *testing.B) {
	srv := redistest.New(b)
	client := fleet.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 1,
		ReadTimeout: time.Second, WriteTimeout: time.Second})
	defer client.Close()
	b.Run("redis_ping", func(b *testing.B) {
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if err := client.Ping(ctx).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("user_rate_limit_gcra_redis", func(b *testing.B) {
		store := middleware.NewGCRAStore(client, middleware.RedisStoreSettings{Prefix: srv.Prefix, Timeout: time.Second})
		run(b, engine(middleware.UserRateLimit(middleware.UserRateLimitSettings{Store: store, Rate: never,
			Key: middleware.KeyFromHeader("X-API-Key")})))
	})
}
