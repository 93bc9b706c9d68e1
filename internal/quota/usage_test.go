package quota

import (
	"io"
	"strings"
	"testing"

	"github.com/sluice-go/sluice/internal/usage"
	"github.com/sluice-go/sluice/internal/usage/usagetest"
)

// oneByte returns the stream one byte per Read, to cut lines everywhere.
type oneByte struct{ r io.Reader }

func (o oneByte) Read(p []byte) (int, error) { return o.r.Read(p[:min(1, len(p))]) }

// watch reads body whole through the watcher for its content type (in one
// go, or one byte per Read), closes it, and returns what the watcher
// reported; it fails the test if the body was altered or the callback did
// not run exactly once.
func watch(t *testing.T, body, contentType string, p usage.Parser, oneByteReads bool) (usage.Tokens, bool) {
	t.Helper()
	var r io.Reader = strings.NewReader(body)
	if oneByteReads {
		r = oneByte{r}
	}
	calls := 0
	var got usage.Tokens
	var gotOK bool
	fn := func(u usage.Tokens, ok bool) { calls++; got, gotOK = u, ok }
	var rc io.ReadCloser
	if contentType == usagetest.SSE {
		rc = WatchSSE(io.NopCloser(r), p, fn)
	} else {
		rc = WatchJSON(io.NopCloser(r), 1<<20, p, fn)
	}
	b, err := io.ReadAll(rc)
	if err != nil || string(b) != body {
		t.Fatalf("body altered: %v", err)
	}
	_ = rc.Close()
	if calls != 1 {
		t.Fatalf("the callback ran %d times, want once", calls)
	}
	return got, gotOK
}

// TestWatchersReadEveryVendor: each vendor's answer, JSON or SSE, read whole
// or one byte at a time, reports its usage through the watcher, with the
// vendor's own parser and with Auto.
func TestWatchersReadEveryVendor(t *testing.T) {
	own := map[string]usage.Parser{"openai": usage.OpenAI, "anthropic": usage.Anthropic, "gemini": usage.Gemini}
	for _, a := range usagetest.Answers {
		for name, p := range map[string]usage.Parser{"own": own[a.Vendor], "auto": usage.Auto} {
			for _, oneByteReads := range []bool{false, true} {
				got, ok := watch(t, a.Body, a.ContentType, p, oneByteReads)
				if want := (usage.Tokens{Input: a.Input, Output: a.Output, Total: a.Total}); !ok || got != want {
					t.Errorf("%s/%s (one byte per read %v): got %+v %v, want %+v", a.Name, name, oneByteReads, got, ok, want)
				}
			}
		}
	}
}

// recorder is a usage.Parser that records the data of every event.
type recorder struct{ events *[]string }

func (recorder) Body([]byte) (usage.Tokens, bool) { return usage.Tokens{}, false }

func (r recorder) Event(prev usage.Tokens, data []byte) (usage.Tokens, bool) {
	*r.events = append(*r.events, string(data))
	return prev, false
}

// TestWatchSSEEvents: the watcher feeds the parser each event's data as the
// SSE specification defines it: the data: lines of one event joined by
// newlines, "data:" with or without one space, a bare "data" line an empty
// value, comments and other fields ignored, LF or CRLF line ends, and an
// event cut off by the end of the body fed too.
func TestWatchSSEEvents(t *testing.T) {
	stream := ": comment\r\n" +
		"event: x\n" +
		"data:{\"a\":\n" +
		"data: 1}\n" +
		"\n" +
		"data\n" +
		"\n" +
		"database: not data\n" +
		"retry: 10\n" +
		"\n" +
		"data:  two spaces\r\n" +
		"\r\n" +
		"id: 3\n" +
		"data: last"
	want := []string{"{\"a\":\n1}", "", " two spaces", "last"}
	for _, oneByteReads := range []bool{false, true} {
		var events []string
		if _, ok := watch(t, stream, usagetest.SSE, recorder{&events}, oneByteReads); ok {
			t.Error("a parser that reports nothing was reported")
		}
		if strings.Join(events, "|") != strings.Join(want, "|") {
			t.Errorf("one byte per read %v: events %q, want %q", oneByteReads, events, want)
		}
	}
	// A usage split over two data lines is one JSON document.
	got, ok := watch(t, "data: {\"usage\":\ndata: {\"total_tokens\": 42}}\n\ndata: [DONE]\n\n", usagetest.SSE, usage.OpenAI, false)
	if !ok || got.Total != 42 {
		t.Errorf("usage over two data lines: %+v %v, want 42", got, ok)
	}
	// Closed before anything was read: called once, nothing found.
	calls, gotOK := 0, true
	body := WatchSSE(io.NopCloser(strings.NewReader("data: {}\n")), usage.Auto, func(_ usage.Tokens, ok bool) { calls++; gotOK = ok })
	_ = body.Close()
	_ = body.Close()
	if calls != 1 || gotOK {
		t.Fatalf("calls=%d ok=%v", calls, gotOK)
	}
}

// TestHostileUsageOverBounds: a vendor that sends an SSE line over
// MaxSSELine, an event whose data lines add up to more than MaxSSELine, or
// a JSON answer over the watcher's limit gets no usage read from it (the
// estimate stands), and the watcher never holds more than one line and one
// event's data of MaxSSELine each; the events after an oversized one are
// read again.
func TestHostileUsageOverBounds(t *testing.T) {
	usageEvent := "data: {\"usage\":{\"total_tokens\":42}}\n\n"
	huge := "{\"usage\":{\"total_tokens\":7},\"pad\":\"" + strings.Repeat("x", MaxSSELine) + "\"}"
	manyLines := strings.Repeat("data: "+strings.Repeat("y", 1000)+"\n", 2*MaxSSELine/1000) + "data: {\"usage\":{\"total_tokens\":9}}\n\n"
	for name, c := range map[string]struct {
		stream string
		want   int64 // 0: no usage
	}{
		"long line":          {"data: " + huge + "\n\n", 0},
		"long line then":     {"data: " + huge + "\n\n" + usageEvent, 42},
		"long comment":       {": " + huge + "\n" + "data: {\"usage\":{\"total_tokens\":5}}\n\n", 0},
		"many data lines":    {manyLines, 0},
		"many data then":     {manyLines + usageEvent, 42},
		"endless line":       {"data: " + huge + strings.Repeat("z", 4*MaxSSELine), 0},
		"usage then endless": {usageEvent + "data: " + huge + strings.Repeat("z", 4*MaxSSELine), 42},
	} {
		t.Run(name, func(t *testing.T) {
			var got usage.Tokens
			var ok bool
			w := &sseWatcher{p: usage.Auto, fn: func(u usage.Tokens, o bool) { got, ok = u, o }}
			for s := c.stream; len(s) > 0; {
				n := min(len(s), 4096)
				w.BodyData([]byte(s[:n]))
				s = s[n:]
				if len(w.line) > MaxSSELine || len(w.data) > MaxSSELine || cap(w.line) > 2*MaxSSELine || cap(w.data) > 2*MaxSSELine {
					t.Fatalf("the watcher holds %d (cap %d) bytes of line and %d (cap %d) of data; bound %d each",
						len(w.line), cap(w.line), len(w.data), cap(w.data), MaxSSELine)
				}
			}
			w.BodyDone()
			if c.want == 0 && ok {
				t.Errorf("usage %+v read from an oversized event", got)
			}
			if c.want != 0 && (!ok || got.Total != c.want) {
				t.Errorf("got %+v %v, want total %d", got, ok, c.want)
			}
		})
	}
	t.Run("json over limit", func(t *testing.T) {
		body := `{"usage":{"total_tokens":7},"pad":"` + strings.Repeat("x", 100) + `"}`
		calls := 0
		rc := WatchJSON(io.NopCloser(strings.NewReader(body)), 64, usage.Auto, func(u usage.Tokens, ok bool) {
			calls++
			if ok {
				t.Errorf("usage %+v read from a body over the limit", u)
			}
		})
		_, _ = io.Copy(io.Discard, rc)
		_ = rc.Close()
		if calls != 1 {
			t.Fatalf("calls = %d", calls)
		}
	})
}
