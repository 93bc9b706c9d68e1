package otelx

import (
	"os/exec"
	"strings"
	"testing"
)

// libraryPackages are the packages users import, relative to this
// directory; their non-test files may use the OpenTelemetry API only. The
// check reads each one's transitive deps, so every internal package they use
// is covered; internal packages that only tests import (oteltest, redistest)
// are not library code.
var libraryPackages = []string{"..", ".", "../outbound", "../middleware"}

// sdkImports returns, for each line "pkg dep dep ..." of go list output, the
// deps that are the OpenTelemetry SDK or one of its subpackages.
func sdkImports(goList string) map[string][]string {
	bad := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(goList), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		for _, dep := range fields[1:] {
			if dep == "go.opentelemetry.io/otel/sdk" || strings.HasPrefix(dep, "go.opentelemetry.io/otel/sdk/") {
				bad[fields[0]] = append(bad[fields[0]], dep)
			}
		}
	}
	return bad
}

// TestLibraryImportsNoSDK enforces the design rule that library code imports
// the OpenTelemetry API only: no library package depends, even indirectly,
// on go.opentelemetry.io/otel/sdk. Test files are not looked at (go list
// without -test), so tests may use the SDK.
func TestLibraryImportsNoSDK(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list imports: %v", err)
	}
	args := append([]string{"list", "-f", "{{.ImportPath}} {{join .Deps \" \"}}"}, libraryPackages...)
	out, err := exec.Command(goBin, args...).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	if n := strings.Count(string(out), "\n"); n < 4 {
		t.Fatalf("go list listed %d packages; want at least the root, otelx, outbound and middleware:\n%s", n, out)
	}
	for pkg, deps := range sdkImports(string(out)) {
		t.Errorf("%s depends on the OpenTelemetry SDK (%s); library code must import the API only", pkg, strings.Join(deps, ", "))
	}
}

// TestSDKImportsCheckFails: the check above does catch an SDK dependency.
func TestSDKImportsCheckFails(t *testing.T) {
	bad := sdkImports("m/a go.opentelemetry.io/otel go.opentelemetry.io/otel/sdk/trace\nm/b go.opentelemetry.io/otel/sdkx go.opentelemetry.io/auto/sdk\n")
	if len(bad) != 1 || len(bad["m/a"]) != 1 {
		t.Fatalf("sdkImports = %v; want only m/a flagged", bad)
	}
}
