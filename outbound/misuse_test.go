package outbound

import (
	"os/exec"
	"strings"
	"testing"
)

// TestMisuseDoesNotCompile: each layer's option takes only its own settings,
// so a setting that cannot apply does not compile. Each directory under
// testdata/misuse (out of the build, as testdata is) holds one misuse that
// go vet must refuse with the type checker's message; testdata/compiles,
// the same options used as documented, must pass, so the misuses fail for
// their misuse alone.
func TestMisuseDoesNotCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go vet")
	}
	vet := func(dirs ...string) (string, error) {
		out, err := exec.Command("go", append([]string{"vet"}, dirs...)...).CombinedOutput()
		return string(out), err
	}

	if out, err := vet("./testdata/compiles"); err != nil {
		t.Fatalf("go vet ./testdata/compiles: %v\n%s", err, out)
	}

	cases := map[string]string{
		"transport_in_chain": "cannot use outbound.TransportSettings{…} (value of struct type outbound.TransportSettings) " +
			"as outbound.Option value in argument to outbound.NewClient",
		"shared_without_local": "cannot use outbound.SharedBreakerSettings{…} (value of struct type outbound.SharedBreakerSettings) " +
			"as outbound.Option value in argument to outbound.NewClient",
		"chain_option_in_transport": "as outbound.TransportSettings value in argument to outbound.NewTransport",
		"wrong_layer_settings": "cannot use outbound.LocalRateLimitSettings{…} (value of struct type outbound.LocalRateLimitSettings) " +
			"as outbound.BulkheadSettings value in argument to outbound.WithBulkhead",
	}
	var dirs []string
	for name := range cases {
		dirs = append(dirs, "./testdata/misuse/"+name)
	}
	out, err := vet(dirs...)
	if err == nil {
		t.Fatalf("go vet accepted every misuse:\n%s", out)
	}
	for name, want := range cases {
		found := false
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "testdata/misuse/"+name+"/main.go:") && strings.Contains(line, want) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: go vet output has no %q for it:\n%s", name, want, out)
		}
	}
}
