// Command good is bad with each setting given to the middleware it
// belongs to: it compiles, so bad fails for the reasons it names. It is
// built, never run.
package main

import (
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/middleware"
	"github.com/ulule/limiter/v3"
)

func main() {
	_ = middleware.UserRateLimit(middleware.UserRateLimitSettings{Rate: limiter.Rate{Period: time.Second, Limit: 1},
		Key: middleware.KeyFromHeader("X-API-Key"), FailureMode: sluice.FailClosed, Name: "api"})
	_ = middleware.LoadShedder(middleware.LoadShedderSettings{MaxInFlight: 1, Priority: middleware.PriorityFromHeader(""), Name: "api"})
	_ = middleware.AdmissionQueue(middleware.AdmissionQueueSettings{MaxActive: 1, Name: "queue"})
	_ = middleware.Deadline(middleware.DeadlineSettings{Budget: time.Second})
	_ = middleware.BufferBody(middleware.BufferBodySettings{MaxBytes: 1})
	_ = middleware.NewGCRAStore(nil, middleware.RedisStoreSettings{Timeout: time.Second})
}
