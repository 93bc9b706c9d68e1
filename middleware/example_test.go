package middleware_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/gin-gonic/gin"
	limiter "github.com/ulule/limiter/v3"

	"github.com/sluice-go/sluice/middleware"
)

// The inbound stack in canonical order: the cheapest rejection first, the
// admission queue closest to the work. In production put otelgin.Middleware
// first, so each decision is recorded on the server span.
func Example() {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	_ = r.SetTrustedProxies(nil) // gin trusts X-Forwarded-For from everyone by default
	r.Use(
		middleware.LoadShedder(256),
		middleware.UserRateLimit(middleware.NewMemoryStore(0), limiter.Rate{Period: time.Minute, Limit: 2},
			middleware.KeyFromHeader("X-API-Key")),
		middleware.AdmissionQueue(64, 128, 2*time.Second),
		middleware.Deadline(15*time.Second),
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
