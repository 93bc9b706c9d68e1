package outbound_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/fallback"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/fleet"
	"github.com/sluice-go/sluice/otelx"
	"github.com/sluice-go/sluice/outbound"
)

// get sends one GET with client and prints the status and body, or the
// layer and reason of a rejection.
func get(client *outbound.Client, url string) {
	resp, err := client.Get(url)
	if err != nil {
		if e := sluice.ErrorOf(err); e != nil {
			fmt.Printf("%s/%s\n", e.Layer, e.Reason)
			return
		}
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, strings.TrimSpace(string(body)))
}

// A vendor that fails twice with 503 and then answers: the retry layer
// makes the call good. A POST is retried only with an Idempotency-Key (or
// with AddIdempotencyKey), which the vendor uses to apply it once.
func ExampleWithRetry() {
	var calls atomic.Int32
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.Header().Set("Retry-After", "0")
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	}))
	defer vendor.Close()

	client := outbound.NewClient(outbound.WithRetry(outbound.RetrySettings{
		MaxAttempts: 3,
		BaseDelay:   10 * time.Millisecond, // backoff with full jitter: up to 10ms, then 20ms
	}))
	defer client.Close()

	req, _ := http.NewRequest(http.MethodPost, vendor.URL, strings.NewReader(`{"prompt":"hi"}`))
	req.Header.Set("Idempotency-Key", "d6c1b6a0-1") // makes the POST replay-safe
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, "after", calls.Load(), "attempts")
	// Output: 200 after 3 attempts
}

// Once the vendor's failures reach FailureRatio of at least MinThroughput
// calls, the breaker opens: calls fail at once with circuit_open, without
// reaching the vendor, until OpenDelay has passed.
func ExampleWithCircuitBreaker() {
	var calls atomic.Int32
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	defer vendor.Close()

	client := outbound.NewClient(outbound.WithCircuitBreaker(outbound.BreakerSettings{
		FailureRatio: 0.5, MinThroughput: 2, OpenDelay: time.Minute,
	}))
	defer client.Close()

	for range 3 {
		get(client, vendor.URL)
	}
	_, err := client.Get(vendor.URL)
	var e *sluice.Error
	fmt.Println(errors.Is(err, sluice.ErrCircuitOpen), errors.As(err, &e) && e.RetryAfter > 0, sluice.HTTPStatus(err))
	fmt.Println("vendor calls:", calls.Load())
	// Output:
	// 500 down
	// 500 down
	// circuit_breaker/circuit_open
	// true true 503
	// vendor calls: 2
}

// A breaker shared by the fleet through Redis: the fleet opens once Quorum
// processes saw their own breaker open, and every process then fails fast.
// This example needs a Redis to run, so it is compiled but not run (no
// Output).
func ExampleWithCircuitBreaker_shared() {
	rdb := fleet.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	client := outbound.NewClient(
		outbound.WithName("openai"), // the fleet breaker's name in Redis, unless Shared.Name says otherwise
		outbound.WithCircuitBreaker(outbound.BreakerSettings{
			Shared: &outbound.SharedBreakerSettings{Client: rdb, Quorum: 2, OpenFor: 30 * time.Second},
		}),
	)
	defer client.Close() // stops the subscriber; rdb is the caller's to close

	resp, err := client.Get("https://api.vendor.invalid/v1/models")
	if err != nil {
		fmt.Println(errors.Is(err, sluice.ErrCircuitOpen), err)
		return
	}
	resp.Body.Close()
}

// Without a Redis client the quota is enforced in this process, with the
// fleet's semantics: a call over it fails with rate_limited and the exact
// time until a turn frees up (or waits for it, up to MaxWait).
func ExampleWithGlobalRateLimit() {
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	}))
	defer vendor.Close()

	client := outbound.NewClient(outbound.WithGlobalRateLimit(outbound.GlobalRateLimitSettings{
		Requests: 2, Period: time.Hour, Burst: 2,
	}))
	defer client.Close()

	get(client, vendor.URL)
	get(client, vendor.URL)
	_, err := client.Get(vendor.URL)
	e := sluice.ErrorOf(err)
	fmt.Println(e.Layer, e.Reason, e.RetryAfter > 29*time.Minute)
	// Output:
	// 200 ok
	// 200 ok
	// global_rate_limiter rate_limited true
}

// A vendor's 429 with Retry-After pauses every call of the fleet (here of
// the process) until the vendor's time is up: the calls after it fail with
// vendor_cooldown without reaching the vendor.
func ExampleWithGlobalRateLimit_cooldown() {
	var calls atomic.Int32
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", "30")
		http.Error(w, "slow down", http.StatusTooManyRequests)
	}))
	defer vendor.Close()

	client := outbound.NewClient(outbound.WithGlobalRateLimit(outbound.GlobalRateLimitSettings{
		Requests: 100, Period: time.Second, Burst: 100,
	}))
	defer client.Close()

	get(client, vendor.URL)
	get(client, vendor.URL)
	_, err := client.Get(vendor.URL)
	fmt.Println(errors.Is(err, sluice.ErrVendorCooldown), sluice.ErrorOf(err).RetryAfter > 25*time.Second)
	fmt.Println("vendor calls:", calls.Load())
	// Output:
	// 429 slow down
	// global_rate_limiter/vendor_cooldown
	// true true
	// vendor calls: 1
}

// A fleet shares one vendor quota (requests and tokens) through Redis;
// while Redis is down each process keeps a local share of it. This example
// needs a Redis to run, so it is compiled but not run (no Output).
func ExampleWithGlobalRateLimit_fleet() {
	rdb := fleet.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	client := outbound.NewClient(
		outbound.WithName("openai"),
		outbound.WithGlobalRateLimit(outbound.GlobalRateLimitSettings{
			Client:   rdb,
			Requests: 500, Period: time.Minute, // the vendor's RPM
			Tokens: 200_000, TokensPeriod: time.Minute, // and TPM, reconciled from each answer's usage
			EstimateCost: func(*http.Request) int64 { return 1_000 },
			MaxWait:      2 * time.Second,
		}),
	)
	defer client.Close()
}

// A per-process limit: one request every Period/Requests (smooth), or all
// of them at once with Bursty. Over it, the attempt fails at once with
// rate_limited, or waits up to MaxWait.
func ExampleWithLocalRateLimit() {
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	}))
	defer vendor.Close()

	client := outbound.NewClient(outbound.WithLocalRateLimit(outbound.LocalRateLimitSettings{
		Requests: 2, Period: time.Hour, Bursty: true,
	}))
	defer client.Close()

	for range 3 {
		get(client, vendor.URL)
	}
	// Output:
	// 200 ok
	// 200 ok
	// local_rate_limiter/rate_limited
}

// An attempt that takes longer than Timeout is canceled, which closes its
// socket, and fails with call_timeout: a 504 for the caller.
func ExampleWithAttemptTimeout() {
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers
	}))
	defer vendor.Close()

	client := outbound.NewClient(outbound.WithAttemptTimeout(outbound.AttemptTimeoutSettings{
		Timeout: 50 * time.Millisecond, // with Streaming: true, until the headers only
	}))
	defer client.Close()

	_, err := client.Get(vendor.URL)
	fmt.Println(errors.Is(err, sluice.ErrCallTimeout), sluice.HTTPStatus(err))
	// Output: true 504
}

// apiKey is a RoundTripper that signs each attempt and hands it to next.
type apiKey struct {
	key  string
	next http.RoundTripper
}

func (a apiKey) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context()) // a RoundTripper never changes its caller's request
	r.Header.Set("Authorization", "Bearer "+a.key)
	return a.next.RoundTrip(r)
}

// Each attempt goes through the RoundTripper given to WithTransport: here
// one that signs it, over sluice's Transport with its socket cap and
// timeouts. Nil, or no WithTransport, means NewTransport's defaults.
func ExampleWithTransport() {
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.Header.Get("Authorization"))
	}))
	defer vendor.Close()

	tr := outbound.NewTransport(outbound.TransportSettings{MaxConns: 32})
	client := outbound.NewClient(outbound.WithTransport(apiKey{key: "sk-test", next: tr}))
	defer client.Close()

	get(client, vendor.URL)
	// Output: 200 Bearer sk-test
}

// spanNames returns the names of the spans sr has seen end, sorted.
func spanNames(sr *tracetest.SpanRecorder) []string {
	var names []string
	for _, s := range sr.Ended() {
		names = append(names, s.Name())
	}
	sort.Strings(names)
	return names
}

// The chain records on the providers of WithTelemetry: a pipeline span
// (sluice.outbound) around one client span per attempt, and the
// resilience.* metrics, whose counters exist at zero from the start.
// Without it, the global providers.
func ExampleWithTelemetry() {
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	}))
	defer vendor.Close()

	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	client := outbound.NewClient(
		outbound.WithTelemetry(otelx.New(otelx.WithTracerProvider(tp), otelx.WithMeterProvider(mp))),
		outbound.WithBulkhead(outbound.BulkheadSettings{MaxConcurrent: 4}),
	)
	defer client.Close()

	get(client, vendor.URL)
	fmt.Println(spanNames(sr))

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		fmt.Println(err)
		return
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != otelx.MetricRequests {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if dp.Value == 0 {
					continue
				}
				layer, _ := dp.Attributes.Value(otelx.AttrLayer)
				outcome, _ := dp.Attributes.Value(otelx.AttrOutcome)
				fmt.Println(m.Name, layer.AsString(), outcome.AsString(), dp.Value)
			}
		}
	}
	// Output:
	// 200 ok
	// [HTTP GET sluice.outbound]
	// resilience.requests bulkhead allowed 1
}

// The policy name (typically the vendor's) is resilience.policy.name on
// every span and metric of the chain, and names its Redis keys unless a
// layer's settings name them otherwise.
func ExampleWithName() {
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	}))
	defer vendor.Close()

	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	client := outbound.NewClient(
		outbound.WithName("openai"),
		outbound.WithTelemetry(otelx.New(otelx.WithTracerProvider(tp))),
	)
	defer client.Close()

	get(client, vendor.URL)
	for _, s := range sr.Ended() {
		for _, kv := range s.Attributes() {
			if kv.Key == otelx.AttrPolicyName {
				fmt.Println(s.Name(), kv.Value.AsString())
			}
		}
	}
	// Output:
	// 200 ok
	// sluice.outbound openai
}

// The attempt spans are otelhttp's: name them, and choose the propagator
// that carries the trace to the vendor (the global one, a no-op until the
// application sets one, by default).
func ExampleWithAttemptSpanOptions() {
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.Header.Get("Traceparent") != "")
	}))
	defer vendor.Close()

	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	client := outbound.NewClient(
		outbound.WithTelemetry(otelx.New(otelx.WithTracerProvider(tp))),
		outbound.WithAttemptSpanOptions(
			otelhttp.WithPropagators(propagation.TraceContext{}),
			otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
				return "vendor " + r.Method
			}),
		),
	)
	defer client.Close()

	get(client, vendor.URL) // the vendor says whether it got a traceparent
	fmt.Println(spanNames(sr))
	// Output:
	// 200 true
	// [sluice.outbound vendor GET]
}

// The chain as an http.RoundTripper, for an http.Client of your own (or any
// library that takes a RoundTripper). Such a client follows redirects as
// net/http does; NewClient's follows none, and this one is told to match.
func ExampleNewRoundTripper() {
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://elsewhere.invalid/", http.StatusFound)
	}))
	defer vendor.Close()

	rt := outbound.NewRoundTripper(
		outbound.WithRetry(outbound.RetrySettings{}),
		outbound.WithBulkhead(outbound.BulkheadSettings{MaxConcurrent: 8}),
	)
	defer rt.Close() // stops the Redis-backed layers' goroutines and closes idle connections
	client := &http.Client{
		Transport:     rt,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	resp, err := client.Get(vendor.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, resp.Header.Get("Location"))
	// Output: 302 https://elsewhere.invalid/
}

// A ShouldRetry of your own usually adds to DefaultShouldRetry rather than
// replacing it.
func ExampleDefaultShouldRetry() {
	shouldRetry := func(resp *http.Response, err error) bool {
		if resp != nil && resp.StatusCode == http.StatusConflict { // this vendor's "try again"
			return true
		}
		return outbound.DefaultShouldRetry(resp, err)
	}
	for _, code := range []int{429, 503, 409, 400} {
		resp := &http.Response{StatusCode: code}
		fmt.Println(code, outbound.DefaultShouldRetry(resp, nil), shouldRetry(resp, nil))
	}
	fmt.Println(outbound.DefaultShouldRetry(nil, sluice.NewError(sluice.LayerCallTimeout, sluice.ReasonCallTimeout, nil)))
	// Output:
	// 429 true true
	// 503 true true
	// 409 false true
	// 400 false false
	// true
}

// The breaker counts vendor failures only: 5xx, 429, timeouts and transport
// errors, never our own rejections nor other 4xx. An IsFailure of your own
// can narrow it.
func ExampleIsVendorFailure() {
	fmt.Println(outbound.IsVendorFailure(&http.Response{StatusCode: 500}, nil))
	fmt.Println(outbound.IsVendorFailure(&http.Response{StatusCode: 429}, nil))
	fmt.Println(outbound.IsVendorFailure(&http.Response{StatusCode: 404}, nil))
	fmt.Println(outbound.IsVendorFailure(nil, sluice.NewError(sluice.LayerBulkhead, sluice.ReasonBulkheadFull, nil)))
	fmt.Println(outbound.IsVendorFailure(nil, errors.New("connection refused")))

	_ = outbound.WithCircuitBreaker(outbound.BreakerSettings{
		IsFailure: func(resp *http.Response, err error) bool { // a 429 is the quota's business, not the breaker's
			return (resp == nil || resp.StatusCode != http.StatusTooManyRequests) && outbound.IsVendorFailure(resp, err)
		},
	})
	// Output:
	// true
	// true
	// false
	// false
	// true
}

// A fallback that calls a second vendor once the first answers 503: the
// request from PolicyRequest is a fresh clone, its body replayed, to adapt
// and send with the second vendor's own client.
func ExamplePolicyRequest() {
	primary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	}))
	defer primary.Close()
	secondary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "secondary got %s with %s", body, r.Header.Get("Authorization"))
	}))
	defer secondary.Close()

	other := outbound.NewClient(outbound.WithName("secondary"))
	defer other.Close()
	toSecondary := fallback.NewBuilderWithFunc(func(exec failsafe.Execution[*http.Response]) (*http.Response, error) {
		req, err := outbound.PolicyRequest(exec)
		if err != nil {
			return nil, err
		}
		req.URL.Scheme, req.URL.Host, req.Host = "http", strings.TrimPrefix(secondary.URL, "http://"), ""
		req.Header.Set("Authorization", "Bearer secondary-key")
		return other.Do(req)
	}).HandleIf(func(resp *http.Response, err error) bool {
		return resp != nil && resp.StatusCode == http.StatusServiceUnavailable
	}).Build()

	client := outbound.NewClient(outbound.WithName("primary"), outbound.WithPolicies(toSecondary))
	defer client.Close()
	req, _ := http.NewRequest(http.MethodPost, primary.URL, strings.NewReader(`{"prompt":"hi"}`))
	req.Header.Set("Authorization", "Bearer primary-key")
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	// Output: 200 secondary got {"prompt":"hi"} with Bearer secondary-key
}
