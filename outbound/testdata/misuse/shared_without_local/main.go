// A shared breaker shares a local one: it is a field of BreakerSettings and
// cannot be given on its own.
package main

import "github.com/sluice-go/sluice/outbound"

func main() {
	_ = outbound.NewClient(outbound.SharedBreakerSettings{Quorum: 2})
}
