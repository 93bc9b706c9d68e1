package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDemoDefaultsDocumented: the table of the demo's settings in
// docs/example-app.md is demoDefaults, row for row.
func TestDemoDefaultsDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/example-app.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "## The demo\n")
	if i < 0 {
		t.Fatal("docs/example-app.md has no \"## The demo\" section")
	}
	section := doc[i:]
	if j := strings.Index(section[1:], "\n## "); j >= 0 {
		section = section[:j+1]
	}
	rows := regexp.MustCompile("(?m)^\\| `([A-Z_]+)` \\| `([^`]*)` \\|$").FindAllStringSubmatch(section, -1)
	documented := map[string]string{}
	for _, r := range rows {
		documented[r[1]] = r[2]
	}
	for k, v := range demoDefaults {
		if documented[k] != v {
			t.Errorf("%s: the demo uses %q, the docs say %q", k, v, documented[k])
		}
	}
	for k := range documented {
		if _, ok := demoDefaults[k]; !ok {
			t.Errorf("the docs list %s among the demo's settings; the demo does not set it", k)
		}
	}
	if !strings.Contains(section, "`6s`") || demoDuration != 6*time.Second {
		t.Errorf("the documented demo duration (6s) is not -demo-duration's default (%s)", demoDuration)
	}
}

func TestProgressLine(t *testing.T) {
	r := Result{Sent: 120, Failures: 2, Counts: map[Outcome]int{
		{Status: http.StatusOK}: 50,
		{Status: 503, Layer: "load_shedder", Reason: "overloaded"}:        30,
		{Status: 429, Layer: "user_rate_limiter", Reason: "rate_limited"}: 35,
		{Status: 503, Layer: "admission_queue", Reason: "queue_full"}:     2,
		{Status: 503, Layer: "admission_queue", Reason: "queue_timeout"}:  1,
		{Status: 502}: 1,
	}}
	got := progressLine(3*time.Second, r)
	want := "   3s  sent    120  served     50  rejected: user_rate_limiter 35 load_shedder 30 admission_queue 3 other 1  unreachable 2"
	if got != want {
		t.Errorf("progressLine:\n got %q\nwant %q", got, want)
	}
	if got := progressLine(time.Second, Result{Counts: map[Outcome]int{}}); !strings.HasSuffix(got, "rejected: none") {
		t.Errorf("no rejections: %q", got)
	}
}

// lockedBuffer is a bytes.Buffer safe for the progress goroutine and the
// test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDriveProgress: a burst of 2.5 s with Progress set writes a progress
// line at each whole second it lasted (the ticker's first tick, at 1 s,
// comes before the burst's end at 2.5 s), and Drive has stopped writing when
// it returns.
func TestDriveProgress(t *testing.T) {
	a := startApp(t, config(t, nil))
	var out lockedBuffer
	res := Drive(context.Background(), Load{URL: a.srv.URL, Users: 1, Concurrency: 1, Duration: 2500 * time.Millisecond,
		Progress: &out})
	after := out.String()
	lines := strings.Split(strings.TrimSpace(after), "\n")
	if after == "" || len(lines) < 1 || len(lines) > 2 {
		t.Fatalf("progress output %q: want 1 or 2 lines", after)
	}
	for _, l := range lines {
		if !regexp.MustCompile(`^\s*\d+s  sent\s+\d+  served\s+\d+  rejected:`).MatchString(l) {
			t.Errorf("progress line %q", l)
		}
	}
	if res.Sent == 0 {
		t.Error("the burst sent nothing")
	}
	if out.String() != after {
		t.Error("progress written after Drive returned")
	}
}
