// Command tracecheck is the end-to-end telemetry check: it starts Jaeger
// (in-memory, bound to 127.0.0.1), runs the example app exporting traces to
// it, drives traffic that trips every inbound layer and the main outbound
// ones, and fails unless Jaeger's query API finds spans tagged with each
// expected resilience.layer and error.type. Then it runs the Jaeger query
// commands of docs/operations.md exactly as written (with sh) and fails unless
// each finds a trace.
//
//	go run ./scripts/tracecheck -jaeger tools/bin/jaeger -app /tmp/ginapp
//
// scripts/jaeger-e2e.sh builds both binaries and runs it; .ci/run calls that.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// phase is one run of the app with a configuration chosen to trip some layers.
type phase struct {
	name string
	// service is the app's OTEL_SERVICE_NAME; empty means one made of the
	// phase's name. The phase whose traces the docs' commands look for
	// keeps the app's default, which those commands name.
	service string
	env     []string
	drive   func(base string)
	expect  [][2]string // {resilience.layer, error.type}
}

func main() {
	jaegerBin := flag.String("jaeger", "tools/bin/jaeger", "the Jaeger binary")
	config := flag.String("config", "scripts/jaeger.yaml", "the Jaeger config")
	appBin := flag.String("app", "", "the example app binary")
	logDir := flag.String("logs", os.TempDir(), "where to write the Jaeger and app logs")
	docs := flag.String("docs", "docs/operations.md", "the doc whose Jaeger query commands are run as written")
	flag.Parse()
	if *appBin == "" {
		fmt.Fprintln(os.Stderr, "tracecheck: -app is required")
		os.Exit(2)
	}
	if err := run(*jaegerBin, *config, *appBin, *logDir, *docs); err != nil {
		fmt.Fprintln(os.Stderr, "tracecheck: FAIL:", err)
		os.Exit(1)
	}
}

func run(jaegerBin, config, appBin, logDir, docs string) error {
	commands, err := docCommands(docs)
	if err != nil {
		return err
	}
	stop, err := startJaeger(jaegerBin, config, filepath.Join(logDir, "tracecheck-jaeger.log"))
	if err != nil {
		return err
	}
	defer stop()
	var missing []string
	checked := 0
	for _, ph := range phases() {
		service := ph.service
		if service == "" {
			service = fmt.Sprintf("sluice-tracecheck-%s-%d", ph.name, os.Getpid())
		}
		if err := runApp(appBin, service, ph, filepath.Join(logDir, "tracecheck-"+ph.name+".log")); err != nil {
			return fmt.Errorf("phase %s: %w", ph.name, err)
		}
		for _, lr := range ph.expect {
			tags := map[string]string{"resilience.layer": lr[0], "error.type": lr[1]}
			n, err := waitTraces(service, tags, 20*time.Second)
			checked++
			status := "ok"
			if err != nil || n == 0 {
				status = fmt.Sprintf("MISSING (%v)", err)
				missing = append(missing, ph.name+": "+lr[0]+"/"+lr[1])
			}
			fmt.Printf("tracecheck: %-8s %-20s %-24s traces=%-3d %s\n", ph.name, lr[0], lr[1], n, status)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%d of %d expected layer/reason pairs not found in Jaeger: %s", len(missing), checked,
			strings.Join(missing, ", "))
	}
	fmt.Printf("tracecheck: all %d layer/reason pairs found in Jaeger\n", checked)
	for _, c := range commands {
		n, err := runDocCommand(c)
		if err != nil || n == 0 {
			return fmt.Errorf("the command of %s finds no trace (%d, %v): %s", docs, n, err, c)
		}
		fmt.Printf("tracecheck: %s: traces=%d: %s\n", docs, n, c)
	}
	return nil
}

// runApp starts the app with the phase's environment, waits for /healthz,
// drives the traffic, then stops it with SIGTERM so it flushes its spans.
func runApp(bin, service string, ph phase, logPath string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "SLUICE_ADDR="+addr, "OTEL_EXPORTER_OTLP_ENDPOINT="+otlpHTTP,
		"OTEL_SERVICE_NAME="+service, "VENDOR_URL=", "REDIS_URL=")
	cmd.Env = append(cmd.Env, ph.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case err := <-exited:
			return fmt.Errorf("app exited before serving: %v (log: %s)", err, logPath)
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return fmt.Errorf("app not serving after 30s (log: %s)", logPath)
		}
		time.Sleep(100 * time.Millisecond) // polling for readiness
	}
	ph.drive(base)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			return fmt.Errorf("app exited with %v after SIGTERM (log: %s)", err, logPath)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		return fmt.Errorf("app did not stop within 30s of SIGTERM (log: %s)", logPath)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}

func chat(base, key string) int {
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat", strings.NewReader(`{"prompt":"hi"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// burst sends n requests at once, from n users unless one key is given.
func burst(base string, n int, key string) {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := key
			if k == "" {
				k = fmt.Sprintf("user-%d", i)
			}
			chat(base, k)
		}()
	}
	wg.Wait()
}

// repeat runs f every gap until d has passed.
func repeat(d, gap time.Duration, f func()) {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		f()
		time.Sleep(gap) // pacing the traffic
	}
}

func phases() []phase {
	// Settings that let everything else through, for phases aimed at one layer.
	open := []string{"SLUICE_MAX_INFLIGHT=500", "SLUICE_USER_RATE=1000-S", "SLUICE_QUEUE_ACTIVE=200",
		"SLUICE_QUEUE_WAITING=200", "SLUICE_VENDOR_RATE=1000-S", "SLUICE_FAKE_CAPACITY=0", "SLUICE_FAKE_RATE=0"}
	with := func(env ...string) []string { return append(append([]string(nil), open...), env...) }
	return []phase{
		{
			// Two requests are held by the vendor for 400ms; every other
			// request of a burst meets 2 in flight and is shed.
			name: "shedder",
			env:  with("SLUICE_MAX_INFLIGHT=2", "SLUICE_FAKE_LATENCY=400ms"),
			drive: func(base string) {
				repeat(time.Second, 50*time.Millisecond, func() { burst(base, 10, "") })
			},
			expect: [][2]string{{"load_shedder", "overloaded"}},
		},
		{
			// 1 active + 1 waiting; the waiting one times out after 150ms
			// (the active one takes 400ms), the others find the queue full.
			// One user sends 10 at once against a limit of 3 a second.
			name: "inbound",
			env: with("SLUICE_USER_RATE=3-S", "SLUICE_QUEUE_ACTIVE=1", "SLUICE_QUEUE_WAITING=1",
				"SLUICE_QUEUE_TIMEOUT=150ms", "SLUICE_FAKE_LATENCY=400ms"),
			drive: func(base string) {
				repeat(time.Second, 50*time.Millisecond, func() { burst(base, 10, "") })
				burst(base, 10, "flood")
			},
			expect: [][2]string{
				{"user_rate_limiter", "rate_limited"},
				{"admission_queue", "queue_full"},
				{"admission_queue", "queue_timeout"},
			},
		},
		{
			// Every attempt outlives its 150ms timeout (the vendor takes
			// 300ms), so calls exhaust their 2 attempts; a vendor rate of 5
			// a second with a 50ms wait turns the rest away.
			name: "outbound",
			env: with("SLUICE_VENDOR_RATE=5-S", "SLUICE_VENDOR_QUEUE_TIMEOUT=50ms", "SLUICE_ATTEMPT_TIMEOUT=150ms",
				"SLUICE_RETRY_ATTEMPTS=2", "SLUICE_FAKE_LATENCY=300ms"),
			drive: func(base string) {
				repeat(2*time.Second, 100*time.Millisecond, func() { burst(base, 8, "") })
			},
			expect: [][2]string{
				{"global_rate_limiter", "queue_timeout"},
				{"retry", "retries_exhausted"},
			},
		},
		{
			// The vendor answers 500 to everything: the breaker opens after
			// its minimum throughput and turns the rest away.
			name: "breaker",
			env:  with("SLUICE_FAKE_ERROR_RATE=1", "SLUICE_RETRY_ATTEMPTS=1", "SLUICE_FAKE_LATENCY=1ms"),
			drive: func(base string) {
				repeat(time.Second, 20*time.Millisecond, func() { burst(base, 4, "") })
			},
			expect: [][2]string{{"circuit_breaker", "circuit_open"}},
		},
		{
			// One vendor call at a time, 200ms each, a 50ms wait for the
			// bulkhead: most of each burst times out in its queue.
			name:    "bulkhead",
			service: docService,
			env: with("SLUICE_VENDOR_CONCURRENCY=1", "SLUICE_VENDOR_QUEUE_TIMEOUT=50ms", "SLUICE_ATTEMPT_TIMEOUT=5s",
				"SLUICE_RETRY_ATTEMPTS=1", "SLUICE_FAKE_LATENCY=200ms"),
			drive: func(base string) {
				repeat(time.Second, 100*time.Millisecond, func() { burst(base, 8, "") })
			},
			expect: [][2]string{{"bulkhead", "queue_timeout"}},
		},
	}
}
