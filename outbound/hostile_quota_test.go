package outbound

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/quota"
	"github.com/sluice-go/sluice/internal/redistest"
	"github.com/sluice-go/sluice/internal/rkey"
	"github.com/sluice-go/sluice/otelx"
)

// quotaMode is one way to run the global limiter: on a real Redis, or in
// this process (Client nil).
type quotaMode struct {
	name string
	// settings fills Client and Name; rc is nil in-process.
	settings func(t *testing.T, s GlobalRateLimitSettings) (GlobalRateLimitSettings, *redis.Client)
}

var quotaModes = []quotaMode{
	{"redis", func(t *testing.T, s GlobalRateLimitSettings) (GlobalRateLimitSettings, *redis.Client) {
		srv := redistest.New(t)
		s.Client, s.Name = srv.Client(), srv.Prefix
		return s, srv.Client()
	}},
	{"in-process", func(t *testing.T, s GlobalRateLimitSettings) (GlobalRateLimitSettings, *redis.Client) {
		return s, nil
	}},
}

// claimVendor is an evil vendor: /claim?n=N&via=... answers with a usage of
// N tokens (via json or sse: OpenAI's usage.total_tokens of a JSON body or
// of the last SSE chunk; responses-sse: OpenAI Responses' response.completed;
// anthropic, anthropic-sse, gemini, gemini-sse: those vendors' shapes, with N
// in each count, so that Anthropic's sum saturates; header: an X-Usage
// header read by ActualCost), once `together` claim
// requests have arrived, so that their reservations are all taken before any
// usage is known. Anything else answers "ok".
func claimVendor(t *testing.T, together int) string {
	var mu sync.Mutex
	arrived := 0
	all := make(chan struct{})
	return vendor(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/claim" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		mu.Lock()
		if arrived++; arrived == together {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-r.Context().Done():
			return
		}
		n := r.URL.Query().Get("n")
		switch r.URL.Query().Get("via") {
		case "header":
			w.Header().Set("X-Usage", n)
			_, _ = io.WriteString(w, "ok")
		case "sse":
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "data: {\"choices\":[],\"usage\":{\"total_tokens\":"+n+"}}\n\ndata: [DONE]\n\n")
		case "responses-sse":
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":"+
				"{\"status\":\"completed\",\"usage\":{\"input_tokens\":"+n+",\"output_tokens\":1,\"total_tokens\":"+n+"}}}\n\n")
		case "anthropic":
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"type":"message","content":[],"usage":{"input_tokens":`+n+`,"output_tokens":`+n+
				`,"cache_read_input_tokens":`+n+`}}`)
		case "anthropic-sse":
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":"+n+
				",\"output_tokens\":1}}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":"+n+"}}\n\n"+
				"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
		case "gemini":
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"candidates":[],"usageMetadata":{"promptTokenCount":`+n+`,"candidatesTokenCount":`+n+
				`,"totalTokenCount":`+n+`}}`)
		case "gemini-sse":
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "data: {\"candidates\":[],\"usageMetadata\":{\"promptTokenCount\":"+n+
				",\"totalTokenCount\":"+n+"}}\r\n\r\n")
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"choices":[],"usage":{"total_tokens":`+n+`}}`)
		}
	}).URL
}

func headerUsage(resp *http.Response) (int64, bool) {
	n, err := strconv.ParseInt(resp.Header.Get("X-Usage"), 10, 64)
	return n, err == nil
}

// TestHostileUsageClaimBounded (issue 11, finding 1): a vendor claiming an
// absurd usage (1e9 .. MaxInt64 tokens against 100,000 per minute), in
// several concurrent answers, in any vendor's shape (OpenAI, Anthropic,
// Gemini; JSON or SSE) or by ActualCost, must not lock the quota for longer than the
// documented bound, nor make a RetryAfter negative or zero, nor leave a
// Redis key that outlives the bound. What one call is charged is capped at
// MaxCost (default: the token burst), and the debt of several such calls at
// one more MaxCost.
func TestHostileUsageClaimBounded(t *testing.T) {
	claims := []int64{1e9, 1e15, 1e17, 1e18, math.MaxInt64}
	// The documented bounds with the defaults below (MaxCost = burst =
	// Tokens, MaxWait 0, no cooldown): a turn frees up within two token
	// windows, and no key lives longer than that.
	const window = time.Minute
	const retryBound, ttlBound = 2*window + time.Second, 2*window + time.Second
	for _, mode := range quotaModes {
		for _, via := range []string{"json", "sse", "header", "responses-sse", "anthropic", "anthropic-sse", "gemini", "gemini-sse"} {
			for _, claim := range claims {
				for _, together := range []int{1, 4} {
					t.Run(mode.name+"/"+via+"/"+strconv.FormatInt(claim, 10)+"x"+strconv.Itoa(together), func(t *testing.T) {
						t.Parallel() // its own key prefix, client and vendor
						s, rc := mode.settings(t, GlobalRateLimitSettings{Tokens: 100_000, TokensPeriod: window,
							EstimateCost: func(*http.Request) int64 { return 1 }, ActualCost: headerUsage})
						c := globalClient(t, newTelemetry(t), s)
						url := claimVendor(t, together)
						var wg sync.WaitGroup
						for range together {
							wg.Go(func() {
								err := call(context.Background(), c, url+"/claim?via="+via+"&n="+strconv.FormatInt(claim, 10))
								if err != nil {
									t.Errorf("claim call: %v", err)
								}
							})
						}
						wg.Wait()
						err := call(context.Background(), c, url+"/ok")
						if err == nil && together > 1 {
							// Four claims capped at MaxCost leave a debt of a
							// whole window: the call can only fit if the
							// claims were not read at all.
							t.Errorf("the next call was admitted after %d claims of %d: the claims were not charged", together, claim)
						}
						var retryAfter time.Duration
						if err != nil {
							e := wantReason(t, err, sluice.LayerGlobalRateLimiter, sluice.ReasonRateLimited)
							retryAfter = e.RetryAfter
							if retryAfter <= 0 || retryAfter > retryBound {
								t.Errorf("RetryAfter = %v after %d claims of %d; want within (0, %v]", retryAfter, together, claim, retryBound)
							}
						}
						ttls := ""
						if rc != nil {
							for _, kind := range []string{quota.KindRequests, quota.KindCost, quota.KindCooldown, quota.KindMembers} {
								key := rkey.Key(s.Name, kind)
								ttl, err := rc.PTTL(context.Background(), key).Result()
								if err != nil {
									t.Fatal(err)
								}
								if ttl == -2*time.Nanosecond { // no such key
									continue
								}
								ttls += " " + kind + "=" + ttl.String()
								if ttl < 0 || ttl > ttlBound {
									t.Errorf("key %s has TTL %v; want within [0, %v]", key, ttl, ttlBound)
								}
							}
						}
						next := "admitted"
						if err != nil {
							next = "RetryAfter " + retryAfter.String()
						}
						t.Logf("after %d claims of %d: next call %s; key TTLs:%s", together, claim, next, ttls)
					})
				}
			}
		}
	}
}

// TestHostileNegativeUsageIgnored (issue 11, finding 1): a negative usage,
// by ActualCost or in a body, is ignored (the estimate stands), and a
// negative estimate reserves nothing: neither refunds more than was reserved.
func TestHostileNegativeUsageIgnored(t *testing.T) {
	for _, mode := range quotaModes {
		t.Run(mode.name, func(t *testing.T) {
			s, _ := mode.settings(t, GlobalRateLimitSettings{Tokens: 250, TokensPeriod: time.Hour,
				EstimateCost: func(r *http.Request) int64 {
					if r.URL.Path == "/neg" {
						return -1e18
					}
					return 100
				}, ActualCost: headerUsage})
			c := globalClient(t, newTelemetry(t), s)
			url := claimVendor(t, 1)
			mustGet(t, c, url+"/claim?via=header&n=-1000000000000000000")
			mustGet(t, c, url+"/claim?via=json&n=-5")
			mustGet(t, c, url+"/neg")
			// 100 + 100 reserved and kept: the third call of 100 is over 250.
			wantReason(t, call(context.Background(), c, url+"/ok"), sluice.LayerGlobalRateLimiter, sluice.ReasonRateLimited)
		})
	}
}

// TestHostileInProcessRefunds (issue 11, finding 2): the in-process quota
// (Client nil) refunds like the Redis one: 250 tokens per hour, 100
// estimated per call, 10 used (JSON body; last SSE chunk; ActualCost):
// without the refunds the third call would be refused, with them a dozen go
// through; and a call with no usage keeps its estimate (100 + 100 + 120
// already used exceed 250). On Redis and in-process alike.
func TestHostileInProcessRefunds(t *testing.T) {
	for _, mode := range quotaModes {
		for _, via := range []string{"json", "sse", "header"} {
			t.Run(mode.name+"/"+via, func(t *testing.T) {
				s, _ := mode.settings(t, GlobalRateLimitSettings{Tokens: 250, TokensPeriod: time.Hour,
					EstimateCost: func(*http.Request) int64 { return 100 }, ActualCost: headerUsage})
				c := globalClient(t, newTelemetry(t), s)
				url := claimVendor(t, 1)
				for i := range 12 {
					if err := call(context.Background(), c, url+"/claim?n=10&via="+via); err != nil {
						t.Fatalf("call %d: %v (the usage was not refunded)", i+1, err)
					}
				}
				var err error
				for range 3 {
					if err = call(context.Background(), c, url+"/ok"); err != nil {
						break
					}
				}
				wantReason(t, err, sluice.LayerGlobalRateLimiter, sluice.ReasonRateLimited)
			})
		}
	}
}

// waitQueued waits until layer reports one call waiting in its queue. Its
// test runs against a real redis-server and holds a real socket, so it
// cannot use a synctest bubble's synctest.Wait: it polls the gauge.
func waitQueued(t *testing.T, tm *telemetry, layer sluice.Layer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if tm.sum(t, otelx.MetricQueued, string(otelx.AttrLayer), string(layer)) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no call queued in %s after 30s", layer)
		}
		time.Sleep(time.Millisecond) // poll the gauge; the condition, not the time, ends the wait
	}
}

// TestHostileGiveUpBelowGlobalRefunds (issue 11, finding 3): a call that
// gives up below the global limiter, before reaching the vendor, hands its
// reservation back whatever the cause: canceled while queued in the bulkhead
// or the local rate limiter, or its deadline passing while it waits for a
// connection in the transport's pool. With a quota of 2 per hour and one
// call already made, the refund is what lets the next call through.
func TestHostileGiveUpBelowGlobalRefunds(t *testing.T) {
	type giveUp struct {
		name string
		// opts are the chain's other layers; a held call fills them so
		// that the next call waits.
		opts func(t *testing.T) []Option
		// layer is where the call waits until it is canceled; empty: it
		// waits for a connection until its deadline passes.
		layer sluice.Layer
	}
	cases := []giveUp{
		{"bulkhead canceled", func(t *testing.T) []Option {
			return []Option{WithTransport(transport(t)), WithBulkhead(BulkheadSettings{MaxConcurrent: 1, MaxWait: time.Hour})}
		}, sluice.LayerBulkhead},
		{"local rate limiter canceled", func(t *testing.T) []Option {
			return []Option{WithTransport(transport(t)),
				WithLocalRateLimit(LocalRateLimitSettings{Requests: 1, Period: time.Hour, MaxWait: 2 * time.Hour})}
		}, sluice.LayerLocalRateLimiter},
		{"pool deadline", func(t *testing.T) []Option {
			tr := NewTransport(TransportSettings{MaxConns: 1, PoolTimeout: time.Hour})
			t.Cleanup(tr.CloseIdleConnections)
			return []Option{WithTransport(tr)}
		}, ""},
	}
	for _, mode := range quotaModes {
		for _, tc := range cases {
			t.Run(mode.name+"/"+tc.name, func(t *testing.T) {
				release := make(chan struct{})
				url := streamVendor(t, release)
				s, _ := mode.settings(t, GlobalRateLimitSettings{Requests: 2, Period: time.Hour, Burst: 2})
				tm := newTelemetry(t)
				c := NewClient(append(tc.opts(t), WithName(policy), WithTelemetry(tm.tel), WithGlobalRateLimit(s))...)
				t.Cleanup(func() { _ = c.Close() })
				// The first call takes one slot of the quota and holds the
				// bulkhead permit, the local rate limiter's permit or the
				// only connection.
				held, err := c.Get(url + "/stream")
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				if tc.layer == "" {
					ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
				}
				defer cancel()
				done := make(chan error, 1)
				go func() { done <- call(ctx, c, url+"/x") }()
				if tc.layer != "" {
					waitQueued(t, tm, tc.layer)
					cancel()
				}
				err = <-done
				if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("the call that gave up: %v; want its context's error", err)
				}
				close(release)
				_, _ = io.Copy(io.Discard, held.Body)
				_ = held.Body.Close()
				if tc.layer == sluice.LayerLocalRateLimiter {
					// The local permit is gone for the hour: a refunded
					// quota slot shows as the local limiter refusing the
					// next call (which hands the slot back again), not the
					// global one.
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					wantReason(t, call(ctx, c, url+"/x"), sluice.LayerLocalRateLimiter, sluice.ReasonQueueTimeout)
					ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					wantReason(t, call(ctx, c, url+"/x"), sluice.LayerLocalRateLimiter, sluice.ReasonQueueTimeout)
					return
				}
				if err := call(context.Background(), c, url+"/x"); err != nil {
					t.Fatalf("next call: %v; want the slot that the call which gave up handed back", err)
				}
				wantReason(t, call(context.Background(), c, url+"/x"), sluice.LayerGlobalRateLimiter, sluice.ReasonRateLimited)
			})
		}
	}
}

// TestHostileQuotaTooFinePanicsAtOption (issue 11, finding 8): a quota finer
// than the limiter can count panics at WithGlobalRateLimit with the
// package's prefix, not later inside NewRoundTripper with another.
func TestHostileQuotaTooFinePanicsAtOption(t *testing.T) {
	for name, s := range map[string]GlobalRateLimitSettings{
		"tokens":       {Tokens: 1 << 40, TokensPeriod: time.Minute},
		"requests":     {Requests: 1 << 40, Period: time.Minute},
		"long window":  {Tokens: 1, TokensPeriod: 1000 * 24 * time.Hour},
		"huge burst":   {Requests: 1, Period: time.Hour, Burst: 1 << 30},
		"huge maxcost": {Tokens: 100, TokensPeriod: time.Minute, MaxCost: 1 << 50},
		"negative":     {Tokens: 100, TokensPeriod: time.Minute, MaxCost: -1},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.HasPrefix(s, "outbound: WithGlobalRateLimit: ") {
					t.Fatalf("panic = %v; want one starting with \"outbound: WithGlobalRateLimit: \"", r)
				}
				t.Log(r)
			}()
			WithGlobalRateLimit(s)
		})
	}
}
