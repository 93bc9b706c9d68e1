package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// runAsApp, set in a child process's environment, makes the test binary run
// the app's main instead of the tests (see TestBinaryRejectsInvalidConfig).
const runAsApp = "GINAPP_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runAsApp) == "1" {
		os.Args = os.Args[:1] // main's own flags only, none of go test's
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// The real binary, given an invalid SLUICE_MAX_INFLIGHT, exits with status 1
// and names the variable on stderr before it listens or starts anything.
func TestBinaryRejectsInvalidConfig(t *testing.T) {
	// Should it start serving after all, the context ends it instead of the
	// test hanging.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), runAsApp+"=1", "SLUICE_MAX_INFLIGHT=abc",
		"SLUICE_ADDR=127.0.0.1:0") // should it start after all, it cannot take a fixed port
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("the app ran and exited with %v; want exit status 1 (stderr %q)", err, stderr.String())
	}
	if ee.ExitCode() != 1 {
		t.Errorf("exit status %d, want 1 (stderr %q)", ee.ExitCode(), stderr.String())
	}
	if !bytes.Contains(stderr.Bytes(), []byte("SLUICE_MAX_INFLIGHT")) {
		t.Errorf("stderr %q does not name SLUICE_MAX_INFLIGHT", stderr.String())
	}
}
