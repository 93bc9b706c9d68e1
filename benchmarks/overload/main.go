// Command overload offers a loopback vendor 1x, 2x, 5x and 10x its capacity
// through two Gin apps, a naive one and one behind the sluice stack, and
// prints a markdown table of what their clients and the vendor saw, side by
// side:
//
//	go run ./benchmarks/overload
//
// The vendor serves C requests at once in L each (capacity C/L per second)
// and, past C, degrades (processor sharing, the default) or queues
// (-vendor=queue); it never rejects. Each cell gets a fresh vendor, app and
// generator. See benchmarks/README.md for the results and how to read them.
//
// -scenario picks issue 14's scenarios instead (fairness, priority,
// adaptive, or all of them), each today's FIFO stack beside the new
// mechanism; -svg DIR writes each scenario's chart there:
//
//	go run ./benchmarks/overload -scenario=all -svg=benchmarks/charts
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// Config is one benchmark: the vendor, the loads and the apps.
type Config struct {
	C        int           // vendor concurrency
	L        time.Duration // vendor latency at or under C
	Vendor   Vendor
	Multiple []float64 // offered loads, as multiples of capacity
	Apps     []string  // "naive", "sluice"
	Load     Load      // Rate is set per cell
	Sluice   Settings
}

func (c Config) capacity() float64 { return float64(c.C) / c.L.Seconds() }

// runCell measures one app at one load, on fresh servers.
func runCell(ctx context.Context, cfg Config, appName string, multiple float64) (Cell, error) {
	v, err := startVendor(cfg.Vendor, cfg.C, cfg.L)
	if err != nil {
		return Cell{}, err
	}
	defer v.Close()
	var a *app
	switch appName {
	case "naive":
		a, err = startNaive(v.URL())
	case "sluice":
		a, err = startSluice(v.URL(), cfg.Sluice)
	default:
		err = fmt.Errorf("unknown app %q", appName)
	}
	if err != nil {
		return Cell{}, err
	}
	l := cfg.Load
	l.Rate = multiple * cfg.capacity()
	out := run(ctx, a.URL(), l)
	a.Close()
	c := measure(out, l)
	c.App, c.Multiple, c.Vendor = appName, multiple, v.Stats()
	return c, nil
}

func main() {
	var cfg Config
	var loads, apps string
	flag.IntVar(&cfg.C, "c", 16, "vendor: requests served at once")
	flag.DurationVar(&cfg.L, "l", 100*time.Millisecond, "vendor: latency at or under c")
	vendor := flag.String("vendor", string(VendorDegrade), "vendor past c: degrade (processor sharing) or queue (FIFO)")
	flag.StringVar(&loads, "loads", "1,2,5,10", "offered loads, multiples of capacity c/l")
	flag.StringVar(&apps, "apps", "naive,sluice", "apps to run")
	flag.DurationVar(&cfg.Load.Duration, "duration", 6*time.Second, "per cell: how long requests are sent")
	flag.DurationVar(&cfg.Load.Warmup, "warmup", time.Second, "per cell: first part left out of the metrics")
	flag.DurationVar(&cfg.Load.Timeout, "timeout", 10*time.Second, "generator: client timeout per request")
	flag.IntVar(&cfg.Load.MaxInFlight, "max-inflight", 4000, "generator: most open requests (each costs 4 fds here)")
	scenario := flag.String("scenario", "loads", "loads (naive vs sluice at each -loads), fairness, priority, adaptive, or all (the last three)")
	svgDir := flag.String("svg", "", "write the scenarios' SVG charts in this directory")
	phase := flag.Duration("phase", 20*time.Second, "adaptive scenario: how long each capacity phase lasts")
	flag.Parse()
	cfg.Vendor = Vendor(*vendor)
	cfg.Apps = strings.Split(apps, ",")
	for _, s := range strings.Split(loads, ",") {
		m, err := strconv.ParseFloat(s, 64)
		if err != nil || m <= 0 {
			fmt.Fprintf(os.Stderr, "overload: bad -loads %q\n", s)
			os.Exit(2)
		}
		cfg.Multiple = append(cfg.Multiple, m)
	}
	cfg.Sluice = DefaultSettings(cfg.C, cfg.L)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	gin.SetMode(gin.ReleaseMode)
	var err error
	switch *scenario {
	case "loads":
		var cells []Cell
		if cells, err = bench(ctx, cfg, os.Stdout, os.Stderr); err == nil {
			err = loadsChart(*svgDir, cfg, cells)
		}
	case "fairness", "priority", "adaptive", "all":
		err = scenarios(ctx, cfg, *scenario, *svgDir, *phase, os.Stdout)
	default:
		err = fmt.Errorf("unknown -scenario %q", *scenario)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "overload:", err)
		os.Exit(1)
	}
}

func scenarios(ctx context.Context, cfg Config, which, svgDir string, phase time.Duration, w io.Writer) error {
	start := time.Now()
	fmt.Fprintf(w, "vendor: %s, C=%d, L=%s, capacity %.0f req/s; %s per cell (%s warm-up); %s, GOMAXPROCS=%d\n\n",
		cfg.Vendor, cfg.C, cfg.L, cfg.capacity(), cfg.Load.Duration, cfg.Load.Warmup, runtime.Version(), runtime.GOMAXPROCS(0))
	all := which == "all"
	if all || which == "fairness" {
		if err := fairness(ctx, cfg, w, svgDir); err != nil {
			return err
		}
	}
	if all || which == "priority" {
		for _, every := range []int{10, 20} { // 10% critical, then 5%
			if err := priorityScenario(ctx, cfg, w, svgDir, every); err != nil {
				return err
			}
		}
	}
	if all || which == "adaptive" {
		if err := adaptiveScenario(ctx, cfg, w, svgDir, phase); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "total %s\n", time.Since(start).Round(time.Second))
	return ctx.Err()
}

func bench(ctx context.Context, cfg Config, w, progress io.Writer) ([]Cell, error) {
	start := time.Now()
	var cells []Cell
	fmt.Fprintf(w, "vendor: %s, C=%d, L=%s, capacity %.0f req/s; %s per cell (%s warm-up), client timeout %s, generator cap %d in flight; %s, GOMAXPROCS=%d\n\n",
		cfg.Vendor, cfg.C, cfg.L, cfg.capacity(), cfg.Load.Duration, cfg.Load.Warmup, cfg.Load.Timeout,
		cfg.Load.MaxInFlight, runtime.Version(), runtime.GOMAXPROCS(0))
	fmt.Fprintln(w, "| load | app | offered/s | goodput/s | % of cap | served p50 | served p99 | rejected | reject p50 | reject p99 | timeouts | other | vendor peak in-flight | vendor peak sockets | vendor wasted | gen dropped | gen lag p99 |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, m := range cfg.Multiple {
		for _, name := range cfg.Apps {
			t := time.Now()
			c, err := runCell(ctx, cfg, name, m)
			if err != nil {
				return nil, err
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			cells = append(cells, c)
			fmt.Fprintf(progress, "cell %gx %s: %s\n", m, name, time.Since(t).Round(100*time.Millisecond))
			mark := ""
			if c.GeneratorLimited {
				mark = " ⚠"
			}
			fmt.Fprintf(w, "| %gx | %s | %.0f | %.0f | %.0f%% | %s | %s | %d | %s | %s | %d | %d | %d | %d | %d | %d%s | %s |\n",
				m, name, c.Offered, c.Goodput, 100*c.Goodput/cfg.capacity(), ms(c.OKP50), ms(c.OKP99),
				c.Rejected, ms(c.RejP50), ms(c.RejP99), c.Timeouts, c.Other,
				c.Vendor.PeakInflight, c.Vendor.PeakConns, c.Vendor.Canceled, c.Dropped, mark, ms(c.SendLagP99))
		}
	}
	fmt.Fprintf(w, "\ntotal %s\n", time.Since(start).Round(time.Second))
	return cells, nil
}

// ms prints a duration in milliseconds, or "-" for none.
func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.0f ms", float64(d)/1e6)
}
