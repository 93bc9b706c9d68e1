package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// drive sends chat requests from 6 users, 6 workers each, each worker
// sending its next request as soon as it has an answer, until ctx ends. A
// worker rejected by the app pauses 5ms, so that the 429s of the user limit
// do not eat the CPU that Prometheus and the app need.
func drive(ctx context.Context, base string) {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for u := range 6 {
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := fmt.Sprintf("user-%d", u+1)
				for ctx.Err() == nil {
					if chat(ctx, client, base, key) != http.StatusOK {
						select {
						case <-ctx.Done():
						case <-time.After(5 * time.Millisecond): // pacing the rejected
						}
					}
				}
			}()
		}
	}
	wg.Wait()
}

func chat(ctx context.Context, c *http.Client, base, key string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat", strings.NewReader(`{"prompt":"hello"}`))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", key)
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode
}
