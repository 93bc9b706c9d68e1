package outbound

import (
	"io"
	"net/http"
	"sync/atomic"
)

// releaser is what a layer does once a response is finished with: release a
// permit, cancel a context, end a span.
type releaser interface{ release() }

// releaseBody wraps a response body and calls r.release exactly once: when the
// body is read to EOF or closed, whichever comes first. This is how a layer
// keeps a permit or a context for the whole life of a streamed response
// rather than until its headers arrive.
type releaseBody struct {
	rc   io.ReadCloser
	r    releaser
	done atomic.Bool
}

func (b *releaseBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.fire()
	}
	return n, err
}

func (b *releaseBody) Close() error {
	err := b.rc.Close()
	b.fire()
	return err
}

func (b *releaseBody) fire() {
	if b.done.CompareAndSwap(false, true) {
		b.r.release()
	}
}

// releaseRWBody keeps the io.Writer of a 101 Switching Protocols body, which
// net/http requires for protocol upgrades.
type releaseRWBody struct{ releaseBody }

func (b *releaseRWBody) Write(p []byte) (int, error) { return b.rc.(io.Writer).Write(p) }

// releaseOnClose arranges for r.release to run once resp's body is done with.
// A response without a body (nil or http.NoBody) releases at once.
func releaseOnClose(resp *http.Response, r releaser) {
	if resp.Body == nil || resp.Body == http.NoBody {
		r.release()
		return
	}
	if _, ok := resp.Body.(io.Writer); ok {
		resp.Body = &releaseRWBody{releaseBody{rc: resp.Body, r: r}}
		return
	}
	resp.Body = &releaseBody{rc: resp.Body, r: r}
}

// closeRequestBody closes req's body, as a RoundTripper must even when it
// rejects the request without sending it.
func closeRequestBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}
