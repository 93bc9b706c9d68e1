package middleware_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/failsafe-go/failsafe-go/priority"
	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"
	limiter "github.com/ulule/limiter/v3"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/fleet"
	"github.com/sluice-go/sluice/middleware"
)

// The inbound stack in canonical order: Deadline first, so the budget starts
// when the request arrives; then the cheapest rejections; the body read
// whole; the admission queue closest to the work. In production put
// otelgin.Middleware first, so each decision is recorded on the server span.
func Example() {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(
		middleware.Deadline(middleware.DeadlineSettings{Budget: 15 * time.Second}),
		middleware.LoadShedder(middleware.LoadShedderSettings{MaxInFlight: 256}),
		middleware.UserRateLimit(middleware.UserRateLimitSettings{
			Rate: limiter.Rate{Period: time.Minute, Limit: 2},
			Key:  middleware.KeyFromHeader("X-API-Key"),
		}),
		middleware.BufferBody(middleware.BufferBodySettings{MaxBytes: 64 << 10, Timeout: 10 * time.Second}),
		middleware.AdmissionQueue(middleware.AdmissionQueueSettings{MaxActive: 64, MaxWaiting: 128, Timeout: 2 * time.Second}),
	)
	r.POST("/v1/chat", func(c *gin.Context) { c.String(http.StatusOK, "ok") })

	for i := 0; i < 3; i++ {
		w := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/v1/chat", nil)
		req.Header.Set("X-API-Key", "alice")
		r.ServeHTTP(w, req)
		fmt.Println(w.Code, w.Header().Get("Retry-After") != "", w.Body.String())
	}
	// Output:
	// 200 false ok
	// 200 false ok
	// 429 true {"error":{"layer":"user_rate_limiter","reason":"rate_limited","message":"rate limit exceeded; retry later"}}
}

// The same stack for net/http: each middleware's Handler twin takes the same
// settings, wrapped from the inside out.
func ExampleUserRateLimitHandler() {
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	h = middleware.AdmissionQueueHandler(middleware.AdmissionQueueSettings{MaxActive: 64, MaxWaiting: 128})(h)
	h = middleware.BufferBodyHandler(middleware.BufferBodySettings{})(h)
	h = middleware.UserRateLimitHandler(middleware.UserRateLimitSettings{
		Rate: limiter.Rate{Period: time.Minute, Limit: 1},
		Key:  middleware.KeyFromRemoteAddr(),
	})(h)
	h = middleware.LoadShedderHandler(middleware.LoadShedderSettings{MaxInFlight: 256})(h)
	h = middleware.DeadlineHandler(middleware.DeadlineSettings{Budget: 15 * time.Second})(h)

	for i := 0; i < 2; i++ {
		w := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.RemoteAddr = "192.0.2.1:40000"
		req.Header.Set("X-Forwarded-For", fmt.Sprint("198.51.100.", i)) // ignored: the peer's IP is the key
		h.ServeHTTP(w, req)
		fmt.Println(w.Code, "Retry-After:", w.Header().Get("Retry-After") != "")
	}
	// Output:
	// 200 Retry-After: false
	// 429 Retry-After: true
}

type userKey struct{}

// A Gin authentication middleware puts the caller's identity in the
// request's context, where KeyFromContext finds it (gin's c.Set values are
// not reachable from the *http.Request).
func ExampleKeyFromContext() {
	gin.SetMode(gin.ReleaseMode)
	auth := func(c *gin.Context) {
		user := c.GetHeader("Authorization") // stands for real authentication
		if user == "" {
			c.AbortWithStatus(http.StatusUnauthorized)
			return
		}
		c.Request = c.Request.WithContext(context.WithValue(c.Request.Context(), userKey{}, user))
		c.Next()
	}
	r := gin.New()
	r.Use(auth, middleware.UserRateLimit(middleware.UserRateLimitSettings{
		Rate: limiter.Rate{Period: time.Hour, Limit: 1},
		Key:  middleware.KeyFromContext(userKey{}),
	}))
	r.GET("/", func(c *gin.Context) { c.Status(http.StatusOK) })

	for _, user := range []string{"alice", "alice", "bob"} {
		w := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Authorization", user)
		r.ServeHTTP(w, req)
		fmt.Println(user, w.Code)
	}
	// Output:
	// alice 200
	// alice 429
	// bob 200
}

// A fleet shares each user's limit through Redis: a dedicated client with
// tight timeouts (fleet.NewClient), one script per decision. Construction
// does no I/O; while Redis is down the limit fails open (counted).
func ExampleNewGCRAStore() {
	rdb := fleet.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	_ = middleware.UserRateLimit(middleware.UserRateLimitSettings{
		Store:       middleware.NewGCRAStore(rdb, middleware.RedisStoreSettings{Prefix: "chat"}),
		Rate:        limiter.Rate{Period: time.Second, Limit: 10},
		Key:         middleware.KeyFromHeader("X-API-Key"),
		FailureMode: sluice.FailClosed, // or FailOpen (the default), FallbackLocal
	})
}

// Low priorities are shed first: with a cap of 2, a VeryLow request may use
// half of it, so the second concurrent VeryLow request is shed while a
// VeryHigh one still passes.
func ExampleLoadShedder() {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(middleware.LoadShedder(middleware.LoadShedderSettings{
		MaxInFlight: 2,
		Priority:    middleware.PriorityFromHeader(""), // X-Failsafe-Priority: 0 (very low) to 4 (very high)
	}))
	b := newBusy()
	r.GET("/", gin.WrapH(b))
	release := occupy(r, b) // one request in flight
	for _, p := range []string{"0", "4"} {
		w := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set(middleware.PriorityHeader, p)
		r.ServeHTTP(w, req)
		fmt.Println("priority", p, w.Code)
	}
	release()
	// Output:
	// priority 0 503
	// priority 4 200
}

// busy is a handler that holds each request asking for it (?hold) until
// released, to fill a layer in an example.
type busy struct{ held, release chan struct{} }

func newBusy() *busy { return &busy{held: make(chan struct{}), release: make(chan struct{})} }

func (b *busy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Has("hold") {
		close(b.held)
		<-b.release
	}
}

// occupy sends one request through h that b holds, and returns once b holds
// it; the function it returns releases the request and waits for its end.
func occupy(h http.Handler, b *busy) (release func()) {
	done := make(chan struct{})
	go func() {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/?hold", nil))
		close(done)
	}()
	<-b.held
	return func() {
		close(b.release)
		<-done
	}
}

// Two rules on one store: a burst limit per second and a quota per hour.
// Counters are keyed by each rule's Name and rate, so the rules never share
// one. An allowed request carries X-RateLimit-Limit and -Remaining of the
// rule that sets them last (the innermost).
func ExampleUserRateLimit() {
	gin.SetMode(gin.ReleaseMode)
	store := middleware.NewMemoryStore(middleware.MemoryStoreSettings{})
	key := middleware.KeyFromHeader("X-API-Key")
	r := gin.New()
	r.Use(
		middleware.UserRateLimit(middleware.UserRateLimitSettings{
			Name: "burst", Store: store, Key: key, Rate: limiter.Rate{Period: time.Second, Limit: 10},
		}),
		middleware.UserRateLimit(middleware.UserRateLimitSettings{
			Name: "hourly", Store: store, Key: key, Rate: limiter.Rate{Period: time.Hour, Limit: 2},
		}),
	)
	r.GET("/", func(c *gin.Context) { c.Status(http.StatusOK) })

	for range 3 {
		w := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("X-API-Key", "alice")
		r.ServeHTTP(w, req)
		fmt.Println(w.Code, w.Header().Get("X-RateLimit-Limit"), w.Header().Get("X-RateLimit-Remaining"))
	}
	// Output:
	// 200 2 1
	// 200 2 0
	// 429 2 0
}

// The memory store is the default of UserRateLimit; build one yourself to
// size it or to share it between rules. It speaks ulule/limiter's Store
// interface, so it can be asked directly: a denied Get consumes nothing.
func ExampleNewMemoryStore() {
	store := middleware.NewMemoryStore(middleware.MemoryStoreSettings{MaxKeys: 10_000}) // at most 10,000 × 128 bytes
	rate := limiter.Rate{Period: time.Hour, Limit: 2}
	ctx := context.Background()
	for range 3 {
		lc, err := store.Get(ctx, "alice", rate)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(lc.Limit, lc.Remaining, lc.Reached)
	}
	// Output:
	// 2 1 false
	// 2 0 false
	// 2 0 true
}

// ulule/limiter's own fixed-window store, for a fleet that already counts
// with it. Construction does no I/O: ulule's constructor, which loads its
// scripts, runs at the first request. This example needs a Redis to run, so
// it is compiled but not run (no Output).
func ExampleNewFixedWindowRedisStore() {
	rdb := fleet.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:6379"}})
	defer rdb.Close()
	limit := middleware.UserRateLimitHandler(middleware.UserRateLimitSettings{
		Store: middleware.NewFixedWindowRedisStore(rdb, middleware.RedisStoreSettings{Prefix: "chat"}),
		Rate:  limiter.Rate{Period: time.Minute, Limit: 60},
		Key:   middleware.KeyFromHeader("X-API-Key"),
	})
	srv := &http.Server{Addr: "127.0.0.1:8080", Handler: limit(http.NotFoundHandler()), ReadHeaderTimeout: 10 * time.Second}
	_ = srv.ListenAndServe()
}

// KeyFromHeader keys by the first value of a header (the name is not case
// sensitive); a request without it has the empty key and is not limited by
// this rule.
func ExampleKeyFromHeader() {
	key := middleware.KeyFromHeader("x-api-key")
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("X-API-Key", "key-123")
	fmt.Printf("%q %q\n", key(req), key(httptest.NewRequest(http.MethodGet, "/", nil)))
	// Output: "key-123" ""
}

// KeyFromRemoteAddr keys by the peer's IP, without its port; a header such
// as X-Forwarded-For, which any client can write, is ignored.
func ExampleKeyFromRemoteAddr() {
	key := middleware.KeyFromRemoteAddr()
	for _, addr := range []string{"192.0.2.1:40000", "[2001:db8::1]:443"} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.RemoteAddr = addr
		req.Header.Set("X-Forwarded-For", "198.51.100.7")
		fmt.Println(key(req))
	}
	// Output:
	// 192.0.2.1
	// 2001:db8::1
}

// PriorityFromHeader reads X-Failsafe-Priority (0 very low to 4 very high),
// else a priority failsafe-go put in the request's context, else medium.
func ExamplePriorityFromHeader() {
	prio := middleware.PriorityFromHeader("") // "" means PriorityHeader
	fromHeader := httptest.NewRequest(http.MethodGet, "/", nil)
	fromHeader.Header.Set(middleware.PriorityHeader, "4")
	fromContext := httptest.NewRequest(http.MethodGet, "/", nil)
	fromContext = fromContext.WithContext(priority.Low.AddTo(fromContext.Context()))
	fmt.Println(prio(fromHeader) == priority.VeryHigh, prio(fromContext) == priority.Low,
		prio(httptest.NewRequest(http.MethodGet, "/", nil)) == priority.Medium)
	// Output: true true true
}

// A Responder of your own can log, count or add a header, then hand over to
// WriteRejection for the status, the Retry-After and the one JSON body.
func ExampleWriteRejection() {
	respond := func(w http.ResponseWriter, r *http.Request, err *sluice.Error) {
		w.Header().Set("X-Request-Id", r.Header.Get("X-Request-Id"))
		middleware.WriteRejection(w, r, err)
	}
	b := newBusy()
	h := middleware.LoadShedderHandler(middleware.LoadShedderSettings{MaxInFlight: 1, Responder: respond})(b)
	release := occupy(h, b) // fills the shedder
	defer release()

	w := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("X-Request-Id", "req-42")
	h.ServeHTTP(w, req)
	fmt.Println(w.Code, w.Header().Get("Retry-After"), w.Header().Get("X-Request-Id"))
	fmt.Print(w.Body.String())
	// Output:
	// 503 1 req-42
	// {"error":{"layer":"load_shedder","reason":"overloaded","message":"the server is overloaded; retry later"}}
}

// The load shedder for net/http: past MaxInFlight requests in flight, the
// next is shed at once with 503 and Retry-After; nothing waits.
func ExampleLoadShedderHandler() {
	b := newBusy()
	h := middleware.LoadShedderHandler(middleware.LoadShedderSettings{MaxInFlight: 1, RetryAfter: 2 * time.Second})(b)
	release := occupy(h, b)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	fmt.Println("while one is in flight:", w.Code, w.Header().Get("Retry-After"))
	release()
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	fmt.Println("once it is done:", w.Code)
	// Output:
	// while one is in flight: 503 2
	// once it is done: 200
}

// With every active slot taken and no waiting room, a request is refused at
// once with 503 queue_full.
func ExampleAdmissionQueue() {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(middleware.AdmissionQueue(middleware.AdmissionQueueSettings{MaxActive: 1}))
	b := newBusy()
	r.GET("/", gin.WrapH(b))
	release := occupy(r, b) // takes the one active slot
	defer release()

	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	fmt.Println(w.Code, w.Body.String())
	// Output: 503 {"error":{"layer":"admission_queue","reason":"queue_full","message":"too many requests are waiting; retry later"}}
}

// A request that waits longer than Timeout for an active slot is refused
// with 503 queue_timeout; one whose context deadline comes sooner waits
// only until then.
func ExampleAdmissionQueueHandler() {
	b := newBusy()
	h := middleware.AdmissionQueueHandler(middleware.AdmissionQueueSettings{
		MaxActive: 1, MaxWaiting: 8, Timeout: 50 * time.Millisecond,
	})(b)
	release := occupy(h, b) // takes the one active slot
	defer release()

	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil)) // waits, then gives up
	fmt.Println(w.Code, w.Body.String())
	// Output: 503 {"error":{"layer":"admission_queue","reason":"queue_timeout","message":"timed out waiting for capacity; retry later"}}
}

// The handler and every outbound call made with the request's context see
// the budget as a context deadline.
func ExampleDeadline() {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(middleware.Deadline(middleware.DeadlineSettings{Budget: 10 * time.Second}))
	r.GET("/", func(c *gin.Context) {
		deadline, ok := c.Request.Context().Deadline()
		fmt.Println(ok, time.Until(deadline) <= 10*time.Second)
	})
	r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	// Output: true true
}

// An earlier deadline already on the request is kept: the budget only ever
// shortens it.
func ExampleDeadlineHandler() {
	h := middleware.DeadlineHandler(middleware.DeadlineSettings{Budget: time.Hour})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			deadline, _ := r.Context().Deadline()
			fmt.Println(time.Until(deadline) <= time.Minute)
		}))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ctx))
	// Output: true
}

// The rest of the chain sees the whole body in memory; a body over
// MaxBytes is refused with 413 before any handler runs.
func ExampleBufferBody() {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(middleware.BufferBody(middleware.BufferBodySettings{MaxBytes: 16, Timeout: 5 * time.Second}))
	r.POST("/", func(c *gin.Context) {
		b, _ := io.ReadAll(c.Request.Body)
		c.String(http.StatusOK, "got %q", b)
	})
	for _, body := range []string{`{"prompt":"hi"}`, `{"prompt":"a long prompt"}`} {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body)))
		fmt.Println(w.Code, w.Body.String())
	}
	// Output:
	// 200 got "{\"prompt\":\"hi\"}"
	// 413 {"error":{"layer":"request","reason":"body_too_large","message":"the request body is limited to 16 bytes"}}
}

// BufferBody for net/http. The refusal closes the connection, so the server
// never waits for the rest of a refused body.
func ExampleBufferBodyHandler() {
	h := middleware.BufferBodyHandler(middleware.BufferBodySettings{MaxBytes: 4})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/", strings.NewReader("too long")))
	fmt.Println(w.Code, w.Header().Get("Connection"))
	// Output: 413 close
}
