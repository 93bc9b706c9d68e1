package outbound

import "net/http"

// defaultTransport is the transport NewClient uses when WithTransport is not
// given: NewTransport with its defaults, so the socket cap and the phase
// timeouts are always there.
func defaultTransport() http.RoundTripper { return NewTransport(TransportSettings{}) }
