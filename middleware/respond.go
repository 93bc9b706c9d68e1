package middleware

import (
	"net/http"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/otelx"
	"github.com/sluice-go/sluice/status"
)

// Responder writes the response for a rejected request. It must write the
// status and body; the layer has already recorded the rejection.
type Responder func(w http.ResponseWriter, r *http.Request, err *sluice.Error)

// WriteRejection is the default Responder: it writes sluice.ProblemOf(err),
// the answer sluice gives every error, middleware and outbound alike —
// status 429 for the user rate limiter and 503 for the others, a
// Retry-After in whole seconds rounded up (at least 1 s on a 503, at most
// sluice.MaxRetryAfter), and the JSON body
//
//	{"error": {"layer": "...", "reason": "...", "message": "..."}}
//
// with a fixed message per reason.
func WriteRejection(w http.ResponseWriter, r *http.Request, err *sluice.Error) {
	sluice.ProblemOf(err).Write(w)
}

// rejecter is what the rejecting middlewares share: their recorder, their
// responder, and whether a 429 marks the span Error.
type rejecter struct {
	rec          *otelx.Recorder
	respond      Responder
	markLimitErr bool
	// status, when the layer is registered with a status.Registry, keeps
	// its rejections for the status page; nil otherwise.
	status *status.Reporter
}

// newRejecter applies the defaults of the fields every rejecting
// middleware's settings share: Name (sluice.DefaultName), Telemetry
// (otelx.New()) and Responder (WriteRejection).
func newRejecter(layer sluice.Layer, name string, tel *otelx.Telemetry, respond Responder) rejecter {
	if tel == nil {
		tel = otelx.New()
	}
	if respond == nil {
		respond = WriteRejection
	}
	return rejecter{rec: tel.Recorder(layer, policyName(name)), respond: respond}
}

func policyName(name string) string {
	if name == "" {
		return sluice.DefaultName
	}
	return name
}

// reject is the one path by which every layer rejects: it records the
// rejection on the span and metrics, marks the span Error for 5xx (and for 429
// when asked), and hands over to the responder.
func (j *rejecter) reject(w http.ResponseWriter, r *http.Request, e *sluice.Error) {
	ctx := r.Context()
	j.rec.Rejected(ctx, e)
	j.status.Rejected(e)
	if sluice.HTTPStatus(e) >= 500 || j.markLimitErr {
		otelx.MarkError(ctx, e)
	}
	j.respond(w, r, e)
}

// defaultRetryAfter is the Retry-After of the load shedder's and the
// admission queue's rejections unless their settings say otherwise.
const defaultRetryAfter = time.Second

// orDefault returns v, or d when v is zero.
func orDefault[T comparable](v, d T) T {
	var zero T
	if v == zero {
		return d
	}
	return v
}
