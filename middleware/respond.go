package middleware

import (
	"encoding/json"
	"net/http"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/otelx"
)

// Responder writes the response for a rejected request. It must write the
// status and body; the layer has already recorded the rejection.
type Responder func(w http.ResponseWriter, r *http.Request, err *sluice.Error)

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Layer   sluice.Layer  `json:"layer"`
	Reason  sluice.Reason `json:"reason"`
	Message string        `json:"message"`
}

var messages = map[sluice.Reason]string{
	sluice.ReasonOverloaded:   "the server is overloaded; retry later",
	sluice.ReasonRateLimited:  "rate limit exceeded; retry later",
	sluice.ReasonQueueFull:    "too many requests are waiting; retry later",
	sluice.ReasonQueueTimeout: "timed out waiting for capacity; retry later",
}

// WriteRejection is the default Responder: status sluice.HTTPStatus(err)
// (429 for the user rate limiter, 503 for the others), Retry-After in whole
// seconds rounded up (when err.RetryAfter > 0) and the JSON body
//
//	{"error": {"layer": "...", "reason": "...", "message": "..."}}
func WriteRejection(w http.ResponseWriter, _ *http.Request, err *sluice.Error) {
	h := w.Header()
	if err.RetryAfter > 0 {
		h.Set("Retry-After", sluice.RetryAfterSeconds(err.RetryAfter))
	}
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	msg, ok := messages[err.Reason]
	if !ok {
		msg = err.Error()
	}
	body, _ := json.Marshal(errorBody{errorDetail{err.Layer, err.Reason, msg}})
	w.WriteHeader(sluice.HTTPStatus(err))
	_, _ = w.Write(append(body, '\n'))
}

// reject is the one path by which every layer rejects: it records the
// rejection on the span and metrics, marks the span Error for 5xx (and for 429
// when asked), and hands over to the responder.
func (c *config) reject(w http.ResponseWriter, r *http.Request, rec *otelx.Recorder, e *sluice.Error) {
	ctx := r.Context()
	rec.Rejected(ctx, e)
	if sluice.HTTPStatus(e) >= 500 || c.markLimitErr {
		otelx.MarkError(ctx, e)
	}
	c.respond(w, r, e)
}
