package sluice

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/sluice-go/sluice/internal/httpx"
)

// MaxRetryAfter caps the Retry-After that a Problem carries: a vendor may ask
// for years, or send garbage that parses as years; a server's own clients
// are told to come back within an hour at the latest.
const MaxRetryAfter = time.Hour

// StatusClientClosedRequest (499, nginx's convention) is the status recorded
// for a request whose client went away before it was answered. Nobody reads
// it; it keeps such requests apart from server errors in logs and metrics.
const StatusClientClosedRequest = 499

// The layers of a Problem that are not resilience layers.
const (
	// ProblemLayerVendor: the vendor answered an error, or could not be
	// reached.
	ProblemLayerVendor = "vendor"
	// ProblemLayerRequest: the request itself (its deadline ran out, or its
	// client went away).
	ProblemLayerRequest = "request"
)

// StatusError is a vendor's error status as an error: what the retry layer
// wraps when the last attempt got a status worth retrying, and what
// VendorError returns for a response that the caller treats as a failure.
type StatusError struct {
	// StatusCode and Status are the response's.
	StatusCode int
	Status     string
	// RetryAfter is the wait the vendor asked for (Retry-After-Ms or
	// Retry-After), capped at MaxRetryAfter; zero if it asked for none.
	RetryAfter time.Duration
}

// Error formats as "vendor answered <Status>".
func (e *StatusError) Error() string { return "vendor answered " + e.Status }

// VendorError returns resp's status as a *StatusError, with the Retry-After
// the vendor sent, for a caller that treats a response as a failure:
//
//	if resp.StatusCode >= 400 {
//		sluice.WriteError(w, sluice.VendorError(resp))
//		return
//	}
//
// It reads only the status and headers; closing the body stays the caller's
// job.
func VendorError(resp *http.Response) *StatusError {
	e := &StatusError{StatusCode: resp.StatusCode, Status: resp.Status}
	if e.Status == "" {
		e.Status = strconv.Itoa(resp.StatusCode) + " " + http.StatusText(resp.StatusCode)
	}
	if d, ok := httpx.RetryAfter(resp.Header, time.Now()); ok {
		e.RetryAfter = min(d, MaxRetryAfter)
	}
	return e
}

// Problem is how a server answers an error: a status, a Retry-After, and the
// one JSON error body that every sluice rejection uses,
//
//	{"error": {"layer": "...", "reason": "...", "message": "..."}}
//
// Its message is a fixed text chosen by layer and reason, never the text of
// the error it came from, so no vendor URL, address or internal message
// reaches a client.
type Problem struct {
	// Status is the HTTP status to send.
	Status int
	// Layer is a resilience layer's name, or ProblemLayerVendor or
	// ProblemLayerRequest.
	Layer string
	// Reason is the error.type of the layer's rejection, or for the other
	// layers: vendor_rate_limited, vendor_error, unreachable,
	// deadline_exceeded, client_closed_request.
	Reason string
	// Message is a short human-readable text, safe to show anyone.
	Message string
	// RetryAfter is the wait to announce, between zero (none) and
	// MaxRetryAfter. Every 503 announces one: at least a second.
	RetryAfter time.Duration
}

// The fixed messages, by reason.
var problemMessages = map[Reason]string{
	ReasonOverloaded:             "the server is overloaded; retry later",
	ReasonRateLimited:            "rate limit exceeded; retry later",
	ReasonQueueFull:              "too many requests are waiting; retry later",
	ReasonQueueTimeout:           "timed out waiting for capacity; retry later",
	ReasonRetriesExhausted:       "the vendor call failed after retries",
	ReasonRetryBudgetExhausted:   "too many vendor calls are being retried; retry later",
	ReasonDeadlineExceeded:       "the request's time budget ran out",
	ReasonCircuitOpen:            "the vendor is failing; calls are paused; retry later",
	ReasonVendorCooldown:         "the vendor asked every caller to wait; retry later",
	ReasonBulkheadFull:           "too many vendor calls in flight; retry later",
	ReasonCallTimeout:            "the vendor took too long to answer",
	ReasonPoolTimeout:            "timed out waiting for a connection to the vendor",
	ReasonConnectTimeout:         "timed out connecting to the vendor",
	ReasonTLSHandshakeTimeout:    "timed out in the TLS handshake with the vendor",
	ReasonResponseHeaderTimeout:  "the vendor took too long to start answering",
	ReasonWriteTimeout:           "timed out sending the request to the vendor",
	ReasonReadIdleTimeout:        "the vendor stopped sending its answer",
	ReasonResponseHeaderTooLarge: "the vendor's response headers were too large",
}

// ProblemOf maps any error to the answer a server sends for it:
//
//   - a vendor's status that outlived the retries (a *StatusError anywhere
//     in the chain): its rate limits (429, and 503 with Retry-After) become
//     503 vendor/vendor_rate_limited with the longer of the vendor's and the
//     layer's Retry-After; any other status 502 vendor/vendor_error;
//   - a *Error: the status of HTTPStatus, its layer and reason, its
//     RetryAfter;
//   - context.DeadlineExceeded: 504 request/deadline_exceeded;
//   - context.Canceled: 499 request/client_closed_request;
//   - anything else (a refused or reset connection, a DNS failure): 502
//     vendor/unreachable.
//
// A nil error yields the zero Problem. RetryAfter is capped at MaxRetryAfter
// and a 503 always carries one of at least a second.
func ProblemOf(err error) Problem {
	if err == nil {
		return Problem{}
	}
	var p Problem
	e := ErrorOf(err)
	var se *StatusError
	switch {
	case errors.As(err, &se):
		ra := se.RetryAfter
		if e != nil {
			ra = max(ra, e.RetryAfter)
		}
		if se.StatusCode == http.StatusTooManyRequests || se.StatusCode == http.StatusServiceUnavailable && ra > 0 {
			p = Problem{Status: http.StatusServiceUnavailable, Layer: ProblemLayerVendor, Reason: "vendor_rate_limited",
				Message: "the vendor is rate limiting; retry later", RetryAfter: ra}
		} else {
			p = Problem{Status: http.StatusBadGateway, Layer: ProblemLayerVendor, Reason: "vendor_error",
				Message: "the vendor answered " + strconv.Itoa(se.StatusCode)}
		}
	case e != nil:
		msg, ok := problemMessages[e.Reason]
		if !ok {
			msg = "rejected by " + string(e.Layer)
		}
		p = Problem{Status: statusOf(e), Layer: string(e.Layer), Reason: string(e.Reason), Message: msg,
			RetryAfter: e.RetryAfter}
	case errors.Is(err, context.DeadlineExceeded):
		p = Problem{Status: http.StatusGatewayTimeout, Layer: ProblemLayerRequest, Reason: string(ReasonDeadlineExceeded),
			Message: problemMessages[ReasonDeadlineExceeded]}
	case errors.Is(err, context.Canceled):
		p = Problem{Status: StatusClientClosedRequest, Layer: ProblemLayerRequest, Reason: "client_closed_request",
			Message: "the client closed the request"}
	default:
		p = Problem{Status: http.StatusBadGateway, Layer: ProblemLayerVendor, Reason: "unreachable",
			Message: "the vendor could not be reached"}
	}
	p.RetryAfter = min(max(p.RetryAfter, 0), MaxRetryAfter)
	if p.Status == http.StatusServiceUnavailable && p.RetryAfter < time.Second {
		p.RetryAfter = time.Second
	}
	return p
}

// WriteError answers err on w: ProblemOf(err).Write(w).
func WriteError(w http.ResponseWriter, err error) { ProblemOf(err).Write(w) }

// Write sends p: its Retry-After (whole seconds, rounded up) when it has
// one, Content-Type application/json, Cache-Control no-store, the status and
// the JSON body. Call it before anything else is written to w.
func (p Problem) Write(w http.ResponseWriter) {
	h := w.Header()
	if p.RetryAfter > 0 {
		h.Set("Retry-After", RetryAfterSeconds(p.RetryAfter))
	}
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	b, _ := p.MarshalJSON()
	_, _ = w.Write(append(b, '\n'))
}

// MarshalJSON returns p's JSON body:
// {"error":{"layer":"...","reason":"...","message":"..."}}.
func (p Problem) MarshalJSON() ([]byte, error) {
	type detail struct {
		Layer   string `json:"layer"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	}
	return json.Marshal(struct {
		Error detail `json:"error"`
	}{detail{p.Layer, p.Reason, p.Message}})
}
