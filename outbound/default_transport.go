package outbound

import "net/http"

// defaultTransport is the transport NewClient uses when WithTransport is not
// given.
func defaultTransport() http.RoundTripper { return http.DefaultTransport.(*http.Transport).Clone() }
