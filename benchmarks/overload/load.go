package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Load is one open-loop run: requests are due at fixed intervals whatever
// the answers do, as real users arrive, so an app that slows down meets more
// and more waiting requests instead of a politely slower client.
type Load struct {
	Rate        float64            // requests per second
	Duration    time.Duration      // how long requests are sent
	Warmup      time.Duration      // the first part of Duration, left out of the metrics
	Timeout     time.Duration      // the client's timeout per request
	MaxInFlight int                // the generator's own cap on open requests
	Key         func(i int) string // request i's X-API-Key; nil: none
}

// outcome is one request as the generator saw it. Times are offsets from the
// run's start; latency counts from when the request was due, not from when the
// generator got round to sending it (no coordinated omission).
type outcome struct {
	due, sent, end time.Duration
	status         int  // 0: no answer
	retryAfter     bool // the answer had a Retry-After header
	timeout        bool // the client's timeout fired
	dropped        bool // not sent: the generator was at MaxInFlight
	key            string
}

// run sends l.Rate·l.Duration requests to url and waits for every answer
// (each bounded by l.Timeout).
func run(ctx context.Context, url string, l Load) []outcome {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        l.MaxInFlight,
		MaxIdleConnsPerHost: l.MaxInFlight,
		IdleConnTimeout:     30 * time.Second,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: l.Timeout}

	n := int(l.Rate * l.Duration.Seconds())
	out := make([]outcome, n)
	sem := make(chan struct{}, l.MaxInFlight)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		due := time.Duration(float64(i) / l.Rate * float64(time.Second))
		if d := due - time.Since(start); d > 0 {
			// Sleep overshoots by up to a millisecond or so; the requests
			// that fell due meanwhile go out at once, so the mean rate holds.
			select {
			case <-time.After(d):
			case <-ctx.Done():
				wg.Wait()
				return out[:i]
			}
		}
		o := &out[i]
		o.due = due
		if l.Key != nil {
			o.key = l.Key(i)
		}
		select {
		case sem <- struct{}{}:
		default:
			o.dropped = true
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			o.sent = time.Since(start)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{"prompt":"hi"}`))
			req.Header.Set("Content-Type", "application/json")
			if o.key != "" {
				req.Header.Set("X-API-Key", o.key)
			}
			resp, err := client.Do(req)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				o.status = resp.StatusCode
				o.retryAfter = resp.Header.Get("Retry-After") != ""
			}
			o.end = time.Since(start)
			var ne net.Error
			if err != nil && errors.As(err, &ne) && ne.Timeout() {
				o.timeout = true
			}
		}()
	}
	wg.Wait()
	return out
}

// Cell is the metrics of one run, over the requests due after the warm-up.
type Cell struct {
	App              string
	Multiple         float64 // offered load as a multiple of capacity
	Offered          float64 // requests due per second
	Goodput          float64 // 200 answers per second, completed in the window
	OK               int     // 200 answers
	OKP50, OKP99     time.Duration
	Rejected         int // 503 with Retry-After
	RejP50, RejP99   time.Duration
	Timeouts         int // the client gave up
	Other            int // any other status, or a transport error
	Dropped          int // never sent: the generator was at its cap
	SendLagP99       time.Duration
	Vendor           vendorStats
	GeneratorLimited bool
}

// measure summarises outcomes due in [warmup, duration).
func measure(out []outcome, l Load) Cell {
	window := (l.Duration - l.Warmup).Seconds()
	var c Cell
	var ok, rej, lag []time.Duration
	due := 0
	for _, o := range out {
		// Goodput counts answers completed in the window, whenever due.
		if o.status == http.StatusOK && o.end >= l.Warmup && o.end < l.Duration {
			c.Goodput++
		}
		if o.due < l.Warmup {
			continue
		}
		due++
		switch {
		case o.dropped:
			c.Dropped++
			continue
		case o.timeout:
			c.Timeouts++
		case o.status == http.StatusOK:
			ok = append(ok, o.end-o.due)
		case o.status == http.StatusServiceUnavailable && o.retryAfter:
			rej = append(rej, o.end-o.due)
		default:
			c.Other++
		}
		lag = append(lag, o.sent-o.due)
	}
	c.Offered = float64(due) / window
	c.Goodput /= window
	c.OK, c.Rejected = len(ok), len(rej)
	c.OKP50, c.OKP99 = quantile(ok, 0.50), quantile(ok, 0.99)
	c.RejP50, c.RejP99 = quantile(rej, 0.50), quantile(rej, 0.99)
	c.SendLagP99 = quantile(lag, 0.99)
	// The generator, not the app, limited the run if it had to drop
	// requests or fell behind its schedule by more than 10 ms.
	c.GeneratorLimited = c.Dropped > 0 || c.SendLagP99 > 10*time.Millisecond
	return c
}

// quantile is the nearest-rank q-quantile; zero for no samples.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := int(q*float64(len(d))+0.999999) - 1
	return d[max(0, min(i, len(d)-1))]
}
