package usage

import (
	"bufio"
	"math"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/sluice-go/sluice/internal/usage/usagetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// stream feeds every data: line of an SSE text to p, as the watchers do.
func stream(p Parser, sse string) (Tokens, bool) {
	var t Tokens
	seen := false
	sc := bufio.NewScanner(strings.NewReader(sse))
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data:")
		if !ok {
			continue
		}
		if n, ok := p.Event(t, []byte(strings.TrimSpace(data))); ok {
			t, seen = n, true
		}
	}
	return t, seen
}

func TestVendorsDocumentedShapes(t *testing.T) {
	own := map[string]Parser{"openai": OpenAI, "anthropic": Anthropic, "gemini": Gemini}
	for _, a := range usagetest.Answers {
		for _, p := range []struct {
			name string
			p    Parser
		}{{"own", own[a.Vendor]}, {"auto", Auto}} {
			t.Run(a.Name+"/"+p.name, func(t *testing.T) {
				var got Tokens
				var ok bool
				if a.Stream() {
					got, ok = stream(p.p, a.Body)
				} else {
					got, ok = p.p.Body([]byte(a.Body))
				}
				if want := (Tokens{a.Input, a.Output, a.Total}); !ok || got != want {
					t.Errorf("got %+v (ok %v), want %+v", got, ok, want)
				}
			})
		}
	}
}

// TestWrongVendorFindsNothing: a parser does not misread another vendor's
// shape as its own (Gemini's parser sees no usage in OpenAI's answer).
func TestWrongVendorFindsNothing(t *testing.T) {
	if _, ok := Gemini.Body([]byte(usagetest.OpenAIChat)); ok {
		t.Error("Gemini read OpenAI's usage")
	}
	if _, ok := OpenAI.Body([]byte(usagetest.GeminiBody)); ok {
		t.Error("OpenAI read Gemini's usage")
	}
	if _, ok := Anthropic.Body([]byte(usagetest.GeminiBody)); ok {
		t.Error("Anthropic read Gemini's usage")
	}
}

// TestHostileUsageValues: what a hostile vendor reports is bounded here
// (issue 11): negative counts read as zero, a sum of huge counts saturates at
// MaxInt64 instead of wrapping negative, numbers beyond int64 and garbage
// are no usage at all. The quota's cost cap then bounds what is charged.
func TestHostileUsageValues(t *testing.T) {
	if got, ok := Anthropic.Body([]byte(`{"usage":{"input_tokens":9223372036854775807,"output_tokens":9223372036854775807}}`)); !ok || got.Total != math.MaxInt64 {
		t.Errorf("huge Anthropic counts: %+v %v, want a saturated total", got, ok)
	}
	if got, ok := OpenAI.Body([]byte(`{"usage":{"prompt_tokens":-5,"completion_tokens":-7}}`)); !ok || got.Total != 0 {
		t.Errorf("negative counts: %+v %v, want a zero total", got, ok)
	}
	if _, ok := OpenAI.Body([]byte(`{"usage":{"total_tokens":-1}}`)); ok {
		t.Error("a negative total was read as usage")
	}
	for _, b := range []string{`{"usage":{"total_tokens":1e30}}`, `{"usage":{"total_tokens":"12"}}`, `not json`, ``, `{"usage":null}`, `[1,2]`} {
		for _, p := range []Parser{OpenAI, Anthropic, Gemini, Auto} {
			if got, ok := p.Body([]byte(b)); ok {
				t.Errorf("%T.Body(%q) = %+v, want no usage", p, b, got)
			}
			prev := Tokens{1, 2, 3}
			if got, ok := p.Event(prev, []byte(b)); ok || got != prev {
				t.Errorf("%T.Event(%q) = %+v %v, want prev and false", p, b, got, ok)
			}
		}
	}
}

func FuzzParsers(f *testing.F) {
	for _, s := range []string{usagetest.OpenAIChat, usagetest.OpenAIResponses, usagetest.AnthropicBody, usagetest.GeminiBody, usagetest.GeminiArray, `{"type":"message_delta","usage":{"output_tokens":-3}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, p := range []Parser{OpenAI, Anthropic, Gemini, Auto} {
			if got, ok := p.Body(b); ok && (got.Input < 0 || got.Output < 0 || got.Total < 0) {
				t.Fatalf("%T.Body: negative usage %+v", p, got)
			}
			if got, _ := p.Event(Tokens{}, b); got.Input < 0 || got.Output < 0 || got.Total < 0 {
				t.Fatalf("%T.Event: negative usage %+v", p, got)
			}
		}
	})
}

// TestBodyEdges: JSON whitespace before an answer is allowed; a chunk with
// no usage key (text only) reports none and leaves the stream's usage
// alone; an array answer is read as the stream of its elements, and an
// array of anything else reports none.
func TestBodyEdges(t *testing.T) {
	for _, p := range []Parser{OpenAI, Auto} {
		if got, ok := p.Body([]byte("\r\n\t {\"usage\":{\"total_tokens\":7}}")); !ok || got.Total != 7 {
			t.Errorf("%T: leading whitespace: %+v %v", p, got, ok)
		}
		prev := Tokens{1, 2, 3}
		if got, ok := p.Event(prev, []byte(`{"choices":[{"delta":{"content":"usage"}}]}`)); ok || got != prev {
			t.Errorf("%T: a text chunk: %+v %v", p, got, ok)
		}
	}
	for _, p := range []Parser{Gemini, Auto} {
		if got, ok := p.Body([]byte(" " + usagetest.GeminiArray)); !ok || got.Total != 48 {
			t.Errorf("%T: array: %+v %v", p, got, ok)
		}
		for _, b := range []string{`[]`, `[1,"x",null,[{"usageMetadata":{"totalTokenCount":5}}]]`, `[{"usageMetadata":{"totalTokenCount":5}}`} {
			if got, ok := p.Body([]byte(b)); ok {
				t.Errorf("%T.Body(%s) = %+v, want no usage", p, b, got)
			}
		}
	}
}
