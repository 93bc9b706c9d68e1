package sluice_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-go/sluice/otelx"
)

// The files of monitoring/ that users copy.
const (
	alertRules     = "monitoring/sluice-alerts.yaml"
	alertRuleTests = "monitoring/sluice-alerts_test.yaml"
	dashboard      = "monitoring/sluice-dashboard.json"
)

// TestAlertRulesPromtool checks the alert rules with `promtool check rules`
// and runs their unit tests with `promtool test rules`. Without promtool
// (Debian's prometheus package) it skips; with CI=true it fails instead, like
// the Redis tests. .ci/run also runs both commands, to show their output.
func TestAlertRulesPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		msg := "promtool not found: install Debian's prometheus package (scripts/ensure-prometheus.sh)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + " [CI=true: a missing promtool is a failure]")
		}
		t.Skip(msg)
	}
	for _, args := range [][]string{
		{"check", "rules", strings.TrimPrefix(alertRules, "monitoring/")},
		{"test", "rules", strings.TrimPrefix(alertRuleTests, "monitoring/")},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "monitoring"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

type alertRule struct {
	Alert string `yaml:"alert"`
	Expr  string `yaml:"expr"`
	For   string `yaml:"for"`
}

func readAlertRules(t *testing.T) []alertRule {
	t.Helper()
	b, err := os.ReadFile(alertRules)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", alertRules, err)
	}
	var rules []alertRule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatalf("%s: no rules", alertRules)
	}
	return rules
}

// TestAlertRulesMatchOperationsDoc keeps docs/operations.md's table of alerts
// and the rules file one source: the same alerts, each with the same
// expression (whitespace aside) and the same `for`.
func TestAlertRulesMatchOperationsDoc(t *testing.T) {
	doc, err := os.ReadFile("docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "## Metrics to alert on")
	if !ok {
		t.Fatal("docs/operations.md has no section \"Metrics to alert on\"")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	// | `Name` | `expr` | for | why |, with \| for | inside the expression.
	row := regexp.MustCompile("(?m)^\\| `(\\w+)` \\| `((?:[^`])+)` \\| ([^|]*) \\|")
	documented := map[string]alertRule{}
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		documented[m[1]] = alertRule{Alert: m[1], Expr: strings.ReplaceAll(m[2], `\|`, "|"),
			For: strings.TrimSpace(m[3])}
	}
	space := regexp.MustCompile(`\s+`)
	norm := func(s string) string { return space.ReplaceAllString(strings.TrimSpace(s), " ") }
	for _, r := range readAlertRules(t) {
		sluiceMetrics(t, "alert "+r.Alert, r.Expr)
		d, ok := documented[r.Alert]
		if !ok {
			t.Errorf("alert %s of %s is not in docs/operations.md's table", r.Alert, alertRules)
			continue
		}
		delete(documented, r.Alert)
		if norm(d.Expr) != norm(r.Expr) {
			t.Errorf("alert %s: docs/operations.md's expression differs from %s:\ndocs: %s\nfile: %s", r.Alert,
				alertRules, norm(d.Expr), norm(r.Expr))
		}
		if wantFor := cmpOr(r.For, "-"); d.For != wantFor {
			t.Errorf("alert %s: docs/operations.md says for %q, %s says %q", r.Alert, d.For, alertRules, wantFor)
		}
	}
	for name := range documented {
		t.Errorf("docs/operations.md documents alert %s, which %s does not have", name, alertRules)
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// prometheusNames are sluice's metrics as the OpenTelemetry Prometheus
// exporter writes them (scripts/prometheus-e2e.sh proves these names against
// a real scrape).
var prometheusNames = map[string]string{
	otelx.MetricRequests:      "resilience_requests_total",
	otelx.MetricActive:        "resilience_request_active",
	otelx.MetricQueued:        "resilience_request_queued",
	otelx.MetricTimeInQueue:   "resilience_request_time_in_queue_seconds",
	otelx.MetricCircuitState:  "resilience_circuit_breaker_state",
	otelx.MetricRetryAttempts: "resilience_retry_attempts_total",
	otelx.MetricDegraded:      "resilience_degraded_total",
}

// A metric name, as opposed to a label, is followed by its selector or range.
var metricName = regexp.MustCompile(`\b(resilience_\w+)\s*[{\[]`)

// sluiceMetrics returns the sluice metrics that expr reads, and reports a
// name that is not one of them (a typo would make a panel or an alert silent).
func sluiceMetrics(t *testing.T, where, expr string) []string {
	t.Helper()
	var ms []string
	for _, sm := range metricName.FindAllStringSubmatch(expr, -1) {
		m := sm[1]
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_count"), "_sum")
		known := false
		for _, n := range prometheusNames {
			known = known || n == base
		}
		if !known {
			t.Errorf("%s: %s is not a metric sluice exports", where, m)
		}
		ms = append(ms, base)
	}
	return ms
}

type dashboardPanel struct {
	ID         int              `json:"id"`
	Title      string           `json:"title"`
	Type       string           `json:"type"`
	Datasource *json.RawMessage `json:"datasource"`
	Panels     []dashboardPanel `json:"panels"`
	Targets    []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// TestDashboardCoversTheMetrics checks the Grafana dashboard without Grafana:
// it parses, every panel has a unique id and queries the chosen data source,
// every query names a metric sluice exports (no typo), and every metric of
// the design contract is on some panel.
func TestDashboardCoversTheMetrics(t *testing.T) {
	b, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID        string           `json:"uid"`
		Panels     []dashboardPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name string `json:"name"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboard, err)
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
	}
	if !slices.Contains(vars, "datasource") || !slices.Contains(vars, "job") {
		t.Errorf("%s: variables %v, want datasource and job", dashboard, vars)
	}
	used := map[string]bool{}
	ids := map[int]bool{}
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
			}
			ids[p.ID] = true
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			if p.Datasource == nil || !strings.Contains(string(*p.Datasource), "${datasource}") {
				t.Errorf("panel %q does not query the dashboard's ${datasource}", p.Title)
			}
			for _, tg := range p.Targets {
				if tg.RefID == "" || tg.Expr == "" {
					t.Errorf("panel %q: a target without refId or expr", p.Title)
				}
				if !strings.Contains(tg.Expr, `job=~"$job"`) {
					t.Errorf("panel %q [%s]: the query does not select job=~\"$job\"", p.Title, tg.RefID)
				}
				for _, m := range sluiceMetrics(t, "panel "+p.Title, tg.Expr) {
					used[m] = true
				}
			}
		}
	}
	walk(d.Panels)
	for otelName, promName := range prometheusNames {
		if !used[promName] {
			t.Errorf("%s (%s) is on no panel of %s", otelName, promName, dashboard)
		}
	}
}
