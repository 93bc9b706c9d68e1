package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// Load is one demo burst: Users polite users and one abusive user, each
// sending as fast as its Concurrency workers allow, for Duration.
type Load struct {
	URL         string // the app's base URL
	Users       int
	Concurrency int // workers per polite user; the abusive user has 4x
	Duration    time.Duration
}

// Outcome counts one kind of answer.
type Outcome struct {
	Status int
	Layer  string
	Reason string
}

// Result is what the burst saw.
type Result struct {
	Sent     int
	Counts   map[Outcome]int
	Latency  []time.Duration // of 200 answers
	Elapsed  time.Duration
	Failures int // transport errors talking to the app
}

// Drive runs the burst and returns when every worker has stopped.
func Drive(ctx context.Context, l Load) Result {
	ctx, cancel := context.WithTimeout(ctx, l.Duration)
	defer cancel()
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	var mu sync.Mutex
	res := Result{Counts: map[Outcome]int{}}
	var wg sync.WaitGroup
	worker := func(key string) {
		defer wg.Done()
		for ctx.Err() == nil {
			start := time.Now()
			o, err := chat(client, l.URL, key)
			d := time.Since(start)
			mu.Lock()
			res.Sent++
			if err != nil {
				res.Failures++
			} else {
				res.Counts[o]++
				if o.Status == http.StatusOK {
					res.Latency = append(res.Latency, d)
				}
			}
			mu.Unlock()
		}
	}
	start := time.Now()
	for u := 0; u < l.Users; u++ {
		for w := 0; w < l.Concurrency; w++ {
			wg.Add(1)
			go worker(fmt.Sprintf("user-%d", u+1))
		}
	}
	for w := 0; w < 4*l.Concurrency; w++ {
		wg.Add(1)
		go worker("abuser")
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res
}

func chat(c *http.Client, base, key string) (Outcome, error) {
	req, err := http.NewRequest(http.MethodPost, base+"/v1/chat",
		strings.NewReader(`{"prompt":"hello","stream":false}`))
	if err != nil {
		return Outcome{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", key)
	resp, err := c.Do(req)
	if err != nil {
		return Outcome{}, err
	}
	defer resp.Body.Close()
	o := Outcome{Status: resp.StatusCode}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		var e errorBody
		if json.Unmarshal(body, &e) == nil {
			o.Layer, o.Reason = e.Error.Layer, e.Error.Reason
		}
	}
	return o, nil
}

type errorBody struct {
	Error struct {
		Layer   string `json:"layer"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	} `json:"error"`
}

// Cap is one configured cap and what the vendor saw against it.
type Cap struct {
	Name     string
	Observed int64
	Limit    string
}

// Print writes the demo's table.
func (r Result) Print(w io.Writer, header string, caps []Cap) {
	fmt.Fprintln(w, header)
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	served := r.Counts[Outcome{Status: http.StatusOK}]
	fmt.Fprintf(tw, "requests sent\t%d\t(%.0f/s)\n", r.Sent, float64(r.Sent)/r.Elapsed.Seconds())
	fmt.Fprintf(tw, "served (200)\t%d\t(%.0f/s)\n", served, float64(served)/r.Elapsed.Seconds())
	if r.Failures > 0 {
		fmt.Fprintf(tw, "failed to reach the app\t%d\t\n", r.Failures)
	}
	tw.Flush()
	fmt.Fprintln(w)
	keys := make([]Outcome, 0, len(r.Counts))
	for o := range r.Counts {
		if o.Status != http.StatusOK {
			keys = append(keys, o)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return r.Counts[keys[i]] > r.Counts[keys[j]] })
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "rejected by\treason\tstatus\tcount\t")
	for _, o := range keys {
		layer, reason := o.Layer, o.Reason
		if layer == "" {
			layer, reason = "(vendor/other)", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t\n", layer, reason, o.Status, r.Counts[o])
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "vendor observed\tpeak\tconfigured cap\t")
	for _, c := range caps {
		fmt.Fprintf(tw, "%s\t%d\t%s\t\n", c.Name, c.Observed, c.Limit)
	}
	tw.Flush()
	fmt.Fprintln(w)
	if len(r.Latency) > 0 {
		lat := slices.Clone(r.Latency)
		slices.Sort(lat)
		fmt.Fprintf(w, "latency of served requests: p50 %s  p90 %s  p99 %s  max %s\n",
			pct(lat, 50), pct(lat, 90), pct(lat, 99), lat[len(lat)-1].Round(time.Millisecond))
	}
}

func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	if i > 0 {
		i--
	}
	return sorted[i].Round(time.Millisecond)
}
