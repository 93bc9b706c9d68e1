// Package testenv gates the tests that need minutes of real time.
//
// The default suite (go test -race -count=1 ./...) runs every test whose
// subject can be checked on fake time or in seconds. Tests whose subject is
// real time itself, several processes sharing a quota through Redis for ten
// seconds, a Redis replica failing over, are "long": they call Long(t) first
// and run only with SLUICE_LONG=1, which scripts/long.sh sets (CI runs it as
// its own stage, so nothing is left out of CI).
package testenv

import (
	"os"
	"testing"
)

// LongEnv is the environment variable that enables the long tests.
const LongEnv = "SLUICE_LONG"

// LongEnabled reports whether SLUICE_LONG=1.
func LongEnabled() bool { return os.Getenv(LongEnv) == "1" }

// Long skips t unless SLUICE_LONG=1, saying how to run it.
func Long(t testing.TB) {
	t.Helper()
	if !LongEnabled() {
		t.Skipf("a long real-time test: run with %s=1 (scripts/long.sh runs them all)", LongEnv)
	}
}
