package outbound

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/otelx"
)

// errCallTimeout is the cancellation cause of an attempt whose call timeout
// fired; it tells our timeout apart from the caller's own cancellation.
var errCallTimeout = errors.New("attempt timed out")

type callTimeoutLayer struct {
	d      time.Duration
	stream bool
}

func (l callTimeoutLayer) wrap(next http.RoundTripper, e *env) http.RoundTripper {
	return &callTimeoutRoundTripper{next: next, d: l.d, stream: l.stream,
		rec: e.tel.Recorder(sluice.LayerCallTimeout, e.name)}
}

// callTimeoutRoundTripper cancels an attempt that runs longer than d. It does
// not use failsafe-go's timeout policy: that one runs the call through an
// executor and cannot stop its clock once response headers arrive, which
// streaming mode needs. Canceling the attempt's context makes the transport
// close its socket.
type callTimeoutRoundTripper struct {
	next   http.RoundTripper
	d      time.Duration
	stream bool
	rec    *otelx.Recorder
}

// attemptTimer is one attempt's timer and context; release cancels the
// context once the response is done with.
type attemptTimer struct {
	timer  *time.Timer
	cancel context.CancelCauseFunc
}

func (a *attemptTimer) release() {
	a.timer.Stop()
	a.cancel(nil)
}

// BodyDone releases the attempt once its response body is finished with
// (bodyhook.Hook).
func (a *attemptTimer) BodyDone() { a.release() }

func (c *callTimeoutRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	parent := req.Context()
	ctx, cancel := context.WithCancelCause(parent)
	a := &attemptTimer{cancel: cancel}
	a.timer = time.AfterFunc(c.d, func() { cancel(errCallTimeout) })
	resp, err := c.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		a.release()
		if parent.Err() == nil && context.Cause(ctx) == errCallTimeout {
			e := sluice.NewError(sluice.LayerCallTimeout, sluice.ReasonCallTimeout, err)
			c.rec.RejectedAttempt(parent, e)
			return nil, e
		}
		return nil, err
	}
	if c.stream {
		// Headers are in: from here the transport's read-idle timeout guards
		// the stream. If the timer already fired, the body fails as it must.
		a.timer.Stop()
	}
	releaseOnClose(resp, a)
	return resp, nil
}
