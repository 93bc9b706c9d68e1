package main

import (
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
