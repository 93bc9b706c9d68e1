package testenv

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestLongFollowsTheEnvironment: Long skips without SLUICE_LONG=1 and lets
// the test run with it.
func TestLongFollowsTheEnvironment(t *testing.T) {
	for _, c := range []struct {
		env     string
		skipped bool
	}{{"", true}, {"0", true}, {"yes", true}, {"1", false}} {
		t.Setenv(LongEnv, c.env)
		var skipped bool
		t.Run("env="+c.env, func(t *testing.T) {
			defer func() { skipped = t.Skipped() }()
			Long(t)
		})
		if skipped != c.skipped {
			t.Errorf("%s=%q: skipped %v, want %v", LongEnv, c.env, skipped, c.skipped)
		}
	}
}
