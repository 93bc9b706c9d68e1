package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

// demoDefaults are the demo's settings for the variables the user did not
// set: small enough that one burst trips every inbound layer and holds the
// vendor at its caps. The admission queue holds 12 active + 8 waiting; the
// load shedder's cap of 21 leaves one place for a request on its way to
// finding the queue full, so both layers show.
var demoDefaults = map[string]string{
	"SLUICE_MAX_INFLIGHT":         "21",
	"SLUICE_USER_RATE":            "20-S",
	"SLUICE_QUEUE_ACTIVE":         "12",
	"SLUICE_QUEUE_WAITING":        "8",
	"SLUICE_QUEUE_TIMEOUT":        "200ms",
	"SLUICE_VENDOR_MAX_CONNS":     "8",
	"SLUICE_VENDOR_RATE":          "50-S",
	"SLUICE_VENDOR_CONCURRENCY":   "8",
	"SLUICE_VENDOR_QUEUE_TIMEOUT": "300ms",
	"SLUICE_FAKE_LATENCY":         "100ms",
	"SLUICE_FAKE_CAPACITY":        "12",
	"SLUICE_FAKE_RATE":            "60",
	"SLUICE_CRITICAL_KEYS":        "vip",
}

// demoEnv reads the environment, falling back to demoDefaults.
func demoEnv(getenv func(string) string) func(string) string {
	return func(k string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return demoDefaults[k]
	}
}

// isTerminal reports whether f is a terminal (a character device).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// runDemo starts the app with the fake vendor on loopback, drives an overload
// burst at it and prints the table.
func runDemo(cfg Config, d time.Duration, w io.Writer) error {
	cfg.VendorURL = "" // the demo always uses the embedded fake vendor
	ctx := context.Background()
	app, err := NewApp(ctx, cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: app.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = app.Close(sctx)
	}()

	load := Load{URL: "http://" + ln.Addr().String(), Users: 5, Concurrency: 8, Duration: d}
	if f, ok := w.(*os.File); ok && isTerminal(f) {
		load.Progress = w
	}
	if len(cfg.CriticalKeys) > 0 {
		load.Critical = cfg.CriticalKeys[0]
	}
	fmt.Fprintf(w, "sluice demo: %d users + 1 abusive user, %d+%d workers, for %s\n", load.Users,
		load.Users*load.Concurrency, 4*load.Concurrency, d)
	if load.Critical != "" {
		fmt.Fprintf(w, "plus 1 critical user (SLUICE_CRITICAL_KEYS) with %d workers; fair queue across keys: %v\n",
			max(1, load.Concurrency/4), cfg.FairQueue)
	}
	fmt.Fprintf(w, "fake vendor: latency %s, capacity %d concurrent, quota %d/s\n\n",
		cfg.FakeLatency, cfg.FakeCapacity, cfg.FakeRate)
	res := Drive(ctx, load)
	st := app.fake.Stats()
	vendorRate := "off"
	if cfg.VendorRate.Limit > 0 {
		vendorRate = fmt.Sprintf("%d per %s (SLUICE_VENDOR_RATE)", cfg.VendorRate.Limit, cfg.VendorRate.Period)
	}
	res.Print(w, "results", []Cap{
		{"sockets", st.PeakConns, strconv.Itoa(cfg.VendorMaxConns) + " (SLUICE_VENDOR_MAX_CONNS)"},
		{"concurrent requests", st.PeakConcurrency, strconv.Itoa(cfg.VendorConcurrency) + " (SLUICE_VENDOR_CONCURRENCY)"},
		{"requests in one second", st.PeakPerSecond, vendorRate},
	})
	fmt.Fprintf(w, "vendor answered: %d served, %d rate-limited (429), %d overloaded (503), %d errors (500)\n",
		st.Served, st.RateLimited, st.Overloaded, st.Errors)
	fmt.Fprintln(w)
	fmt.Fprint(w, legend)
	return nil
}
