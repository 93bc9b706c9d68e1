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
	key := middleware.KeyFromHeader("X-API-Key")
	cases := []struct {
		name string
		h    http.Handler
	}{
		{"bare_gin", engine()},
		{"load_shedder", engine(middleware.LoadShedder(1 << 20))},
		{"user_rate_limit_memory", engine(middleware.UserRateLimit(nil, never, key))},
		{"admission_queue", engine(middleware.AdmissionQueue(1<<10, 1<<10, time.Second))},
		{"deadline", engine(middleware.Deadline(time.Minute))},
		{"stack", engine(
			middleware.LoadShedder(1<<20),
			middleware.UserRateLimit(nil, never, key),
			middleware.AdmissionQueue(1<<10, 1<<10, time.Second),
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
	client := middleware.NewRedisClient(&redis.Options{Addr: srv.Addr, PoolSize: 1,
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
		store := middleware.NewGCRAStore(client, middleware.RedisStoreOptions{Prefix: srv.Prefix, Timeout: time.Second})
		run(b, engine(middleware.UserRateLimit(store, never, middleware.KeyFromHeader("X-API-Key"))))
	})
}
