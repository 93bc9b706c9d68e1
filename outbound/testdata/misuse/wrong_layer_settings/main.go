// Each layer's option takes only its own settings.
package main

import (
	"time"

	"github.com/sluice-go/sluice/outbound"
)

func main() {
	_ = outbound.WithBulkhead(outbound.LocalRateLimitSettings{Requests: 10, Period: time.Second})
}
