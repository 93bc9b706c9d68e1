package outbound

import (
	"net/http"

	"github.com/sluice-go/sluice/internal/bodyhook"
)

// releaseOnClose arranges for r.BodyDone to run exactly once when resp's body
// is finished with: read to EOF or to an error, or closed, whichever comes
// first (bodyhook.Wrap, which is safe for a Close racing a Read and keeps the
// io.Writer of a 101 body). This is how a layer keeps a permit or a context
// for the whole life of a streamed response rather than until its headers
// arrive: r releases a permit, cancels a context or ends a span. A response
// without a body (nil or http.NoBody) releases at once.
func releaseOnClose(resp *http.Response, r bodyhook.Hook) {
	if resp.Body == nil || resp.Body == http.NoBody {
		r.BodyDone()
		return
	}
	resp.Body = bodyhook.Wrap(resp.Body, r)
}

// closeRequestBody closes req's body, as a RoundTripper must even when it
// rejects the request without sending it.
func closeRequestBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}
