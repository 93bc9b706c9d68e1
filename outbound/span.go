package outbound

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/otelx"
)

// pipelineRoundTripper is the outermost link: the internal span
// otelx.SpanOutbound that wraps every attempt of one call, so that a rejection
// that made no HTTP attempt is still visible. The layers inside record their
// decisions on it through their Recorders. It ends when the call fails or when
// the response body is closed or read to EOF.
type pipelineRoundTripper struct {
	next   http.RoundTripper
	tracer trace.Tracer
	policy string
	// transport is the bottom of the chain, whose idle connections
	// CloseIdleConnections closes.
	transport http.RoundTripper
}

// CloseIdleConnections closes the transport's idle connections, so that
// http.Client.CloseIdleConnections on a NewClient reaches them: http.Client
// calls it only on its own Transport, and the layers in between hold no
// connections.
func (p *pipelineRoundTripper) CloseIdleConnections() {
	if c, ok := p.transport.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (p *pipelineRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, span := p.tracer.Start(req.Context(), otelx.SpanOutbound, trace.WithSpanKind(trace.SpanKindInternal))
	if !span.IsRecording() {
		// Nothing to record: spare the request copy and the body wrapper.
		return p.next.RoundTrip(req)
	}
	span.SetAttributes(otelx.AttrPolicyName.String(p.policy))
	resp, err := p.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		if e := sluice.ErrorOf(err); e != nil {
			otelx.MarkError(ctx, e)
		} else {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
		return nil, err
	}
	releaseOnClose(resp, spanEnder{span})
	return resp, nil
}

type spanEnder struct{ span trace.Span }

func (s spanEnder) release() { s.span.End() }

// resendKey carries the resend count of a retried attempt from the retry
// layer to resendRoundTripper.
type resendKey struct{}

// resendRoundTripper sits just inside otelhttp's attempt span and marks it
// with http.request.resend_count when the attempt is a resend.
type resendRoundTripper struct{ next http.RoundTripper }

func (r resendRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if n, ok := req.Context().Value(resendKey{}).(int); ok && n > 0 {
		if span := trace.SpanFromContext(req.Context()); span.IsRecording() {
			span.SetAttributes(otelx.AttrResendCount.Int(n))
		}
	}
	return r.next.RoundTrip(req)
}

func withResend(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, resendKey{}, n)
}

// Attributes of the backoff span besides the contract's: how long it waits
// (seconds) and the outcome that caused it.
const (
	waitAttr  = attribute.Key("resilience.retry.delay")
	causeAttr = attribute.Key("resilience.retry.cause")
)
