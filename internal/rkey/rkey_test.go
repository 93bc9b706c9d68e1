package rkey

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestKey(t *testing.T) {
	for name, want := range map[string]string{
		"openai":     "sluice:{openai}:req",
		"a}:{b":      "sluice:{a%7D%3A%7Bb}:req",
		"x\ny z%":    "sluice:{x%0Ay%20z%25}:req",
		"":           "sluice:{}:req",
		"Ab.c_d-9":   "sluice:{Ab.c_d-9}:req",
		"é":          "sluice:{%C3%A9}:req",
		"%7D":        "sluice:{%257D}:req",
		"user:1{2}3": "sluice:{user%3A1%7B2%7D3}:req",
	} {
		if got := Key(name, "req"); got != want {
			t.Errorf("Key(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestEscapeDoesNotAllocateForPlainNames(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = Escape("user-123_abc.def") }); n != 0 {
		t.Fatalf("Escape allocates %.0f times for a plain name", n)
	}
}
