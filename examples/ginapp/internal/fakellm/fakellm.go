// Package fakellm is an OpenAI-style fake LLM vendor on loopback, for the
// example app, its demo and the tests. It has the failure modes of a real
// vendor: latency, a concurrency capacity, a request quota answered with 429,
// Retry-After and x-ratelimit-* headers, an error rate, and SSE streaming with
// usage in the final chunk. It counts what it sees: peak open sockets, peak
// concurrency and the busiest one-second window.
package fakellm

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-go/sluice"
)

// Config is the vendor's behaviour. The zero value serves every request at
// once, with no limits.
type Config struct {
	// Latency is the time to the first byte of each answer.
	Latency time.Duration
	// Capacity is how many requests it serves at once; past it, 503 with
	// Retry-After: 1. Zero means unlimited.
	Capacity int
	// Rate is its quota in requests per second; past it, 429 with Retry-After
	// and x-ratelimit-* headers. Zero means unlimited.
	Rate int
	// ErrorRate is the fraction of requests answered 500, from a seeded
	// generator (Seed).
	ErrorRate float64
	// Seed seeds the error generator.
	Seed uint64
	// Tokens is usage.total_tokens reported per answer; zero means 42.
	Tokens int
	// StreamChunks is how many content chunks a streamed answer has (zero: 5),
	// StreamInterval the gap between them.
	StreamChunks   int
	StreamInterval time.Duration
}

// Stats is what the vendor saw.
type Stats struct {
	Requests        int64 // requests received
	Served          int64 // 200 answers
	RateLimited     int64 // 429 answers
	Overloaded      int64 // 503 answers
	Errors          int64 // 500 answers
	PeakConns       int64 // most TCP connections open at once
	PeakConcurrency int64 // most requests in the handler at once
	PeakPerSecond   int64 // most requests received in one wall-clock second
	Tokens          int64 // usage.total_tokens reported in 200 answers
}

// Vendor is a running fake vendor.
type Vendor struct {
	cfg Config
	srv *http.Server
	ln  net.Listener

	mu       sync.Mutex
	rng      *rand.Rand
	second   int64
	inSecond int64

	connMu sync.Mutex
	open   map[net.Conn]struct{} // the sockets open at the vendor

	conns, inflight                     atomic.Int64
	requests, served, limited, overload atomic.Int64
	errors, peakConns, peakInflight     atomic.Int64
	peakSecond, tokens                  atomic.Int64
	done                                chan struct{}
}

// Start listens on 127.0.0.1 on a free port and serves until Close.
func Start(cfg Config) (*Vendor, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fakellm: listen: %w", err)
	}
	v := New(cfg)
	v.ln = ln
	v.srv = &http.Server{Handler: v, ReadHeaderTimeout: 10 * time.Second, ConnState: v.connState}
	v.done = make(chan struct{})
	go func() {
		defer close(v.done)
		_ = v.srv.Serve(ln)
	}()
	return v, nil
}

// New returns a vendor to mount as an http.Handler yourself; ConnState hooks
// are then yours to wire (PeakConns stays zero).
func New(cfg Config) *Vendor {
	if cfg.Tokens == 0 {
		cfg.Tokens = 42
	}
	if cfg.StreamChunks == 0 {
		cfg.StreamChunks = 5
	}
	return &Vendor{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}
}

// URL is the vendor's base URL, e.g. http://127.0.0.1:41234.
func (v *Vendor) URL() string { return "http://" + v.ln.Addr().String() }

// Close stops the server and closes every connection.
func (v *Vendor) Close() {
	if v.srv == nil {
		return
	}
	_ = v.srv.Close()
	<-v.done
}

// Stats returns a snapshot of the counters.
func (v *Vendor) Stats() Stats {
	return Stats{
		Requests: v.requests.Load(), Served: v.served.Load(), RateLimited: v.limited.Load(),
		Overloaded: v.overload.Load(), Errors: v.errors.Load(), PeakConns: v.peakConns.Load(),
		PeakConcurrency: v.peakInflight.Load(), PeakPerSecond: v.peakSecond.Load(), Tokens: v.tokens.Load(),
	}
}

// OpenConns is the number of TCP connections open now.
func (v *Vendor) OpenConns() int64 { return v.conns.Load() }

// connState counts the sockets open at the vendor. A socket whose client has
// closed it counts until the server's goroutine for it reads the end of
// stream, which a loaded machine can delay past the client's next dial; so a
// new socket first asks the kernel about the others (peerClosed), since it
// already holds their client's FIN. Without that, the peak could show one
// socket more than the client ever had open.
func (v *Vendor) connState(c net.Conn, s http.ConnState) {
	v.connMu.Lock()
	defer v.connMu.Unlock()
	switch s {
	case http.StateNew:
		if v.open == nil {
			v.open = map[net.Conn]struct{}{}
		}
		for o := range v.open {
			if peerClosed(o) {
				delete(v.open, o)
			}
		}
		v.open[c] = struct{}{}
		storeMax(&v.peakConns, int64(len(v.open)))
	case http.StateClosed, http.StateHijacked:
		delete(v.open, c)
	}
	v.conns.Store(int64(len(v.open)))
}

func storeMax(peak *atomic.Int64, n int64) {
	for {
		p := peak.Load()
		if n <= p || peak.CompareAndSwap(p, n) {
			return
		}
	}
}

type chatRequest struct {
	Model    string `json:"model"`
	Stream   bool   `json:"stream"`
	Messages []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
}

// ServeHTTP answers POST /v1/chat/completions; everything else is 404.
func (v *Vendor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/chat/completions" || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	v.requests.Add(1)
	n := v.inflight.Add(1)
	defer v.inflight.Add(-1)
	storeMax(&v.peakInflight, n)

	remaining, reset, limited, fail := v.admit()
	if v.cfg.Rate > 0 {
		w.Header().Set("x-ratelimit-limit-requests", strconv.Itoa(v.cfg.Rate))
		w.Header().Set("x-ratelimit-remaining-requests", strconv.Itoa(remaining))
		w.Header().Set("x-ratelimit-reset-requests", reset.String())
	}
	if limited {
		v.limited.Add(1)
		w.Header().Set("Retry-After", sluice.RetryAfterSeconds(reset))
		writeError(w, http.StatusTooManyRequests, "rate_limit_exceeded", "quota exceeded")
		return
	}
	if v.cfg.Capacity > 0 && n > int64(v.cfg.Capacity) {
		v.overload.Add(1)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "overloaded", "the engine is overloaded")
		return
	}
	var req chatRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "bad JSON")
		return
	}
	if v.cfg.Latency > 0 {
		t := time.NewTimer(v.cfg.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if fail {
		v.errors.Add(1)
		writeError(w, http.StatusInternalServerError, "server_error", "internal error")
		return
	}
	prompt := ""
	if len(req.Messages) > 0 {
		prompt = req.Messages[len(req.Messages)-1].Content
	}
	answer := "echo: " + prompt
	if req.Stream {
		v.stream(w, r, answer)
		return
	}
	v.served.Add(1)
	v.tokens.Add(int64(v.cfg.Tokens))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"id": "chatcmpl-fake", "object": "chat.completion", "model": req.Model,
		"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
			"message": map[string]string{"role": "assistant", "content": answer}}},
		"usage": map[string]int{"prompt_tokens": v.cfg.Tokens / 2, "completion_tokens": v.cfg.Tokens - v.cfg.Tokens/2,
			"total_tokens": v.cfg.Tokens},
	})
}

// admit applies the per-second quota and draws the error dice.
func (v *Vendor) admit() (remaining int, reset time.Duration, limited, fail bool) {
	now := time.Now()
	sec := now.Unix()
	v.mu.Lock()
	defer v.mu.Unlock()
	if sec != v.second {
		v.second, v.inSecond = sec, 0
	}
	v.inSecond++
	storeMax(&v.peakSecond, v.inSecond)
	reset = time.Unix(sec+1, 0).Sub(now).Round(time.Millisecond)
	if v.cfg.Rate > 0 {
		remaining = v.cfg.Rate - int(v.inSecond)
		if remaining < 0 {
			return 0, reset, true, false
		}
	}
	fail = v.cfg.ErrorRate > 0 && v.rng.Float64() < v.cfg.ErrorRate
	return remaining, reset, false, fail
}

func (v *Vendor) stream(w http.ResponseWriter, r *http.Request, answer string) {
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	for i := 0; i < v.cfg.StreamChunks; i++ {
		if i > 0 && v.cfg.StreamInterval > 0 {
			t := time.NewTimer(v.cfg.StreamInterval)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		piece := answer
		if i > 0 {
			piece = fmt.Sprintf(" [%d]", i)
		}
		b, _ := json.Marshal(map[string]any{"object": "chat.completion.chunk",
			"choices": []any{map[string]any{"index": 0, "delta": map[string]string{"content": piece}}}})
		fmt.Fprintf(w, "data: %s\n\n", b)
		if fl != nil {
			fl.Flush()
		}
	}
	b, _ := json.Marshal(map[string]any{"object": "chat.completion.chunk", "choices": []any{},
		"usage": map[string]int{"total_tokens": v.cfg.Tokens}})
	fmt.Fprintf(w, "data: %s\n\ndata: [DONE]\n\n", b)
	if fl != nil {
		fl.Flush()
	}
	v.served.Add(1)
	v.tokens.Add(int64(v.cfg.Tokens))
}

func writeError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"type": typ, "message": msg}})
}
