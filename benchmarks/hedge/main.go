// Command hedge measures what outbound.WithPolicies with failsafe-go's
// hedgepolicy buys against a vendor with a slow minority: every 20th request
// the vendor receives (5%) takes 10x longer than the others. It runs the same
// calls through the same chain (bulkhead, no retry) without and with the
// hedge policy, and prints p50, p99 and max latency and the vendor load (the
// requests the vendor received per call).
//
//	go run ./benchmarks/hedge
//
// Acceptance (issue 12): p99 with hedge at most half of p99 without, vendor
// load at most 1.1x.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/budget"
	"github.com/failsafe-go/failsafe-go/hedgepolicy"

	"github.com/sluice-go/sluice/outbound"
)

type params struct {
	calls, workers int
	fast, slow     time.Duration
	every          int64
	delay          time.Duration
}

// result is one run's figures.
type result struct {
	name          string
	p50, p99, max time.Duration
	load          float64
	errors        int
}

func main() {
	var p params
	flag.IntVar(&p.calls, "n", 4000, "calls per run")
	flag.IntVar(&p.workers, "c", 16, "concurrent callers")
	flag.DurationVar(&p.fast, "fast", 20*time.Millisecond, "latency of most requests")
	flag.DurationVar(&p.slow, "slow", 200*time.Millisecond, "latency of the slow minority")
	flag.Int64Var(&p.every, "every", 20, "every Nth request the vendor receives is slow")
	flag.DurationVar(&p.delay, "delay", 40*time.Millisecond, "hedge delay")
	flag.Parse()
	rows := measure(p)
	printTable(os.Stdout, p, rows)
	if rows[0].errors+rows[1].errors > 0 {
		os.Exit(1)
	}
}

func printTable(w io.Writer, p params, rows []result) {
	fmt.Fprintf(w, "%d calls, %d callers; vendor: %v, every %dth request %v; hedge delay %v\n",
		p.calls, p.workers, p.fast, p.every, p.slow, p.delay)
	fmt.Fprintf(w, "%-10s %10s %10s %10s %8s %7s\n", "chain", "p50", "p99", "max", "load", "errors")
	for _, r := range rows {
		fmt.Fprintf(w, "%-10s %10v %10v %10v %7.3fx %7d\n", r.name, r.p50.Round(time.Millisecond),
			r.p99.Round(time.Millisecond), r.max.Round(time.Millisecond), r.load, r.errors)
	}
	fmt.Fprintf(w, "p99 ratio (hedge/none): %.2f\n", float64(rows[1].p99)/float64(rows[0].p99))
}

// measure runs without the hedge policy, then with it, each against a fresh
// vendor.
func measure(p params) []result {
	hedge := hedgepolicy.NewBuilderWithDelay[*http.Response](p.delay).
		WithBudget(budget.NewBuilder().WithMaxRate(0.1).WithMinConcurrency(1).Build()).
		Build()
	return []result{
		run(p, "none"),
		run(p, "hedge", outbound.WithPolicies(hedge)),
	}
}

func run(p params, name string, opts ...outbound.Option) result {
	var arrivals atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := p.fast
		if arrivals.Add(1)%p.every == 0 {
			d = p.slow
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, r.Header.Get("X-Request-Id"))
	}))
	defer srv.Close()
	tr := outbound.NewTransport(outbound.TransportSettings{MaxConnsPerHost: 4 * p.workers})
	rt := outbound.NewRoundTripper(append([]outbound.Option{outbound.WithTransport(tr),
		outbound.WithBulkhead(outbound.BulkheadSettings{MaxConcurrent: 4 * p.workers, MaxWait: time.Second})}, opts...)...)
	defer rt.Close()

	lat := make([]time.Duration, p.calls)
	var errs atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for range p.workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= p.calls {
					return
				}
				start := time.Now()
				if err := call(rt, srv.URL, i); err != nil {
					errs.Add(1)
				}
				lat[i] = time.Since(start)
			}
		})
	}
	wg.Wait()
	slices.Sort(lat)
	q := func(f float64) time.Duration { return lat[min(len(lat)-1, int(f*float64(len(lat))))] }
	return result{name: name, p50: q(0.50), p99: q(0.99), max: lat[len(lat)-1],
		load: float64(arrivals.Load()) / float64(p.calls), errors: int(errs.Load())}
}

// call sends one request and checks that its answer is its own.
func call(rt http.RoundTripper, url string, id int) error {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-Request-Id", strconv.Itoa(id))
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if string(b) != strconv.Itoa(id) {
		return fmt.Errorf("request %d got the answer %q", id, b)
	}
	return nil
}
