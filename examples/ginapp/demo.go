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

// Load is one demo burst: Users polite users, one abusive user (a heavy key)
// and, with Critical set, one critical user, each sending as fast as its
// workers allow (Concurrency per polite user, 4x for the abusive one, a
// quarter for the critical one), for Duration.
type Load struct {
	URL         string // the app's base URL
	Users       int
	Concurrency int // workers per polite user; the abusive user has 4x
	Duration    time.Duration
	Critical    string // the critical user's API key (SLUICE_CRITICAL_KEYS); "" for none
	// Progress, if set, gets a line per second while the burst runs: sent,
	// served and rejected by layer so far (runDemo sets it when stdout is a
	// terminal).
	Progress io.Writer
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
	PerKey   map[string]*KeyCount
}

// KeyCount is what one API key sent and got served.
type KeyCount struct{ Sent, Served int }

// Drive runs the burst and returns when every worker has stopped.
func Drive(ctx context.Context, l Load) Result {
	ctx, cancel := context.WithTimeout(ctx, l.Duration)
	defer cancel()
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	var mu sync.Mutex
	res := Result{Counts: map[Outcome]int{}, PerKey: map[string]*KeyCount{}}
	var wg sync.WaitGroup
	// label names the key in the table: the critical key is a secret of the
	// operator's, never printed.
	worker := func(key, label string) {
		defer wg.Done()
		for ctx.Err() == nil {
			start := time.Now()
			o, err := chat(client, l.URL, key)
			d := time.Since(start)
			mu.Lock()
			res.Sent++
			kc := res.PerKey[label]
			if kc == nil {
				kc = &KeyCount{}
				res.PerKey[label] = kc
			}
			kc.Sent++
			if err == nil && o.Status == http.StatusOK {
				kc.Served++
			}
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
	if l.Progress != nil {
		done := make(chan struct{})
		defer func() { <-done }()
		go func() {
			defer close(done)
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				mu.Lock()
				line := progressLine(time.Since(start), res)
				mu.Unlock()
				fmt.Fprintln(l.Progress, line)
			}
		}()
	}
	for u := 0; u < l.Users; u++ {
		for w := 0; w < l.Concurrency; w++ {
			wg.Add(1)
			key := fmt.Sprintf("user-%d", u+1)
			go worker(key, key)
		}
	}
	for w := 0; w < 4*l.Concurrency; w++ {
		wg.Add(1)
		go worker("abuser", "abuser (heavy)")
	}
	// The critical user sends within its rate limit: priority decides who
	// waits and who is shed, not how much a key may send.
	for w := 0; l.Critical != "" && w < max(1, l.Concurrency/4); w++ {
		wg.Add(1)
		go worker(l.Critical, "critical")
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res
}

// progressLine is one progress line: the totals so far, rejections by
// layer, the largest first.
func progressLine(elapsed time.Duration, r Result) string {
	served := r.Counts[Outcome{Status: http.StatusOK}]
	byLayer := map[string]int{}
	for o, n := range r.Counts {
		if o.Status == http.StatusOK {
			continue
		}
		layer := o.Layer
		if layer == "" {
			layer = "other"
		}
		byLayer[layer] += n
	}
	layers := make([]string, 0, len(byLayer))
	for l := range byLayer {
		layers = append(layers, l)
	}
	sort.Slice(layers, func(i, j int) bool {
		if byLayer[layers[i]] != byLayer[layers[j]] {
			return byLayer[layers[i]] > byLayer[layers[j]]
		}
		return layers[i] < layers[j]
	})
	var b strings.Builder
	fmt.Fprintf(&b, "%4.0fs  sent %6d  served %6d  rejected:", elapsed.Seconds(), r.Sent, served)
	if len(layers) == 0 {
		b.WriteString(" none")
	}
	for _, l := range layers {
		fmt.Fprintf(&b, " %s %d", l, byLayer[l])
	}
	if r.Failures > 0 {
		fmt.Fprintf(&b, "  unreachable %d", r.Failures)
	}
	return b.String()
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
	r.printPerKey(w)
	if len(r.Latency) > 0 {
		lat := slices.Clone(r.Latency)
		slices.Sort(lat)
		fmt.Fprintf(w, "latency of served requests: p50 %s  p90 %s  p99 %s  max %s\n",
			pct(lat, 50), pct(lat, 90), pct(lat, 99), lat[len(lat)-1].Round(time.Millisecond))
	}
}

// legend explains the demo's table; runDemo prints it last.
const legend = `How to read it:
  requests sent, served    every chat the users sent, and those answered 200.
  rejected by              the layer that said no (its resilience.layer), why (error.type) and the status the
                           client got. Inbound: load_shedder sheds excess in-flight requests at once (503),
                           user_rate_limiter holds each API key to SLUICE_USER_RATE (429), admission_queue
                           turns away what neither fits nor waits in its queue (503). Outbound layers protect
                           the vendor: bulkhead, global_rate_limiter (its quota), circuit_breaker (503).
  vendor observed          the fake vendor's own peaks against the caps sluice keeps, whatever the load. A
                           rate's peak counts any one second, so it may reach the rate plus its burst of 1.
  vendor answered          what the fake vendor itself answered: 429s and 503s there are load that got past
                           sluice's caps.
  API key                  each user's share: the critical key (SLUICE_CRITICAL_KEYS) is never shed or queued
                           behind others; the abuser's extra workers mostly meet the load shedder and its own
                           rate limit, and the fair queue gives the other keys equal turns at the slots.
  latency                  of served requests only; rejections are answered at once.
See docs/example-app.md (The demo) for the settings, and GET /debug/sluice for the live view.
`

func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	if i > 0 {
		i--
	}
	return sorted[i].Round(time.Millisecond)
}

// printPerKey writes what each API key sent and got served: the fair queue
// keeps the heavy key from starving the others, and the critical key is
// served first.
func (r Result) printPerKey(w io.Writer) {
	if len(r.PerKey) == 0 {
		return
	}
	keys := make([]string, 0, len(r.PerKey))
	for k := range r.PerKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "API key	sent	served	served %	")
	for _, k := range keys {
		c := r.PerKey[k]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f%%\t\n", k, c.Sent, c.Served, 100*float64(c.Served)/float64(max(c.Sent, 1)))
	}
	tw.Flush()
	fmt.Fprintln(w)
}
