package quota

// Several OS processes sharing one quota: the test binary re-runs itself as
// TestHelperProcess with SLUICE_ROLE set; the parent hosts the counting
// loopback vendor and the Redis (standalone or Cluster).

import (
	"bufio"
	"context"
	"encoding/json"
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

	"github.com/redis/go-redis/v9"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/redistest"
	"github.com/sluice-go/sluice/internal/redisx"
)

// childSpec is what the parent tells a child (as JSON in SLUICE_SPEC).
type childSpec struct {
	Redis      string   // redis:// URL, or
	Cluster    []string // Cluster addrs
	Vendor     string   // vendor URL
	Name       string   // quota name
	Cfg        wireConfig
	Duration   time.Duration // run time after "go"
	Goroutines int
	Estimate   int64         // cost passed to Reserve
	Health     time.Duration // redisx health period (0: default)
	Timeout    time.Duration // redisx per-call timeout (0: default)
}

// wireConfig is Config without its callback, for JSON.
type wireConfig struct {
	Requests  int
	Per       time.Duration
	Burst     int
	Cost      int64
	CostPer   time.Duration
	CostBurst int64
	MaxWait   time.Duration
	Fallback  FailureMode
}

func (w wireConfig) config() Config {
	return Config{Requests: w.Requests, Per: w.Per, Burst: w.Burst, Cost: w.Cost, CostPer: w.CostPer,
		CostBurst: w.CostBurst, MaxWait: w.MaxWait, Fallback: w.Fallback}
}

// childStats is what a child reports on stdout.
type childStats struct {
	Attempts, Admitted, Rejected, Degraded, Slow int64
	WorstDegraded                                time.Duration
	LastDegraded                                 int64 // unix ns of the last degraded decision
	LastShared                                   int64 // unix ns of the last decision Redis made
	Members                                      int   // the most live processes the heartbeats counted
}

func TestHelperProcess(t *testing.T) {
	if os.Getenv("SLUICE_ROLE") != "quota" {
		t.Skip("helper process")
	}
	var spec childSpec
	if err := json.Unmarshal([]byte(os.Getenv("SLUICE_SPEC")), &spec); err != nil {
		t.Fatal(err)
	}
	var c redis.UniversalClient
	if len(spec.Cluster) > 0 {
		c = redis.NewClusterClient(redisx.NewClusterOptions(spec.Cluster))
	} else {
		opt, err := redisx.NewClientOptions(spec.Redis)
		if err != nil {
			t.Fatal(err)
		}
		c = redis.NewClient(opt)
	}
	defer c.Close()
	g := redisx.New(c, redisx.Options{HealthPeriod: spec.Health, Timeout: spec.Timeout})
	var st childStats
	var maxMembers int64
	var mu sync.Mutex
	cfg := spec.Cfg.config()
	cfg.OnDegraded = func(context.Context) {
		atomic.AddInt64(&st.Degraded, 1)
		atomic.StoreInt64(&st.LastDegraded, time.Now().UnixNano())
	}
	l := New(g, spec.Name, cfg)
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), spec.Duration)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: spec.Goroutines}}
	var wg sync.WaitGroup
	for i := 0; i < spec.Goroutines; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				t0 := time.Now()
				before := atomic.LoadInt64(&st.Degraded)
				r, err := l.Reserve(ctx, spec.Estimate)
				took := time.Since(t0)
				atomic.AddInt64(&st.Attempts, 1)
				shared := atomic.LoadInt64(&st.Degraded) == before && !r.Degraded()
				if shared {
					atomic.StoreInt64(&st.LastShared, time.Now().UnixNano())
				}
				if !shared {
					// A decision that touched (or skipped) a sick Redis: how long did it cost?
					mu.Lock()
					if took > g.Timeout()*4/5 {
						st.Slow++
					}
					st.WorstDegraded = max(st.WorstDegraded, took)
					mu.Unlock()
				}
				if err != nil {
					atomic.AddInt64(&st.Rejected, 1)
					d := 10 * time.Millisecond
					if e := sluice.ErrorOf(err); e != nil && e.RetryAfter > 0 {
						d = min(e.RetryAfter, 100*time.Millisecond)
					}
					_ = sleep(ctx, d)
					continue
				}
				atomic.AddInt64(&st.Admitted, 1)
				if m := int64(l.Members()); m > atomic.LoadInt64(&maxMembers) {
					atomic.StoreInt64(&maxMembers, m) // a racy max: good enough for "reached the fleet size"
				}
				req, _ := http.NewRequest(http.MethodPost, spec.Vendor, nil)
				req.Header.Set("X-Admitted-At", strconv.FormatInt(time.Now().UnixNano(), 10))
				resp, err := hc.Do(req)
				if err != nil {
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if n, ok := UsageFromJSON(body); ok {
					_ = r.Reconcile(context.Background(), n)
				}
				if d, ok := CooldownFromResponse(resp, 0); ok {
					_ = l.Cooldown(context.Background(), d)
				}
			}
		}()
	}
	wg.Wait()
	hc.CloseIdleConnections()
	// The most the heartbeats counted at any time: the count at the very end
	// can be one short when a loaded process's heartbeat misses a window
	// right after the restart.
	st.Members = max(int(atomic.LoadInt64(&maxMembers)), l.Members())
	_ = l.Close()
	b, _ := json.Marshal(&st)
	fmt.Println("stats " + string(b))
}

// hit is one request the vendor saw.
type hit struct {
	at, admitted time.Time
}

type vendor struct {
	*httptest.Server
	mu     sync.Mutex
	hits   []hit
	tokens int64 // usage.total_tokens per response (0: no usage)
	// tooMany: the N-th hit (1-based) gets 429 Retry-After: 3.
	tooMany int
	at429   time.Time
}

func newVendor(t *testing.T, tokens int64, tooMany int) *vendor {
	v := &vendor{tokens: tokens, tooMany: tooMany}
	v.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		ns, _ := strconv.ParseInt(r.Header.Get("X-Admitted-At"), 10, 64)
		v.mu.Lock()
		v.hits = append(v.hits, hit{at: now, admitted: time.Unix(0, ns)})
		n := len(v.hits)
		if n == v.tooMany {
			v.at429 = now
		}
		v.mu.Unlock()
		if n == v.tooMany {
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		if v.tokens > 0 {
			fmt.Fprintf(w, `{"usage":{"total_tokens":%d}}`, v.tokens)
		}
	}))
	t.Cleanup(v.Close)
	return v
}

func (v *vendor) snapshot() []hit {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]hit(nil), v.hits...)
}

type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	ready chan struct{}
	stats chan childStats
	out   strings.Builder
}

// runFleet starts n children, waits until all are ready, starts them together
// and returns the start time and their stats. during, if set, runs in the
// parent after the start (while children run).
func runFleet(t *testing.T, n int, spec childSpec, during func(start time.Time)) (time.Time, []childStats) {
	t.Helper()
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	kids := make([]*child, n)
	for i := range kids {
		k := &child{ready: make(chan struct{}), stats: make(chan childStats, 1)}
		k.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.v=false")
		k.cmd.Env = append(os.Environ(), "SLUICE_ROLE=quota", "SLUICE_SPEC="+string(b))
		k.cmd.Stderr = os.Stderr
		if k.stdin, err = k.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		stdout, err := k.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := k.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			sc := bufio.NewScanner(stdout)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				line := sc.Text()
				switch {
				case line == "ready":
					close(k.ready)
				case strings.HasPrefix(line, "stats "):
					var st childStats
					_ = json.Unmarshal([]byte(line[6:]), &st)
					k.stats <- st
				default:
					k.out.WriteString(line + "\n")
				}
			}
		}()
		kids[i] = k
	}
	for i, k := range kids {
		select {
		case <-k.ready:
		case <-time.After(60 * time.Second):
			t.Fatalf("child %d not ready", i)
		}
	}
	start := time.Now()
	for _, k := range kids {
		_, _ = io.WriteString(k.stdin, "go\n")
	}
	if during != nil {
		during(start)
	}
	var stats []childStats
	for i, k := range kids {
		err := k.cmd.Wait()
		if err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, k.out.String())
		}
		select {
		case st := <-k.stats:
			stats = append(stats, st)
		case <-time.After(10 * time.Second):
			t.Fatalf("child %d sent no stats:\n%s", i, k.out.String())
		}
	}
	return start, stats
}

// perSecond counts hits in each whole second after start.
func perSecond(hits []hit, start time.Time, secs int) []int {
	w := make([]int, secs+1)
	for _, h := range hits {
		i := int(h.at.Sub(start) / time.Second)
		if i >= 0 && i <= secs {
			w[i]++
		}
	}
	return w
}

// maxSliding is the most hits in any window of length d.
func maxSliding(hits []hit, d time.Duration) int {
	ts := make([]time.Time, len(hits))
	for i, h := range hits {
		ts[i] = h.at
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	best, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= d {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

const (
	fleetProcs = 4
	fleetRun   = 10 * time.Second
)

func quotaFleet(t *testing.T, redisURL string, cluster []string, name string) {
	if testing.Short() {
		t.Skip("10s multi-process run; CI runs without -short")
	}
	const quota, burst = 50, 10
	v := newVendor(t, 0, 0)
	start, stats := runFleet(t, fleetProcs, childSpec{
		Redis: redisURL, Cluster: cluster, Vendor: v.URL, Name: name,
		Cfg:      wireConfig{Requests: quota, Per: time.Second, Burst: burst, MaxWait: 2 * time.Second, Fallback: FailClosed},
		Duration: fleetRun, Goroutines: 16,
		// Four -race processes on two shared cores miss 50ms now and then;
		// this test is about the quota, not about the timeout.
		Timeout: 500 * time.Millisecond,
	}, nil)
	hits := v.snapshot()
	w := perSecond(hits, start, int(fleetRun/time.Second))
	var attempts, degraded, rejected int64
	for _, st := range stats {
		attempts += st.Attempts
		degraded += st.Degraded
		rejected += st.Rejected
	}
	slide := maxSliding(hits, time.Second)
	t.Logf("vendor saw %d requests in %v (quota %d); per second %v; max in any sliding 1s window %d; %d Reserve calls, %d rejected",
		len(hits), fleetRun, quota*10, w, slide, attempts, rejected)
	if degraded != 0 {
		t.Fatalf("%d decisions degraded with Redis up", degraded)
	}
	for i, n := range w {
		if n > quota+burst {
			t.Errorf("second %d: vendor saw %d > %d+%d", i, n, quota, burst)
		}
	}
	want := float64(quota) * fleetRun.Seconds()
	if d := float64(len(hits)) - want; d > 0.05*want || d < -0.05*want {
		t.Errorf("total %d, want %v ± 5%%", len(hits), want)
	}
	// 64 callers each waiting up to 2s for a turn, and some still turned
	// away: demand was above what the quota and the queue could absorb.
	if rejected == 0 {
		t.Errorf("offered load too low to prove anything: %d attempts, none rejected", attempts)
	}
}

// 4 processes, 16 goroutines each, far above a 50/s quota for 10s.
func TestFleetQuota(t *testing.T) {
	s := redistest.New(t)
	quotaFleet(t, s.URL, nil, s.Prefix)
}

// The same on a 3-master Redis Cluster.
func TestFleetQuotaCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster + 10s multi-process run")
	}
	cl := redistest.StartCluster(t)
	quotaFleet(t, "", cl.Addrs, cl.Prefix)
}

// Requests estimate 100 tokens and use 300; reconciliation keeps the vendor's
// token rate within 10% of a 1000 tokens/s quota.
func TestFleetTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("10s multi-process run")
	}
	s := redistest.New(t)
	const used = 300
	v := newVendor(t, used, 0)
	start, stats := runFleet(t, fleetProcs, childSpec{
		Redis: s.URL, Vendor: v.URL, Name: s.Prefix,
		Cfg:      wireConfig{Cost: 1000, CostPer: time.Second, CostBurst: used, Fallback: FailClosed},
		Duration: fleetRun, Goroutines: 8, Estimate: 100,
	}, nil)
	hits := v.snapshot()
	tokens := float64(len(hits) * used)
	want := 1000 * fleetRun.Seconds()
	var attempts int64
	for _, st := range stats {
		attempts += st.Attempts
	}
	t.Logf("vendor saw %v tokens in %v (quota %v), per second (requests) %v, %d Reserve calls",
		tokens, fleetRun, want, perSecond(hits, start, 10), attempts)
	if tokens > 1.1*want || tokens < 0.9*want {
		t.Fatalf("tokens %v, want %v ± 10%%", tokens, want)
	}
}

// One process sees a 429 with Retry-After: 3; no process is admitted for ~3s.
func TestFleetCooldown(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process run")
	}
	s := redistest.New(t)
	v := newVendor(t, 0, 40)
	_, _ = runFleet(t, fleetProcs, childSpec{
		Redis: s.URL, Vendor: v.URL, Name: s.Prefix,
		Cfg:      wireConfig{Requests: 100, Per: time.Second, Burst: 5, MaxWait: 5 * time.Second, Fallback: FailClosed},
		Duration: 6 * time.Second, Goroutines: 4,
	}, nil)
	hits := v.snapshot()
	v.mu.Lock()
	at429 := v.at429
	v.mu.Unlock()
	if at429.IsZero() {
		t.Fatal("no 429 sent")
	}
	// Requests admitted before the cooldown reached Redis may still land
	// (in flight); nothing may be admitted from shortly after the 429 until
	// the 3s are (nearly) over, and calls resume afterwards.
	var inCooldown, after []time.Duration
	for _, h := range hits {
		d := h.admitted.Sub(at429)
		switch {
		case d > 250*time.Millisecond && d < 2900*time.Millisecond:
			inCooldown = append(inCooldown, d)
		case d >= 2900*time.Millisecond:
			after = append(after, d)
		}
	}
	if len(inCooldown) > 0 {
		t.Fatalf("%d requests admitted during the cooldown, at %v after the 429", len(inCooldown), inCooldown)
	}
	if len(after) == 0 {
		t.Fatal("calls never resumed")
	}
	sort.Slice(after, func(i, j int) bool { return after[i] < after[j] })
	t.Logf("first admission after the 429: %v", after[0])
	if after[0] > 3500*time.Millisecond {
		t.Fatalf("resumed only %v after the 429", after[0])
	}
}

// Redis paused (SIGSTOP) then killed (SIGKILL) in the middle of a 4-process
// run: nothing panics, each process pays the client timeout about once per
// health period, the quota falls back to the local share (quota/4 each) and
// shared mode returns once Redis is back.
func TestFleetRedisOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("12s multi-process run")
	}
	s := redistest.Start(t)
	const quota, burst, goroutines = 50, 8, 4
	v := newVendor(t, 0, 0)
	var pausedAt, resumedAt, killedAt, restartedAt time.Time
	_, stats := runFleet(t, fleetProcs, childSpec{
		Redis: s.URL, Vendor: v.URL, Name: s.Prefix,
		Cfg:      wireConfig{Requests: quota, Per: time.Second, Burst: burst},
		Duration: 12 * time.Second, Goroutines: goroutines,
	}, func(start time.Time) {
		// The phases of the scenario, on the wall clock.
		time.Sleep(time.Until(start.Add(2 * time.Second)))
		pausedAt = time.Now()
		s.Pause()
		time.Sleep(time.Until(start.Add(4 * time.Second)))
		s.Resume()
		resumedAt = time.Now()
		time.Sleep(time.Until(start.Add(6 * time.Second)))
		killedAt = time.Now()
		s.Kill()
		time.Sleep(time.Until(start.Add(8 * time.Second)))
		s.Restart()
		restartedAt = time.Now()
	})
	hits := v.snapshot()
	count := func(from, to time.Time) int {
		n := 0
		for _, h := range hits {
			if !h.at.Before(from) && h.at.Before(to) {
				n++
			}
		}
		return n
	}
	for _, o := range []struct {
		name     string
		from, to time.Time
	}{{"paused", pausedAt, resumedAt}, {"killed", killedAt, restartedAt}} {
		// Skip the first 300ms (requests admitted before the outage).
		from := o.from.Add(300 * time.Millisecond)
		n := count(from, o.to)
		want := quota * o.to.Sub(from).Seconds()
		t.Logf("%s: vendor saw %d requests in %v (local shares allow %.0f + burst)", o.name, n, o.to.Sub(from), want)
		if float64(n) > 1.25*want+burst || float64(n) < 0.5*want {
			t.Errorf("%s: %d requests, want about %.0f (local share of the quota)", o.name, n, want)
		}
	}
	const period = redisx.DefaultHealthPeriod
	for i, st := range stats {
		// Per outage: the callers in flight when it began, then one probe
		// per health period; plus a little for timeouts a loaded machine
		// causes with Redis up.
		limit := int64(2*(goroutines+int(2*time.Second/period)+1) + 4)
		t.Logf("child %d: %d decisions, %d degraded, %d paid a Redis timeout (limit %d), worst degraded decision %v, members %d",
			i, st.Attempts, st.Degraded, st.Slow, limit, st.WorstDegraded, st.Members)
		if st.Degraded == 0 {
			t.Errorf("child %d: never fell back", i)
		}
		if st.Slow > limit {
			t.Errorf("child %d: %d decisions paid a Redis timeout, limit %d", i, st.Slow, limit)
		}
		if st.WorstDegraded > 500*time.Millisecond {
			t.Errorf("child %d: a degraded decision took %v", i, st.WorstDegraded)
		}
		if st.Members != fleetProcs {
			t.Errorf("child %d: counted %d members, want %d", i, st.Members, fleetProcs)
		}
		// Shared mode returns: Redis decides again after the restart. (A
		// stray timeout on a loaded machine may still degrade one decision
		// later on; that is the health breaker doing its job, not a failure
		// to recover.)
		if shared := time.Unix(0, st.LastShared); !shared.After(restartedAt) {
			t.Errorf("child %d: no decision by Redis after it came back (last at %v, restart at %v; last degraded %v after)",
				i, shared.Format(time.StampMilli), restartedAt.Format(time.StampMilli),
				time.Unix(0, st.LastDegraded).Sub(restartedAt))
		}
	}
}
