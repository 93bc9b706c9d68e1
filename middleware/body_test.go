package middleware

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/sluice-go/sluice"
)

// generous is the slack of every causal bound in these tests.
const generous = 30 * time.Second

// variants wires a chain both ways: the gin middlewares and the net/http ones.
var variants = []struct {
	name string
	wrap func(body, deadline time.Duration, h http.HandlerFunc) http.Handler
}{
	{"gin", func(body, deadline time.Duration, h http.HandlerFunc) http.Handler {
		r := gin.New()
		if deadline > 0 {
			r.Use(Deadline(DeadlineSettings{Budget: deadline}))
		}
		if body > 0 {
			r.Use(BufferBody(BufferBodySettings{MaxBytes: 16, Timeout: body}),
				AdmissionQueue(AdmissionQueueSettings{MaxActive: 1, Timeout: time.Hour}))
		}
		r.Any("/", gin.WrapF(h))
		return r
	}},
	{"net/http", func(body, deadline time.Duration, h http.HandlerFunc) http.Handler {
		var out http.Handler = h
		if body > 0 {
			out = BufferBodyHandler(BufferBodySettings{MaxBytes: 16, Timeout: body})(
				AdmissionQueueHandler(AdmissionQueueSettings{MaxActive: 1, Timeout: time.Hour})(out))
		}
		if deadline > 0 {
			out = DeadlineHandler(DeadlineSettings{Budget: deadline})(out)
		}
		return out
	}},
}

// exchange writes raw on a fresh connection to srv and reads the answer.
func exchange(t *testing.T, srv *httptest.Server, raw string) (int, body) {
	t.Helper()
	status, b, err := tryExchange(srv, raw)
	if err != nil {
		t.Fatal(err)
	}
	return status, b
}

// tryExchange is exchange for any goroutine.
func tryExchange(srv *httptest.Server, raw string) (int, body, error) {
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		return 0, body{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(generous))
	if _, err := io.WriteString(conn, raw); err != nil {
		return 0, body{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, body{}, fmt.Errorf("no answer: %w", err)
	}
	defer resp.Body.Close()
	var b body
	if resp.StatusCode != http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
			return 0, body{}, fmt.Errorf("%s: the body is not the JSON error: %w", resp.Status, err)
		}
	}
	return resp.StatusCode, b, nil
}

// BufferBody hands the handler the whole body, and refuses a body too large
// (by Content-Length or as it arrives) with 413, a broken one with 400 and a
// stalled one with 408, each with the JSON error of layer "request".
func TestBufferBody(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel() // its own server; the time is the timeouts it waits out
			srv := httptest.NewServer(v.wrap(time.Second, 0, func(w http.ResponseWriter, r *http.Request) {
				b, err := io.ReadAll(r.Body)
				if err != nil || r.ContentLength != int64(len(b)) {
					t.Errorf("the handler read %q, %v with ContentLength %d", b, err, r.ContentLength)
				}
				_, _ = w.Write(b)
			}))
			defer srv.Close()
			for _, tc := range []struct {
				name, raw, reason string
				status            int
			}{
				{"whole", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", "", 200},
				{"chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "", 200},
				{"no body", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "", 200},
				{"declared too large", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n", "body_too_large", 413},
				{"too large", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n11\r\n" +
					strings.Repeat("x", 17) + "\r\n0\r\n\r\n", "body_too_large", 413},
				{"broken", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad_body", 400},
				{"stalled", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhel", "body_timeout", 408},
			} {
				status, b := exchange(t, srv, tc.raw)
				if status != tc.status || (tc.reason != "" && (b.Error.Layer != sluice.ProblemLayerRequest || b.Error.Reason != tc.reason || b.Error.Message == "")) {
					t.Errorf("%s: %d %+v, want %d %s/%s", tc.name, status, b.Error, tc.status, sluice.ProblemLayerRequest, tc.reason)
				}
			}
		})
	}
}

// TestHostileSlowUploadHoldsNoAdmissionSlot is issue 11, finding 11: behind
// BufferBody, an upload that stalls never reaches the admission queue, so a
// request behind it is served at once though the queue has one slot and no
// waiting room; the stalled upload is answered 408 at BufferBody's timeout.
func TestHostileSlowUploadHoldsNoAdmissionSlot(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel() // its own server; the time is the timeouts it waits out
			arrived := make(chan struct{}, 10)
			entered := make(chan struct{}, 10) // a request entered the chain
			chain := v.wrap(2*time.Second, 0, func(w http.ResponseWriter, r *http.Request) {
				arrived <- struct{}{}
				_, _ = io.ReadAll(r.Body) // as a handler does
			})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				entered <- struct{}{}
				chain.ServeHTTP(w, r)
			}))
			defer srv.Close()
			stalled := make(chan int, 1)
			go func() {
				status, _, err := tryExchange(srv, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhel")
				if err != nil {
					t.Errorf("the stalled upload: %v", err)
				}
				stalled <- status
			}()
			<-entered
			// Without BufferBody the stalled upload would hold the one slot
			// and this request would get 503 queue_full at once.
			status, b := exchange(t, srv, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
			if status != 200 {
				t.Errorf("a request beside a stalled upload: %d %+v, want 200", status, b.Error)
			}
			if status := <-stalled; status != http.StatusRequestTimeout {
				t.Errorf("the stalled upload: %d, want 408", status)
			}
			if len(arrived) != 1 {
				t.Errorf("%d requests reached the handler, want 1", len(arrived))
			}
		})
	}
}

// TestHostileDeadlineEndsWritesToAClientThatNeverReads is issue 11, finding
// 12: a handler streaming to a client that never reads is blocked in Write;
// Deadline's write deadline makes that Write fail soon after the budget,
// so the handler returns and releases what it holds.
func TestHostileDeadlineEndsWritesToAClientThatNeverReads(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel() // its own server; the time is the timeouts it waits out
			const budget = 500 * time.Millisecond
			ended := make(chan error, 1)
			srv := httptest.NewServer(v.wrap(0, budget, func(w http.ResponseWriter, r *http.Request) {
				chunk := []byte(strings.Repeat("x", 32<<10))
				for {
					if _, err := w.Write(chunk); err != nil {
						ended <- err
						return
					}
				}
			}))
			defer srv.Close()
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.(*net.TCPConn).SetReadBuffer(4 << 10)
			start := time.Now()
			fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") // and never read
			select {
			case err := <-ended:
				t.Logf("the handler's Write failed %s after the request (budget %s): %v", time.Since(start), budget, err)
			case <-time.After(budget + DeadlineGrace + generous):
				t.Fatal("the handler is still blocked writing to a client that never reads")
			}
		})
	}
}
