package outbound_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/outbound"
	"github.com/sluice-go/sluice/status"
)

// A client with every layer, in the canonical order whatever the order of
// the options.
func ExampleNewClient() {
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"answer":"hi"}`)
	}))
	defer vendor.Close()

	client := outbound.NewClient(
		outbound.WithName("vendor"),
		outbound.WithTransport(outbound.NewTransport(outbound.TransportSettings{
			MaxConns:        16,               // hard cap on sockets
			ReadIdleTimeout: 30 * time.Second, // guards streams
		})),
		outbound.WithRetry(outbound.RetrySettings{MaxAttempts: 3}),
		outbound.WithCircuitBreaker(outbound.BreakerSettings{}),
		outbound.WithLocalRateLimit(outbound.LocalRateLimitSettings{Requests: 50, Period: time.Second, MaxWait: time.Second}),
		outbound.WithBulkhead(outbound.BulkheadSettings{MaxConcurrent: 8, MaxWait: 500 * time.Millisecond}),
		outbound.WithAttemptTimeout(outbound.AttemptTimeoutSettings{Timeout: 10 * time.Second}),
	)
	defer client.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, vendor.URL, nil)
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close() // releases the bulkhead permit and ends the spans
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	// Output: 200 {"answer":"hi"}
}

// Every rejection is a *sluice.Error: match the condition with errors.Is and
// read the layer with errors.As. Overload signals such as bulkhead_full are
// never retried.
func ExampleWithBulkhead() {
	release := make(chan struct{})
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-release // a long stream
	}))
	defer vendor.Close()
	defer close(release)

	client := outbound.NewClient(
		outbound.WithRetry(outbound.RetrySettings{}),
		outbound.WithBulkhead(outbound.BulkheadSettings{MaxConcurrent: 1}), // one call at a time, no waiting
	)
	defer client.Close()

	first, err := client.Get(vendor.URL) // holds the permit until its body is closed
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = client.Get(vendor.URL)
	var e *sluice.Error
	fmt.Println(errors.Is(err, sluice.ErrBulkheadFull), errors.As(err, &e) && e.Layer == sluice.LayerBulkhead)
	fmt.Println(sluice.IsOverload(err), sluice.HTTPStatus(err))
	first.Body.Close()
	// Output:
	// true true
	// true 503
}

// The transport is configured like every layer: one settings struct, whose
// zero fields take their documented defaults. It goes to WithTransport.
func ExampleNewTransport() {
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	}))
	defer vendor.Close()

	tr := outbound.NewTransport(outbound.TransportSettings{
		MaxConns:        4,                // at most 4 sockets, dialing, open or closing
		ReadIdleTimeout: 20 * time.Second, // the longest gap between two chunks of a stream
	})
	client := outbound.NewClient(outbound.WithTransport(tr))
	defer client.Close()

	resp, err := client.Get(vendor.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(body), tr.OpenConns())
	// Output: ok 1
}

// WithStatus shows the chain on a status page (see package status): here,
// its breaker after the vendor failed twice.
func ExampleWithStatus() {
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer vendor.Close()

	reg := status.NewRegistry()
	client := outbound.NewClient(outbound.WithName("vendor"), outbound.WithStatus(reg),
		outbound.WithCircuitBreaker(outbound.BreakerSettings{MinThroughput: 2}))
	defer client.Close()
	for range 3 {
		if resp, err := client.Get(vendor.URL); err == nil {
			resp.Body.Close()
		}
	}
	for _, l := range reg.Snapshot(context.Background()).Layers {
		if l.Breaker != nil {
			fmt.Println(l.Layer, l.Policy, l.Breaker.State)
		}
	}
	// Output: circuit_breaker vendor open
}
