package outbound

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/failsafe-go/failsafe-go/budget"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/redistest"
	"github.com/sluice-go/sluice/otelx"
)

const policy = "vendor"

// errTransport is a transport that fails every attempt with one of the
// transport layer's typed errors, as outbound.NewTransport does for its
// timeouts: it drives the chain's attribution of transport reasons end to end
// without depending on a real socket timing out.
type errTransport struct{ reason sluice.Reason }

func (e errTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	closeRequestBody(req)
	return nil, sluice.NewError(sluice.LayerTransport, e.reason, errors.New("stub transport"))
}

// verdictVendor: /stream sends headers and holds its body until the test
// ends; /bad answers 500; /hang waits for the attempt to be canceled;
// /busy503 answers 503 with Retry-After-Ms: 1; /busy60 answers 503 with
// Retry-After: 60; anything else "ok".
func verdictVendor(t *testing.T) string {
	done := make(chan struct{})
	srv := vendor(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stream":
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			select {
			case <-done:
			case <-r.Context().Done():
			}
		case "/bad":
			w.WriteHeader(http.StatusInternalServerError)
		case "/hang":
			<-r.Context().Done()
		case "/busy503":
			w.Header().Set("Retry-After-Ms", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/busy60":
			w.Header().Set("Retry-After", "60")
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			_, _ = io.WriteString(w, "ok")
		}
	})
	t.Cleanup(func() { close(done) }) // runs before srv.Close: streams end first
	return srv.URL
}

// call makes one call and closes its body.
func call(ctx context.Context, c *Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// mustGet makes a call that must succeed.
func mustGet(t *testing.T, c *Client, url string) {
	t.Helper()
	if err := call(context.Background(), c, url); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// holdStream opens /stream and keeps its body (and whatever permit it holds)
// until the test ends.
func holdOpen(t *testing.T, c *Client, url string) {
	t.Helper()
	resp, err := c.Get(url + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
}

// verdictCase is one (layer, reason) the chain can end a call with.
type verdictCase struct {
	layer  sluice.Layer
	reason sluice.Reason
	// skip, when set, is why the case cannot run yet.
	skip string
	// setup builds the chain on tm, brings its layer to the point of
	// rejecting, and returns the client and the URL of the call to reject.
	setup func(t *testing.T, tm *telemetry) (*Client, string)
	// attempts is the resilience.retry.attempts expected on the pipeline
	// span, 0 for absent (no retry layer).
	attempts int64
	// state is the resilience.circuit_breaker.state expected, "" for absent.
	state string
	// retryAfter checks resilience.retry_after (seconds); nil means it must
	// be absent.
	retryAfter func(float64) bool
	// queued says the call waited in a queue: resilience.queue.wait_time
	// must be there (positive), and absent otherwise.
	queued bool
}

func chain(t *testing.T, tm *telemetry, opts ...Option) *Client {
	c := NewClient(append([]Option{WithName(policy), WithTelemetry(tm.tel), WithTransport(transport(t))}, opts...)...)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func exactly(want float64) func(float64) bool { return func(v float64) bool { return v == want } }

func verdictCases() []verdictCase {
	retry := func(s RetrySettings) Option { s.BaseDelay = time.Millisecond; return WithRetry(s) }
	cases := []verdictCase{
		{layer: sluice.LayerRetry, reason: sluice.ReasonRetriesExhausted, attempts: 2,
			retryAfter: exactly(time.Millisecond.Seconds()),
			setup: func(t *testing.T, tm *telemetry) (*Client, string) {
				return chain(t, tm, retry(RetrySettings{MaxAttempts: 2})), verdictVendor(t) + "/busy503"
			}},
		{layer: sluice.LayerRetry, reason: sluice.ReasonRetryBudgetExhausted, attempts: 1,
			retryAfter: exactly(time.Millisecond.Seconds()),
			setup: func(t *testing.T, tm *telemetry) (*Client, string) {
				b := budget.NewBuilder().WithMaxRate(0.01).WithMinConcurrency(1).Build()
				// Another call's retry is pending: the budget is spent.
				bp := b.(budgetPermits)
				if !bp.TryAcquirePermit() {
					t.Fatal("the budget refused the first retry")
				}
				t.Cleanup(bp.ReleasePermit)
				return chain(t, tm, retry(RetrySettings{Budget: b})), verdictVendor(t) + "/busy503"
			}},
		{layer: sluice.LayerRetry, reason: sluice.ReasonDeadlineExceeded, attempts: 1, retryAfter: exactly(60),
			setup: func(t *testing.T, tm *telemetry) (*Client, string) {
				// The call's deadline (callDeadline) is shorter than the
				// vendor's Retry-After: 60.
				return chain(t, tm, retry(RetrySettings{MaxRetryAfter: 2 * time.Minute})), verdictVendor(t) + "/busy60"
			}},
		{layer: sluice.LayerCircuitBreaker, reason: sluice.ReasonCircuitOpen, state: otelx.CircuitOpen,
			retryAfter: func(v float64) bool { return v > 0 && v <= time.Hour.Seconds() },
			setup: func(t *testing.T, tm *telemetry) (*Client, string) {
				url := verdictVendor(t)
				c := chain(t, tm, WithCircuitBreaker(BreakerSettings{FailureRatio: 1, MinThroughput: 1, OpenDelay: time.Hour}))
				mustGet(t, c, url+"/bad") // one failure opens it
				return c, url + "/call"
			}},
		{layer: sluice.LayerLocalRateLimiter, reason: sluice.ReasonRateLimited,
			setup: func(t *testing.T, tm *telemetry) (*Client, string) {
				url := verdictVendor(t)
				c := chain(t, tm, WithLocalRateLimit(LocalRateLimitSettings{Requests: 1, Period: time.Hour, Bursty: true}))
				mustGet(t, c, url+"/one")
				return c, url + "/call"
			}},
		{layer: sluice.LayerLocalRateLimiter, reason: sluice.ReasonQueueTimeout,
			setup: func(t *testing.T, tm *telemetry) (*Client, string) {
				url := verdictVendor(t)
				c := chain(t, tm, WithLocalRateLimit(LocalRateLimitSettings{Requests: 1, Period: time.Hour, MaxWait: 20 * time.Millisecond}))
				mustGet(t, c, url+"/one")
				return c, url + "/call"
			}},
		{layer: sluice.LayerBulkhead, reason: sluice.ReasonBulkheadFull, attempts: 1,
			setup: func(t *testing.T, tm *telemetry) (*Client, string) {
				url := verdictVendor(t)
				c := chain(t, tm, retry(RetrySettings{}), WithBulkhead(BulkheadSettings{MaxConcurrent: 1}))
				holdOpen(t, c, url)
				return c, url + "/call"
			}},
		{layer: sluice.LayerBulkhead, reason: sluice.ReasonQueueTimeout, queued: true,
			setup: func(t *testing.T, tm *telemetry) (*Client, string) {
				url := verdictVendor(t)
				c := chain(t, tm, WithBulkhead(BulkheadSettings{MaxConcurrent: 1, MaxWait: 20 * time.Millisecond}))
				holdOpen(t, c, url)
				return c, url + "/call"
			}},
		{layer: sluice.LayerCallTimeout, reason: sluice.ReasonCallTimeout,
			setup: func(t *testing.T, tm *telemetry) (*Client, string) {
				return chain(t, tm, WithAttemptTimeout(AttemptTimeoutSettings{Timeout: 50 * time.Millisecond})), verdictVendor(t) + "/hang"
			}},
	}
	// The global rate limiter on a real Redis: one request per hour, so the
	// second call finds the quota spent (or, after a vendor 503 with
	// Retry-After: 60, the fleet cooling down).
	global := func(t *testing.T, tm *telemetry, maxWait time.Duration) (*Client, string) {
		srv := redistest.New(t)
		return chain(t, tm, WithGlobalRateLimit(GlobalRateLimitSettings{Client: srv.Client(), Name: srv.Prefix,
			Requests: 1, Period: time.Hour, MaxWait: maxWait})), verdictVendor(t)
	}
	cases = append(cases,
		verdictCase{layer: sluice.LayerGlobalRateLimiter, reason: sluice.ReasonRateLimited,
			retryAfter: func(v float64) bool { return v > 3500 && v <= 3600 },
			setup: func(t *testing.T, tm *telemetry) (*Client, string) {
				c, url := global(t, tm, 0)
				mustGet(t, c, url+"/one")
				return c, url + "/call"
			}},
		verdictCase{layer: sluice.LayerGlobalRateLimiter, reason: sluice.ReasonQueueTimeout,
			retryAfter: func(v float64) bool { return v > 3500 && v <= 3600 },
			setup: func(t *testing.T, tm *telemetry) (*Client, string) {
				c, url := global(t, tm, 20*time.Millisecond)
				mustGet(t, c, url+"/one")
				return c, url + "/call"
			}},
		verdictCase{layer: sluice.LayerGlobalRateLimiter, reason: sluice.ReasonVendorCooldown,
			retryAfter: func(v float64) bool { return v > 30 && v <= 60 },
			setup: func(t *testing.T, tm *telemetry) (*Client, string) {
				srv := redistest.New(t)
				url := verdictVendor(t)
				c := chain(t, tm, WithGlobalRateLimit(GlobalRateLimitSettings{Client: srv.Client(), Name: srv.Prefix,
					Requests: 1000, Period: time.Second, Burst: 10}))
				mustGet(t, c, url+"/busy60") // 503 + Retry-After: 60
				return c, url + "/call"
			}},
	)
	for _, r := range sluice.LayerTransport.Reasons() {
		cases = append(cases, verdictCase{layer: sluice.LayerTransport, reason: r,
			setup: func(t *testing.T, tm *telemetry) (*Client, string) {
				return NewClient(WithName(policy), WithTelemetry(tm.tel), WithTransport(errTransport{r})), "http://vendor.invalid/call"
			}})
	}
	return cases
}

// callDeadline bounds every call of the verdict tests: long enough never to
// fire on a loaded machine, shorter than /busy60's Retry-After.
const callDeadline = 30 * time.Second

// TestVerdictCoversEveryOutboundReason: the table of TestVerdict has one
// case per (layer, reason) of every outbound layer, so a reason added to the
// vocabulary without a telemetry test fails here.
func TestVerdictCoversEveryOutboundReason(t *testing.T) {
	have := map[string]int{}
	for _, c := range verdictCases() {
		have[string(c.layer)+"/"+string(c.reason)]++
	}
	want := map[string]bool{}
	for _, l := range sluice.Layers() {
		if l.Inbound() {
			continue
		}
		for _, r := range l.Reasons() {
			k := string(l) + "/" + string(r)
			want[k] = true
			if have[k] != 1 {
				t.Errorf("%s has %d cases in verdictCases; want 1", k, have[k])
			}
		}
	}
	for k := range have {
		if !want[k] {
			t.Errorf("verdictCases has %s, which is not an outbound (layer, reason)", k)
		}
	}
}

// TestVerdict: for every outbound (layer, reason), a call the chain rejects
// has a pipeline span whose sluice attributes are exactly the verdict (and
// the attempt count and breaker state where they apply), with status Error,
// and adds one to resilience.requests with exactly the attributes layer,
// policy, outcome and error.type.
func TestVerdict(t *testing.T) {
	for _, tc := range verdictCases() {
		t.Run(string(tc.layer)+"/"+string(tc.reason), func(t *testing.T) {
			if tc.skip != "" {
				t.Skip(tc.skip)
			}
			tm := newTelemetry(t)
			client, url := tc.setup(t, tm)
			ctx, cancel := context.WithTimeout(context.Background(), callDeadline)
			defer cancel()
			ctx, caller := tm.tp.Tracer("test").Start(ctx, "caller")
			err := call(ctx, client, url)
			caller.End()
			wantReason(t, err, tc.layer, tc.reason)

			span := pipelineSpan(t, tm, caller.SpanContext())
			got := sluiceAttrs(span.Attributes())
			want := map[attribute.Key]string{
				otelx.AttrLayer:      string(tc.layer),
				otelx.AttrOutcome:    string(otelx.OutcomeOf(tc.reason)),
				otelx.AttrErrorType:  string(tc.reason),
				otelx.AttrPolicyName: policy,
			}
			if tc.attempts > 0 {
				want[otelx.AttrRetryAttempts] = attribute.Int64Value(tc.attempts).Emit()
			}
			if tc.state != "" {
				want[otelx.AttrCircuitState] = tc.state
			}
			ra, hasRA := got[otelx.AttrRetryAfter]
			delete(got, otelx.AttrRetryAfter)
			if _, ok := got[otelx.AttrQueueWait]; ok != tc.queued {
				t.Errorf("resilience.queue.wait_time present: %v; want %v", ok, tc.queued)
			} else if ok && attrValue(span.Attributes(), otelx.AttrQueueWait).AsFloat64() <= 0 {
				t.Errorf("resilience.queue.wait_time = %s; want positive", got[otelx.AttrQueueWait])
			}
			delete(got, otelx.AttrQueueWait)
			if !equalAttrs(got, want) {
				t.Errorf("pipeline span attributes\n got %v\nwant %v", got, want)
			}
			switch {
			case tc.retryAfter == nil && hasRA:
				t.Errorf("resilience.retry_after = %s; want none", ra)
			case tc.retryAfter != nil && !hasRA:
				t.Errorf("resilience.retry_after missing")
			case tc.retryAfter != nil:
				if v := attrValue(span.Attributes(), otelx.AttrRetryAfter).AsFloat64(); !tc.retryAfter(v) {
					t.Errorf("resilience.retry_after = %v", v)
				}
			}
			if s := span.Status(); s.Code != codes.Error || s.Description != string(tc.reason) {
				t.Errorf("status %v; want Error %q", s, tc.reason)
			}

			wantSet := attribute.NewSet(otelx.AttrLayer.String(string(tc.layer)), otelx.AttrPolicyName.String(policy),
				otelx.AttrOutcome.String(string(otelx.OutcomeOf(tc.reason))), otelx.AttrErrorType.String(string(tc.reason)))
			if n := tm.requestsWith(t, wantSet); n != 1 {
				t.Errorf("%s{%s} = %d; want 1", otelx.MetricRequests, wantSet.Encoded(attribute.DefaultEncoder()), n)
			}
			tm.checkMetricAttributes(t)
		})
	}
}

// pipelineSpan returns the ended pipeline span whose parent is parent.
func pipelineSpan(t *testing.T, tm *telemetry, parent trace.SpanContext) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range tm.spans.Ended() {
		if s.Name() == otelx.SpanOutbound && s.Parent().SpanID() == parent.SpanID() {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d ended pipeline spans under the caller; want 1", len(found))
	}
	return found[0]
}

// sluiceAttrs keeps the attributes of the design contract: resilience.* and
// error.type, as strings.
func sluiceAttrs(kvs []attribute.KeyValue) map[attribute.Key]string {
	m := map[attribute.Key]string{}
	for _, kv := range kvs {
		if strings.HasPrefix(string(kv.Key), "resilience.") || kv.Key == otelx.AttrErrorType {
			m[kv.Key] = kv.Value.Emit()
		}
	}
	return m
}

func equalAttrs(a, b map[attribute.Key]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func attrValue(kvs []attribute.KeyValue, k attribute.Key) attribute.Value {
	for _, kv := range kvs {
		if kv.Key == k {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// collect reads the metrics of sluice's own scope.
func (tm *telemetry) collect(t *testing.T) []metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tm.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var out []metricdata.Metrics
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name == otelx.ScopeName {
			out = append(out, sm.Metrics...)
		}
	}
	return out
}

// requestsWith is resilience.requests for exactly the attribute set want.
func (tm *telemetry) requestsWith(t *testing.T, want attribute.Set) int64 {
	t.Helper()
	var n int64
	for _, m := range tm.collect(t) {
		if m.Name != otelx.MetricRequests {
			continue
		}
		for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
			if dp.Attributes.Equals(&want) {
				n += dp.Value
			}
		}
	}
	return n
}

// checkMetricAttributes: sluice's metrics carry only the low-cardinality
// attributes of the contract: never a path, a user or a message.
func (tm *telemetry) checkMetricAttributes(t *testing.T) {
	t.Helper()
	allowed := map[attribute.Key]bool{otelx.AttrLayer: true, otelx.AttrPolicyName: true, otelx.AttrOutcome: true,
		otelx.AttrErrorType: true, otelx.AttrCircuitState: true}
	check := func(name string, set attribute.Set) {
		for _, kv := range set.ToSlice() {
			if !allowed[kv.Key] {
				t.Errorf("metric %s has attribute %s=%s", name, kv.Key, kv.Value.Emit())
			}
		}
	}
	for _, m := range tm.collect(t) {
		switch d := m.Data.(type) {
		case metricdata.Sum[int64]:
			for _, dp := range d.DataPoints {
				check(m.Name, dp.Attributes)
			}
		case metricdata.Gauge[int64]:
			for _, dp := range d.DataPoints {
				check(m.Name, dp.Attributes)
			}
		case metricdata.Histogram[float64]:
			for _, dp := range d.DataPoints {
				check(m.Name, dp.Attributes)
			}
		default:
			t.Errorf("metric %s of unexpected type %T", m.Name, m.Data)
		}
	}
}

// events returns the names and error.types of a span's events, sorted.
func rejectionEvents(s sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, ev := range s.Events() {
		if ev.Name == otelx.EventRejected {
			out = append(out, attrValue(ev.Attributes, otelx.AttrLayer).Emit()+"/"+attrValue(ev.Attributes, otelx.AttrErrorType).Emit())
		}
	}
	sort.Strings(out)
	return out
}

// TestRetriedAwayCallTimeoutLeavesNoErrorType is the regression test for "a
// retried-away call_timeout still leaves its error.type on the pipeline
// span": when a later attempt succeeds, the span carries no verdict, only the
// attempt count and the earlier rejection as an event.
func TestRetriedAwayCallTimeoutLeavesNoErrorType(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var seen counter
		tm := newTelemetry(t)
		// Fake time: the first attempt times out and the second, which
		// answers at once, cannot.
		client := NewClient(WithName(policy), WithTelemetry(tm.tel),
			WithTransport(handlerTransport{http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if seen.add("") == 1 {
					<-r.Context().Done() // the first attempt hangs until its timeout
					return
				}
				_, _ = io.WriteString(w, "ok")
			})}),
			WithRetry(RetrySettings{MaxAttempts: 5, BaseDelay: time.Millisecond}),
			WithAttemptTimeout(AttemptTimeoutSettings{Timeout: 200 * time.Millisecond}))
		defer client.Close()
		ctx, caller := tm.tp.Tracer("test").Start(context.Background(), "caller")
		if err := call(ctx, client, "http://vendor.test/"); err != nil {
			t.Fatal(err)
		}
		caller.End()
		span := pipelineSpan(t, tm, caller.SpanContext())
		got := sluiceAttrs(span.Attributes())
		for _, k := range []attribute.Key{otelx.AttrErrorType, otelx.AttrOutcome, otelx.AttrLayer, otelx.AttrRetryAfter} {
			if v, ok := got[k]; ok {
				t.Errorf("successful call's pipeline span has %s=%s", k, v)
			}
		}
		attempts := attrValue(span.Attributes(), otelx.AttrRetryAttempts).AsInt64()
		if attempts != 2 || seen.get("") != 2 {
			t.Errorf("resilience.retry.attempts = %d; the vendor saw %d; want 2", attempts, seen.get(""))
		}
		if s := span.Status(); s.Code == codes.Error {
			t.Errorf("status %v on a call that succeeded", s)
		}
		ev := rejectionEvents(span)
		if len(ev) != 1 || ev[0] != "call_timeout/call_timeout" {
			t.Errorf("rejection events %v; want the first attempt's call_timeout", ev)
		}
		if n := tm.rejections(t, sluice.LayerCallTimeout, sluice.ReasonCallTimeout); n != 1 {
			t.Errorf("call_timeout counted %d times; want 1", n)
		}
	})
}

// TestAttemptSpansEndWithBody: an attempt's client span ends when its body is
// closed, not when RoundTrip returns: the retried response's span ends when
// the retry layer drains and closes it (even a body larger than the drain
// limit), before the backoff; the final response's span, and the pipeline
// span, end only when the caller closes the body. The backoff span says how
// long it waited and why; the resend is marked.
func TestAttemptSpansEndWithBody(t *testing.T) {
	var seen counter
	srv := vendor(t, func(w http.ResponseWriter, r *http.Request) {
		if seen.add("") == 1 {
			w.Header().Set("Retry-After-Ms", "5")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write(make([]byte, 64<<10)) // more than the retry layer drains
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	tm := newTelemetry(t)
	client := chain(t, tm, WithRetry(RetrySettings{BaseDelay: time.Millisecond}), WithBulkhead(BulkheadSettings{MaxConcurrent: 4}),
		WithAttemptTimeout(AttemptTimeoutSettings{Timeout: time.Minute}))
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	attempts := func(ended bool) []sdktrace.ReadOnlySpan {
		var out []sdktrace.ReadOnlySpan
		var list []sdktrace.ReadOnlySpan
		if ended {
			list = tm.spans.Ended()
		} else {
			for _, s := range tm.spans.Started() {
				list = append(list, s)
			}
		}
		for _, s := range list {
			if s.SpanKind() == trace.SpanKindClient {
				out = append(out, s)
			}
		}
		return out
	}
	ended := attempts(true)
	if len(attempts(false)) != 2 || len(ended) != 1 {
		t.Fatalf("before close: %d attempt spans started, %d ended; want 2 and 1", len(attempts(false)), len(ended))
	}
	if code := attrValue(ended[0].Attributes(), "http.response.status_code").AsInt64(); code != 503 {
		t.Errorf("the ended attempt span has status code %d; want the retried 503", code)
	}
	if attrValue(ended[0].Attributes(), otelx.AttrResendCount).Type() != attribute.INVALID {
		t.Error("first attempt marked as a resend")
	}
	for _, s := range tm.spans.Ended() {
		if s.Name() == otelx.SpanOutbound {
			t.Fatal("pipeline span ended before the body was closed")
		}
	}
	var backoff sdktrace.ReadOnlySpan
	for _, s := range tm.spans.Ended() {
		if s.Name() == otelx.SpanBackoff {
			backoff = s
		}
	}
	if backoff == nil {
		t.Fatal("no backoff span")
	}
	if !backoff.StartTime().After(ended[0].EndTime()) && !backoff.StartTime().Equal(ended[0].EndTime()) {
		t.Error("the backoff started before the retried attempt's span ended")
	}
	if d := attrValue(backoff.Attributes(), otelx.AttrRetryDelay).AsFloat64(); d != (5 * time.Millisecond).Seconds() {
		t.Errorf("%s = %v; want the Retry-After of 0.005", otelx.AttrRetryDelay, d)
	}
	if c := attrValue(backoff.Attributes(), otelx.AttrRetryCause).Emit(); c != "503" {
		t.Errorf("%s = %q; want \"503\"", otelx.AttrRetryCause, c)
	}

	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	ended = attempts(true)
	if len(ended) != 2 {
		t.Fatalf("after close: %d attempt spans ended; want 2", len(ended))
	}
	if n := attrValue(ended[1].Attributes(), otelx.AttrResendCount).AsInt64(); n != 1 {
		t.Errorf("resend span has %s=%d; want 1", otelx.AttrResendCount, n)
	}
	var pipeline sdktrace.ReadOnlySpan
	for _, s := range tm.spans.Ended() {
		if s.Name() == otelx.SpanOutbound {
			pipeline = s
		}
	}
	if pipeline == nil {
		t.Fatal("pipeline span not ended by the body's close")
	}
	if n := attrValue(pipeline.Attributes(), otelx.AttrRetryAttempts).AsInt64(); n != 2 {
		t.Errorf("pipeline %s = %d; want 2", otelx.AttrRetryAttempts, n)
	}
	for _, s := range ended {
		if s.Parent().SpanID() != pipeline.SpanContext().SpanID() {
			t.Errorf("attempt span %s is not a child of the pipeline span", s.Name())
		}
	}
}
