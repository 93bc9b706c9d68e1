// A chain option does not configure the transport.
package main

import "github.com/sluice-go/sluice/outbound"

func main() {
	_ = outbound.NewTransport(outbound.WithName("vendor"))
}
