// Command bad must not compile: each line gives a middleware a setting that
// is not its own, and its comment names the compiler's error.
// TestMisuseDoesNotCompile builds it and expects exactly these errors.
package main

import (
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/middleware"
)

func main() {
	_ = middleware.LoadShedder(middleware.LoadShedderSettings{MaxInFlight: 1, FailureMode: sluice.FailClosed})                // want "unknown field FailureMode in struct literal of type middleware.LoadShedderSettings"
	_ = middleware.AdmissionQueue(middleware.AdmissionQueueSettings{MaxActive: 1, PriorityShares: [5]float64{1, 1, 1, 1, 1}}) // want "unknown field PriorityShares in struct literal of type middleware.AdmissionQueueSettings"
	_ = middleware.Deadline(middleware.LoadShedderSettings{MaxInFlight: 1})                                                   // want "cannot use .* as middleware.DeadlineSettings value"
	_ = middleware.BufferBody(middleware.BufferBodySettings{MaxBytes: 1, Name: "body"})                                       // want "unknown field Name in struct literal of type middleware.BufferBodySettings"
	_ = middleware.LoadShedder(middleware.LoadShedderSettings{MaxInFlight: 1}, middleware.WithPolicyName("api"))              // want "too many arguments in call to middleware.LoadShedder"
	_ = middleware.NewGCRAStore(nil, middleware.RedisStoreSettings{Timeout: time.Second, FailureMode: sluice.FailOpen})       // want "unknown field FailureMode in struct literal of type middleware.RedisStoreSettings"
}
