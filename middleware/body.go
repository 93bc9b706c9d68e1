package middleware

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/sluice-go/sluice"
)

// BufferBodySettings configures BufferBody and BufferBodyHandler. The zero
// value of each field is its documented default.
type BufferBodySettings struct {
	// MaxBytes is the largest body accepted. Default 1 MiB
	// (DefaultMaxBodyBytes).
	MaxBytes int64
	// Timeout is how long the whole body may take to arrive. Default 10s
	// (DefaultBodyTimeout).
	Timeout time.Duration
}

// BufferBody's defaults.
const (
	DefaultMaxBodyBytes = 1 << 20
	DefaultBodyTimeout  = 10 * time.Second
)

// BufferBody reads each request's body into memory before the rest of the
// chain runs: at most MaxBytes of it, within Timeout (or until the request's
// context deadline, if sooner). The rest of the chain sees the whole body in
// memory, so no later layer waits for a client: wire it before
// AdmissionQueue, and a slow or stalled upload never holds an admission slot
// (it holds only its load-shedder slot, for at most timeout).
//
//   - A body longer than MaxBytes (by Content-Length at once, or as it
//     arrives) is answered 413 with reason body_too_large.
//   - A body not whole within Timeout is answered 408 with reason
//     body_timeout.
//   - A body that cannot be read otherwise (the client hung up, broken
//     chunking) is answered 400 with reason bad_body.
//
// Each refusal closes the connection (Connection: close), so the server
// never waits for the rest of a refused body.
//
// Each answer is a sluice.Problem, with the JSON body of every sluice
// error, {"error": {"layer": "request", "reason": "...", "message": "..."}}
// (layer sluice.ProblemLayerRequest): these are the client's faults, not
// overload, so they are not resilience layers, are not recorded in
// resilience.requests and do not go through a Responder.
//
// The timeout is enforced with http.ResponseController's SetReadDeadline,
// which net/http's HTTP/1 and HTTP/2 servers support; with a ResponseWriter
// that does not (and does not Unwrap to one that does), only MaxBytes
// bounds the read. Requests without a body pass at once. Panics on a
// negative MaxBytes or Timeout. Safe for concurrent use.
func BufferBody(s BufferBodySettings) gin.HandlerFunc {
	maxBytes, timeout := checkBufferBody(s)
	return func(c *gin.Context) {
		r, ok := bufferBody(c.Writer, c.Request, maxBytes, timeout)
		if !ok {
			c.Abort()
			return
		}
		c.Request = r
		c.Next()
	}
}

// BufferBodyHandler is BufferBody for net/http.
func BufferBodyHandler(s BufferBodySettings) func(http.Handler) http.Handler {
	maxBytes, timeout := checkBufferBody(s)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r, ok := bufferBody(w, r, maxBytes, timeout); ok {
				next.ServeHTTP(w, r)
			}
		})
	}
}

func checkBufferBody(s BufferBodySettings) (int64, time.Duration) {
	if s.MaxBytes < 0 || s.Timeout < 0 {
		panic("middleware: BufferBody: negative MaxBytes or Timeout")
	}
	return orDefault(s.MaxBytes, DefaultMaxBodyBytes), orDefault(s.Timeout, DefaultBodyTimeout)
}

// bufferBody returns r with its body in memory (true), or answers it
// (false).
func bufferBody(w http.ResponseWriter, r *http.Request, maxBytes int64, timeout time.Duration) (*http.Request, bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return r, true
	}
	if r.ContentLength > maxBytes {
		rejectBody(w, http.StatusRequestEntityTooLarge, "body_too_large", maxBytes)
		return nil, false
	}
	dl := time.Now().Add(timeout)
	if ctxDL, ok := r.Context().Deadline(); ok && ctxDL.Before(dl) {
		dl = ctxDL
	}
	// The server clears the read deadline itself once the body is read to
	// its end (and sets its own for the next request on the connection).
	_ = http.NewResponseController(w).SetReadDeadline(dl)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		var ne net.Error
		switch {
		case errors.As(err, &mbe):
			rejectBody(w, http.StatusRequestEntityTooLarge, "body_too_large", maxBytes)
		case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
			rejectBody(w, http.StatusRequestTimeout, "body_timeout", maxBytes)
		default:
			rejectBody(w, http.StatusBadRequest, "bad_body", maxBytes)
		}
		return nil, false
	}
	r = r.WithContext(r.Context()) // a shallow copy: the caller's request is not changed
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return r, true
}

var bodyMessages = map[string]string{
	"body_too_large": "the request body is too large",
	"body_timeout":   "the request body did not arrive in time",
	"bad_body":       "the request body could not be read",
}

// rejectBody answers a body that BufferBody refuses, and closes the
// connection: the server must not wait for the rest of the body to keep it
// alive. The answer is small, but the client may not read it either: its
// write gets DeadlineGrace.
func rejectBody(w http.ResponseWriter, status int, reason string, maxBytes int64) {
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(DeadlineGrace))
	msg := bodyMessages[reason]
	if reason == "body_too_large" {
		msg = "the request body is limited to " + strconv.FormatInt(maxBytes, 10) + " bytes"
	}
	sluice.Problem{Status: status, Layer: sluice.ProblemLayerRequest, Reason: reason, Message: msg}.Write(w)
}
