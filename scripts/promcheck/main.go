// Command promcheck is the end-to-end check of monitoring/: it runs the
// example app under an overload that trips every layer, a real Prometheus
// (bound to 127.0.0.1, storage in a temporary directory) that scrapes the app
// every second and evaluates monitoring/sluice-alerts.yaml every second, and
// fails unless every query of monitoring/sluice-dashboard.json returns data
// and the SluiceOutboundOverload alert fires. It prints each panel's query and
// its first value.
//
//	go run ./scripts/promcheck -app /tmp/ginapp -work /tmp/promcheck
//
// scripts/prometheus-e2e.sh builds the app and runs it; .ci/run calls that.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// overload is the app's configuration: small caps, a vendor quota below the
// offered load and a fake vendor smaller than the outbound caps, so that
// every layer has work: the shedder and the admission queue turn requests
// away, the user limit throttles each key, calls wait for the vendor quota
// and time out there, and the vendor's own 429s and 503s are retried.
var overload = []string{
	"SLUICE_MAX_INFLIGHT=24", "SLUICE_USER_RATE=20-S",
	"SLUICE_QUEUE_ACTIVE=12", "SLUICE_QUEUE_WAITING=8", "SLUICE_QUEUE_TIMEOUT=300ms",
	"SLUICE_VENDOR_MAX_CONNS=8", "SLUICE_VENDOR_CONCURRENCY=8",
	"SLUICE_VENDOR_RATE=30-S", "SLUICE_VENDOR_QUEUE_TIMEOUT=100ms",
	"SLUICE_FAKE_LATENCY=100ms", "SLUICE_FAKE_CAPACITY=6", "SLUICE_FAKE_RATE=25",
}

// The alert the overload must fire.
const overloadAlert = "SluiceOutboundOverload"

// job is the scrape job's name, which the dashboard's $job selects.
const job = "sluice-e2e"

func main() {
	promBin := flag.String("prometheus", "prometheus", "the Prometheus binary")
	appBin := flag.String("app", "", "the example app binary")
	rules := flag.String("rules", "monitoring/sluice-alerts.yaml", "the alert rules")
	dashboard := flag.String("dashboard", "monitoring/sluice-dashboard.json", "the Grafana dashboard")
	work := flag.String("work", "", "a directory for Prometheus' config, storage and the logs")
	within := flag.Duration("within", 60*time.Second, "how long to wait for data and the alert once the load runs")
	flag.Parse()
	if *appBin == "" || *work == "" {
		fmt.Fprintln(os.Stderr, "promcheck: -app and -work are required")
		os.Exit(2)
	}
	if err := run(*promBin, *appBin, *rules, *dashboard, *work, *within); err != nil {
		fmt.Fprintln(os.Stderr, "promcheck: FAIL:", err)
		os.Exit(1)
	}
}

func run(promBin, appBin, rules, dashboard, work string, within time.Duration) error {
	queries, err := loadDashboard(dashboard)
	if err != nil {
		return err
	}
	appAddr, err := freeAddr()
	if err != nil {
		return err
	}
	promAddr, err := freeAddr()
	if err != nil {
		return err
	}
	app, err := start(filepath.Join(work, "app.log"), appBin, nil, append([]string{"SLUICE_ADDR=" + appAddr,
		"VENDOR_URL=", "REDIS_URL=", "OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_SERVICE_NAME=sluice-e2e"}, overload...))
	if err != nil {
		return err
	}
	defer app.stop()
	if err := app.waitHTTP("http://"+appAddr+"/healthz", 30*time.Second); err != nil {
		return err
	}
	rulesAbs, err := filepath.Abs(rules)
	if err != nil {
		return err
	}
	config := filepath.Join(work, "prometheus.yml")
	if err := os.WriteFile(config, []byte(prometheusConfig(appAddr, rulesAbs)), 0o644); err != nil {
		return err
	}
	prom, err := start(filepath.Join(work, "prometheus.log"), promBin, []string{
		"--config.file=" + config, "--storage.tsdb.path=" + filepath.Join(work, "data"),
		"--web.listen-address=" + promAddr, "--log.level=warn"}, nil)
	if err != nil {
		return err
	}
	defer prom.stop()
	api := &promAPI{base: "http://" + promAddr}
	if err := prom.waitHTTP(api.base+"/-/ready", 30*time.Second); err != nil {
		return err
	}
	if err := api.waitRulesLoaded(overloadAlert, 10*time.Second); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(context.Background())
	loadDone := make(chan struct{})
	go func() { defer close(loadDone); drive(ctx, "http://"+appAddr) }()
	defer func() { cancel(); <-loadDone }()
	fmt.Printf("promcheck: overloading the app on %s, Prometheus on %s scraping it every 1s\n", appAddr, promAddr)

	// Poll until every query has data and the alert fires, or time runs out.
	deadline := time.Now().Add(within)
	var results []queryResult
	var alerts []alert
	for {
		results = api.queryAll(queries)
		alerts, err = api.alerts()
		if allHaveData(results) && err == nil && firing(alerts, overloadAlert) {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second) // Prometheus scrapes and evaluates every second
	}
	cancel()
	<-loadDone

	failed := 0
	for _, r := range results {
		status := "ok"
		if !r.hasData() {
			status = "NO DATA"
			if r.err != nil {
				status += " (" + r.err.Error() + ")"
			}
			failed++
		}
		fmt.Printf("promcheck: %-50s %-7s first value %s\n", r.panel+" ["+r.refID+"]", status, r.first)
		fmt.Printf("promcheck:   %s\n", r.expr)
	}
	for _, a := range alerts {
		fmt.Printf("promcheck: alert %-28s %-8s %s\n", a.Labels["alertname"], a.State, labelString(a.Labels))
	}
	if err != nil {
		return fmt.Errorf("reading alerts: %w", err)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d dashboard queries returned no data within %s (logs in %s)", failed, len(results),
			within, work)
	}
	if !firing(alerts, overloadAlert) {
		return fmt.Errorf("%s did not fire within %s (logs in %s)", overloadAlert, within, work)
	}
	fmt.Printf("promcheck: all %d dashboard queries returned data and %s fired\n", len(results), overloadAlert)
	return nil
}

// prometheusConfig scrapes the app every second and evaluates the rules every
// second, so that an alert without a `for` fires seconds into the overload.
func prometheusConfig(appAddr, rules string) string {
	return fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: %s
    static_configs:
      - targets: [%q]
`, rules, job, appAddr)
}

// process is a started child process that dies with this one.
type process struct {
	cmd    *exec.Cmd
	exited chan error
	log    *os.File
	name   string
}

func start(logPath, bin string, args, env []string) (*process, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// If promcheck is killed (the script's timeout), the children go too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, exited: make(chan error, 1), log: logf, name: filepath.Base(bin)}
	go func() { p.exited <- cmd.Wait() }()
	return p, nil
}

// stop sends SIGTERM, and SIGKILL if the process has not exited 10s later.
func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	p.log.Close()
}

// waitHTTP polls url until it answers 200 or the process exits or d passes.
func (p *process) waitHTTP(url string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-p.exited:
			p.exited <- err
			return fmt.Errorf("%s exited before serving: %v (log: %s)", p.name, err, p.log.Name())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not serving %s after %s (log: %s)", p.name, url, d, p.log.Name())
		}
		time.Sleep(100 * time.Millisecond) // polling for readiness
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func labelString(l map[string]string) string {
	var b strings.Builder
	for _, k := range []string{"job", "resilience_layer", "resilience_policy_name"} {
		if v, ok := l[k]; ok {
			fmt.Fprintf(&b, "%s=%s ", k, v)
		}
	}
	return strings.TrimSpace(b.String())
}
