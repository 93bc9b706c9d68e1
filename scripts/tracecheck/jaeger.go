package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"
)

const (
	jaegerQuery = "http://127.0.0.1:16686"
	otlpHTTP    = "http://127.0.0.1:4318"
)

// startJaeger starts the Jaeger binary with the config and waits until its
// query API answers.
func startJaeger(bin, config, logPath string) (stop func(), err error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--config", config)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start jaeger: %w", err)
	}
	stop = func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(jaegerQuery + "/api/services")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return stop, nil
			}
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("jaeger query API not up after 60s (log: %s)", logPath)
		}
		time.Sleep(200 * time.Millisecond) // polling for readiness
	}
}

type tracesResponse struct {
	Data []json.RawMessage `json:"data"` // only the count of traces is read
}

// findTraces asks Jaeger for traces of service with every tag in tags and
// returns how many it found.
func findTraces(ctx context.Context, service string, tags map[string]string) (int, error) {
	tj, _ := json.Marshal(tags)
	q := url.Values{"service": {service}, "tags": {string(tj)}, "limit": {"20"}, "lookback": {"1h"}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, jaegerQuery+"/api/traces?"+q.Encode(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("jaeger /api/traces: %s", resp.Status)
	}
	var tr tracesResponse
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		return 0, fmt.Errorf("jaeger /api/traces: %w", err)
	}
	return len(tr.Data), nil
}

// waitTraces polls Jaeger until it has a trace with the tags or the deadline
// passes (spans arrive through a batch processor on both sides).
func waitTraces(service string, tags map[string]string, within time.Duration) (int, error) {
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		n, err := findTraces(ctx, service, tags)
		cancel()
		if n > 0 || time.Now().After(deadline) {
			return n, err
		}
		time.Sleep(250 * time.Millisecond) // polling the query API
	}
}

// docService is the app's default OTEL_SERVICE_NAME, which the docs' query
// commands name.
const docService = "sluice-ginapp"

// docCommands returns the Jaeger query commands of a doc: the lines of its
// ```sh blocks that start with curl and address the query API.
func docCommands(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cmds []string
	inSh := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "```"):
			inSh = !inSh && strings.TrimSpace(line) == "```sh"
		case inSh && strings.HasPrefix(line, "curl ") && strings.Contains(line, jaegerQuery):
			cmds = append(cmds, line)
		}
	}
	if len(cmds) == 0 {
		return nil, fmt.Errorf("%s: no curl command for %s in a sh block; the check would prove nothing", path, jaegerQuery)
	}
	return cmds, nil
}

// runDocCommand runs a command as a user who pasted it into a shell would,
// and returns how many traces Jaeger's answer holds; an answer with errors,
// or that is not Jaeger's JSON, is an error.
func runDocCommand(command string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "sh", "-c", command).Output()
	if err != nil {
		return 0, err
	}
	var tr struct {
		Data   []json.RawMessage `json:"data"`
		Errors []json.RawMessage `json:"errors"`
	}
	if err := json.Unmarshal(out, &tr); err != nil {
		return 0, fmt.Errorf("not Jaeger's JSON: %w: %.200s", err, out)
	}
	if len(tr.Errors) > 0 {
		return len(tr.Data), fmt.Errorf("jaeger answered errors: %s", tr.Errors)
	}
	return len(tr.Data), nil
}
