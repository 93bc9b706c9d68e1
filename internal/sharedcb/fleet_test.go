package sharedcb

// Four OS processes share one breaker: the test binary re-runs itself as
// TestHelperProcess with SLUICE_ROLE=cb; the parent hosts the vendor.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-go/sluice/internal/redistest"
)

func TestHelperProcess(t *testing.T) {
	if os.Getenv("SLUICE_ROLE") != "cb" {
		t.Skip("helper process")
	}
	idx := os.Getenv("SLUICE_CHILD")
	b := New(guardFor(t, os.Getenv("SLUICE_REDIS")), os.Getenv("SLUICE_NAME"), Config{
		Quorum: 2, OpenFor: time.Second, ProbeLease: 3 * time.Second,
		// No refresh after the first read: every state change a process
		// sees comes through pub/sub.
		Refresh:  time.Hour,
		OnChange: func(s State) { fmt.Printf("state %s %d\n", s, time.Now().UnixNano()) },
	})
	fmt.Println("ready")
	var quit atomic.Bool
	done := make(chan struct{})
	hc := &http.Client{}
	vendor := os.Getenv("SLUICE_VENDOR")
	post := func(h ...string) int {
		req, _ := http.NewRequest(http.MethodPost, vendor, nil)
		req.Header.Set("X-Child", idx)
		for i := 0; i < len(h); i += 2 {
			req.Header.Set(h[i], h[i+1])
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	go func() {
		defer close(done)
		ctx := context.Background()
		for !quit.Load() {
			switch b.State() {
			case Closed:
				checked := time.Now().UnixNano() // after State() said closed
				post("X-Checked-At", strconv.FormatInt(checked, 10))
				time.Sleep(5 * time.Millisecond) // pacing the load, not settling
			case HalfOpen:
				if won, _ := b.TryProbe(ctx); won {
					if post("X-Probe", "1") == http.StatusOK {
						_ = b.ReportSuccess(ctx)
					} else {
						_ = b.ReportFailure(ctx)
					}
					continue
				}
				time.Sleep(2 * time.Millisecond) // pacing
			default:
				time.Sleep(2 * time.Millisecond) // pacing
			}
		}
	}()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "report":
			t0 := time.Now().UnixNano()
			open, err := b.ReportOpen(context.Background())
			fmt.Printf("reported %v %d %v\n", open, t0, err)
		case "quit":
			quit.Store(true)
			<-done
			hc.CloseIdleConnections()
			_ = b.Close()
			return
		}
	}
}

type cbChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func (c *cbChild) next(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("child exited waiting for %q", prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			t.Fatalf("no %q from child", prefix)
		}
	}
}

type cbHit struct {
	child   int
	probe   bool
	checked time.Time
	at      time.Time
}

// Once the quorum opens the fleet every process learns it through pub/sub
// (the refresh safety net is off) and stops calling; exactly one probe per
// half-open period reaches the vendor across the fleet.
func TestFleetBreaker(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process run")
	}
	s := redistest.New(t)
	var mu sync.Mutex
	var hits []cbHit
	probes := 0
	var closedAt time.Time
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i, _ := strconv.Atoi(r.Header.Get("X-Child"))
		ns, _ := strconv.ParseInt(r.Header.Get("X-Checked-At"), 10, 64)
		h := cbHit{child: i, probe: r.Header.Get("X-Probe") == "1", checked: time.Unix(0, ns), at: time.Now()}
		mu.Lock()
		defer mu.Unlock()
		hits = append(hits, h)
		if h.probe {
			probes++
			if probes == 1 {
				w.WriteHeader(http.StatusInternalServerError) // the first probe fails
				return
			}
			closedAt = h.at
		}
	}))
	defer vendor.Close()

	const n = 4
	var kids []*cbChild
	var flips [n][]string
	var flipsMu sync.Mutex
	for i := 0; i < n; i++ {
		c := &cbChild{lines: make(chan string, 1024)}
		c.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		c.cmd.Env = append(os.Environ(), "SLUICE_ROLE=cb", "SLUICE_CHILD="+strconv.Itoa(i),
			"SLUICE_REDIS="+s.URL, "SLUICE_NAME="+s.Prefix, "SLUICE_VENDOR="+vendor.URL)
		c.cmd.Stderr = os.Stderr
		c.stdin, _ = c.cmd.StdinPipe()
		out, _ := c.cmd.StdoutPipe()
		if err := c.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				l := sc.Text()
				if strings.HasPrefix(l, "state ") {
					flipsMu.Lock()
					flips[i] = append(flips[i], l)
					flipsMu.Unlock()
				}
				c.lines <- l
			}
			close(c.lines)
		}()
		kids = append(kids, c)
	}
	for _, c := range kids {
		c.next(t, "ready")
	}
	waitFor(t, "subscriptions", subscribed(t, s, "sluice:{"+s.Prefix+"}:cb", n))

	send := func(i int, cmd string) { _, _ = io.WriteString(kids[i].stdin, cmd+"\n") }
	send(0, "report")
	if l := kids[0].next(t, "reported"); !strings.HasPrefix(l, "reported false") {
		t.Fatalf("one process opened the fleet: %s", l)
	}
	send(1, "report")
	l := kids[1].next(t, "reported")
	f := strings.Fields(l)
	if len(f) < 3 || f[1] != "true" {
		t.Fatalf("the quorum did not open the fleet: %s", l)
	}
	t0ns, _ := strconv.ParseInt(f[2], 10, 64)
	t0 := time.Unix(0, t0ns)

	// Wait for the probe that closes the fleet, then for every process to see it.
	waitFor(t, "a successful probe", func() bool { mu.Lock(); defer mu.Unlock(); return !closedAt.IsZero() })
	parse := func(l string) (string, time.Time) {
		f := strings.Fields(l)
		ns, _ := strconv.ParseInt(f[2], 10, 64)
		return f[1], time.Unix(0, ns)
	}
	lastClosed := func(i int) time.Time {
		flipsMu.Lock()
		defer flipsMu.Unlock()
		if len(flips[i]) == 0 {
			return time.Time{}
		}
		st, at := parse(flips[i][len(flips[i])-1])
		if st != "closed" {
			return time.Time{}
		}
		return at
	}
	for i := 0; i < n; i++ {
		waitFor(t, "closed on child "+strconv.Itoa(i), func() bool { return !lastClosed(i).IsZero() })
	}
	for i := range kids {
		send(i, "quit")
	}
	for i, c := range kids {
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v", i, err)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	var lat []time.Duration
	for i := 0; i < n; i++ {
		flipsMu.Lock()
		fl := append([]string(nil), flips[i]...)
		flipsMu.Unlock()
		var openAt time.Time
		for _, l := range fl {
			if st, at := parse(l); st == "open" {
				openAt = at
				break
			}
		}
		if openAt.IsZero() {
			t.Fatalf("child %d never saw the fleet open: %v", i, fl)
		}
		if openAt.Before(t0) {
			t.Fatalf("child %d opened before the quorum was met", i)
		}
		lat = append(lat, openAt.Sub(t0))
		// Causal: no call decided on "closed" after this process saw open,
		// until it saw the fleet close again.
		closed := lastClosed(i)
		for _, h := range hits {
			if h.child == i && !h.probe && h.checked.After(openAt) && h.checked.Before(closed) {
				t.Errorf("child %d called the vendor %v after its flag flipped to open", i, h.checked.Sub(openAt))
			}
		}
		t.Logf("child %d: state changes %v", i, fl)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	// How fast pub/sub carried it is this machine's speed, not a property:
	// logged, not checked.
	t.Logf("from the quorum report to each process's flag flip: %v", lat)
	if probes != 2 {
		t.Errorf("%d probes reached the vendor, want 2 (one failed, one per half-open period)", probes)
	}
	var pt []time.Duration
	for _, h := range hits {
		if h.probe {
			pt = append(pt, h.at.Sub(t0))
		}
	}
	t.Logf("probes reached the vendor at %v after the open", pt)
	if len(pt) == 2 && pt[1]-pt[0] < 900*time.Millisecond {
		t.Errorf("second probe only %v after the first: not in a new half-open period", pt[1]-pt[0])
	}
}
