package sluice

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestHostileSuiteIndex checks docs/hostile-peers.md against the code: every
// test it names exists in the package it names, so the index of the
// hostile-peer suite (and scripts/hostile.sh, which runs it) cannot drift.
// It reads the packages' test files with go/parser rather than running
// `go test -list`, which would build every package's test binary again.
func TestHostileSuiteIndex(t *testing.T) {
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
		have := testFuncs(t, pkg)
		for _, name := range tests {
			if !have[name] {
				t.Errorf("docs/hostile-peers.md names %s in %s, which has no such test", name, pkg)
			}
		}
	}
}

// testFuncs returns the top-level Test functions declared in dir's test
// files (func TestX(t *testing.T)), as `go test -list` would name them.
func testFuncs(t *testing.T, dir string) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files in %s (%v)", dir, err)
	}
	have := map[string]bool{}
	fset := token.NewFileSet()
	for _, f := range files {
		af, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if ok && fd.Recv == nil && strings.HasPrefix(fd.Name.Name, "Test") && fd.Name.Name != "TestMain" &&
				fd.Type.Params.NumFields() == 1 {
				have[fd.Name.Name] = true
			}
		}
	}
	return have
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
