package quota

// Several OS processes sharing one quota: the test binary re-runs itself as
// TestHelperProcess with SLUICE_ROLE set; the parent hosts the counting
// loopback vendor and the Redis (standalone or Cluster).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
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
	"github.com/sluice-go/sluice/internal/testenv"
	"github.com/sluice-go/sluice/internal/usage"
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
	// Timeout is the Guard's per-call deadline and the client's socket,
	// dial and pool timeouts (0: redisx's defaults, tens of ms). Both must
	// be set: the smaller of the two is the one that fires.
	Timeout time.Duration
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
	Lease     bool
	MaxLease  int
}

func (w wireConfig) config() Config {
	return Config{Requests: w.Requests, Per: w.Per, Burst: w.Burst, Cost: w.Cost, CostPer: w.CostPer,
		CostBurst: w.CostBurst, MaxWait: w.MaxWait, Fallback: w.Fallback, Lease: w.Lease, MaxLease: w.MaxLease}
}

// childStats is what a child reports on stdout.
type childStats struct {
	Attempts, Admitted, Rejected, Degraded int64
	WorstDegraded                          time.Duration
	LastDegraded                           int64 // unix ns of the last degraded decision
	LastShared                             int64 // unix ns of the last decision Redis made
	Members                                int   // the most live processes the heartbeats counted
	Start, End                             int64 // unix ns: the child's run, from "go" to its last call
	CooldownSet                            int64 // unix ns: a Cooldown call returned (0: none made)
	// Failed holds the start (unix ns) of every Redis command that got no
	// answer (timeout, refused, reset): the Redis round trips the process
	// paid for without a decision.
	Failed []int64
}

// failureLog is a go-redis hook that records when each command that got no
// answer from Redis was sent.
type failureLog struct {
	mu sync.Mutex
	at []int64
}

func (f *failureLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (f *failureLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		t0 := time.Now().UnixNano()
		err := next(ctx, cmd)
		var answer redis.Error
		if err != nil && !errors.Is(err, redis.Nil) && !errors.As(err, &answer) {
			f.mu.Lock()
			f.at = append(f.at, t0)
			f.mu.Unlock()
		}
		return err
	}
}

func (f *failureLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (f *failureLog) starts() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int64(nil), f.at...)
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
	var fails failureLog
	if len(spec.Cluster) > 0 {
		opt := redisx.NewClusterOptions(spec.Cluster)
		if d := spec.Timeout; d > 0 {
			opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = d, d, d, d
		}
		cc := redis.NewClusterClient(opt)
		cc.AddHook(&fails)
		c = cc
	} else {
		opt, err := redisx.NewClientOptions(spec.Redis)
		if err != nil {
			t.Fatal(err)
		}
		if d := spec.Timeout; d > 0 {
			opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = d, d, d, d
		}
		sc := redis.NewClient(opt)
		sc.AddHook(&fails)
		c = sc
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
	<-l.Subscribed() // lease mode: cooldowns reach this process from now on
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	st.Start = time.Now().UnixNano()
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
				req.Header.Set("X-Reserved-At", strconv.FormatInt(t0.UnixNano(), 10))
				req.Header.Set("X-Admitted-At", strconv.FormatInt(time.Now().UnixNano(), 10))
				if r.Degraded() {
					// Decided by this process's local share of the quota:
					// say whose, and how many members it divided by.
					req.Header.Set("X-Degraded", strconv.Itoa(os.Getpid()))
					req.Header.Set("X-Members", strconv.Itoa(l.Members()))
				}
				resp, err := hc.Do(req)
				if err != nil {
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if u, ok := usage.OpenAI.Body(body); ok {
					_ = r.Reconcile(context.Background(), u.Total)
				}
				if d, ok := CooldownFromResponse(resp, 0); ok {
					if l.Cooldown(context.Background(), d) == nil {
						atomic.StoreInt64(&st.CooldownSet, time.Now().UnixNano())
					}
				}
			}
		}()
	}
	wg.Wait()
	st.End = time.Now().UnixNano()
	hc.CloseIdleConnections()
	// The most the heartbeats counted at any time: the count at the very end
	// can be one short when a loaded process's heartbeat misses a window
	// right after the restart.
	st.Members = max(int(atomic.LoadInt64(&maxMembers)), l.Members())
	_ = l.Close()
	st.Failed = fails.starts()
	b, _ := json.Marshal(&st)
	fmt.Println("stats " + string(b))
}

// hit is one request the vendor saw: when it arrived, when its caller
// called Reserve and when Reserve returned, and whether the decision was
// taken without Redis.
type hit struct {
	at, reserved, admitted time.Time
	degraded               bool
	process, members       int // for a degraded decision: the process and its count of members
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
		stamp := func(h string) time.Time {
			ns, _ := strconv.ParseInt(r.Header.Get(h), 10, 64)
			return time.Unix(0, ns)
		}
		h := hit{at: now, reserved: stamp("X-Reserved-At"), admitted: stamp("X-Admitted-At"),
			degraded: r.Header.Get("X-Degraded") != ""}
		h.process, _ = strconv.Atoi(r.Header.Get("X-Degraded"))
		h.members, _ = strconv.Atoi(r.Header.Get("X-Members"))
		v.mu.Lock()
		v.hits = append(v.hits, h)
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
	killed bool // by the test, on purpose
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	ready  chan struct{}
	stats  chan childStats
	out    strings.Builder
}

// runFleet starts n children, waits until all are ready, starts them together
// and returns the start time and their stats. during, if set, runs in the
// parent after the start (while children run).
func runFleet(t *testing.T, n int, spec childSpec, during func(start time.Time)) (time.Time, []childStats) {
	t.Helper()
	var d func(time.Time, []*child)
	if during != nil {
		d = func(start time.Time, _ []*child) { during(start) }
	}
	return runFleetKids(t, n, spec, d)
}

// runFleetKids is runFleet whose during also gets the children (to kill
// one: a child killed with SIGKILL reports no stats and is left out).
func runFleetKids(t *testing.T, n int, spec childSpec, during func(start time.Time, kids []*child)) (time.Time, []childStats) {
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
		during(start, kids)
	}
	var stats []childStats
	for i, k := range kids {
		err := k.cmd.Wait()
		if k.killed {
			continue
		}
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

// perSecond counts admissions in each whole second after start. It counts
// them when Reserve returned, not when the vendor saw them: the HTTP round
// trip adds a delay that a loaded machine stretches, a window's count with it.
func perSecond(hits []hit, start time.Time, secs int) []int {
	w := make([]int, secs+1)
	for _, h := range hits {
		i := int(h.admitted.Sub(start) / time.Second)
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

// runSpan is when the fleet ran, from the children's own clocks: all is from
// the first child's start to the last one's end (demand existed somewhere),
// common the part when every child ran. Children read "go" at slightly
// different times, more so on a loaded machine, so bounds on totals use
// these rather than the nominal run time.
func runSpan(stats []childStats) (all, common time.Duration) {
	first, lastStart := stats[0].Start, stats[0].Start
	firstEnd, last := stats[0].End, stats[0].End
	for _, st := range stats[1:] {
		first, lastStart = min(first, st.Start), max(lastStart, st.Start)
		firstEnd, last = min(firstEnd, st.End), max(last, st.End)
	}
	return time.Duration(last - first), max(time.Duration(firstEnd-lastStart), 0)
}

const (
	fleetProcs = 4
	fleetRun   = 10 * time.Second
)

// quotaFleet runs fleetProcs processes far above the quota. In lease mode
// (MaxLease defaulting to the burst) the bound gains the slack
// fleetProcs·MaxLease: what the processes held when a window began.
func quotaFleet(t *testing.T, redisURL string, cluster []string, name string, lease bool) {
	if testing.Short() {
		t.Skip("10s multi-process run; CI runs without -short")
	}
	const quota, burst = 50, 10
	slack := 0
	if lease {
		slack = fleetProcs * burst
	}
	v := newVendor(t, 0, 0)
	start, stats := runFleet(t, fleetProcs, childSpec{
		Redis: redisURL, Cluster: cluster, Vendor: v.URL, Name: name,
		Cfg: wireConfig{Requests: quota, Per: time.Second, Burst: burst, MaxWait: 2 * time.Second, Fallback: FailClosed,
			Lease: lease},
		Duration: fleetRun, Goroutines: 16,
		// Four -race processes on two busy cores miss a 50ms deadline now
		// and then; this test is about the quota, not the timeout.
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
	all, common := runSpan(stats)
	slide := maxSliding(hits, time.Second)
	t.Logf("lease %v: vendor saw %d requests in %v (quota %d/s, children ran %v, together %v); admitted per second %v; max in any sliding 1s window %d; %d Reserve calls, %d rejected, %d degraded",
		lease, len(hits), fleetRun, quota, all, common, w, slide, attempts, rejected, degraded)
	// FailClosed: a decision Redis did not take admits nothing (a stray
	// timeout on a loaded machine refuses one call, which is allowed).
	for _, h := range hits {
		if h.degraded {
			t.Fatalf("a request was admitted without Redis under FailClosed")
		}
	}
	// The first second counts every slot in it: exactly burst + quota at
	// most. Later seconds start with the bucket empty (demand never stops),
	// so their allowance of burst more absorbs admissions that Reserve
	// returned late (up to burst/quota = 200ms, the whole fleet stalled).
	for i, n := range w {
		if n > quota+burst+slack {
			t.Errorf("second %d: %d admitted > %d+%d+%d", i, n, quota, burst, slack)
		}
	}
	// Every admission took a slot while some child ran: at most the burst
	// and the quota over that span (+1 for the window's closed end). Callers
	// queue 64 deep (1.3s of quota), so while all children ran no slot went
	// unused: at least the quota over that span, less 5%.
	if hi := float64(burst+slack) + quota*all.Seconds() + 1; float64(len(hits)) > hi {
		t.Errorf("total %d > %.0f, the most the quota allows in %v", len(hits), hi, all)
	}
	if lo := 0.95 * quota * common.Seconds(); float64(len(hits)) < lo {
		t.Errorf("total %d < %.0f: the quota went unused while all %d children ran for %v", len(hits), lo, fleetProcs, common)
	}
	// 64 callers each waiting up to 2s for a turn, and some still turned
	// away: demand was above what the quota and the queue could absorb.
	if rejected == 0 {
		t.Errorf("offered load too low to prove anything: %d attempts, none rejected", attempts)
	}
}

// 4 processes, 16 goroutines each, far above a 50/s quota for 10s.
func TestFleetQuota(t *testing.T) {
	testenv.Long(t)
	s := redistest.New(t)
	quotaFleet(t, s.URL, nil, s.Prefix, false)
}

// The same in lease mode: the bound is quota + burst + P·MaxLease.
func TestFleetLeaseQuota(t *testing.T) {
	testenv.Long(t)
	s := redistest.New(t)
	quotaFleet(t, s.URL, nil, s.Prefix, true)
}

// The same on a 3-master Redis Cluster.
func TestFleetQuotaCluster(t *testing.T) {
	testenv.Long(t)
	if testing.Short() {
		t.Skip("cluster + 10s multi-process run")
	}
	cl := redistest.StartCluster(t)
	quotaFleet(t, "", cl.Addrs, cl.Prefix, false)
}

// Requests estimate 100 tokens and use 300; reconciliation keeps the vendor's
// token rate within 10% of a 1000 tokens/s quota.
func TestFleetTokens(t *testing.T) {
	testenv.Long(t)
	fleetTokens(t, false)
}

// The same in lease mode: surcharges come out of the leases, and beyond
// them are charged to Redis; the slack is P·MaxLeaseCost (CostBurst/10
// without a request quota: 30 tokens each).
func TestFleetLeaseTokens(t *testing.T) {
	testenv.Long(t)
	fleetTokens(t, true)
}

func fleetTokens(t *testing.T, lease bool) {
	if testing.Short() {
		t.Skip("10s multi-process run")
	}
	s := redistest.New(t)
	const used = 300
	v := newVendor(t, used, 0)
	start, stats := runFleet(t, fleetProcs, childSpec{
		Redis: s.URL, Vendor: v.URL, Name: s.Prefix,
		Cfg:      wireConfig{Cost: 1000, CostPer: time.Second, CostBurst: used, Fallback: FailClosed, Lease: lease},
		Duration: fleetRun, Goroutines: 8, Estimate: 100,
		// A surcharge lost to a timeout lets 200 tokens through uncharged;
		// this test is about reconciliation, not the timeout.
		Timeout: 500 * time.Millisecond,
	}, nil)
	hits := v.snapshot()
	tokens := float64(len(hits) * used)
	all, common := runSpan(stats)
	var attempts int64
	for _, st := range stats {
		attempts += st.Attempts
	}
	slack := 0.0
	if lease {
		slack = fleetProcs * used / 10
	}
	t.Logf("lease %v: vendor saw %v tokens in %v (quota 1000/s; children ran %v, together %v), admitted per second %v, %d Reserve calls",
		lease, tokens, fleetRun, all, common, perSecond(hits, start, 10), attempts)
	if hi, lo := 1.1*(used+1000*all.Seconds())+slack, 0.9*1000*common.Seconds(); tokens > hi || tokens < lo {
		t.Fatalf("tokens %v, want %.0f to %.0f (the quota over the run ± 10%%)", tokens, lo, hi)
	}
}

// One process sees a 429 with Retry-After: 3; no process is admitted for 3s.
func TestFleetCooldown(t *testing.T) {
	testenv.Long(t)
	fleetCooldown(t, false)
}

// The same in lease mode, where processes decide without Redis: the
// cooldown reaches them through pub/sub. A call begun more than
// leaseGrace after the cooldown was set must not be admitted during it.
// (The 100ms the design promises is measured by benchmarks/fleetscale's
// cooldown row; here a loaded machine gets a generous bound.)
func TestFleetLeaseCooldown(t *testing.T) {
	testenv.Long(t)
	fleetCooldown(t, true)
}

const leaseGrace = time.Second

func fleetCooldown(t *testing.T, lease bool) {
	if testing.Short() {
		t.Skip("multi-process run")
	}
	s := redistest.New(t)
	v := newVendor(t, 0, 40)
	grace := time.Duration(0)
	if lease {
		grace = leaseGrace
	}
	_, stats := runFleet(t, fleetProcs, childSpec{
		Redis: s.URL, Vendor: v.URL, Name: s.Prefix,
		Cfg: wireConfig{Requests: 100, Per: time.Second, Burst: 5, MaxWait: 5 * time.Second, Fallback: FailClosed,
			Lease: lease},
		Duration: 6 * time.Second, Goroutines: 4,
		// A Cooldown call lost to a timeout would leave the other processes
		// calling; this test is about the cooldown, not the timeout.
		Timeout: 500 * time.Millisecond,
	}, nil)
	hits := v.snapshot()
	v.mu.Lock()
	at429 := v.at429
	v.mu.Unlock()
	if at429.IsZero() {
		t.Fatal("no 429 sent")
	}
	var set time.Time
	for _, st := range stats {
		if st.CooldownSet != 0 {
			set = time.Unix(0, st.CooldownSet)
		}
	}
	if set.IsZero() {
		t.Fatal("the process that saw the 429 set no cooldown")
	}
	// The cooldown was in Redis when its Cooldown call returned (set), and
	// it lasts 3s from a moment after the 429 (at429). So a Reserve begun
	// after set, in any process, is admitted 3s after the 429 or later
	// (less 1ms: Redis keeps the cooldown's expiry in ms). Reservations
	// taken before set, for a slot up to MaxWait ahead, may still go.
	end := at429.Add(3*time.Second - time.Millisecond)
	var early []time.Duration
	resumed, lastDuring := time.Time{}, time.Time{}
	for _, h := range hits {
		if h.admitted.After(set) && h.admitted.Before(end) && h.admitted.After(lastDuring) {
			lastDuring = h.admitted
		}
		if !h.reserved.After(set.Add(grace)) {
			continue
		}
		if h.admitted.Before(end) {
			early = append(early, h.admitted.Sub(at429))
		} else if resumed.IsZero() || h.admitted.Before(resumed) {
			resumed = h.admitted
		}
	}
	t.Logf("lease %v: cooldown set %v after the 429; last admission during the cooldown %v after it was set; first admission of a call begun after that: %v after the 429",
		lease, set.Sub(at429), lastDuring.Sub(set), resumed.Sub(at429))
	if len(early) > 0 {
		t.Fatalf("%d calls begun after the cooldown was set were admitted during it, at %v after the 429", len(early), early)
	}
	// Calls resume once it ends: a call during the cooldown queues for the
	// first slot after it (MaxWait 5s) or, refused, asks again within 100ms.
	// The bound is one second more than 3s, the resolution of a
	// Retry-After: a cooldown one second too long is the smallest error to
	// catch.
	if resumed.IsZero() {
		t.Fatal("calls never resumed")
	}
	if d := resumed.Sub(set); d > 4*time.Second {
		t.Fatalf("resumed only %v after the cooldown was set, for a 3s cooldown", d)
	}
}

// Redis paused (SIGSTOP) then killed (SIGKILL) in the middle of a 4-process
// run: nothing panics, each process pays a failed Redis call about once per
// health period, the quota falls back to the local share (quota/4 each) and
// shared mode returns once Redis is back.
func TestFleetRedisOutage(t *testing.T) {
	testenv.Long(t)
	fleetRedisOutage(t, false)
}

// The same in lease mode: what a process holds when Redis goes is spent
// first (a decision Redis took, earlier), then the local share.
func TestFleetLeaseRedisOutage(t *testing.T) {
	testenv.Long(t)
	fleetRedisOutage(t, true)
}

func fleetRedisOutage(t *testing.T, lease bool) {
	if testing.Short() {
		t.Skip("12s multi-process run")
	}
	s := redistest.Start(t)
	const quota, burst, goroutines = 50, 8, 4
	v := newVendor(t, 0, 0)
	var pausedAt, resumedAt, killedAt, restartedAt time.Time
	_, stats := runFleet(t, fleetProcs, childSpec{
		Redis: s.URL, Vendor: v.URL, Name: s.Prefix,
		Cfg:      wireConfig{Requests: quota, Per: time.Second, Burst: burst, Lease: lease},
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
	const period = redisx.DefaultHealthPeriod
	outages := []struct {
		name     string
		from, to time.Time
	}{{"paused", pausedAt, resumedAt}, {"killed", killedAt, restartedAt}}
	for _, o := range outages {
		// Decisions taken without Redis during the outage, counted when
		// Reserve returned (a request Redis admitted just before it began
		// is not one of them, however late it reaches the vendor). Each
		// process's local bucket admits at most its share: the quota and
		// the burst divided by the members it counted (4, unless a
		// heartbeat lost to the outage or to load made it miss one), the
		// burst at least 1, and +1 for rounding. Callers far outnumber the
		// local shares, so together they use at least half of the quota.
		d := o.to.Sub(o.from)
		n := 0
		members := map[int]int{} // process -> fewest members it divided by
		for _, h := range hits {
			if h.degraded && !h.admitted.Before(o.from) && h.admitted.Before(o.to) {
				n++
				if m, ok := members[h.process]; !ok || h.members < m {
					members[h.process] = h.members
				}
			}
		}
		allowed := 0.0
		for _, m := range members {
			m = max(m, 1)
			allowed += max(1, float64(burst/m)) + quota/float64(m)*d.Seconds() + 1
		}
		want := quota * d.Seconds()
		t.Logf("%s: %d requests admitted without Redis in %v by %d processes (the quota over it %.0f; their shares allow %.1f; members counted %v)",
			o.name, n, d, len(members), want, allowed, members)
		if float64(n) > allowed || float64(n) < 0.5*want {
			t.Errorf("%s: %d requests, want at most %.1f (the local shares) and at least half of %.0f", o.name, n, allowed, want)
		}
	}
	for i, st := range stats {
		// Redis round trips that got no answer, counted by when they
		// began. Per outage: each caller (the goroutines and the heartbeat)
		// at most once while the health breaker is closed; it closes again
		// only on a success, that is a reply Redis sent before the outage
		// and a loaded caller read after it, at most one per caller; then
		// one probe per health period. Without the breaker every decision
		// would pay (about 4 per 50ms). Failures outside the outages (a
		// loaded machine missing the 50ms deadline with Redis up) cost the
		// same way and are only logged.
		var during []string
		others := len(st.Failed)
		for _, o := range outages {
			n := 0
			for _, ns := range st.Failed {
				if at := time.Unix(0, ns); !at.Before(o.from) && at.Before(o.to) {
					n++
				}
			}
			others -= n
			callers := goroutines + 1
			limit := callers*(1+callers) + int(o.to.Sub(o.from)/period) + 1
			during = append(during, fmt.Sprintf("%s %d (limit %d)", o.name, n, limit))
			if n > limit {
				t.Errorf("child %d: %d Redis calls failed while Redis was %s, limit %d", i, n, o.name, limit)
			}
		}
		t.Logf("child %d: %d decisions, %d degraded; Redis calls that failed: %s, %d with Redis up; worst degraded decision %v, members %d",
			i, st.Attempts, st.Degraded, strings.Join(during, ", "), others, st.WorstDegraded, st.Members)
		if st.Degraded == 0 {
			t.Errorf("child %d: never fell back", i)
		}
		// A degraded decision waits for at most one Redis deadline (50ms);
		// one that waited out go-redis's own defaults (5s dial, 5s read)
		// would mean the deadline was ignored.
		if st.WorstDegraded > 2*time.Second {
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

// A process killed (SIGKILL) while it holds a lease: its lease is never
// handed back, but it was capacity taken from the GCRA, which refills at
// its rate; the survivors get the whole quota again within MaxLease/rate,
// and the fleet stays within quota + burst + P·MaxLease.
func TestFleetLeaseProcessKilled(t *testing.T) {
	testenv.Long(t)
	if testing.Short() {
		t.Skip("8s multi-process run")
	}
	s := redistest.New(t)
	const quota, burst = 100, 50 // MaxLease defaults to the burst
	const run = 8 * time.Second
	v := newVendor(t, 0, 0)
	var killedAt time.Time
	start, stats := runFleetKids(t, fleetProcs, childSpec{
		Redis: s.URL, Vendor: v.URL, Name: s.Prefix,
		Cfg: wireConfig{Requests: quota, Per: time.Second, Burst: burst, MaxWait: time.Second, Fallback: FailClosed,
			Lease: true},
		Duration: run, Goroutines: 8, Timeout: 500 * time.Millisecond,
	}, func(start time.Time, kids []*child) {
		time.Sleep(time.Until(start.Add(3 * time.Second)))
		kids[0].killed = true
		killedAt = time.Now()
		if err := kids[0].cmd.Process.Kill(); err != nil {
			t.Error(err)
		}
	})
	hits := v.snapshot()
	all, _ := runSpan(stats)
	all = max(all, time.Since(start)) // the killed child ran from start too
	slack := fleetProcs * burst
	// After the kill, from one lease's worth of time on (MaxLease/quota =
	// 500ms) to the survivors' end, the survivors get the quota.
	from, to := killedAt.Add(burst*time.Second/quota), start.Add(run-500*time.Millisecond)
	n := 0
	for _, h := range hits {
		if !h.admitted.Before(from) && h.admitted.Before(to) {
			n++
		}
	}
	want := 0.8 * quota * to.Sub(from).Seconds()
	t.Logf("%d survivors; vendor saw %d in all (bound %.0f); %d from %v after the kill to the end (%.1fs; quota %.0f)",
		len(stats), len(hits), float64(burst+slack)+quota*all.Seconds()+1, n, from.Sub(killedAt), to.Sub(from).Seconds(),
		quota*to.Sub(from).Seconds())
	if len(stats) != fleetProcs-1 {
		t.Fatalf("%d children reported, want %d", len(stats), fleetProcs-1)
	}
	if hi := float64(burst+slack) + quota*all.Seconds() + 1; float64(len(hits)) > hi {
		t.Errorf("total %d > %.0f (quota·T + burst + P·MaxLease)", len(hits), hi)
	}
	if float64(n) < want {
		t.Errorf("survivors got %d after the kill, want at least %.0f (80%% of the quota): the dead process's lease held capacity", n, want)
	}
}
