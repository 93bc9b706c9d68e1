package main

// The hostile-peer suite of the example app (issue 11): evil clients (slow
// bodies, never-reading streams, idle keep-alive connections) and evil
// vendors (endless lines, gzip bombs, streams cut mid-line), each against the
// bound it must respect. Run it with go test -run Hostile.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// generous is the slack every causal bound below gets on a loaded machine.
const generous = 30 * time.Second

// dialApp opens a raw TCP connection to the app.
func dialApp(t *testing.T, a *app) *net.TCPConn {
	t.Helper()
	conn, err := net.Dial("tcp", a.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn.(*net.TCPConn)
}

// streamEvent is the JSON of an in-band error event.
type streamEvent struct {
	Error struct {
		Layer   string `json:"layer"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	} `json:"error"`
}

// wantStreamError checks that body, a relayed stream, ends with exactly one
// in-band error event that starts on a line boundary and ends the event
// ("\n\n"), naming layer and reason; it returns what came before the event.
func wantStreamError(t *testing.T, body []byte, layer, reason string) []byte {
	t.Helper()
	const head = "event: error\ndata: "
	i := bytes.LastIndex(body, []byte(head))
	if i < 0 {
		t.Fatalf("the stream has no error event; it ends with %q", tail(body))
	}
	if i > 0 && !bytes.HasSuffix(body[:i], []byte("\n\n")) {
		t.Errorf("the error event does not start after a whole event: ...%q", tail(body[:i+len(head)]))
	}
	data, ok := bytes.CutSuffix(body[i+len(head):], []byte("\n\n"))
	if !ok || bytes.Contains(data, []byte("\n")) {
		t.Fatalf("the error event is not one data line ending the event: %q", tail(body[i:]))
	}
	var ev streamEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		t.Fatalf("the error event's data %q is not JSON: %v", data, err)
	}
	if ev.Error.Layer != layer || ev.Error.Reason != reason || ev.Error.Message == "" {
		t.Errorf("error event %s/%s (%q), want %s/%s with a message", ev.Error.Layer, ev.Error.Reason,
			ev.Error.Message, layer, reason)
	}
	return body[:i]
}

func tail(b []byte) []byte { return b[max(0, len(b)-200):] }

// allocated is the bytes allocated by the whole process so far: an upper
// bound on how much the heap grew in between two readings.
func allocated() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// maxGrowth is the generous bound on what relaying one hostile answer may
// allocate: the relay's bounds are 64 KiB (a stream's event) and 4 MiB (a
// whole answer); the hostile answers below are 100 MiB or more.
const maxGrowth = 48 << 20

// gzipped compresses prefix followed by n bytes of fill (n a whole number of
// MiB): one gzip member of a MiB, repeated, as gzip readers read
// concatenated members as one stream.
func gzipped(t *testing.T, prefix string, fill byte, n int) []byte {
	t.Helper()
	member := func(p string) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = io.WriteString(zw, p)
		_, _ = zw.Write(bytes.Repeat([]byte{fill}, 1<<20))
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	out := member(prefix)
	rest := member("")
	for range n>>20 - 1 {
		out = append(out, rest...)
	}
	return out
}

// TestHostileSlowBodiesDoNotHoldAdmissionSlots is issue 11, finding 11: six
// clients that send their headers and then trickle the body against two
// active slots must not shut out a legitimate request, and are cut off with
// 408 within SLUICE_BODY_TIMEOUT.
func TestHostileSlowBodiesDoNotHoldAdmissionSlots(t *testing.T) {
	t.Parallel() // its own app; most of its time is the body timeout
	const bodyTimeout = 5 * time.Second
	a := startApp(t, config(t, map[string]string{"SLUICE_QUEUE_ACTIVE": "2",
		"SLUICE_BODY_TIMEOUT": bodyTimeout.String()}))

	type slow struct {
		conn  *net.TCPConn
		start time.Time
	}
	stop := make(chan struct{})
	var trickle sync.WaitGroup
	defer trickle.Wait()
	defer close(stop)
	var slows []slow
	for i := range 6 {
		conn := dialApp(t, a)
		start := time.Now()
		_, err := fmt.Fprintf(conn, "POST /v1/chat HTTP/1.1\r\nHost: app\r\nX-API-Key: slow-%d\r\n"+
			"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"prompt\":\"", i)
		if err != nil {
			t.Fatal(err)
		}
		slows = append(slows, slow{conn, start})
		trickle.Go(func() { // a byte now and then: never idle, never done
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := conn.Write([]byte("x")); err != nil {
						return
					}
				}
			}
		})
	}
	// All six are inside the chain once the load shedder counts them.
	if !waitFor(generous, func() bool { return byLayer(t, a, "resilience_request_active")["load_shedder"] >= 6 }) {
		t.Fatalf("the six slow uploads did not reach the app: %v", byLayer(t, a, "resilience_request_active"))
	}

	if got := a.chat(t, "legit", hello); got.status != http.StatusOK {
		t.Fatalf("a legitimate request behind six slow uploads: %s, want 200 at once", got)
	}

	var slowest time.Duration
	for i, s := range slows {
		_ = s.conn.SetReadDeadline(s.start.Add(bodyTimeout + generous))
		resp, err := http.ReadResponse(bufio.NewReader(s.conn), nil)
		if err != nil {
			t.Fatalf("slow upload %d: no answer within %s: %v", i, bodyTimeout+generous, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantError(t, answer{status: resp.StatusCode, header: resp.Header, body: body},
			http.StatusRequestTimeout, one("request"), one("body_timeout"), false)
		slowest = max(slowest, time.Since(s.start))
	}
	t.Logf("the slowest slow upload was cut off %s after its headers (SLUICE_BODY_TIMEOUT=%s)", slowest, bodyTimeout)
}

// sseVendor streams events of size bytes of content, flushing each, until
// the client goes away; done is closed when its handler returns.
func sseVendor(t *testing.T, size int, every time.Duration) (v *scriptedVendor, done chan struct{}) {
	done = make(chan struct{})
	var once sync.Once
	chunk, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"delta": map[string]string{
		"content": strings.Repeat("x", size)}}}})
	event := append(append([]byte("data: "), chunk...), '\n', '\n')
	v = newVendor(t, func(w http.ResponseWriter, r *http.Request) {
		defer once.Do(func() { close(done) })
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for {
			if _, err := w.Write(event); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(every):
			}
		}
	})
	return v, done
}

// TestHostileNeverReadingClientReleasesPermit is issue 11, finding 12: a
// client that asks for a stream and never reads it must not hold the vendor
// bulkhead's permit past the request's deadline (SLUICE_REQUEST_TIMEOUT, plus
// the second the Deadline middleware leaves for the last write).
func TestHostileNeverReadingClientReleasesPermit(t *testing.T) {
	const requestTimeout = 2 * time.Second
	v, vendorDone := sseVendor(t, 8<<10, 0)
	a := startApp(t, config(t, vendorEnv(v, map[string]string{
		"SLUICE_REQUEST_TIMEOUT": requestTimeout.String(), "SLUICE_VENDOR_CONCURRENCY": "1"})))

	conn := dialApp(t, a)
	_ = conn.SetReadBuffer(4 << 10) // and never read
	body := `{"prompt":"hello","stream":true}`
	start := time.Now()
	if _, err := fmt.Fprintf(conn, "POST /v1/chat HTTP/1.1\r\nHost: app\r\nX-API-Key: stuck\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
		t.Fatal(err)
	}
	if !waitFor(generous, func() bool { return byLayer(t, a, "resilience_request_active")["bulkhead"] == 1 }) {
		t.Fatal("the stream never took the bulkhead's permit")
	}
	if !waitFor(requestTimeout+generous, func() bool {
		return byLayer(t, a, "resilience_request_active")["bulkhead"] == 0
	}) {
		t.Fatalf("a client that never reads still holds the vendor permit %s after its request; its timeout is %s",
			time.Since(start), requestTimeout)
	}
	t.Logf("the permit was released %s after the request (SLUICE_REQUEST_TIMEOUT=%s)", time.Since(start), requestTimeout)
	select {
	case <-vendorDone:
	case <-time.After(generous):
		t.Error("the vendor's stream was not ended")
	}
}

// endlessVendor answers 200 with contentType, then prefix and n bytes of
// fill without a newline, gzip-compressed when gz is set.
func endlessVendor(t *testing.T, contentType, prefix string, n int, gz bool) *scriptedVendor {
	var bomb []byte
	if gz {
		bomb = gzipped(t, prefix, 'x', n)
	}
	return newVendor(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		if gz {
			w.Header().Set("Content-Encoding", "gzip")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(bomb)
			return
		}
		w.WriteHeader(http.StatusOK)
		if _, err := io.WriteString(w, prefix); err != nil {
			return
		}
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for sent := 0; sent < n; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return // the app hung up: what we want
			}
		}
	})
}

// TestHostileVendorEndlessLine is issue 11, finding 13: a stream whose line
// never ends (plain, or a gzip bomb that inflates to 100 MiB) ends the relay
// with the in-band error vendor/event_too_large, and the app's heap does not
// follow the line.
func TestHostileVendorEndlessLine(t *testing.T) {
	for _, gz := range []bool{false, true} {
		t.Run(fmt.Sprintf("gzip=%v", gz), func(t *testing.T) {
			v := endlessVendor(t, "text/event-stream", "data: {\"choices\":[{\"delta\":{\"content\":\"", 100<<20, gz)
			a := startApp(t, config(t, vendorEnv(v, map[string]string{"SLUICE_RETRY_ATTEMPTS": "1"})))
			before := allocated()
			got := a.chat(t, "alice", `{"prompt":"hello","stream":true}`)
			grew := allocated() - before
			if got.status != http.StatusOK {
				t.Fatalf("status %s", got)
			}
			if rest := wantStreamError(t, got.body, "vendor", "event_too_large"); len(rest) != 0 {
				t.Errorf("the partial event was relayed before the error: %q", tail(rest))
			}
			t.Logf("relaying the endless line allocated %d KiB", grew>>10)
			if grew > maxGrowth {
				t.Errorf("relaying the endless line allocated %d MiB, want at most %d MiB", grew>>20, maxGrowth>>20)
			}
		})
	}
}

// TestHostileVendorHugeAnswer is issue 11, finding 13: a non-streamed answer
// over 4 MiB (plain, or a gzip bomb that inflates to 100 MiB) is refused with
// 502 vendor/answer_too_large, and the app's heap does not follow it.
func TestHostileVendorHugeAnswer(t *testing.T) {
	for _, gz := range []bool{false, true} {
		t.Run(fmt.Sprintf("gzip=%v", gz), func(t *testing.T) {
			v := endlessVendor(t, "application/json", `{"choices":[{"message":{"content":"`, 100<<20, gz)
			a := startApp(t, config(t, vendorEnv(v, map[string]string{"SLUICE_RETRY_ATTEMPTS": "1"})))
			before := allocated()
			got := a.chat(t, "alice", hello)
			grew := allocated() - before
			wantError(t, got, http.StatusBadGateway, one("vendor"), one("answer_too_large"), false)
			t.Logf("reading the huge answer allocated %d KiB", grew>>10)
			if grew > maxGrowth {
				t.Errorf("reading the huge answer allocated %d MiB, want at most %d MiB", grew>>20, maxGrowth>>20)
			}
		})
	}
}

// TestHostileIdleKeepAliveClosed is issue 11, finding 14: a keep-alive
// connection that stays idle is closed by the server after
// SLUICE_IDLE_TIMEOUT.
func TestHostileIdleKeepAliveClosed(t *testing.T) {
	const idle = time.Second
	a := startApp(t, config(t, map[string]string{"SLUICE_IDLE_TIMEOUT": idle.String()}))
	conn := dialApp(t, a)
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: app\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("GET /healthz: %s, close %v; want 200 on a kept-alive connection", resp.Status, resp.Close)
	}
	start := time.Now()
	_ = conn.SetReadDeadline(start.Add(idle + generous))
	n, err := br.Read(make([]byte, 1))
	if !errors.Is(err, io.EOF) {
		t.Fatalf("an idle keep-alive connection: read %d bytes, %v; want the server to close it (EOF) after %s",
			n, err, idle)
	}
	t.Logf("the idle connection was closed after %s (SLUICE_IDLE_TIMEOUT=%s)", time.Since(start), idle)
}

// cutStreamVendor starts an SSE stream, sends sent and breaks the connection,
// before the chunked body's end.
func cutStreamVendor(t *testing.T, sent string) *scriptedVendor {
	return newVendor(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, sent)
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		conn.Close()
	})
}

// TestHostileStreamCutMidLine is issue 11, finding 15: a vendor stream cut in
// the middle of a line ends the relay with an error event that starts on a
// line boundary after the last whole event: the partial event is dropped,
// never glued to the error.
func TestHostileStreamCutMidLine(t *testing.T) {
	v := cutStreamVendor(t, "data: {\"content\":\"whole\"}\n\ndata: {\"content\":\"par")
	a := startApp(t, config(t, vendorEnv(v, nil)))
	got := a.chat(t, "alice", `{"prompt":"hello","stream":true}`)
	if got.status != http.StatusOK {
		t.Fatalf("status %s", got)
	}
	rest := wantStreamError(t, got.body, "vendor", "stream_broken")
	if string(rest) != "data: {\"content\":\"whole\"}\n\n" {
		t.Errorf("before the error event: %q, want the whole event only", rest)
	}
}

// TestHostileStreamCutByRequestDeadline is issue 11, finding 15: a stream that
// outlives the app's own request deadline ends with the in-band error
// request/deadline_exceeded (as a non-streamed call would answer 504), not
// stream_broken.
func TestHostileStreamCutByRequestDeadline(t *testing.T) {
	v, _ := sseVendor(t, 16, 50*time.Millisecond)
	a := startApp(t, config(t, vendorEnv(v, map[string]string{"SLUICE_REQUEST_TIMEOUT": "1s"})))
	got := a.chat(t, "alice", `{"prompt":"hello","stream":true}`)
	if got.status != http.StatusOK {
		t.Fatalf("status %s", got)
	}
	wantStreamError(t, got.body, "request", "deadline_exceeded")
}
