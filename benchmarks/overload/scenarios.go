package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Issue 14's scenarios: who is served under overload. Each runs today's
// FIFO stack and the new mechanism side by side, on fresh servers, and can
// write an SVG chart.

// cellRun is one app under one load, with the vendor's in-flight count
// sampled every 100 ms.
type cellRun struct {
	out     []outcome
	vendor  vendorStats
	samples []float64 // vendor in flight, one per 100 ms from the start
}

// runWith serves load through startSluice(s) in front of a fresh vendor;
// during, if set, runs beside the load (to step the vendor's capacity).
func runWith(ctx context.Context, cfg Config, s Settings, l Load, during func(*vendor)) (cellRun, error) {
	v, err := startVendor(cfg.Vendor, cfg.C, cfg.L)
	if err != nil {
		return cellRun{}, err
	}
	defer v.Close()
	a, err := startSluice(v.URL(), s)
	if err != nil {
		return cellRun{}, err
	}
	var r cellRun
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
				r.samples = append(r.samples, float64(v.Inflight()))
			}
		}
	})
	if during != nil {
		wg.Go(func() { during(v) })
	}
	r.out = run(ctx, a.URL(), l)
	stop()
	wg.Wait()
	a.Close()
	r.vendor = v.Stats()
	return r, nil
}

// keyStats is one key's (or class's) demand and service in the window.
type keyStats struct {
	due, ok int
	okLat   []time.Duration
}

func byKey(out []outcome, l Load, class func(string) string) map[string]*keyStats {
	m := map[string]*keyStats{}
	for _, o := range out {
		if o.due < l.Warmup {
			continue
		}
		k := class(o.key)
		ks := m[k]
		if ks == nil {
			ks = &keyStats{}
			m[k] = ks
		}
		ks.due++
		if o.status == http.StatusOK {
			ks.ok++
			ks.okLat = append(ks.okLat, o.end-o.due)
		}
	}
	return m
}

func writeSVG(dir, name string, f func(io.Writer) error) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var b strings.Builder
	if err := f(&b); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644)
}

// fairness: 5x load, one heavy key sends 80% of the requests and nine light
// keys 20% between them (each 2.2%, a ninth of capacity: more than a tenth,
// the max-min fair share of ten busy keys, so a light key's ceiling is
// 10/11.1 = 90% of its demand). The shedder's cap is raised to 4C so that a
// newcomer reaches the queue, where it may displace a heavy waiter.
func fairness(ctx context.Context, cfg Config, w io.Writer, svgDir string) error {
	l := cfg.Load
	l.Rate = 5 * cfg.capacity()
	l.Key = func(i int) string {
		if i%10 < 8 {
			return "heavy"
		}
		return fmt.Sprintf("light-%d", (i/10*2+i%10-8)%9+1)
	}
	class := func(k string) string { return k }
	fmt.Fprintf(w, "### fairness: 5x (%.0f/s), heavy key 80%%, 9 light keys 20%% between them\n\n", l.Rate)
	fmt.Fprintln(w, "| queue | heavy served/s | light served/s (sum) | light: least % of demand | light: mean % of demand | goodput % of cap |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
	window := (l.Duration - l.Warmup).Seconds()
	var groups []string
	for i := 1; i <= 9; i++ {
		groups = append(groups, fmt.Sprintf("light-%d", i))
	}
	groups = append(groups, "heavy")
	demand := make([]float64, len(groups))
	var series []bars
	for _, mode := range []string{"fifo", "fair"} {
		s := cfg.Sluice
		s.MaxInFlight = 4 * cfg.C
		s.Fair = mode == "fair"
		r, err := runWith(ctx, cfg, s, l, nil)
		if err != nil {
			return err
		}
		ks := byKey(r.out, l, class)
		least, sum, lightOK := 2.0, 0.0, 0.0
		vals := make([]float64, len(groups))
		for i, g := range groups {
			k := ks[g]
			if k == nil {
				k = &keyStats{}
			}
			vals[i] = float64(k.ok) / window
			demand[i] = float64(k.due) / window
			if g != "heavy" {
				f := float64(k.ok) / float64(max(k.due, 1))
				least, sum, lightOK = min(least, f), sum+f, lightOK+float64(k.ok)
			}
		}
		total := 0.0
		for _, v := range vals {
			total += v
		}
		fmt.Fprintf(w, "| %s | %.0f | %.0f | %.0f%% | %.0f%% | %.0f%% |\n", mode, vals[len(vals)-1], lightOK/window,
			100*least, 100*sum/9, 100*total/cfg.capacity())
		series = append(series, bars{Name: mode + " served/s", Vals: vals})
	}
	fmt.Fprintln(w)
	series = append(series, bars{Name: "demand/s", Vals: demand, Color: "#bbb"})
	return writeSVG(svgDir, "fairness.svg", func(out io.Writer) error {
		return barChart(out, "Fairness at 5x: served per key, FIFO vs fair queue", "requests/s", groups, series,
			cfg.capacity()/10, "max-min fair share")
	})
}

// priority: 10x load, a share of it (1 in every `every` requests; 10%:
// critical demand equal to the whole capacity) from a critical key
// (VeryHigh), the rest from 50 ordinary keys.
func priorityScenario(ctx context.Context, cfg Config, w io.Writer, svgDir string, every int) error {
	l := cfg.Load
	l.Rate = 10 * cfg.capacity()
	l.Key = func(i int) string {
		if i%every == 0 {
			return "critical"
		}
		return fmt.Sprintf("user-%d", i%50)
	}
	class := func(k string) string {
		if k == "critical" {
			return "critical"
		}
		return "other"
	}
	fmt.Fprintf(w, "### priority: 10x (%.0f/s), %.0f%% critical (%.1fx capacity)\n\n", l.Rate, 100/float64(every), 10/float64(every))
	fmt.Fprintln(w, "| stack | critical success | critical served p50 | critical served p99 | other success | other served/s | goodput % of cap |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	window := (l.Duration - l.Warmup).Seconds()
	var success, p99 []float64
	for _, mode := range []string{"fifo", "priority"} {
		s := cfg.Sluice
		s.MaxInFlight = 4 * cfg.C // as in fairness: a critical newcomer reaches the queue, where it displaces
		if mode == "priority" {
			s.Critical = map[string]bool{"critical": true}
		}
		r, err := runWith(ctx, cfg, s, l, nil)
		if err != nil {
			return err
		}
		ks := byKey(r.out, l, class)
		c, o := ks["critical"], ks["other"]
		cs := float64(c.ok) / float64(max(c.due, 1))
		fmt.Fprintf(w, "| %s | %.1f%% | %s | %s | %.1f%% | %.0f | %.0f%% |\n", mode, 100*cs, ms(quantile(c.okLat, 0.5)),
			ms(quantile(c.okLat, 0.99)), 100*float64(o.ok)/float64(max(o.due, 1)), float64(o.ok)/window,
			100*float64(c.ok+o.ok)/window/cfg.capacity())
		success = append(success, 100*cs, 100*float64(o.ok)/float64(max(o.due, 1)))
		p99 = append(p99, float64(quantile(c.okLat, 0.99))/float64(cfg.L))
	}
	fmt.Fprintln(w)
	return writeSVG(svgDir, fmt.Sprintf("priority-%dpct.svg", 100/every), func(out io.Writer) error {
		return barChart(out, fmt.Sprintf("Priority at 10x, %.0f%% critical: success rate by class", 100/float64(every)), "% of requests served (200)",
			[]string{"critical", "other"}, []bars{
				{Name: "fifo", Vals: success[0:2]},
				{Name: "priority", Vals: success[2:4]},
			}, 99, "99% target")
	})
}

// adaptive: the vendor's capacity steps 16 → 6 → 16, phase each; 2x the
// full capacity offered throughout. Adaptive bulkhead (ceiling C) against a
// static cap of C and a static cap of 6.
func adaptiveScenario(ctx context.Context, cfg Config, w io.Writer, svgDir string, phase time.Duration) error {
	const low = 6
	l := cfg.Load
	l.Rate = 2 * cfg.capacity()
	l.Duration, l.Warmup = 3*phase, 0
	fmt.Fprintf(w, "### adaptive: vendor capacity %d → %d → %d (%s each), %.0f/s offered\n\n", cfg.C, low, cfg.C, phase, l.Rate)
	fmt.Fprintln(w, "| bulkhead | phase | vendor capacity/s | goodput/s | % of capacity | served p99 | served p99 / L | rejected |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|")
	var lines []line
	capLine := line{Name: "vendor capacity", Dash: true, Color: "black"}
	for t := 0.0; t <= 3*phase.Seconds(); t += 0.1 {
		c := float64(cfg.C)
		if t >= phase.Seconds() && t < 2*phase.Seconds() {
			c = low
		}
		capLine.Pts = append(capLine.Pts, [2]float64{t, c})
	}
	for _, mode := range []string{"adaptive", fmt.Sprintf("static %d", cfg.C), fmt.Sprintf("static %d", low)} {
		s := cfg.Sluice
		s.QueueWaiting = max(1, cfg.C/4)
		s.BulkheadWait = cfg.L
		switch mode {
		case "adaptive":
			s.Adaptive = true
		case fmt.Sprintf("static %d", low):
			s.Bulkhead = low
		}
		step := func(v *vendor) {
			for _, c := range []int{low, cfg.C} {
				select {
				case <-time.After(phase):
					v.SetCapacity(c)
				case <-ctx.Done():
					return
				}
			}
		}
		r, err := runWith(ctx, cfg, s, l, step)
		if err != nil {
			return err
		}
		for p := range 3 {
			// Each phase but its first 2 s (the limiter converging).
			from, to := time.Duration(p)*phase+2*time.Second, time.Duration(p+1)*phase
			c := cfg.C
			if p == 1 {
				c = low
			}
			var ok []time.Duration
			rej := 0
			for _, o := range r.out {
				if o.due < from || o.due >= to {
					continue
				}
				if o.status == http.StatusOK {
					ok = append(ok, o.end-o.due)
				} else if o.status == http.StatusServiceUnavailable {
					rej++
				}
			}
			capacity := float64(c) / cfg.L.Seconds()
			good := float64(len(ok)) / (to - from).Seconds()
			p99 := quantile(ok, 0.99)
			fmt.Fprintf(w, "| %s | %d | %.0f | %.0f | %.0f%% | %s | %.1f | %d |\n", mode, p+1, capacity, good,
				100*good/capacity, ms(p99), float64(p99)/float64(cfg.L), rej)
		}
		// The vendor's mean in-flight count per second.
		ln := line{Name: mode + ": vendor in flight"}
		for i := 0; i+10 <= len(r.samples); i += 10 {
			sum := 0.0
			for _, v := range r.samples[i : i+10] {
				sum += v
			}
			ln.Pts = append(ln.Pts, [2]float64{float64(i+10) / 10, sum / 10})
		}
		lines = append(lines, ln)
	}
	fmt.Fprintln(w)
	lines = append(lines, capLine)
	return writeSVG(svgDir, "adaptive.svg", func(out io.Writer) error {
		return lineChart(out, "Adaptive bulkhead: requests at the vendor vs its capacity", "seconds",
			"vendor in flight (mean per second)", lines)
	})
}

// loadsChart draws goodput and served p99 against offered load for the
// default scenario's cells.
func loadsChart(svgDir string, cfg Config, cells []Cell) error {
	byApp := map[string]*line{}
	p99 := map[string]*line{}
	var names []string
	for _, c := range cells {
		if byApp[c.App] == nil {
			byApp[c.App], p99[c.App] = &line{Name: c.App + " goodput"}, &line{Name: c.App + " served p99", Dash: true}
			names = append(names, c.App)
		}
		byApp[c.App].Pts = append(byApp[c.App].Pts, [2]float64{c.Multiple, 100 * c.Goodput / cfg.capacity()})
		p99[c.App].Pts = append(p99[c.App].Pts, [2]float64{c.Multiple, float64(c.OKP99) / float64(cfg.L)})
	}
	sort.Strings(names)
	var g, l []line
	for i, n := range names {
		a, b := *byApp[n], *p99[n]
		a.Color, b.Color = palette[i], palette[i]
		g, l = append(g, a), append(l, b)
	}
	if err := writeSVG(svgDir, "goodput.svg", func(out io.Writer) error {
		return lineChart(out, "Goodput against offered load", "offered load (x capacity)", "goodput, % of capacity", g)
	}); err != nil {
		return err
	}
	return writeSVG(svgDir, "p99.svg", func(out io.Writer) error {
		return lineChart(out, "Served p99 against offered load", "offered load (x capacity)", "served p99 (service times)", l)
	})
}
