// Command fleetscale measures the fleet-wide vendor quota across OS
// processes: 1, 2, 4 and 8 processes (this binary re-run as workers) share
// one quota through outbound.NewClient with WithGlobalRateLimit on a private
// redis-server, against a counting loopback vendor, in per-call mode and in
// lease mode side by side, and it prints markdown tables of accuracy, Redis
// cost and decision latency, then a fairness row (1 busy and 7 quiet
// processes) and a cooldown row (a vendor 429 seen by one process):
//
//	go run ./benchmarks/fleetscale
//
// Accuracy is what the vendor saw: its busiest 1-second window (sliding,
// over arrival times) against the quota's bound of rate × 1s + burst, and
// its total against rate × duration + burst. Redis cost, from INFO
// commandstats deltas (the harness's own INFO and CONFIG left out), per
// admitted request: round trips (the commands clients sent: scripts,
// heartbeats, SUBSCRIBE, connection set-up such as HELLO) and every command
// Redis ran, those inside the scripts included; Redis CPU (INFO cpu, user +
// sys) per 1,000 admitted. Decision latency is from client.Do to the
// transport (the quota decision and the chain's few µs).
// See benchmarks/README.md for results.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-go/sluice"
	"github.com/sluice-go/sluice/internal/redistest"
	"github.com/sluice-go/sluice/internal/redisx"
	"github.com/sluice-go/sluice/outbound"
)

// workerEnv holds a worker's spec (JSON); its presence makes this binary a
// worker.
const workerEnv = "FLEETSCALE_WORKER_SPEC"

// spec is what the parent tells a worker.
type spec struct {
	ID         int
	Redis      string
	Vendor     string
	Name       string
	Requests   int
	Period     time.Duration
	Burst      int
	MaxWait    time.Duration
	Lease      bool
	MaxLease   int
	StartAt    int64 // Unix ns: every worker starts at once
	Duration   time.Duration
	Goroutines int
	// Pace is this worker's offered calls per second; 0 means as fast as
	// its callers go (a closed loop).
	Pace float64
}

// stats is what a worker reports on stdout.
type stats struct {
	Admitted, Rejected, Errors, Cooldown int64
	Latency                              hist
}

// hist is a log-bucketed latency histogram: bucket i holds latencies in
// [1.05^i, 1.05^(i+1)) µs.
type hist []int64

const histBuckets = 400 // 1.05^400 µs is about 3 days

func (h hist) add(d time.Duration) {
	us := max(float64(d)/float64(time.Microsecond), 1)
	i := min(int(math.Log(us)/math.Log(1.05)), histBuckets-1)
	h[i]++
}

func (h hist) merge(o hist) {
	for i := range min(len(h), len(o)) {
		h[i] += o[i]
	}
}

// quantile returns the q-quantile's bucket's upper edge.
func (h hist) quantile(q float64) time.Duration {
	var n int64
	for _, c := range h {
		n += c
	}
	if n == 0 {
		return 0
	}
	want := int64(math.Ceil(q * float64(n)))
	var seen int64
	for i, c := range h {
		seen += c
		if seen >= want {
			return time.Duration(math.Pow(1.05, float64(i+1)) * float64(time.Microsecond))
		}
	}
	return 0
}

func main() {
	if s := os.Getenv(workerEnv); s != "" {
		workerMain(s)
		return
	}
	procs := flag.String("procs", "1,2,4,8", "process counts, comma-separated")
	rate := flag.Int("rate", 100, "low-rate quota: requests per second, fleet-wide")
	burst := flag.Int("burst", 10, "low-rate quota burst")
	hiRate := flag.Int("hi-rate", 50_000, "high-rate quota: above what this machine can drive")
	hiBurst := flag.Int("hi-burst", 5_000, "high-rate quota burst")
	hiLease := flag.Int("hi-max-lease", 1000, "MaxLease for the high-rate rows")
	dur := flag.Duration("duration", 5*time.Second, "run time per row")
	gor := flag.Int("goroutines", 4, "callers per process")
	only := flag.String("only", "scale,fairness,cooldown", "scenarios to run")
	flag.Parse()
	var counts []int
	for _, f := range strings.Split(*procs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 64 {
			fmt.Fprintf(os.Stderr, "fleetscale: -procs %q: want whole numbers from 1 to 64\n", *procs)
			os.Exit(2)
		}
		counts = append(counts, n)
	}
	h, err := newHarness()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleetscale:", err)
		os.Exit(1)
	}
	defer h.close()
	fmt.Printf("%d-second rows; %d callers per process; MaxWait 1s; GOMAXPROCS %d per process\n\n", int(dur.Seconds()), *gor, runtime.GOMAXPROCS(0))
	scen := strings.Split(*only, ",")
	if slices.Contains(scen, "scale") {
		var rows []row
		// The low quota offered exactly its rate (each process rate/P calls
		// a second), then far more than it (closed loops: the bound under
		// pressure); the high quota driven as hard as this machine can.
		for _, q := range []struct {
			rate, burst, maxLease int
			paced                 bool
		}{{*rate, *burst, 0, true}, {*rate, *burst, 0, false}, {*hiRate, *hiBurst, *hiLease, false}} {
			for _, lease := range []bool{false, true} {
				for _, n := range counts {
					var pace []float64
					if q.paced {
						pace = slices.Repeat([]float64{float64(q.rate) / float64(n)}, n)
					}
					r, err := h.run(rowSpec{procs: n, rate: q.rate, burst: q.burst, lease: lease, maxLease: q.maxLease,
						dur: *dur, goroutines: *gor, pace: pace})
					if err != nil {
						fmt.Fprintln(os.Stderr, "fleetscale:", err)
						os.Exit(1)
					}
					rows = append(rows, r)
				}
			}
		}
		printTable(os.Stdout, rows)
	}
	if slices.Contains(scen, "fairness") {
		var rows []row
		for _, lease := range []bool{false, true} {
			r, err := h.run(fairness(lease, *dur))
			if err != nil {
				fmt.Fprintln(os.Stderr, "fleetscale:", err)
				os.Exit(1)
			}
			rows = append(rows, r)
		}
		printFairness(os.Stdout, rows)
	}
	if slices.Contains(scen, "cooldown") {
		var rows []row
		for _, lease := range []bool{false, true} {
			r, err := h.run(rowSpec{procs: 8, rate: *hiRate, burst: *hiBurst, lease: lease, maxLease: *hiLease,
				dur: *dur, goroutines: *gor, cooldownAt: 2 * time.Second})
			if err != nil {
				fmt.Fprintln(os.Stderr, "fleetscale:", err)
				os.Exit(1)
			}
			rows = append(rows, r)
		}
		printCooldown(os.Stdout, rows)
	}
}

// fairness is 1 busy process (closed loop) and 7 quiet ones (5 calls/s
// each) on a quota of 200/s.
func fairness(lease bool, dur time.Duration) rowSpec {
	return rowSpec{procs: 8, rate: 200, burst: 20, lease: lease, dur: dur, goroutines: 4,
		pace: []float64{0, 5, 5, 5, 5, 5, 5, 5}}
}

// workerMain runs a worker from its JSON spec and reports its stats on
// stdout.
func workerMain(specJSON string) {
	var sp spec
	if err := json.Unmarshal([]byte(specJSON), &sp); err != nil {
		fmt.Fprintln(os.Stderr, "fleetscale worker:", err)
		os.Exit(2)
	}
	_ = json.NewEncoder(os.Stdout).Encode(work(sp))
}

type startKey struct{}

// timing is the transport under the sluice chain: it records how long the
// call took from client.Do to here (the decision), then sends it.
type timing struct {
	next http.RoundTripper
	mu   sync.Mutex
	h    hist
}

func (t *timing) RoundTrip(req *http.Request) (*http.Response, error) {
	if t0, ok := req.Context().Value(startKey{}).(time.Time); ok {
		d := time.Since(t0)
		t.mu.Lock()
		t.h.add(d)
		t.mu.Unlock()
	}
	return t.next.RoundTrip(req)
}

// work is one worker process: Goroutines callers send GETs through the
// sluice client until the run ends.
func work(sp spec) stats {
	opt, err := redisx.NewClientOptions(sp.Redis)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleetscale worker:", err)
		os.Exit(2)
	}
	// Generous timeouts, client and Guard alike (the smaller one fires):
	// on this shared 2-core machine (load average above 10 at times) a 50ms
	// Redis call misses now and then, and with FailClosed that would be a
	// rejection; these rows measure the shared quota, not the timeout.
	opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout, opt.DialTimeout = 2*time.Second, 2*time.Second, 2*time.Second, 2*time.Second
	rc := redis.NewClient(opt)
	defer rc.Close()
	st := stats{Latency: make(hist, histBuckets)}
	tr := &timing{next: &http.Transport{MaxIdleConnsPerHost: sp.Goroutines}, h: st.Latency}
	client := outbound.NewClient(
		outbound.WithName("fleetscale"),
		outbound.WithTransport(tr),
		outbound.WithGlobalRateLimit(outbound.GlobalRateLimitSettings{Client: rc, Name: sp.Name,
			Requests: sp.Requests, Period: sp.Period, Burst: sp.Burst, MaxWait: sp.MaxWait,
			Lease: sp.Lease, MaxLease: sp.MaxLease, RedisTimeout: 2 * time.Second,
			// The harness measures the shared quota's accuracy, not its
			// fallback: with the default 50 ms bound, a loaded machine's
			// slow scripts sent decisions to the local share, which
			// admits beside Redis (red once in CI at load 15 on 2 cores:
			// 106 in 1 s against a bound of 55). FailClosed: a Redis
			// failure rejects instead, so every admission is the shared
			// quota's (or spent from a lease it granted).
			FailureMode: sluice.FailClosed}),
	)
	defer client.Close()
	time.Sleep(time.Until(time.Unix(0, sp.StartAt)))
	ctx, cancel := context.WithTimeout(context.Background(), sp.Duration)
	defer cancel()
	var wg sync.WaitGroup
	for g := range sp.Goroutines {
		wg.Go(func() {
			var every time.Duration
			next := time.Now()
			if sp.Pace > 0 {
				every = time.Duration(float64(time.Second) * float64(sp.Goroutines) / sp.Pace)
				next = next.Add(every * time.Duration(g) / time.Duration(sp.Goroutines))
			}
			for ctx.Err() == nil {
				if every > 0 {
					if d := time.Until(next); d > 0 {
						select {
						case <-time.After(d):
						case <-ctx.Done():
							return
						}
					}
					next = next.Add(every)
				}
				req, _ := http.NewRequestWithContext(context.WithValue(ctx, startKey{}, time.Now()), http.MethodGet, sp.Vendor, nil)
				req.Header.Set("X-Worker", strconv.Itoa(sp.ID))
				resp, err := client.Do(req)
				switch e := sluice.ErrorOf(err); {
				case err == nil:
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					atomic.AddInt64(&st.Admitted, 1)
				case ctx.Err() != nil:
					// the run ended while this call waited for its turn
				case e != nil && e.Layer == sluice.LayerGlobalRateLimiter:
					atomic.AddInt64(&st.Rejected, 1)
					if e.Reason == sluice.ReasonVendorCooldown {
						atomic.AddInt64(&st.Cooldown, 1)
					}
					if e.RetryAfter > 0 {
						select {
						case <-time.After(e.RetryAfter):
						case <-ctx.Done():
						}
					}
				default:
					atomic.AddInt64(&st.Errors, 1)
				}
			}
		})
	}
	wg.Wait()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return st
}

// arrival is one request the vendor saw.
type arrival struct {
	at     time.Time
	worker int
}

// vendor counts the requests it receives, with their arrival times; the
// first request after tooManyAt (if set) gets 429 Retry-After: 2.
type vendor struct {
	mu        sync.Mutex
	arrivals  []arrival
	tooManyAt time.Time
	at429     time.Time
}

func (v *vendor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	id, _ := strconv.Atoi(r.Header.Get("X-Worker"))
	v.mu.Lock()
	v.arrivals = append(v.arrivals, arrival{now, id})
	send429 := !v.tooManyAt.IsZero() && v.at429.IsZero() && now.After(v.tooManyAt)
	if send429 {
		v.at429 = now
	}
	v.mu.Unlock()
	if send429 {
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	_, _ = io.WriteString(w, "ok")
}

// take returns the arrivals so far, sorted, and forgets them.
func (v *vendor) take() ([]arrival, time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	a, at := v.arrivals, v.at429
	v.arrivals, v.at429, v.tooManyAt = nil, time.Time{}, time.Time{}
	slices.SortFunc(a, func(x, y arrival) int { return x.at.Compare(y.at) })
	return a, at
}

// maxInWindow is the most arrivals in any window of length w (sliding).
func maxInWindow(a []arrival, w time.Duration) int {
	best, j := 0, 0
	for i := range a {
		for a[i].at.Sub(a[j].at) >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// rowSpec is one run.
type rowSpec struct {
	procs, rate, burst int
	lease              bool
	maxLease           int // 0: the default (Burst)
	dur                time.Duration
	goroutines         int
	pace               []float64     // per worker; nil: closed loops
	cooldownAt         time.Duration // 0: no 429
}

// row is one line of a table.
type row struct {
	rowSpec
	admitted, rejected, errors, cooldown int64
	maxWindow, bound                     int
	total, totalBound                    int
	trips, commands                      int64
	cpu                                  time.Duration // Redis CPU, user + sys
	lat                                  hist          // all workers
	latBusy, latQuiet                    hist          // fairness: worker 0, the others
	admittedBusy, admittedQuiet          int64
	offeredQuiet                         float64
	stopAfter                            time.Duration // cooldown: the last arrival during the cooldown after the 429
	stoppedAll                           bool
	commandStats                         string
}

// harness is the redis-server and the vendor every row shares.
type harness struct {
	self  string
	rs    *redisServer
	v     *vendor
	vs    *httptest.Server
	admin *redis.Client
	done  chan struct{}
}

func newHarness() (*harness, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	rs, err := startRedis()
	if err != nil {
		return nil, err
	}
	h := &harness{self: self, rs: rs, v: &vendor{}, done: make(chan struct{})}
	// Ctrl-C still stops the redis-server.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		defer signal.Stop(sig)
		select {
		case <-sig:
			rs.stop()
			os.Exit(130)
		case <-h.done:
		}
	}()
	h.vs = httptest.NewServer(h.v)
	h.admin = redis.NewClient(&redis.Options{Addr: rs.Addr})
	return h, nil
}

func (h *harness) close() {
	close(h.done)
	h.admin.Close()
	h.vs.Close()
	h.rs.stop()
}

// redisCPU is Redis's CPU time so far (INFO cpu: used_cpu_user +
// used_cpu_sys).
func (h *harness) redisCPU(ctx context.Context) (time.Duration, error) {
	info, err := h.admin.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, err
	}
	var total float64
	for line := range strings.Lines(info) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second)), nil
}

// run runs one row.
func (h *harness) run(rs rowSpec) (row, error) {
	ctx := context.Background()
	n := rs.procs
	name := fmt.Sprintf("fleetscale-%d-%d", n, time.Now().UnixNano())
	if err := h.admin.ConfigResetStat(ctx).Err(); err != nil {
		return row{}, err
	}
	cpu0, err := h.redisCPU(ctx)
	if err != nil {
		return row{}, err
	}
	startAt := time.Now().Add(time.Second)
	if rs.cooldownAt > 0 {
		h.v.mu.Lock()
		h.v.tooManyAt = startAt.Add(rs.cooldownAt)
		h.v.mu.Unlock()
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		r    = row{rowSpec: rs, lat: make(hist, histBuckets), latBusy: make(hist, histBuckets), latQuiet: make(hist, histBuckets)}
		errs []error
	)
	for i := range n {
		sp := spec{ID: i, Redis: "redis://" + h.rs.Addr + "/0", Vendor: h.vs.URL + "/v1/x", Name: name,
			Requests: rs.rate, Period: time.Second, Burst: rs.burst, MaxWait: time.Second, Lease: rs.lease, MaxLease: rs.maxLease,
			StartAt: startAt.UnixNano(), Duration: rs.dur, Goroutines: rs.goroutines}
		if rs.pace != nil {
			sp.Pace = rs.pace[i]
			if sp.Pace > 0 {
				r.offeredQuiet += sp.Pace * rs.dur.Seconds()
			}
		}
		js, _ := json.Marshal(sp)
		wg.Go(func() {
			cmd := exec.Command(h.self)
			cmd.Env = append(os.Environ(), workerEnv+"="+string(js))
			cmd.Stderr = os.Stderr
			out, err := cmd.Output()
			var st stats
			if err == nil {
				err = json.Unmarshal(out, &st)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("worker: %w (stdout %q)", err, out))
				return
			}
			r.admitted += st.Admitted
			r.rejected += st.Rejected
			r.errors += st.Errors
			r.cooldown += st.Cooldown
			r.lat.merge(st.Latency)
			if i == 0 {
				r.latBusy.merge(st.Latency)
				r.admittedBusy += st.Admitted
			} else {
				r.latQuiet.merge(st.Latency)
				r.admittedQuiet += st.Admitted
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return row{}, err
	}
	cpu1, err := h.redisCPU(ctx)
	if err != nil {
		return row{}, err
	}
	r.cpu = cpu1 - cpu0
	arr, at429 := h.v.take()
	slack := 0
	if rs.lease {
		ml := rs.maxLease
		if ml == 0 {
			ml = rs.burst
		}
		slack = n * ml
	}
	r.maxWindow = maxInWindow(arr, time.Second)
	r.bound = rs.rate + rs.burst + slack
	r.total = len(arr)
	r.totalBound = int(float64(rs.rate)*rs.dur.Seconds()) + rs.burst + slack
	if !at429.IsZero() {
		// The last arrival from each worker during the 2s cooldown.
		end := at429.Add(2 * time.Second)
		last := map[int]time.Time{}
		for _, a := range arr {
			if a.at.After(at429) && a.at.Before(end) {
				last[a.worker] = a.at
			}
		}
		for _, at := range last {
			r.stopAfter = max(r.stopAfter, at.Sub(at429))
		}
		// Every worker called again after the cooldown: they all ran
		// throughout, so the stop is theirs, not an idle spell.
		r.stoppedAll = true
		for w := range n {
			seen := false
			for _, a := range arr {
				if a.worker == w && !a.at.Before(end) {
					seen = true
					break
				}
			}
			r.stoppedAll = r.stoppedAll && seen
		}
	}
	info, err := h.admin.Info(ctx, "commandstats").Result()
	if err != nil {
		return row{}, err
	}
	var parts []string
	for line := range strings.Lines(info) {
		cmdName, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		cmdName, found := strings.CutPrefix(cmdName, "cmdstat_")
		if !ok || !found || cmdName == "info" || strings.HasPrefix(cmdName, "config") {
			continue // the harness's own
		}
		c, _ := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
		r.commands += c
		if !inScript[cmdName] {
			r.trips += c
		}
		parts = append(parts, fmt.Sprintf("%s %d", cmdName, c))
	}
	r.commandStats = strings.Join(parts, ", ")
	fmt.Fprintf(os.Stderr, "%s, %d processes, rate %d: done; commandstats: %s\n", mode(rs.lease), n, rs.rate, r.commandStats)
	return r, nil
}

func mode(lease bool) string {
	if lease {
		return "lease"
	}
	return "per-call"
}

func (r row) per(x int64) string {
	if r.admitted == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f", float64(x)/float64(r.admitted))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

func printTable(w io.Writer, rows []row) {
	fmt.Fprintln(w, "| quota (req/s, burst) | offered | mode | processes | admitted | admitted/s | vendor max in any 1 s | bound (rate + burst + P·MaxLease) | vendor total | bound (rate×T + burst + P·MaxLease) | round trips / admitted | commands run / admitted | Redis CPU ms / 1,000 admitted | decision p50 ms | decision p99 ms |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		cpu := "-"
		if r.admitted > 0 {
			cpu = ms(r.cpu * 1000 / time.Duration(r.admitted))
		}
		offered := "as fast as possible"
		if r.pace != nil {
			offered = fmt.Sprintf("%d/s", r.rate)
		}
		fmt.Fprintf(w, "| %d, %d | %s | %s | %d | %d | %.0f | %d | %d | %d | %d | %s | %s | %s | %s | %s |\n", r.rate, r.burst, offered, mode(r.lease), r.procs,
			r.admitted, float64(r.admitted)/r.dur.Seconds(), r.maxWindow, r.bound, r.total, r.totalBound,
			r.per(r.trips), r.per(r.commands), cpu, ms(r.lat.quantile(0.5)), ms(r.lat.quantile(0.99)))
	}
	fmt.Fprintln(w)
}

func printFairness(w io.Writer, rows []row) {
	fmt.Fprintln(w, "Fairness: 1 busy process (4 callers, closed loop) and 7 quiet ones (5 calls/s each) on a quota of 200/s, burst 20.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| mode | quiet: offered | quiet: admitted | quiet decision p50 / p99 ms | busy: admitted | busy decision p50 / p99 ms | vendor total | bound | round trips / admitted |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %.0f | %d | %s / %s | %d | %s / %s | %d | %d | %s |\n", mode(r.lease), r.offeredQuiet, r.admittedQuiet,
			ms(r.latQuiet.quantile(0.5)), ms(r.latQuiet.quantile(0.99)), r.admittedBusy,
			ms(r.latBusy.quantile(0.5)), ms(r.latBusy.quantile(0.99)), r.total, r.totalBound, r.per(r.trips))
	}
	fmt.Fprintln(w)
}

func printCooldown(w io.Writer, rows []row) {
	fmt.Fprintln(w, "Cooldown: 8 processes at the high-rate quota; 2 s in, the vendor answers one call 429 Retry-After: 2.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| mode | admitted | vendor_cooldown rejections | last vendor arrival after the 429 (any process) | every process called again after the cooldown |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %d | %d | %s ms | %v |\n", mode(r.lease), r.admitted, r.cooldown, ms(r.stopAfter), r.stoppedAll)
	}
	fmt.Fprintln(w)
}

// inScript are the commands the quota's scripts call (internal/quota
// scripts.go): INFO commandstats counts them too, but they cost no round trip.
var inScript = map[string]bool{"time": true, "pttl": true, "get": true, "set": true, "del": true,
	"zrem": true, "zadd": true, "zremrangebyscore": true, "pexpire": true, "zcard": true, "publish": true}

func calls(info, name string) int64 {
	for line := range strings.Lines(info) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+name+":calls="); ok {
			n, _ := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
			return n
		}
	}
	return 0
}

// redisServer is a private redis-server on a free loopback port.
type redisServer struct {
	*redistest.Proc
	dir  string
	once sync.Once
}

func startRedis() (*redisServer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir, err := os.MkdirTemp("", "fleetscale-redis-")
	if err != nil {
		return nil, err
	}
	p, err := redistest.Launch(dir, port)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("redis-server (is it on the PATH?): %w", err)
	}
	return &redisServer{Proc: p, dir: dir}, nil
}

func (s *redisServer) stop() {
	s.once.Do(func() {
		s.Stop()
		_ = os.RemoveAll(s.dir)
	})
}
