package sluice

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestHostileSuiteIndex checks docs/hostile-peers.md against the code: every
// test it names exists in the package it names, so the index of the
// hostile-peer suite (and scripts/hostile.sh, which runs it) cannot drift.
func TestHostileSuiteIndex(t *testing.T) {
	if testing.Short() {
		t.Skip("lists tests with the go command")
	}
	b, err := os.ReadFile("docs/hostile-peers.md")
	if err != nil {
		t.Fatal(err)
	}
	want := HostileIndex(string(b))
	n := 0
	for _, tests := range want {
		n += len(tests)
	}
	if n < 30 {
		t.Fatalf("the index names %d tests; the suite would prove little", n)
	}
	for pkg, tests := range want {
		out, err := exec.Command("go", "test", "-list", ".", "./"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go test -list ./%s: %v\n%s", pkg, err, out)
		}
		have := map[string]bool{}
		for _, l := range strings.Fields(string(out)) {
			have[l] = true
		}
		for _, name := range tests {
			if !have[name] {
				t.Errorf("docs/hostile-peers.md names %s in %s, which has no such test", name, pkg)
			}
		}
	}
}

// HostileIndex parses the index's rows: package -> test names. (Defined in
// a _test file: it is not part of the package's API.)
func HostileIndex(md string) map[string][]string {
	cell := regexp.MustCompile("((?:`Test\\w+`(?:, )?)+) \\(([\\w/]+)\\)")
	name := regexp.MustCompile("`(Test\\w+)`")
	out := map[string][]string{}
	for _, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		for _, m := range cell.FindAllStringSubmatch(line, -1) {
			for _, n := range name.FindAllStringSubmatch(m[1], -1) {
				out[m[2]] = append(out[m[2]], n[1])
			}
		}
	}
	return out
}
