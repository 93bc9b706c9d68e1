package outbound_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/outbound"
)

// billedUnits reads the usage of a vendor the built-in parsers do not know:
// Cohere's chat answers, which charge usage.billed_units.
type billedUnits struct{}

type cohereAnswer struct {
	Usage *struct {
		BilledUnits *struct {
			InputTokens  int64 `json:"input_tokens"`
			OutputTokens int64 `json:"output_tokens"`
		} `json:"billed_units"`
	} `json:"usage"`
}

func (billedUnits) Body(body []byte) (outbound.TokenUsage, bool) {
	var a cohereAnswer
	if json.Unmarshal(body, &a) != nil || a.Usage == nil || a.Usage.BilledUnits == nil {
		return outbound.TokenUsage{}, false
	}
	in, out := a.Usage.BilledUnits.InputTokens, a.Usage.BilledUnits.OutputTokens
	return outbound.TokenUsage{Input: in, Output: out, Total: in + out}, true
}

// Event: this sketch reads whole answers only; a stream keeps its estimate.
func (billedUnits) Event(prev outbound.TokenUsage, _ []byte) (outbound.TokenUsage, bool) {
	return prev, false
}

// A UsageParser of your own reconciles the token quota for a vendor the
// built-ins do not know. Each call reserves 100 tokens of a 240-token
// quota and uses 30: reconciled to its usage, the quota has room for five
// calls (estimated at 100 each, only two would fit).
func ExampleUsageParser() {
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"message":{"content":[{"type":"text","text":"Hi"}]},`+
			`"usage":{"billed_units":{"input_tokens":5,"output_tokens":25}}}`)
	}))
	defer vendor.Close()

	client := outbound.NewClient(outbound.WithGlobalRateLimit(outbound.GlobalRateLimitSettings{
		Tokens: 240, TokensPeriod: time.Hour,
		EstimateCost: func(*http.Request) int64 { return 100 },
		Usage:        billedUnits{},
	}))
	defer client.Close()

	for i := 1; i <= 6; i++ {
		resp, err := client.Get(vendor.URL)
		var e *sluice.Error
		if errors.As(err, &e) {
			fmt.Printf("call %d: %s/%s\n", i, e.Layer, e.Reason)
			break
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body) // the usage is read as the body goes by
		resp.Body.Close()                     // and charged at EOF or Close
		fmt.Printf("call %d: %d\n", i, resp.StatusCode)
	}
	// Output:
	// call 1: 200
	// call 2: 200
	// call 3: 200
	// call 4: 200
	// call 5: 200
	// call 6: global_rate_limiter/rate_limited
}
