package main

import (
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestDashboardQueriesAreRunnable checks the check itself: it reads a query
// from every panel of the real dashboard, with every variable replaced.
func TestDashboardQueriesAreRunnable(t *testing.T) {
	qs, err := loadDashboard("../../monitoring/sluice-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	panels := map[string]bool{}
	for _, q := range qs {
		panels[q.panel] = true
		if strings.Contains(q.expr, "$") || !strings.Contains(q.expr, `job=~"`+job+`"`) {
			t.Errorf("panel %q [%s]: %s", q.panel, q.refID, q.expr)
		}
	}
	if len(panels) < 10 {
		t.Errorf("queries of %d panels, want at least 10", len(panels))
	}
}
