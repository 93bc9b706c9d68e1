package main

import (
	"context"
	"encoding/xml"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gin-gonic/gin"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	goleak.VerifyTestMain(m)
}

// smoke is one tiny cell: 1 s at twice the capacity of a vendor serving 4 at
// once in 50 ms. Arrivals come every 6.25 ms and none can leave the vendor
// before 50 ms, so more than 4 are at the vendor at once unless something
// holds them back.
var smoke = struct {
	c    int
	l    time.Duration
	load Load
}{4, 50 * time.Millisecond, Load{Rate: 2 * 4 / 0.05, Duration: time.Second, Timeout: 10 * time.Second, MaxInFlight: 1000}}

// TestSluiceKeepsVendorWithinCapacity checks causal invariants only, never
// speed: the sluice stack never has more than C requests or C sockets at the
// vendor, and each answer is a 200 or a documented rejection (503 with
// Retry-After).
func TestSluiceKeepsVendorWithinCapacity(t *testing.T) {
	v, err := startVendor(VendorDegrade, smoke.c, smoke.l)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	s := DefaultSettings(smoke.c, smoke.l)
	// Generous timeouts, so that a slow, shared machine cannot turn an answer
	// into a 504: this test is about limits, not latency.
	s.Deadline, s.QueueTimeout, s.AttemptTimeout, s.PoolTimeout, s.BulkheadWait =
		8*time.Second, 5*time.Second, 5*time.Second, 5*time.Second, 5*time.Second
	a, err := startSluice(v.URL(), s)
	if err != nil {
		t.Fatal(err)
	}
	out := run(context.Background(), a.URL(), smoke.load)
	a.Close()

	st := v.Stats()
	if st.PeakInflight > int64(smoke.c) {
		t.Errorf("vendor peak in-flight %d > C=%d", st.PeakInflight, smoke.c)
	}
	if st.PeakConns > int64(smoke.c) {
		t.Errorf("vendor peak sockets %d > C=%d", st.PeakConns, smoke.c)
	}
	if len(out) != int(smoke.load.Rate*smoke.load.Duration.Seconds()) {
		t.Fatalf("%d outcomes, want one per request due", len(out))
	}
	counts := map[string]int{}
	for i, o := range out {
		switch {
		case o.dropped:
			t.Fatalf("request %d dropped by the generator: the run is invalid", i)
		case o.status == http.StatusOK:
			counts["ok"]++
		case o.status == http.StatusServiceUnavailable && o.retryAfter:
			counts["rejected"]++
		default:
			t.Errorf("request %d: status %d, Retry-After %v, timeout %v: want 200 or 503 with Retry-After",
				i, o.status, o.retryAfter, o.timeout)
		}
	}
	t.Logf("answers %v, vendor %+v", counts, st)
}

// TestNaiveExceedsVendorCapacity shows that the invariants above can fail:
// the same load through the naive app puts more than C requests, on more
// than C sockets, at the vendor.
func TestNaiveExceedsVendorCapacity(t *testing.T) {
	v, err := startVendor(VendorDegrade, smoke.c, smoke.l)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	a, err := startNaive(v.URL())
	if err != nil {
		t.Fatal(err)
	}
	run(context.Background(), a.URL(), smoke.load)
	a.Close()
	if st := v.Stats(); st.PeakInflight <= int64(smoke.c) || st.PeakConns <= int64(smoke.c) {
		t.Errorf("vendor peak in-flight %d, sockets %d: want both > C=%d", st.PeakInflight, st.PeakConns, smoke.c)
	}
}

// TestSharer pins the degrading vendor's model on a fake clock: with C=2 and
// L=1s, four jobs each run at half speed; when one leaves at 1s, the other
// three, halfway done, run at 2/3 speed and finish 0.75 s later.
func TestSharer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSharer(2, time.Second)
		defer s.stop()
		start := time.Now()
		ctx, cancel := context.WithCancel(context.Background())
		ends := make(chan time.Duration, 3)
		left := make(chan bool)
		for range 3 {
			go func() {
				s.do(context.Background())
				ends <- time.Since(start)
			}()
		}
		go func() { left <- s.do(ctx) }()
		time.Sleep(time.Second)
		cancel()
		if <-left {
			t.Error("the canceled job finished")
		}
		for range 3 {
			if d := <-ends; !near(d, 1750*time.Millisecond) {
				t.Errorf("job finished after %s, want 1.75s", d)
			}
		}
	})
}

// TestSharerUnderCapacity: at or under C every job takes exactly L.
func TestSharerUnderCapacity(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSharer(2, time.Second)
		defer s.stop()
		start := time.Now()
		done := make(chan time.Duration, 2)
		for range 2 {
			go func() {
				s.do(context.Background())
				done <- time.Since(start)
			}()
		}
		for range 2 {
			if d := <-done; !near(d, time.Second) {
				t.Errorf("job took %s, want 1s", d)
			}
		}
	})
}

// near allows for the float rounding of the virtual clock: a nanosecond or
// two, never real time (the clock is synctest's).
func near(d, want time.Duration) bool { return d > want-time.Microsecond && d < want+time.Microsecond }

// TestChartsAreWellFormedSVG: the hand-written SVG parses as XML, escapes
// its text, and draws one polyline per line and one rect per bar.
func TestChartsAreWellFormedSVG(t *testing.T) {
	check := func(name string, f func(io.Writer) error, want map[string]int) {
		var b strings.Builder
		if err := f(&b); err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		d := xml.NewDecoder(strings.NewReader(b.String()))
		for {
			tok, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: not well-formed: %v\n%s", name, err, b.String())
			}
			if se, ok := tok.(xml.StartElement); ok {
				got[se.Name.Local]++
			}
		}
		for el, n := range want {
			if got[el] != n {
				t.Errorf("%s: %d <%s>, want %d", name, got[el], el, n)
			}
		}
		if !strings.Contains(b.String(), "a &lt;b&gt; &amp; c") {
			t.Errorf("%s: the title is not escaped", name)
		}
	}
	check("line", func(w io.Writer) error {
		return lineChart(w, "a <b> & c", "x", "y", []line{
			{Name: "one", Pts: [][2]float64{{0, 1}, {1, 2}}}, {Name: "two", Dash: true, Pts: [][2]float64{{0, 3}}}})
	}, map[string]int{"svg": 1, "polyline": 2})
	check("bars", func(w io.Writer) error {
		return barChart(w, "a <b> & c", "y", []string{"g1", "g2", "g3"},
			[]bars{{Name: "fifo", Vals: []float64{1, 2, 3}}, {Name: "fair", Vals: []float64{3, 2, 1}}}, 2, "ref")
	}, map[string]int{"svg": 1, "rect": 1 + 6}) // the background, then the bars
}
