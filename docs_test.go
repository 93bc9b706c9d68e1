package sluice

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocSnippetsCompile compiles (go vet) every Go snippet in README.md and
// docs/*.md, so the docs cannot drift from the API. Each snippet must be a
// complete file, starting with its package clause.
func TestDocSnippetsCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the docs' snippets with the go command")
	}
	t.Parallel() // the go command's time, overlapping the README build
	files, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "README.md")
	re := regexp.MustCompile("(?s)```go\n(.*?)```")
	dir, err := os.MkdirTemp(".", "_docsnippets")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var pkgs []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range re.FindAllSubmatch(b, -1) {
			code := string(m[1])
			if !strings.HasPrefix(code, "package ") {
				t.Errorf("%s: Go snippet %d is not a complete file: start it with its package clause", f, i+1)
				continue
			}
			sub := filepath.Join(dir, strings.NewReplacer("/", "_", ".", "_").Replace(f)+"_"+string(rune('a'+i)))
			if err := os.MkdirAll(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(sub, "snippet.go"), m[1], 0o644); err != nil {
				t.Fatal(err)
			}
			pkgs = append(pkgs, "./"+filepath.ToSlash(sub))
		}
	}
	if len(pkgs) == 0 {
		t.Fatal("no Go snippets found in the docs; the test would prove nothing")
	}
	out, err := exec.Command("go", append([]string{"vet"}, pkgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("doc snippets do not compile: %v\n%s", err, out)
	}
}
