package outbound_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/fallback"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/outbound"
)

// A failsafe-go fallback in the policies slot: once the primary vendor's
// breaker is open, calls go to a backup vendor, which has its own chain, and
// the primary is left alone.
func ExampleWithPolicies() {
	primary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	defer primary.Close()
	backupVendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "backup answers "+r.URL.Path)
	}))
	defer backupVendor.Close()

	backup := outbound.NewClient(outbound.WithName("backup"))
	defer backup.Close()
	toBackup := fallback.NewBuilderWithFunc(func(exec failsafe.Execution[*http.Response]) (*http.Response, error) {
		req, err := outbound.PolicyRequest(exec)
		if err != nil {
			return nil, err
		}
		req.URL.Host, req.Host = strings.TrimPrefix(backupVendor.URL, "http://"), ""
		return backup.Do(req)
	}).HandleIf(func(_ *http.Response, err error) bool {
		return errors.Is(err, sluice.ErrCircuitOpen)
	}).Build()

	client := outbound.NewClient(
		outbound.WithName("primary"),
		outbound.WithPolicies(toBackup),
		outbound.WithCircuitBreaker(outbound.BreakerSettings{FailureRatio: 1, MinThroughput: 1, OpenDelay: time.Hour}),
	)
	defer client.Close()
	for range 3 {
		resp, err := client.Get(primary.URL + "/v1/chat")
		if err != nil {
			fmt.Println(err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, strings.TrimSpace(string(b)))
	}
	// Output:
	// 500 down
	// 200 backup answers /v1/chat
	// 200 backup answers /v1/chat
}
