package outbound

import (
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"time"

	"github.com/sluice-go/sluice"
)

// exchangePhase is where a request stands; each phase has its own timer.
// Phases only move forward.
type exchangePhase uint8

const (
	exchangeConn   exchangePhase = iota // waiting for a connection: bounded by the dial
	exchangeWrite                       // writing the body: write timeout per stalled write
	exchangeHeader                      // written, awaiting headers: response header timeout
	exchangeBody                        // reading the body: read idle timeout per Read
	exchangeDone                        // body closed or at EOF
)

// exchange is the per-request state of RoundTrip: one context whose cause
// says which timeout ended it, and one timer re-armed for each phase.
type exchange struct {
	t      *Transport
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu    sync.Mutex
	phase exchangePhase
	timer *time.Timer // created on first arm

	trace    httptrace.ClientTrace
	reqBody  exchangeReqBody
	respBody exchangeRespBody
}

// RoundTrip sends req through the capped, timed transport. It does not
// modify req. Errors are described on Transport.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	x := &exchange{t: t}
	ctx, cancel := context.WithCancelCause(req.Context())
	x.cancel = cancel
	x.trace.WroteRequest = x.wroteRequest
	x.ctx = httptrace.WithClientTrace(ctx, &x.trace)
	r := req.WithContext(x.ctx) // shallow copy; the caller's req is untouched
	if req.Body != nil && req.Body != http.NoBody {
		x.reqBody = exchangeReqBody{x: x, rc: req.Body}
		r.Body = &x.reqBody
		if getBody := req.GetBody; getBody != nil {
			r.GetBody = func() (io.ReadCloser, error) {
				rc, err := getBody()
				if err != nil || rc == nil || rc == http.NoBody {
					return rc, err
				}
				return &exchangeReqBody{x: x, rc: rc}, nil
			}
		}
	}

	resp, err := t.base.RoundTrip(r)
	if err != nil {
		if headerTooLarge(err) {
			err = transportError(sluice.ReasonResponseHeaderTooLarge, err)
		} else {
			err = x.mapErr(err)
		}
		x.finish()
		return nil, err
	}
	if cause := context.Cause(x.ctx); cause != nil {
		// One of our timers fired before the headers were returned: the
		// request was canceled, and what came back is a by-product of that
		// (a server that answers once it sees the connection go, say), or
		// arrived too late. The timeout is the outcome.
		if resp.Body != nil {
			_ = resp.Body.Close()
		}
		err := x.mapErr(cause)
		x.finish()
		return nil, err
	}
	resp.Request = req
	if resp.Body == nil || resp.Body == http.NoBody || resp.StatusCode == http.StatusSwitchingProtocols {
		// Nothing to read, or a connection the caller now owns (101).
		x.stop()
		return resp, nil
	}
	x.enter(exchangeBody)
	x.respBody = exchangeRespBody{x: x, rc: resp.Body}
	resp.Body = &x.respBody
	return resp, nil
}

// headerTooLarge reports whether err is net/http refusing response headers
// over MaxResponseHeaderBytes. net/http exports no error value for it, so its
// text is all there is: "server response headers exceeded" over HTTP/1,
// "response header list larger than advertised limit" over HTTP/2.
// TestHostileHugeResponseHeaders pins both.
func headerTooLarge(err error) bool {
	s := err.Error()
	return strings.Contains(s, "server response headers exceeded") ||
		strings.Contains(s, "response header list larger than advertised limit")
}

// wroteRequest starts the response header timeout.
func (x *exchange) wroteRequest(httptrace.WroteRequestInfo) {
	x.arm(exchangeHeader, x.t.cfg.ResponseHeaderTimeout)
}

// arm (re)starts the timer for phase p, unless the exchange has moved past p.
func (x *exchange) arm(p exchangePhase, d time.Duration) {
	x.mu.Lock()
	if p >= x.phase && x.phase < exchangeDone {
		x.phase = p
		if x.timer == nil {
			x.timer = time.AfterFunc(d, x.fire)
		} else {
			x.timer.Reset(d)
		}
	}
	x.mu.Unlock()
}

// disarm stops the timer if the exchange is still in phase p.
func (x *exchange) disarm(p exchangePhase) {
	x.mu.Lock()
	if x.phase == p && x.timer != nil {
		x.timer.Stop()
	}
	x.mu.Unlock()
}

// enter moves to phase p with the timer stopped.
func (x *exchange) enter(p exchangePhase) {
	x.mu.Lock()
	if p > x.phase {
		x.phase = p
	}
	if x.timer != nil {
		x.timer.Stop()
	}
	x.mu.Unlock()
}

// fire cancels the request with the cause of the phase whose timer expired.
func (x *exchange) fire() {
	x.mu.Lock()
	p := x.phase
	x.mu.Unlock()
	if p < exchangeDone {
		x.cancel(x.t.causes[p])
	}
}

// stop ends the timers but leaves the context alive, for a response whose
// connection outlives the exchange (101 Switching Protocols, no body).
func (x *exchange) stop() { x.enter(exchangeDone) }

// finish ends the exchange and releases its context.
func (x *exchange) finish() {
	x.enter(exchangeDone)
	x.cancel(nil)
}

// mapErr turns an error caused by one of our timers into the transport's
// *sluice.Error wrapping it. Errors from the dial are typed already; the
// caller's own cancellation is returned as is.
func (x *exchange) mapErr(err error) error {
	cause := context.Cause(x.ctx)
	if cause == nil {
		return err
	}
	for p, c := range x.t.causes {
		if c != nil && c == cause {
			return transportError(phaseReasons[p], err)
		}
	}
	return err
}

// exchangeReqBody times each write of the request body: the timer runs
// while the transport writes what Read returned, not while Read produces it.
type exchangeReqBody struct {
	x  *exchange
	rc io.ReadCloser
}

func (b *exchangeReqBody) Read(p []byte) (int, error) {
	b.x.disarm(exchangeWrite)
	n, err := b.rc.Read(p)
	b.x.arm(exchangeWrite, b.x.t.cfg.WriteTimeout)
	return n, err
}

func (b *exchangeReqBody) Close() error { return b.rc.Close() }

// exchangeRespBody times each Read of the response body, maps an expiry to
// read_idle_timeout and ends the exchange at EOF or Close.
type exchangeRespBody struct {
	x  *exchange
	rc io.ReadCloser
}

func (b *exchangeRespBody) Read(p []byte) (int, error) {
	b.x.arm(exchangeBody, b.x.t.cfg.ReadIdleTimeout)
	n, err := b.rc.Read(p)
	b.x.disarm(exchangeBody)
	if err != nil {
		if err == io.EOF && context.Cause(b.x.ctx) == nil {
			b.x.finish()
			return n, err
		}
		err = b.x.mapErr(err)
	}
	return n, err
}

func (b *exchangeRespBody) Close() error {
	err := b.rc.Close()
	b.x.finish()
	return err
}
