package quota

import (
	"bytes"
	"io"

	"github.com/sluice-go/sluice/internal/bodyhook"
	"github.com/sluice-go/sluice/internal/usage"
)

// WatchJSON wraps a JSON response body: it copies the body as the caller
// reads it (up to limit bytes) and calls fn once, at EOF, on a read error or
// at Close, whichever comes first, with what p.Body reads in what was read
// (ok false when it reports no usage, or the body was over limit). Close may
// race with Read (bodyhook.Wrap).
func WatchJSON(body io.ReadCloser, limit int, p usage.Parser, fn func(t usage.Tokens, ok bool)) io.ReadCloser {
	return bodyhook.Wrap(body, &jsonWatcher{limit: limit, p: p, fn: fn})
}

// jsonWatcher is the bodyhook.Watcher of WatchJSON; bodyhook serializes its
// methods.
type jsonWatcher struct {
	limit int
	p     usage.Parser
	fn    func(usage.Tokens, bool)
	buf   []byte
	over  bool
}

func (w *jsonWatcher) BodyData(p []byte) {
	if w.over {
		return
	}
	if len(w.buf)+len(p) > w.limit {
		w.over, w.buf = true, nil
		return
	}
	w.buf = append(w.buf, p...)
}

func (w *jsonWatcher) BodyDone() {
	var t usage.Tokens
	ok := false
	if !w.over {
		t, ok = w.p.Body(w.buf)
	}
	w.buf = nil
	w.fn(t, ok)
}

// MaxSSELine bounds the line WatchSSE keeps, and the data of one event (the
// concatenation of its data: lines); a longer line, or an event with more
// data, is skipped.
const MaxSSELine = 64 << 10

// WatchSSE wraps an SSE response body: as the data passes through Read it
// reads the stream's events and feeds each event's data (its data: lines,
// joined by newlines) to p.Event, and calls fn once, at EOF, on a read error
// or at Close, whichever comes first, with the usage that p folded from the
// events (ok false if none reported any). An event cut off by the end of the
// body is fed too. It keeps at most one line and one event's data
// (MaxSSELine each) in memory. Close may race with Read (bodyhook.Wrap).
func WatchSSE(body io.ReadCloser, p usage.Parser, fn func(t usage.Tokens, ok bool)) io.ReadCloser {
	return bodyhook.Wrap(body, &sseWatcher{p: p, fn: fn})
}

// sseWatcher is the bodyhook.Watcher of WatchSSE; bodyhook serializes its
// methods.
type sseWatcher struct {
	p    usage.Parser
	fn   func(usage.Tokens, bool)
	line []byte
	skip bool // the current line overflowed MaxSSELine
	// data is the current event's data so far; hasData says it has a data
	// field (possibly empty); skipEvent that its data overflowed MaxSSELine.
	data               []byte
	hasData, skipEvent bool
	tokens             usage.Tokens
	ok                 bool
}

func (w *sseWatcher) BodyDone() {
	if len(w.line) > 0 && !w.skip {
		w.onLine(w.line)
	}
	w.dispatch()
	w.line, w.data = nil, nil
	w.fn(w.tokens, w.ok)
}

func (w *sseWatcher) BodyData(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i]
		}
		if !w.skip {
			if len(w.line)+len(chunk) > MaxSSELine {
				w.skip, w.line = true, w.line[:0]
			} else {
				w.line = append(w.line, chunk...)
			}
		}
		if i < 0 {
			return
		}
		if w.skip {
			// The overflowing line may have been this event's data: the
			// event is incomplete, so it is not read.
			w.skipEvent = true
		} else {
			w.onLine(w.line)
		}
		w.line, w.skip = w.line[:0], false
		b = b[i+1:]
	}
}

// onLine reads one line of the stream (without its LF): a blank line ends
// the event, a data field adds to its data, anything else (a comment, the
// event, id and retry fields) is of no use here.
func (w *sseWatcher) onLine(line []byte) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) == 0 {
		w.dispatch()
		return
	}
	value, found := bytes.CutPrefix(line, []byte("data"))
	if !found {
		return
	}
	switch {
	case len(value) == 0: // "data": a data field with an empty value
	case value[0] == ':':
		value = bytes.TrimPrefix(value[1:], []byte(" "))
	default: // "database: ...", another field
		return
	}
	if w.skipEvent {
		return
	}
	n := len(w.data) + len(value)
	if w.hasData {
		n++
	}
	if n > MaxSSELine {
		w.skipEvent, w.data = true, w.data[:0]
		return
	}
	if w.hasData {
		w.data = append(w.data, '\n')
	}
	w.data, w.hasData = append(w.data, value...), true
}

// dispatch ends the current event, feeding its data to the parser.
func (w *sseWatcher) dispatch() {
	if w.hasData && !w.skipEvent {
		if t, ok := w.p.Event(w.tokens, w.data); ok {
			w.tokens, w.ok = t, true
		}
	}
	w.data, w.hasData, w.skipEvent = w.data[:0], false, false
}
