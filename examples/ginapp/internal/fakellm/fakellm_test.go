package fakellm

import (
	"bufio"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T, cfg Config) *Vendor {
	t.Helper()
	v, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func post(t *testing.T, c *http.Client, url, body string) *http.Response {
	t.Helper()
	resp, err := c.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestQuotaAnswers429WithHeaders(t *testing.T) {
	v := start(t, Config{Rate: 2})
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	var got429 *http.Response
	// Within one wall-clock second at most 2 pass; send until a 429 shows (bounded).
	for i := 0; i < 50 && got429 == nil; i++ {
		resp := post(t, c, v.URL(), `{"messages":[{"role":"user","content":"hi"}]}`)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			got429 = resp
		}
	}
	if got429 == nil {
		t.Fatal("no 429 in 50 requests against a quota of 2/s")
	}
	if got429.Header.Get("Retry-After") == "" || got429.Header.Get("x-ratelimit-remaining-requests") != "0" ||
		got429.Header.Get("x-ratelimit-reset-requests") == "" {
		t.Fatalf("429 headers: %v", got429.Header)
	}
	if s := v.Stats(); s.RateLimited < 1 || s.PeakPerSecond < 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestCapacityAnswers503(t *testing.T) {
	v := start(t, Config{Capacity: 1, Latency: 300 * time.Millisecond})
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	var wg sync.WaitGroup
	codes := make(chan int, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Post(v.URL()+"/v1/chat/completions", "application/json", strings.NewReader(`{}`))
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	n503 := 0
	for c := range codes {
		if c == http.StatusServiceUnavailable {
			n503++
		}
	}
	s := v.Stats()
	if s.Overloaded != int64(n503) || s.Served+s.Overloaded != 4 {
		t.Fatalf("503s seen %d, stats %+v", n503, s)
	}
	if s.PeakConns < 1 {
		t.Fatalf("peak conns %d", s.PeakConns)
	}
}

func TestStreamEndsWithUsage(t *testing.T) {
	v := start(t, Config{Tokens: 77, StreamChunks: 3})
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	resp := post(t, c, v.URL(), `{"stream":true,"messages":[{"role":"user","content":"x"}]}`)
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "data: ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 5 || lines[4] != "data: [DONE]" || !strings.Contains(lines[3], `"total_tokens":77`) {
		t.Fatalf("stream lines %q", lines)
	}
	if v.Stats().Tokens != 77 {
		t.Fatalf("tokens %d", v.Stats().Tokens)
	}
}
