package outbound

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/redistest"
	"github.com/sluice-go/sluice/internal/usage/usagetest"
)

// answerVendor answers /{i} with usagetest.Answers[i], in the vendor's
// content type; /custom and /custom-sse with a vendor shape no built-in
// knows (Cohere's v2 chat, whose billed units are 5 + 25 tokens); and
// /header with an X-Usage header of 30 and a body claiming 10^6.
func answerVendor(t *testing.T) string {
	return vendor(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/custom":
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"id":"c14c80c3","finish_reason":"COMPLETE","message":{"role":"assistant","content":[{"type":"text","text":"Hi"}]},`+
				`"usage":{"billed_units":{"input_tokens":5,"output_tokens":25},"tokens":{"input_tokens":71,"output_tokens":25}}}`)
			return
		case "/custom-sse":
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "event: message-start\ndata: {\"type\":\"message-start\",\"id\":\"29f14a5a\"}\n\n"+
				"event: content-delta\ndata: {\"type\":\"content-delta\",\"index\":0,\"delta\":{\"message\":{\"content\":{\"text\":\"Hi\"}}}}\n\n"+
				"event: message-end\ndata: {\"type\":\"message-end\",\"delta\":{\"finish_reason\":\"COMPLETE\","+
				"\"usage\":{\"billed_units\":{\"input_tokens\":5,\"output_tokens\":25},\"tokens\":{\"input_tokens\":71,\"output_tokens\":25}}}}\n\n")
			return
		case "/header":
			w.Header().Set("X-Usage", "30")
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"usage":{"total_tokens":1000000}}`)
			return
		}
		i, err := strconv.Atoi(r.URL.Path[1:])
		if err != nil || i < 0 || i >= len(usagetest.Answers) {
			http.NotFound(w, r)
			return
		}
		a := usagetest.Answers[i]
		w.Header().Set("Content-Type", a.ContentType)
		_, _ = io.WriteString(w, a.Body)
	}).URL
}

// billedUnits is a UsageParser for a vendor the built-ins do not know: it
// charges Cohere's billed units.
type billedUnits struct{}

type cohereUsage struct {
	BilledUnits *struct {
		InputTokens  int64 `json:"input_tokens"`
		OutputTokens int64 `json:"output_tokens"`
	} `json:"billed_units"`
}

func (u *cohereUsage) tokens() (TokenUsage, bool) {
	if u == nil || u.BilledUnits == nil {
		return TokenUsage{}, false
	}
	in, out := u.BilledUnits.InputTokens, u.BilledUnits.OutputTokens
	return TokenUsage{Input: in, Output: out, Total: in + out}, true
}

func (billedUnits) Body(body []byte) (TokenUsage, bool) {
	var v struct {
		Usage *cohereUsage `json:"usage"`
	}
	if json.Unmarshal(body, &v) != nil {
		return TokenUsage{}, false
	}
	return v.Usage.tokens()
}

func (billedUnits) Event(prev TokenUsage, data []byte) (TokenUsage, bool) {
	var v struct {
		Delta struct {
			Usage *cohereUsage `json:"usage"`
		} `json:"delta"`
	}
	if json.Unmarshal(data, &v) != nil {
		return prev, false
	}
	if t, ok := v.Delta.Usage.tokens(); ok {
		return t, true
	}
	return prev, false
}

// usageMode runs f in-process (Client nil) and on a real Redis, which the
// subtests share under names of their own.
func usageModes(t *testing.T, f func(t *testing.T, client redis.UniversalClient, name string)) {
	for _, mode := range []string{"in-process", "redis"} {
		t.Run(mode, func(t *testing.T) {
			var client redis.UniversalClient
			prefix := ""
			if mode == "redis" {
				srv := redistest.New(t)
				client, prefix = srv.Client(), srv.Prefix
			}
			f(t, client, prefix)
		})
	}
}

// callsThatFit counts the calls to url the chain admits before the global
// limiter refuses one (at most 20), each read to EOF and closed.
func callsThatFit(t *testing.T, c *Client, url string) int {
	t.Helper()
	for n := range 20 {
		if err := call(context.Background(), c, url); err != nil {
			wantReason(t, err, sluice.LayerGlobalRateLimiter, sluice.ReasonRateLimited)
			return n
		}
	}
	return 20
}

// reconcileSettings is a token quota in which a call estimated at 3 real
// costs fits: 7.5 real costs an hour. Reconciled to the real cost, the
// sixth call is the first refused (5 real costs used + 3 reserved > 7.5);
// left at the estimate, the third (3 + 3 + 3 > 7.5). One real cost more or
// less per call, and the count changes too: it is the tokens read that the
// count shows. The half cost left over is four minutes of the quota's
// refill: no slow machine frees a call.
func reconcileSettings(client redis.UniversalClient, name string, real int64, p UsageParser) GlobalRateLimitSettings {
	return GlobalRateLimitSettings{Client: client, Name: name, Tokens: 7*real + real/2, TokensPeriod: time.Hour,
		EstimateCost: func(*http.Request) int64 { return 3 * real }, Usage: p}
}

const (
	reconciled    = 5 // calls that fit when each is charged its real cost
	notReconciled = 2 // ... when each keeps its estimate
)

// TestUsageReconciledEveryVendor: through NewClient and WithGlobalRateLimit,
// in-process and on Redis, an answer of each vendor (OpenAI chat and
// Responses, Anthropic, Gemini; JSON and SSE; Gemini's JSON-array stream)
// reconciles the reservation to the usage it reports, with Usage nil (auto),
// with the vendor's own built-in parser; and another vendor's parser reads
// nothing, so the estimate stands.
func TestUsageReconciledEveryVendor(t *testing.T) {
	url := answerVendor(t)
	own := map[string]UsageParser{"openai": OpenAIUsage, "anthropic": AnthropicUsage, "gemini": GeminiUsage}
	other := map[string]UsageParser{"openai": GeminiUsage, "anthropic": GeminiUsage, "gemini": AnthropicUsage}
	usageModes(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		for i, a := range usagetest.Answers {
			for _, p := range []struct {
				name string
				p    UsageParser
				want int
			}{{"auto", nil, reconciled}, {"own", own[a.Vendor], reconciled}, {"AutoUsage", AutoUsage, reconciled},
				{"other", other[a.Vendor], notReconciled}} {
				t.Run(a.Name+"/"+p.name, func(t *testing.T) {
					s := reconcileSettings(client, prefix+"/"+a.Name+"/"+p.name, a.Total, p.p)
					c := globalClient(t, newTelemetry(t), s)
					if n := callsThatFit(t, c, url+"/"+strconv.Itoa(i)); n != p.want {
						t.Errorf("%d calls fit, want %d (real usage %d, estimate %d, quota %d)", n, p.want, a.Total, 3*a.Total, s.Tokens)
					}
				})
			}
		}
	})
}

// TestUsageCustomParser: a UsageParser of one's own is what reads the body,
// JSON and SSE: with it a vendor shape no built-in knows is reconciled (30
// tokens of billed units), without it the estimate stands.
func TestUsageCustomParser(t *testing.T) {
	url := answerVendor(t)
	usageModes(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		for _, path := range []string{"/custom", "/custom-sse"} {
			for _, p := range []struct {
				name string
				p    UsageParser
				want int
			}{{"custom", billedUnits{}, reconciled}, {"auto", nil, notReconciled}} {
				t.Run(path[1:]+"/"+p.name, func(t *testing.T) {
					c := globalClient(t, newTelemetry(t), reconcileSettings(client, prefix+path+"/"+p.name, 30, p.p))
					if n := callsThatFit(t, c, url+path); n != p.want {
						t.Errorf("%d calls fit, want %d", n, p.want)
					}
				})
			}
		}
	})
}

// negativeUsage is a broken UsageParser that reports a negative total.
type negativeUsage struct{}

func (negativeUsage) Body([]byte) (TokenUsage, bool) { return TokenUsage{Total: -1000}, true }
func (negativeUsage) Event(TokenUsage, []byte) (TokenUsage, bool) {
	return TokenUsage{Total: -1000}, true
}

// TestUsageCustomNegativeIgnored: a custom parser's negative total counts as
// no usage (the estimate stands), never as a refund beyond the reservation.
func TestUsageCustomNegativeIgnored(t *testing.T) {
	url := answerVendor(t)
	usageModes(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		for _, path := range []string{"/custom", "/custom-sse"} {
			t.Run(path[1:], func(t *testing.T) {
				c := globalClient(t, newTelemetry(t), reconcileSettings(client, prefix+path, 30, negativeUsage{}))
				if n := callsThatFit(t, c, url+path); n != notReconciled {
					t.Errorf("%d calls fit, want %d", n, notReconciled)
				}
			})
		}
	})
}

// TestUsageActualCostFirst: ActualCost, from the headers, is asked before
// the body is read: its 30 is charged, not the body's 10^6; when it reports
// nothing, the body's usage is.
func TestUsageActualCostFirst(t *testing.T) {
	url := answerVendor(t)
	usageModes(t, func(t *testing.T, client redis.UniversalClient, prefix string) {
		for name, c := range map[string]struct {
			actual func(*http.Response) (int64, bool)
			want   int
		}{
			"headers": {headerUsage, reconciled},
			// The body's 10^6 is capped at MaxCost (the burst): the quota
			// is spent at the first call.
			"body": {func(*http.Response) (int64, bool) { return 0, false }, 1},
		} {
			t.Run(name, func(t *testing.T) {
				s := reconcileSettings(client, prefix+"/"+name, 30, nil)
				s.ActualCost = c.actual
				if n := callsThatFit(t, globalClient(t, newTelemetry(t), s), url+"/header"); n != c.want {
					t.Errorf("%d calls fit, want %d", n, c.want)
				}
			})
		}
	})
}
