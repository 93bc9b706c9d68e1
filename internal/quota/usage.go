package quota

import (
	"bytes"
	"encoding/json"
	"io"
	"sync"
)

// UsageFromJSON returns usage.total_tokens of an OpenAI-style response body
// (or of one SSE chunk's data).
func UsageFromJSON(body []byte) (int64, bool) {
	var v struct {
		Usage *struct {
			TotalTokens *int64 `json:"total_tokens"`
		} `json:"usage"`
	}
	if json.Unmarshal(body, &v) != nil || v.Usage == nil || v.Usage.TotalTokens == nil || *v.Usage.TotalTokens < 0 {
		return 0, false
	}
	return *v.Usage.TotalTokens, true
}

// WatchJSON wraps a JSON response body: it copies the body as the caller
// reads it (up to limit bytes) and calls fn once, at EOF, on a read error or
// at Close, whichever comes first, with usage.total_tokens of what was read
// (ok false when there is none, or the body was over limit).
func WatchJSON(body io.ReadCloser, limit int, fn func(total int64, ok bool)) io.ReadCloser {
	return &jsonWatcher{rc: body, limit: limit, fn: fn}
}

type jsonWatcher struct {
	rc    io.ReadCloser
	limit int
	fn    func(int64, bool)
	mu    sync.Mutex // Close may race with Read
	buf   []byte
	over  bool
	done  bool
}

func (w *jsonWatcher) Read(p []byte) (int, error) {
	n, err := w.rc.Read(p)
	w.mu.Lock()
	if !w.over && !w.done {
		if len(w.buf)+n > w.limit {
			w.over, w.buf = true, nil
		} else {
			w.buf = append(w.buf, p[:n]...)
		}
	}
	w.mu.Unlock()
	if err != nil {
		w.finish()
	}
	return n, err
}

func (w *jsonWatcher) Close() error {
	err := w.rc.Close()
	w.finish()
	return err
}

func (w *jsonWatcher) finish() {
	w.mu.Lock()
	if w.done {
		w.mu.Unlock()
		return
	}
	w.done = true
	buf, over := w.buf, w.over
	w.buf = nil
	w.mu.Unlock()
	n, ok := UsageFromJSON(buf)
	w.fn(n, ok && !over)
}

// maxLine bounds the partial line WatchSSE keeps; longer lines are skipped.
const maxLine = 64 << 10

// WatchSSE wraps an SSE response body: as the data passes through Read it
// watches the "data:" lines for usage.total_tokens (OpenAI sends it in the
// final chunk with stream_options.include_usage) and calls fn once, at EOF,
// on a read error or at Close, whichever comes first, with the last total seen
// (ok false if none). It keeps at most one line (64 KiB) in memory.
func WatchSSE(body io.ReadCloser, fn func(total int64, ok bool)) io.ReadCloser {
	return &sseWatcher{rc: body, fn: fn}
}

type sseWatcher struct {
	rc    io.ReadCloser
	fn    func(int64, bool)
	line  []byte
	skip  bool // the current line overflowed maxLine
	total int64
	ok    bool
	once  sync.Once
}

func (w *sseWatcher) Read(p []byte) (int, error) {
	n, err := w.rc.Read(p)
	w.scan(p[:n])
	if err != nil {
		w.finish()
	}
	return n, err
}

func (w *sseWatcher) Close() error {
	err := w.rc.Close()
	w.finish()
	return err
}

func (w *sseWatcher) finish() {
	w.once.Do(func() {
		if len(w.line) > 0 && !w.skip {
			w.onLine(w.line)
		}
		w.fn(w.total, w.ok)
	})
}

func (w *sseWatcher) scan(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i]
		}
		if !w.skip {
			if len(w.line)+len(chunk) > maxLine {
				w.skip, w.line = true, w.line[:0]
			} else {
				w.line = append(w.line, chunk...)
			}
		}
		if i < 0 {
			return
		}
		if !w.skip {
			w.onLine(w.line)
		}
		w.line, w.skip = w.line[:0], false
		b = b[i+1:]
	}
}

func (w *sseWatcher) onLine(line []byte) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	data, found := bytes.CutPrefix(line, []byte("data:"))
	if !found {
		return
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' || !bytes.Contains(data, []byte(`"usage"`)) {
		return
	}
	if t, ok := UsageFromJSON(data); ok {
		w.total, w.ok = t, true
	}
}
