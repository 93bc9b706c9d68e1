package middleware

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestMisuseDoesNotCompile: a setting given to a middleware it does not
// concern is a compile error, not a silently ignored option. testdata/misuse/bad
// (out of the build, as testdata) holds one misuse per line, each annotated
// with the error it must cause; testdata/misuse/good is the same program with
// each setting where it belongs, and must build.
func TestMisuseDoesNotCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed: %v", err)
	}
	build := func(dir string) (string, error) {
		// -gcflags=-e: every error, not the first ten.
		out, err := exec.Command(gocmd, "build", "-gcflags=-e", "-o", os.DevNull, "./testdata/misuse/"+dir).CombinedOutput()
		return string(out), err
	}
	if out, err := build("good"); err != nil {
		t.Fatalf("the well-formed program does not build: %v\n%s", err, out)
	}
	out, err := build("bad")
	if err == nil {
		t.Fatal("the misuses compiled")
	}
	src, err := os.ReadFile("testdata/misuse/bad/main.go")
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`// want "(.*)"$`)
	n := 0
	for i, line := range strings.Split(string(src), "\n") {
		m := want.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n++
		got := regexp.MustCompile(`main\.go:` + strconv.Itoa(i+1) + `:\d+: ` + m[1])
		if !got.MatchString(out) {
			t.Errorf("line %d: no error matching %q in:\n%s", i+1, m[1], out)
		}
	}
	if n == 0 {
		t.Fatal("no // want annotations found")
	}
	if errs := strings.Count(out, "main.go:"); errs > n+1 { // +1: the undefined option of the extra argument
		t.Errorf("%d errors for %d misuses: something else is broken:\n%s", errs, n, out)
	}
}
