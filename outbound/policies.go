package outbound

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/budget"
	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/ratelimiter"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/failsafe-go/failsafe-go/timeout"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/httpx"
)

// WithPolicies adds failsafe-go policies (a hedgepolicy, a fallback, a
// timeout, ...) to the chain: they wrap it just inside the pipeline span and
// outside retry, in the order given, the first outermost:
//
//	pipeline span → policies → retry → circuit breaker → ... → transport
//
// Every execution a policy starts (the first one, a hedge, a failsafe-go
// retry, a fallback's primary) is a whole call of the rest of the chain: it
// passes retry, breaker, the limits, the bulkhead and the call timeout, and
// is recorded under the same pipeline span.
//
// Each execution sends its own clone of the request, whose context is
// canceled when the policy cancels the execution (a losing hedge, a
// failsafe-go timeout) while it waits for its response. A request body is
// replayed with GetBody (http.NewRequest sets it for the usual bodies); a
// request with a body but no GetBody is sent once: the executions after the
// first one send nothing and share its outcome, so such a request is never
// hedged nor retried by these policies.
//
// Every response a policy does not return to the caller (a hedge's loser, a
// result a fallback replaced, one that arrives after the call is over) is
// drained (at most 4 KiB) and closed, so it holds no bulkhead permit and no
// socket. A failsafe-go retry policy here holds the responses it retries
// until the call ends; prefer WithRetry, which closes each one before its
// backoff.
//
// Errors of failsafe-go policies come back in sluice's vocabulary, as a
// *sluice.Error wrapping the original: circuitbreaker.ErrOpen as
// circuit_breaker/circuit_open, bulkhead.ErrFull as bulkhead/bulkhead_full,
// ratelimiter.ErrExceeded as local_rate_limiter/rate_limited,
// timeout.ErrExceeded as call_timeout/call_timeout, a
// retrypolicy.ExceededError as retry/retries_exhausted and budget.ErrExceeded
// as retry/retry_budget_exhausted. An error that already is a *sluice.Error
// (a rejection from the chain inside) and a context's error are returned as
// they are.
//
// A fallback that calls another vendor gets the request from PolicyRequest.
// Panics if a policy is nil or if WithPolicies is given twice.
func WithPolicies(policies ...failsafe.Policy[*http.Response]) Option {
	for _, p := range policies {
		if p == nil {
			panic("outbound: WithPolicies: nil policy")
		}
	}
	policies = append([]failsafe.Policy[*http.Response](nil), policies...)
	return func(c *config) {
		if len(policies) == 0 {
			return
		}
		c.setSlot(slotPolicies, policiesLayer{policies: policies}, "WithPolicies")
	}
}

// PolicyRequest returns a new request for a policy that makes its own call,
// typically a fallback to a second vendor: a clone of the request that exec
// belongs to, with exec's context and, when it has a body, a fresh one from
// GetBody. Change its URL, headers or body as the other vendor needs, and send
// it with that vendor's own client.
//
// It fails when exec does not belong to a call of a chain built with
// WithPolicies, or when the body cannot be replayed (no GetBody).
func PolicyRequest(exec failsafe.ExecutionInfo) (*http.Request, error) {
	c, _ := exec.Context().Value(policyCallKey{}).(*policyCall)
	if c == nil {
		return nil, errors.New("outbound: PolicyRequest: not an execution of WithPolicies")
	}
	r := c.req.Clone(exec.Context())
	if hasBody(c.req) {
		if c.req.GetBody == nil {
			return nil, errors.New("outbound: PolicyRequest: the request body cannot be replayed (no GetBody)")
		}
		b, err := c.req.GetBody()
		if err != nil {
			return nil, err
		}
		r.Body = b
	}
	return r, nil
}

type policiesLayer struct {
	policies []failsafe.Policy[*http.Response]
}

func (l policiesLayer) wrap(next http.RoundTripper, _ *env) http.RoundTripper {
	return &policiesRoundTripper{next: next, exec: failsafe.With(l.policies...)}
}

// policiesRoundTripper runs the rest of the chain under failsafe-go's
// executor. It does not use failsafehttp.NewRoundTripper, whose adapter reads
// a body of any size into memory to replay it, and leaves unclosed the
// responses an executor drops (a hedge's loser waits in a buffered channel
// that nobody reads), each holding a bulkhead permit and a socket.
type policiesRoundTripper struct {
	next http.RoundTripper
	exec failsafe.Executor[*http.Response]
}

func (p *policiesRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	c := &policyCall{req: req, next: p.next}
	if hasBody(req) && req.GetBody == nil {
		c.once = make(chan struct{})
	}
	ctx := context.WithValue(req.Context(), policyCallKey{}, c)
	resp, err := p.exec.WithContext(ctx).GetWithExecution(c.execute)
	if err != nil {
		resp = nil
	}
	c.finish(resp)
	if !c.started.Load() {
		// No execution sent the request (a policy rejected it first): its
		// body is ours to close.
		closeRequestBody(req)
	}
	if err != nil {
		return nil, policyError(err)
	}
	if resp == nil {
		// A fallback that returned neither a response nor an error.
		return nil, errors.New("outbound: WithPolicies: a policy returned no response and no error")
	}
	return resp, nil
}

func hasBody(req *http.Request) bool { return req.Body != nil && req.Body != http.NoBody }

type policyCallKey struct{}

// policyCall is one call through the policies: the executions it started
// and the responses they received.
type policyCall struct {
	req     *http.Request
	next    http.RoundTripper
	started atomic.Bool // the first execution has claimed req.Body

	// once, for a body that cannot be replayed, is closed when the first
	// execution has its outcome (onceResp, onceErr); nil otherwise.
	once     chan struct{}
	onceResp *http.Response
	onceErr  error

	mu    sync.Mutex
	over  bool             // under mu: the caller has its answer
	resps []*http.Response // under mu: every response an execution received
}

// execute is one execution: a whole call of the rest of the chain.
func (c *policyCall) execute(exec failsafe.Execution[*http.Response]) (*http.Response, error) {
	first := c.started.CompareAndSwap(false, true)
	if c.once != nil && !first {
		// The body went with the first execution: share its outcome.
		select {
		case <-c.once:
			return c.onceResp, c.onceErr
		case <-exec.Canceled():
			return nil, exec.Context().Err()
		}
	}
	resp, err := c.send(exec, first)
	if c.once != nil {
		c.onceResp, c.onceErr = resp, err
		close(c.once)
	}
	return resp, err
}

func (c *policyCall) send(exec failsafe.Execution[*http.Response], first bool) (*http.Response, error) {
	// The request's context is the caller's, canceled with the execution
	// only while the response is awaited: failsafe-go also cancels the
	// winning execution once it has its result, which must not cut the
	// body the caller is about to read.
	ctx, cancel := context.WithCancel(c.req.Context())
	stop := context.AfterFunc(exec.Context(), cancel)
	r := c.req.Clone(ctx)
	if !first && hasBody(c.req) {
		b, err := c.req.GetBody()
		if err != nil {
			stop()
			cancel()
			return nil, err
		}
		r.Body = b
	}
	resp, err := c.next.RoundTrip(r)
	stop()
	if err != nil {
		cancel()
		return nil, err
	}
	releaseOnClose(resp, cancelOnDone(cancel))
	if !c.keep(resp) {
		httpx.Drain(resp.Body)
		return nil, context.Canceled
	}
	return resp, nil
}

// keep records resp, unless the call is over: then nobody will read it and
// the caller closes it.
func (c *policyCall) keep(resp *http.Response) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.over {
		return false
	}
	c.resps = append(c.resps, resp)
	return true
}

// finish ends the call: every response received but winner is drained and
// closed, in the background so that a slow body does not delay the caller
// (each read is bounded by the transport's read-idle timeout).
func (c *policyCall) finish(winner *http.Response) {
	c.mu.Lock()
	c.over = true
	resps := c.resps
	c.resps = nil
	c.mu.Unlock()
	var losers []*http.Response
	for _, r := range resps {
		if r != winner {
			losers = append(losers, r)
		}
	}
	if len(losers) > 0 {
		go func() {
			for _, r := range losers {
				httpx.Drain(r.Body)
			}
		}()
	}
}

// cancelOnDone cancels an execution's request context once its response body
// is finished with (bodyhook.Hook).
type cancelOnDone context.CancelFunc

func (f cancelOnDone) BodyDone() { f() }

// policyError maps the errors of failsafe-go policies into sluice's
// vocabulary, wrapping the original. The first error of err's chain that is
// either a *sluice.Error or a failsafe-go error decides.
func policyError(err error) error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		var layer sluice.Layer
		var reason sluice.Reason
		switch x := e.(type) {
		case *sluice.Error:
			return err
		case retrypolicy.ExceededError, *retrypolicy.ExceededError:
			layer, reason = sluice.LayerRetry, sluice.ReasonRetriesExhausted
		default:
			switch x {
			case circuitbreaker.ErrOpen:
				layer, reason = sluice.LayerCircuitBreaker, sluice.ReasonCircuitOpen
			case bulkhead.ErrFull:
				layer, reason = sluice.LayerBulkhead, sluice.ReasonBulkheadFull
			case ratelimiter.ErrExceeded:
				layer, reason = sluice.LayerLocalRateLimiter, sluice.ReasonRateLimited
			case timeout.ErrExceeded:
				layer, reason = sluice.LayerCallTimeout, sluice.ReasonCallTimeout
			case retrypolicy.ErrExceeded:
				layer, reason = sluice.LayerRetry, sluice.ReasonRetriesExhausted
			case budget.ErrExceeded:
				layer, reason = sluice.LayerRetry, sluice.ReasonRetryBudgetExhausted
			default:
				continue
			}
		}
		return sluice.NewError(layer, reason, err)
	}
	return err
}
