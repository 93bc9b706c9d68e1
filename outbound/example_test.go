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
		outbound.WithTransport(outbound.NewTransport(
			outbound.WithMaxConns(16),                    // hard cap on sockets
			outbound.WithReadIdleTimeout(30*time.Second), // guards streams
		)),
		outbound.WithRetry(outbound.RetrySettings{MaxAttempts: 3}),
		outbound.WithCircuitBreaker(outbound.BreakerSettings{}),
		outbound.WithRateLimit(outbound.RateLimitSettings{Requests: 50, Period: time.Second, MaxWait: time.Second}),
		outbound.WithBulkhead(8, 500*time.Millisecond),
		outbound.WithAttemptTimeout(10*time.Second),
	)
	defer client.CloseIdleConnections()

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
		outbound.WithBulkhead(1, 0), // one call at a time, no waiting
	)
	defer client.CloseIdleConnections()

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
