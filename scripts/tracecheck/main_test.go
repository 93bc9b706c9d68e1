package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/sluice-go/sluice"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestPhasesCoverTheLayersTheyClaim checks the check itself: every expected
// pair names a real layer and one of its reasons, every inbound layer and
// reason is expected, and phase names are unique (they name the services).
func TestPhasesCoverTheLayersTheyClaim(t *testing.T) {
	names := map[string]bool{}
	expected := map[[2]string]bool{}
	for _, ph := range phases() {
		if names[ph.name] {
			t.Errorf("phase %q twice", ph.name)
		}
		names[ph.name] = true
		if ph.drive == nil || len(ph.expect) == 0 {
			t.Errorf("phase %q drives nothing or expects nothing", ph.name)
		}
		for _, kv := range ph.env {
			if !strings.HasPrefix(kv, "SLUICE_") || !strings.Contains(kv, "=") {
				t.Errorf("phase %q: env %q is not a SLUICE_ setting", ph.name, kv)
			}
		}
		for _, lr := range ph.expect {
			known := false
			for _, r := range sluice.Layer(lr[0]).Reasons() {
				known = known || string(r) == lr[1]
			}
			if !known {
				t.Errorf("phase %q expects %s/%s, which is not in the vocabulary", ph.name, lr[0], lr[1])
			}
			expected[lr] = true
		}
	}
	for _, l := range sluice.Layers() {
		if !l.Inbound() {
			continue
		}
		for _, r := range l.Reasons() {
			if !expected[[2]string{string(l), string(r)}] {
				t.Errorf("inbound %s/%s is not checked in Jaeger", l, r)
			}
		}
	}
}

// TestDocCommandsReachJaegerIntact runs each Jaeger query command of
// docs/operations.md, as written but for the address, against a loopback
// server that answers like Jaeger's query API only if the query string
// arrived intact: the service the docs' phase uses and tags that are JSON.
// (A URL with the tags pasted in arrived without its braces: curl reads them
// as URL globbing.) The Jaeger end-to-end check runs them against Jaeger.
func TestDocCommandsReachJaegerIntact(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("the docs' commands use curl")
	}
	cmds, err := docCommands("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	var layers []string
	for _, ph := range phases() {
		if ph.service == docService {
			for _, lr := range ph.expect {
				layers = append(layers, lr[0])
			}
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var tags map[string]string
		if r.URL.Path != "/api/traces" || q.Get("service") != docService {
			http.Error(w, `{"data":null,"errors":[{"msg":"wrong path or service"}]}`, http.StatusBadRequest)
			return
		}
		if err := json.Unmarshal([]byte(q.Get("tags")), &tags); err != nil {
			http.Error(w, `{"data":null,"errors":[{"msg":"malformed tags"}]}`, http.StatusBadRequest)
			return
		}
		if !slices.Contains(layers, tags["resilience.layer"]) {
			http.Error(w, `{"data":null,"errors":[{"msg":"no phase with docService traces this layer"}]}`,
				http.StatusBadRequest)
			return
		}
		_, _ = w.Write([]byte(`{"data":[{"traceID":"1"}],"errors":null}`))
	}))
	defer srv.Close()
	for _, c := range cmds {
		n, err := runDocCommand(strings.ReplaceAll(c, jaegerQuery, srv.URL))
		if err != nil || n != 1 {
			t.Errorf("%s: traces=%d, err=%v", c, n, err)
		}
	}
}
