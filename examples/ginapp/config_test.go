package main

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// docConfig parses the configuration table of docs/example-app.md: each
// variable and its documented default ("" for "unset").
func docConfig(t *testing.T) (names []string, defaults map[string]string) {
	t.Helper()
	doc, err := os.ReadFile("../../docs/example-app.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## Configuration\n")
	if !ok {
		t.Fatal("docs/example-app.md has no ## Configuration section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	defaults = map[string]string{}
	for _, line := range strings.Split(section, "\n") {
		// A pipe inside a cell is escaped (\|), as GitHub's tables need.
		cells := strings.Split(strings.ReplaceAll(line, `\|`, "\x00"), "|")
		if len(cells) != 5 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue // not a row of variables (the header, its rule, prose)
		}
		name := strings.Trim(strings.TrimSpace(cells[1]), "`")
		def := strings.TrimSpace(cells[2])
		if def == "unset" {
			def = ""
		} else {
			def = strings.Trim(def, "`")
		}
		names = append(names, name)
		defaults[name] = def
	}
	if len(names) < 20 {
		t.Fatalf("parsed %d variables from docs/example-app.md; the table's shape changed?", len(names))
	}
	return names, defaults
}

func getenv(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

// The documented defaults are the code's: LoadConfig reads exactly the
// documented variables, setting any of them to its documented default
// changes nothing, and the variables documented as unset default to empty.
func TestConfigDefaultsAreDocumented(t *testing.T) {
	names, defaults := docConfig(t)
	read := map[string]bool{}
	def, err := LoadConfig(func(k string) string { read[k] = true; return "" })
	if err != nil {
		t.Fatalf("LoadConfig with an empty environment: %v", err)
	}
	for _, n := range names {
		if !read[n] {
			t.Errorf("%s is documented but LoadConfig does not read it", n)
		}
		delete(read, n)
	}
	for n := range read {
		t.Errorf("LoadConfig reads %s, which docs/example-app.md does not document", n)
	}

	unset := map[string]string{"VENDOR_URL": def.VendorURL, "REDIS_URL": def.RedisURL,
		"OTEL_EXPORTER_OTLP_ENDPOINT": def.OTLP, "SLUICE_CRITICAL_KEYS": strings.Join(def.CriticalKeys, ",")}
	for _, n := range names {
		d := defaults[n]
		if d == "" {
			v, ok := unset[n]
			if !ok {
				t.Errorf("%s is documented as unset; the test does not know its field", n)
			} else if v != "" {
				t.Errorf("%s is documented as unset, but its default is %q", n, v)
			}
			continue
		}
		got, err := LoadConfig(getenv(map[string]string{n: d}))
		if err != nil {
			t.Errorf("the documented default %s=%s is invalid: %v", n, d, err)
			continue
		}
		if !reflect.DeepEqual(got, def) {
			t.Errorf("%s=%s (its documented default) differs from the code's default:\n got %+v\nwant %+v", n, d, got, def)
		}
	}
}

// Every variable has invalid values, and LoadConfig refuses each with an
// error that names the variable.
func TestConfigRejectsInvalidValues(t *testing.T) {
	invalid := map[string][]string{
		"SLUICE_ADDR":                 {"localhost", "127.0.0.1:"},
		"VENDOR_URL":                  {"ftp://vendor", "vendor.example.com", "http://"},
		"REDIS_URL":                   {"http://127.0.0.1:6379", "redis://127.0.0.1:6379/notadb"},
		"OTEL_EXPORTER_OTLP_ENDPOINT": {"127.0.0.1:4318", "grpc://collector"},
		"SLUICE_MAX_INFLIGHT":         {"abc", "0", "-1", "1.5"},
		"SLUICE_USER_RATE":            {"10", "10-X", "0-S", "off"},
		"SLUICE_QUEUE_ACTIVE":         {"0", "many"},
		"SLUICE_QUEUE_WAITING":        {"-1", "x"},
		"SLUICE_QUEUE_TIMEOUT":        {"2", "0s", "-1s"},
		"SLUICE_VENDOR_MAX_CONNS":     {"0"},
		"SLUICE_VENDOR_RATE":          {"50/s", "-1-S", "2000000-S"},
		"SLUICE_VENDOR_TOKENS":        {"lots", "100000-Y"},
		"SLUICE_VENDOR_CONCURRENCY":   {"0"},
		"SLUICE_VENDOR_QUEUE_TIMEOUT": {"1", "0ms"},
		"SLUICE_ATTEMPT_TIMEOUT":      {"10", "-10s"},
		"SLUICE_RETRY_ATTEMPTS":       {"0", "three"},
		"SLUICE_REQUEST_TIMEOUT":      {"forever"},
		"SLUICE_SHUTDOWN_GRACE":       {"10"},
		"SLUICE_SHUTDOWN_DELAY":       {"-1s", "2m", "soon"},
		"SLUICE_READ_HEADER_TIMEOUT":  {"10", "0s"},
		"SLUICE_BODY_TIMEOUT":         {"-1s", "slow"},
		"SLUICE_IDLE_TIMEOUT":         {"60", "0"},
		"SLUICE_FAKE_LATENCY":         {"fast"},
		"SLUICE_FAKE_CAPACITY":        {"-1"},
		"SLUICE_FAKE_RATE":            {"-1", "1e3"},
		"SLUICE_FAKE_ERROR_RATE":      {"1.5", "-0.1", "half"},
		"SLUICE_CRITICAL_KEYS":        {"vip,", ",vip", "a,,b", "has space", "tab\tkey", strings.Repeat("k", 257), strings.Repeat("k,", 1000) + "k"},
		"SLUICE_FAIR_QUEUE":           {"yes", "2"},
		"SLUICE_VENDOR_ADAPTIVE":      {"on", "adaptive"},
	}
	// OTEL_SERVICE_NAME is free text: any value is a valid name.
	freeText := map[string]bool{"OTEL_SERVICE_NAME": true}

	names, _ := docConfig(t)
	for _, n := range names {
		if _, ok := invalid[n]; !ok && !freeText[n] {
			t.Errorf("%s is documented but has no invalid value in this test", n)
		}
	}
	for n, values := range invalid {
		for _, v := range values {
			_, err := LoadConfig(getenv(map[string]string{n: v}))
			if err == nil {
				t.Errorf("LoadConfig accepted %s=%q", n, v)
				continue
			}
			if !strings.Contains(err.Error(), n+"=") {
				t.Errorf("%s=%q: the error %q does not name the variable", n, v, err)
			}
		}
	}
}

// An invalid URL is named in the error without its password.
func TestConfigRedactsPasswords(t *testing.T) {
	for name, v := range map[string]string{
		"REDIS_URL":                   "redis://app:hunter2@127.0.0.1:6379/notadb",
		"VENDOR_URL":                  "ftp://app:hunter2@vendor.example.com",
		"OTEL_EXPORTER_OTLP_ENDPOINT": "grpc://app:hunter2@collector:4317",
	} {
		_, err := LoadConfig(getenv(map[string]string{name: v}))
		if err == nil || !strings.Contains(err.Error(), name+"=") {
			t.Errorf("LoadConfig(%s=%s): %v, want an error naming %s", name, v, err, name)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("the error %q shows the password", err)
		}
	}
}

// An invalid SLUICE_CRITICAL_KEYS is refused without showing a key: they are
// secrets.
func TestConfigNeverShowsCriticalKeys(t *testing.T) {
	for _, v := range []string{"sk-hunter2,", "sk-hunter2 sk-other", "sk-hunter2," + strings.Repeat("x", 300)} {
		_, err := LoadConfig(getenv(map[string]string{"SLUICE_CRITICAL_KEYS": v}))
		if err == nil {
			t.Errorf("LoadConfig accepted SLUICE_CRITICAL_KEYS=%q", v)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "xxx") {
			t.Errorf("the error %q shows a key", err)
		}
	}
	cfg, err := LoadConfig(getenv(map[string]string{"SLUICE_CRITICAL_KEYS": " vip-1 ,vip-2", "SLUICE_FAIR_QUEUE": "false",
		"SLUICE_VENDOR_ADAPTIVE": "true"}))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.CriticalKeys, []string{"vip-1", "vip-2"}) || cfg.FairQueue || !cfg.VendorAdaptive {
		t.Errorf("parsed %q, fair %v, adaptive %v", cfg.CriticalKeys, cfg.FairQueue, cfg.VendorAdaptive)
	}
}

// Values that look unusual but are valid are accepted, and a valid
// configuration starts the app (the layers' own panics on impossible
// settings cannot be reached from the environment).
func TestConfigAcceptsValidValues(t *testing.T) {
	env := map[string]string{
		"SLUICE_ADDR":                 ":0",
		"VENDOR_URL":                  "https://vendor.example.com/api/",
		"REDIS_URL":                   "redis://127.0.0.1:6379/0",
		"OTEL_SERVICE_NAME":           "chat-gateway",
		"SLUICE_MAX_INFLIGHT":         " 1 ",
		"SLUICE_USER_RATE":            "1000-M",
		"SLUICE_QUEUE_WAITING":        "0",
		"SLUICE_QUEUE_TIMEOUT":        "1m30s",
		"SLUICE_VENDOR_RATE":          "1000000-S",
		"SLUICE_VENDOR_TOKENS":        "100000-M",
		"SLUICE_FAKE_CAPACITY":        "0",
		"SLUICE_FAKE_RATE":            "0",
		"SLUICE_FAKE_ERROR_RATE":      "1",
		"SLUICE_VENDOR_QUEUE_TIMEOUT": "250ms",
	}
	cfg, err := LoadConfig(getenv(env))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if cfg.VendorURL != "https://vendor.example.com/api" || cfg.MaxInflight != 1 || cfg.QueueWaiting != 0 ||
		cfg.VendorTokens.Limit != 100000 || cfg.FakeErrorRate != 1 {
		t.Errorf("LoadConfig(%v) = %+v", env, cfg)
	}
	cfg.RedisURL = "" // NewApp does no Redis I/O, but keep the test hermetic
	a := startApp(t, cfg)
	if got := a.get(t, "/healthz"); got.status != 200 {
		t.Errorf("GET /healthz: %s", got)
	}
}
