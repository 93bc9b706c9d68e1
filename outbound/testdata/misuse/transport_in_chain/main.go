// The transport's settings are not a layer of the chain: they go to
// NewTransport, whose result goes to WithTransport.
package main

import "github.com/sluice-go/sluice/outbound"

func main() {
	_ = outbound.NewClient(outbound.TransportSettings{MaxConns: 10})
}
