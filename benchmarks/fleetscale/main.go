// Command fleetscale measures the fleet-wide vendor quota across OS
// processes: 1, 2, 4 and 8 processes (this binary re-run as workers) share
// one quota through outbound.NewClient with WithGlobalRateLimit on a private
// redis-server, against a counting loopback vendor, and it prints a markdown
// table of accuracy and Redis cost:
//
//	go run ./benchmarks/fleetscale
//
// Accuracy is what the vendor saw: its busiest 1-second window (sliding,
// over arrival times) against the quota's bound of rate × 1s + burst, and
// its total against rate × duration + burst. Redis cost, from INFO
// commandstats deltas (the harness's own INFO and CONFIG left out), per
// admitted request: scripts (EVALSHA + EVAL, heartbeats included), round
// trips (scripts plus connection set-up such as HELLO) and every command Redis
// ran, those inside the scripts included.
// See benchmarks/README.md for results.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
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
	Redis      string
	Vendor     string
	Name       string
	Requests   int
	Period     time.Duration
	Burst      int
	MaxWait    time.Duration
	StartAt    int64 // Unix ns: every worker starts at once
	Duration   time.Duration
	Goroutines int
}

// stats is what a worker reports on stdout.
type stats struct {
	Admitted, Rejected, Errors int64
}

func main() {
	if s := os.Getenv(workerEnv); s != "" {
		workerMain(s)
		return
	}
	procs := flag.String("procs", "1,2,4,8", "process counts, comma-separated")
	rate := flag.Int("rate", 100, "quota: requests per second, fleet-wide")
	burst := flag.Int("burst", 10, "quota burst")
	dur := flag.Duration("duration", 5*time.Second, "run time per row")
	gor := flag.Int("goroutines", 4, "callers per process")
	flag.Parse()
	var counts []int
	for _, f := range strings.Split(*procs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "fleetscale: -procs %q: want positive whole numbers\n", *procs)
			os.Exit(2)
		}
		counts = append(counts, n)
	}
	if err := run(counts, *rate, *burst, *dur, *gor); err != nil {
		fmt.Fprintln(os.Stderr, "fleetscale:", err)
		os.Exit(1)
	}
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

// work is one worker process: Goroutines callers send GETs through the
// sluice client until the run ends.
func work(sp spec) stats {
	opt, err := redisx.NewClientOptions(sp.Redis)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleetscale worker:", err)
		os.Exit(2)
	}
	rc := redis.NewClient(opt)
	defer rc.Close()
	var st stats
	client := outbound.NewClient(
		outbound.WithName("fleetscale"),
		outbound.WithGlobalRateLimit(outbound.GlobalRateLimitSettings{Client: rc, Name: sp.Name,
			Requests: sp.Requests, Period: sp.Period, Burst: sp.Burst, MaxWait: sp.MaxWait}),
	)
	defer client.Transport.(*outbound.RoundTripper).Close()
	time.Sleep(time.Until(time.Unix(0, sp.StartAt)))
	ctx, cancel := context.WithTimeout(context.Background(), sp.Duration)
	defer cancel()
	var wg sync.WaitGroup
	for range sp.Goroutines {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, sp.Vendor, nil)
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
					if e.RetryAfter > 0 {
						time.Sleep(min(e.RetryAfter, time.Until(time.Unix(0, sp.StartAt).Add(sp.Duration))))
					}
				default:
					atomic.AddInt64(&st.Errors, 1)
				}
			}
		})
	}
	wg.Wait()
	return st
}

// vendor counts the requests it receives, with their arrival times.
type vendor struct {
	mu       sync.Mutex
	arrivals []time.Time
}

func (v *vendor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	v.mu.Lock()
	v.arrivals = append(v.arrivals, now)
	v.mu.Unlock()
	_, _ = io.WriteString(w, "ok")
}

// take returns the arrivals so far, sorted, and forgets them.
func (v *vendor) take() []time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	a := v.arrivals
	v.arrivals = nil
	slices.SortFunc(a, func(x, y time.Time) int { return x.Compare(y) })
	return a
}

// maxInWindow is the most arrivals in any window of length w (sliding).
func maxInWindow(a []time.Time, w time.Duration) int {
	best, j := 0, 0
	for i := range a {
		for a[i].Sub(a[j]) >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// row is one line of the table.
type row struct {
	procs                      int
	admitted, rejected, errors int64
	maxWindow, bound           int
	total, totalBound          int
	scripts, trips, commands   int64
	commandStats               string
}

func run(counts []int, rate, burst int, dur time.Duration, goroutines int) error {
	rows, err := measure(counts, rate, burst, dur, goroutines)
	if err != nil {
		return err
	}
	printTable(os.Stdout, rows, rate, burst, dur, goroutines)
	return nil
}

// measure runs one row per process count.
func measure(counts []int, rate, burst int, dur time.Duration, goroutines int) ([]row, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	rs, err := startRedis()
	if err != nil {
		return nil, err
	}
	defer rs.stop()
	// Ctrl-C still stops the redis-server.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-sig:
			rs.stop()
			os.Exit(130)
		case <-done:
		}
	}()

	v := &vendor{}
	vs := httptest.NewServer(v)
	defer vs.Close()
	admin := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer admin.Close()
	ctx := context.Background()

	var rows []row
	for _, n := range counts {
		name := fmt.Sprintf("fleetscale-%d-%d", n, time.Now().UnixNano())
		if err := admin.ConfigResetStat(ctx).Err(); err != nil {
			return nil, err
		}
		sp := spec{Redis: "redis://" + rs.Addr + "/0", Vendor: vs.URL + "/v1/x", Name: name,
			Requests: rate, Period: time.Second, Burst: burst, MaxWait: time.Second,
			StartAt: time.Now().Add(time.Second).UnixNano(), Duration: dur, Goroutines: goroutines}
		js, _ := json.Marshal(sp)
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			r    = row{procs: n}
			errs []error
		)
		for range n {
			wg.Go(func() {
				cmd := exec.Command(self)
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
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		arr := v.take()
		r.maxWindow = maxInWindow(arr, time.Second)
		r.bound = rate + burst
		r.total = len(arr)
		r.totalBound = int(float64(rate)*dur.Seconds()) + burst
		info, err := admin.Info(ctx, "commandstats").Result()
		if err != nil {
			return nil, err
		}
		r.scripts = calls(info, "evalsha") + calls(info, "eval")
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
		rows = append(rows, r)
		fmt.Fprintf(os.Stderr, "%d processes: done\n", n)
	}
	return rows, nil
}

func printTable(w io.Writer, rows []row, rate, burst int, dur time.Duration, goroutines int) {
	fmt.Fprintf(w, "quota %d req/s, burst %d; %v per row; %d callers per process; MaxWait 1s\n\n", rate, burst, dur, goroutines)
	fmt.Fprintln(w, "| processes | admitted | rejected | errors | vendor max in any 1 s | bound (rate×1s + burst) | vendor total | bound (rate×T + burst) | total / bound | scripts / admitted | round trips / admitted | commands run / admitted | commandstats |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, r := range rows {
		per := func(x int64) string {
			if r.admitted == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2f", float64(x)/float64(r.admitted))
		}
		fmt.Fprintf(w, "| %d | %d | %d | %d | %d | %d | %d | %d | %.1f%% | %s | %s | %s | %s |\n", r.procs, r.admitted, r.rejected,
			r.errors, r.maxWindow, r.bound, r.total, r.totalBound, 100*float64(r.total)/float64(r.totalBound),
			per(r.scripts), per(r.trips), per(r.commands), r.commandStats)
	}
}

// inScript are the commands the quota's scripts call (internal/quota
// scripts.go): INFO commandstats counts them too, but they cost no round trip.
var inScript = map[string]bool{"time": true, "pttl": true, "get": true, "set": true, "del": true,
	"zrem": true, "zadd": true, "zremrangebyscore": true, "pexpire": true, "zcard": true}

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
