// Package bodyhook runs code once when a response body is finished with: the
// one "body finished" mechanism of sluice. The outbound layers use it to
// release a permit, cancel a context or end a span when a streamed response
// ends rather than when its headers arrive, and the quota's usage watchers to
// read the usage a vendor reports as the body goes by.
package bodyhook

import (
	"io"
	"sync"
)

// Hook is what Wrap runs when a body is finished with. Implementations are
// typically a layer's own state (a permit holder, a timer), so that wrapping
// a body allocates nothing else.
type Hook interface {
	// BodyDone runs exactly once, when the body is finished with.
	BodyDone()
}

// Watcher is a Hook that also sees the bytes read.
type Watcher interface {
	Hook
	// BodyData sees, in order, the bytes each Read returns until the body
	// is finished.
	BodyData(p []byte)
}

// Wrap returns rc wrapped so that h.BodyDone runs exactly once, when the
// body is finished with: at the first Read that returns an error (io.EOF
// included) or at the first Close, whichever comes first.
//
// If h is a Watcher, BodyData sees the bytes each Read returns until the
// body is finished. BodyData never runs concurrently with itself or with
// BodyDone, and never after BodyDone has started, so the two may share
// state without locking. Bytes a Read returns after the body was finished
// (by a Close from another goroutine, say) are passed to the caller but not
// to BodyData.
//
// Close may race with Read (closing a body from another goroutine is the
// usual way to abort a stream), and Close with Close: the wrapped body is as
// safe for that as rc is. Close closes rc first, then finishes the body; it
// returns only once BodyDone has returned, whichever call ran it, so that
// after Close whatever the hook releases is released.
//
// If rc is also an io.Writer (the body of a 101 Switching Protocols
// response, which net/http requires to be writable), so is the result, and
// its writes go to rc.
func Wrap(rc io.ReadCloser, h Hook) io.ReadCloser {
	b := &body{rc: rc, hook: h}
	b.watcher, _ = h.(Watcher)
	if w, ok := rc.(io.Writer); ok {
		return &writableBody{body: b, w: w}
	}
	return b
}

type body struct {
	rc      io.ReadCloser
	hook    Hook
	watcher Watcher // hook, when it watches the data

	mu       sync.Mutex // serializes BodyData with the end of the body
	finished bool       // under mu: BodyData must not run any more
	once     sync.Once  // runs BodyDone; later callers wait for it
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if b.watcher != nil && n > 0 {
		b.mu.Lock()
		if !b.finished {
			b.watcher.BodyData(p[:n])
		}
		b.mu.Unlock()
	}
	if err != nil {
		b.finish()
	}
	return n, err
}

func (b *body) Close() error {
	err := b.rc.Close()
	b.finish()
	return err
}

func (b *body) finish() {
	b.once.Do(func() {
		b.mu.Lock()
		b.finished = true
		b.mu.Unlock()
		b.hook.BodyDone()
	})
}

// writableBody keeps the io.Writer of a 101 body.
type writableBody struct {
	*body
	w io.Writer
}

func (b *writableBody) Write(p []byte) (int, error) { return b.w.Write(p) }
