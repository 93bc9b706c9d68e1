package outbound

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/otelx"
)

// pipelineRoundTripper is the outermost link: the internal span
// otelx.SpanOutbound that wraps every attempt of one call, so that a rejection
// that made no HTTP attempt is still visible. It ends when the call fails or
// when the response body is closed or read to its end (EOF or an error).
//
// Its attributes state the call's final verdict only, set here from the error
// the chain returns. The layers inside report what they decided about a
// single attempt as otelx.EventRejected events (Recorder.RejectedAttempt), so
// a call_timeout that a retry made good leaves an event, not an error.type.
// The retry layer adds resilience.retry.attempts and the breaker
// resilience.circuit_breaker.state, which are true of the call as a whole.
type pipelineRoundTripper struct {
	next   http.RoundTripper
	tracer trace.Tracer
	policy attribute.KeyValue
}

func (p *pipelineRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, span := p.tracer.Start(req.Context(), otelx.SpanOutbound, trace.WithSpanKind(trace.SpanKindInternal))
	if !span.IsRecording() {
		// Nothing to record: spare the request copy and the body wrapper.
		return p.next.RoundTrip(req)
	}
	span.SetAttributes(p.policy)
	resp, err := p.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		setFailure(span, req.Context(), err)
		span.End()
		return nil, err
	}
	releaseOnClose(resp, spanEnder{span})
	return resp, nil
}

// Outcome attributes of a call its caller gave up on.
var canceledAttrs = []attribute.KeyValue{
	otelx.AttrOutcome.String(string(otelx.OutcomeCanceled)),
	otelx.AttrErrorType.String(string(otelx.OutcomeCanceled)),
}

// setFailure records the error a call ended with on its pipeline span: a
// sluice error's layer and reason, a caller's cancellation as outcome
// canceled, anything else as its Go type (the semconv fallback for
// error.type).
func setFailure(span trace.Span, parent context.Context, err error) {
	switch e := sluice.ErrorOf(err); {
	case e != nil:
		otelx.SetVerdict(span, e)
		return
	case parent.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		span.SetAttributes(canceledAttrs...)
	default:
		span.SetAttributes(otelx.AttrErrorType.String(fmt.Sprintf("%T", err)))
	}
	span.SetStatus(codes.Error, err.Error())
}

type spanEnder struct{ span trace.Span }

// BodyDone ends the span once the response body is finished with
// (bodyhook.Hook).
func (s spanEnder) BodyDone() { s.span.End() }

// resendKey carries the resend count of a retried attempt from the retry
// layer to attemptRoundTripper.
type resendKey struct{}

// attemptRoundTripper sits just inside otelhttp's attempt span. It marks the
// span with http.request.resend_count when the attempt is a resend, and
// counts the transport's own rejections (a *sluice.Error of layer transport)
// under that layer, with an otelx.EventRejected event on the attempt span:
// whatever transport WithTransport gives, its verdicts are counted once, here.
// It also tells the global limiter that the attempt reached the transport
// (markTransport).
type attemptRoundTripper struct {
	next http.RoundTripper
	rec  *otelx.Recorder
}

func (r attemptRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	markTransport(ctx)
	if n, ok := ctx.Value(resendKey{}).(int); ok && n > 0 {
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			span.SetAttributes(otelx.AttrResendCount.Int(n))
		}
	}
	resp, err := r.next.RoundTrip(req)
	if err != nil {
		if e := sluice.ErrorOf(err); e != nil && e.Layer == sluice.LayerTransport {
			r.rec.RejectedAttempt(ctx, e)
		}
	}
	return resp, err
}

func withResend(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, resendKey{}, n)
}

// retryCause is the otelx.AttrRetryCause of a wait that follows cause: the
// vendor's status code, a sluice error's reason, or the error's Go type. Never
// the error's text, which may hold a URL.
func retryCause(cause error) string {
	var se *sluice.StatusError
	if errors.As(cause, &se) {
		return strconv.Itoa(se.StatusCode)
	}
	if e := sluice.ErrorOf(cause); e != nil {
		return string(e.Reason)
	}
	return fmt.Sprintf("%T", cause)
}
