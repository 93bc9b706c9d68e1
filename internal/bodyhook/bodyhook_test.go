package bodyhook

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestHostileCloseRacesRead (issue 11, finding 5): a stream that one
// goroutine reads while two others close it, many times over, under -race.
// BodyDone runs exactly once, BodyData never after BodyDone has started,
// and every Close returns only after BodyDone has returned.
func TestHostileCloseRacesRead(t *testing.T) {
	const iterations = 500
	for range iterations {
		pr, pw := io.Pipe()
		go func() {
			chunk := []byte("data: {\"usage\":{\"total_tokens\":7}}\n\n")
			for {
				if _, err := pw.Write(chunk); err != nil {
					return
				}
			}
		}()
		var seen []byte // data's own state, unlocked: data and done never overlap
		var doneCalls, dataAfterDone atomic.Int32
		var finished atomic.Bool
		body := Wrap(pr, watcher{func(p []byte) {
			if finished.Load() {
				dataAfterDone.Add(1)
			}
			seen = append(seen[:0], p...)
		}, func() {
			seen = nil
			finished.Store(true)
			doneCalls.Add(1)
		}})

		started := make(chan struct{})
		read := make(chan struct{})
		go func() {
			defer close(read)
			buf := make([]byte, 16)
			first := true
			for {
				_, err := body.Read(buf)
				if first {
					close(started)
					first = false
				}
				if err != nil {
					return
				}
			}
		}()
		<-started
		var closers sync.WaitGroup
		var closedBeforeDone atomic.Int32
		for range 2 {
			closers.Go(func() {
				_ = body.Close()
				if !finished.Load() {
					closedBeforeDone.Add(1)
				}
			})
		}
		closers.Wait()
		<-read
		if n := doneCalls.Load(); n != 1 {
			t.Fatalf("done ran %d times, want once", n)
		}
		if n := dataAfterDone.Load(); n != 0 {
			t.Fatalf("data ran %d times after done", n)
		}
		if n := closedBeforeDone.Load(); n != 0 {
			t.Fatalf("%d Close calls returned before done had run", n)
		}
	}
}

// TestWrapEndsAtEOFOrError: BodyData sees every byte in order; BodyDone
// runs once, at EOF or at the first other read error, and a later Close does
// not run it again.
func TestWrapEndsAtEOFOrError(t *testing.T) {
	stream := strings.Repeat("0123456789", 100)
	for name, src := range map[string]io.Reader{
		"eof":   strings.NewReader(stream),
		"error": io.MultiReader(strings.NewReader(stream), errReader{}),
	} {
		t.Run(name, func(t *testing.T) {
			var seen bytes.Buffer
			done := 0
			body := Wrap(io.NopCloser(src), watcher{func(p []byte) { seen.Write(p) }, func() { done++ }})
			_, err := io.Copy(io.Discard, body)
			if (name == "eof") != (err == nil) {
				t.Fatalf("copy: %v", err)
			}
			if done != 1 || seen.String() != stream {
				t.Fatalf("done ran %d times, data saw %d of %d bytes", done, seen.Len(), len(stream))
			}
			_ = body.Close()
			_ = body.Close()
			if done != 1 {
				t.Fatalf("done ran %d times after Close, want once", done)
			}
		})
	}
	// A Hook that does not watch, closed before any Read.
	done := 0
	body := Wrap(io.NopCloser(strings.NewReader(stream)), hook(func() { done++ }))
	_ = body.Close()
	if done != 1 {
		t.Fatalf("done ran %d times, want once", done)
	}
}

// hook is a Hook that only runs a func.
type hook func()

func (h hook) BodyDone() { h() }

// watcher is a Watcher made of two funcs.
type watcher struct {
	data func([]byte)
	done func()
}

func (w watcher) BodyData(p []byte) { w.data(p) }
func (w watcher) BodyDone()         { w.done() }

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

// rwc is a 101 body: readable, writable, closable.
type rwc struct {
	io.Reader
	bytes.Buffer
}

func (*rwc) Close() error { return nil }

func (r *rwc) Read(p []byte) (int, error) { return r.Reader.Read(p) }

// TestWrapKeepsWriter: the body of a 101 response stays writable.
func TestWrapKeepsWriter(t *testing.T) {
	under := &rwc{Reader: strings.NewReader("")}
	body := Wrap(under, hook(func() {}))
	w, ok := body.(io.Writer)
	if !ok {
		t.Fatal("the wrapped 101 body lost its io.Writer")
	}
	if _, err := io.WriteString(w, "ping"); err != nil || under.String() != "ping" {
		t.Fatalf("write: %v, underlying got %q", err, under.String())
	}
	if _, ok := Wrap(io.NopCloser(strings.NewReader("")), hook(func() {})).(io.Writer); ok {
		t.Fatal("a read-only body became an io.Writer")
	}
}
