package main

// Redis chaos under load, through the real app: every Redis-backed layer (the
// per-user GCRA store, the fleet-wide vendor quota, the shared circuit
// breaker) runs against a private redis-server that the test kills, restarts,
// pauses, resumes and flushes the scripts of while a few workers keep
// chatting.
//
// Not covered: a Redis Cluster master failover. The app takes a single
// REDIS_URL (a standalone client), and redistest.StartCluster starts masters
// without replicas, so there is nothing to fail over to; the Cluster paths are
// tested in outbound/globalrate_test.go without a failover.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-go/sluice/internal/redistest"
	"github.com/sluice-go/sluice/internal/testenv"
)

// documented is every error the app may answer under load, from the table in
// docs/example-app.md: status -> layer -> reasons. Anything else (a 500 from
// gin.Recovery after a panic, an unknown layer) fails the chaos tests.
var documented = map[int]map[string][]string{
	http.StatusTooManyRequests: {"user_rate_limiter": {"rate_limited"}},
	http.StatusServiceUnavailable: {
		"load_shedder":        {"overloaded"},
		"admission_queue":     {"queue_full", "queue_timeout"},
		"circuit_breaker":     {"circuit_open"},
		"global_rate_limiter": {"rate_limited", "queue_timeout", "vendor_cooldown"},
		"local_rate_limiter":  {"rate_limited", "queue_timeout"},
		"bulkhead":            {"queue_timeout", "bulkhead_full"},
		"retry":               {"retry_budget_exhausted", "deadline_exceeded"},
		"transport":           {"pool_timeout"},
		"vendor":              {"vendor_rate_limited"},
	},
	http.StatusGatewayTimeout: {
		"call_timeout": {"call_timeout"},
		"retry":        {"deadline_exceeded"},
		"transport":    {"connect_timeout", "response_header_timeout", "read_idle_timeout", "write_timeout", "tls_handshake_timeout"},
		"request":      {"deadline_exceeded", "client_closed_request"},
	},
	http.StatusBadGateway: {"vendor": {"vendor_error", "unreachable"}, "retry": {"retries_exhausted"}},
}

// outcome is one answer the load saw.
type outcome struct {
	phase   int
	status  int
	layer   string
	reason  string
	latency time.Duration
}

// classify checks a's status and body against documented and returns the
// error's layer and reason ("" for a 200); a non-empty problem means the
// answer is outside the contract.
func classify(a answer) (layer, reason, problem string) {
	if a.status == http.StatusOK {
		return "", "", ""
	}
	var e errorBody
	if err := json.Unmarshal(a.body, &e); err != nil {
		return "", "", fmt.Sprintf("status %d with a body that is not a JSON error: %q", a.status, a.body)
	}
	layer, reason = e.Error.Layer, e.Error.Reason
	if !slices.Contains(documented[a.status][layer], reason) {
		return layer, reason, fmt.Sprintf("undocumented answer %d %s/%s: %s", a.status, layer, reason, a)
	}
	if (a.status == http.StatusTooManyRequests || a.status == http.StatusServiceUnavailable) && !isWholeSeconds(a.header.Get("Retry-After")) {
		return layer, reason, fmt.Sprintf("%d %s/%s without a whole-seconds Retry-After: %s", a.status, layer, reason, a)
	}
	return layer, reason, ""
}

// load is a closed loop of workers chatting with the app, each with its own
// API key, until stop is called or each has sent max requests.
type load struct {
	phase atomic.Int32 // the phase a request started in
	sent  atomic.Int64
	ok    atomic.Int64

	mu       sync.Mutex
	outcomes []outcome
	problems []string

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startLoad starts workers; each stops after max requests at most.
func startLoad(t *testing.T, a *app, workers, max int) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			key := "chaos-" + strconv.Itoa(w)
			for i := 0; i < max && ctx.Err() == nil; i++ {
				phase := int(l.phase.Load())
				start := time.Now()
				got := a.chat(t, key, hello)
				d := time.Since(start)
				l.sent.Add(1)
				layer, reason, problem := classify(got)
				if got.status == http.StatusOK {
					l.ok.Add(1)
				}
				l.mu.Lock()
				l.outcomes = append(l.outcomes, outcome{phase, got.status, layer, reason, d})
				if problem != "" && len(l.problems) < 20 {
					l.problems = append(l.problems, problem)
				}
				l.mu.Unlock()
			}
		}()
	}
	t.Cleanup(l.stop) // also on t.Fatal: no worker outlives the test (goleak)
	return l
}

func (l *load) stop() { l.cancel(); l.wg.Wait() }

// latencies returns the sorted latencies of the answers (of any status)
// whose request started in phase.
func (l *load) latencies(phase int) []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var d []time.Duration
	for _, o := range l.outcomes {
		if o.phase == phase {
			d = append(d, o.latency)
		}
	}
	slices.Sort(d)
	return d
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// degraded reads resilience_degraded_total from the app's /metrics, summed
// per resilience_layer.
func degraded(t *testing.T, a *app) map[string]float64 {
	t.Helper()
	return byLayer(t, a, "resilience_degraded_total")
}

// byLayer reads the Prometheus series name from the app's /metrics, summed
// per resilience_layer.
func byLayer(t *testing.T, a *app, name string) map[string]float64 {
	t.Helper()
	got := a.get(t, "/metrics")
	if got.status != http.StatusOK {
		t.Fatalf("/metrics: %s", got)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(got.body)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		layer := "?"
		if _, rest, ok := strings.Cut(line, `resilience_layer="`); ok {
			layer, _, _ = strings.Cut(rest, `"`)
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		out[layer] += v
	}
	return out
}

func sum(m map[string]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}

func diff(after, before map[string]float64) map[string]float64 {
	d := map[string]float64{}
	for k, v := range after {
		if v-before[k] != 0 {
			d[k] = v - before[k]
		}
	}
	return d
}

// waitFor polls cond (polling a condition, not sleeping to settle) until it
// holds or timeout passes; it reports whether it held.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// sluiceKeys lists the keys under sluice:* on the server (nil when it does not
// answer).
func sluiceKeys(rc *redis.Client) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	keys, _ := rc.Keys(ctx, "sluice:*").Result()
	return keys
}

// hasKeys reports whether keys hold a per-user GCRA key and a vendor quota
// key: both Redis-backed layers wrote to this server.
func hasKeys(keys []string) bool {
	var user, vendor bool
	for _, k := range keys {
		user = user || strings.HasPrefix(k, "sluice:{ginapp_user") && strings.HasSuffix(k, ":gcra")
		vendor = vendor || k == "sluice:{ginapp_vendor}:req"
	}
	return user && vendor
}

// evalCalls is cmdstat_eval's calls from INFO commandstats: scripts sent
// whole, which happens only when EVALSHA found no script.
func evalCalls(rc *redis.Client) int64 {
	info, err := rc.Info(context.Background(), "commandstats").Result()
	if err != nil {
		return -1
	}
	return commandCalls(info, "eval")
}

// commandCalls parses calls=N for cmdstat_<name> from INFO commandstats.
func commandCalls(info, name string) int64 {
	for line := range strings.Lines(info) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+name+":calls=")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
		return n
	}
	return 0
}

// chaosEnv is the app's configuration for the chaos and soak tests: Redis at
// url, every Redis-backed layer on (user limit, vendor quota, shared
// breaker), a 5s request deadline.
func chaosEnv(url string, extra map[string]string) map[string]string {
	env := map[string]string{
		"REDIS_URL":              url,
		"SLUICE_VENDOR_RATE":     "2000-S", // the global limiter decides every call, rarely says no
		"SLUICE_FAKE_LATENCY":    "5ms",
		"SLUICE_REQUEST_TIMEOUT": "5s",
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// requestDeadline is SLUICE_REQUEST_TIMEOUT in chaosEnv; latencyBound is the
// longest any answer may take: the deadline plus room for a loaded machine
// to write the answer.
const (
	requestDeadline = 5 * time.Second
	latencyBound    = requestDeadline + 2*time.Second
)

// TestRedisChaosUnderLoad kills Redis (SIGKILL), restarts it, pauses it
// (SIGSTOP), resumes it and flushes its scripts while 4 workers chat, then
// checks that every answer was a 200 or a documented rejection, that none took
// longer than the request deadline (plus slack), that the outages were
// counted as resilience.degraded, and that afterwards the layers used Redis
// again: their keys reappeared, the scripts were reloaded with EVAL, and
// degraded stopped growing.
func TestRedisChaosUnderLoad(t *testing.T) {
	testenv.Long(t) // about 12s of load with Redis killed, paused and flushed
	srv := redistest.Start(t)
	rc := srv.Client()
	a := startApp(t, config(t, chaosEnv(srv.URL, nil)))
	const (
		steady = iota
		killed
		restarted
		paused
		resumed
		flushed
		recovered
	)
	names := []string{"steady", "killed", "restarted", "paused", "resumed", "scripts flushed", "recovered"}
	l := startLoad(t, a, 4, 20_000)
	snaps := make([]map[string]float64, len(names)+1)
	mark := func(p int) {
		snaps[p] = degraded(t, a)
		l.phase.Store(int32(p))
	}
	pace := func(d time.Duration) { time.Sleep(d) } // paces the scenario's phases

	mark(steady)
	if !waitFor(10*time.Second, func() bool { return hasKeys(sluiceKeys(rc)) }) {
		t.Fatalf("no user and vendor keys in Redis under steady load: %v", sluiceKeys(rc))
	}
	pace(time.Second)

	mark(killed)
	srv.Kill()
	pace(1500 * time.Millisecond)

	mark(restarted)
	srv.Restart() // empty: no keys, no scripts
	if !waitFor(10*time.Second, func() bool { return hasKeys(sluiceKeys(rc)) }) {
		t.Errorf("after the restart the layers never wrote to Redis again: keys %v", sluiceKeys(rc))
	}
	pace(time.Second)

	mark(paused)
	srv.Pause()
	pace(1500 * time.Millisecond)

	mark(resumed)
	srv.Resume()
	pace(time.Second)

	mark(flushed)
	if err := rc.ConfigResetStat(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { return evalCalls(rc) > 0 }) {
		t.Errorf("after SCRIPT FLUSH no script was reloaded with EVAL")
	}
	pace(time.Second)

	mark(recovered)
	// Recovered: degraded stops growing while requests keep being served. On a
	// loaded machine one Redis call may still miss its 50ms timeout and cost a
	// health period of fallbacks, so look for a quiet half-second window
	// rather than demand that every window is quiet.
	var quiet bool
	waitFor(15*time.Second, func() bool {
		d0, s0 := sum(degraded(t, a)), l.ok.Load()
		pace(500 * time.Millisecond)
		d1, s1 := sum(degraded(t, a)), l.ok.Load()
		quiet = d1 == d0 && s1-s0 >= 10
		return quiet
	})
	if !quiet {
		t.Errorf("after recovery resilience.degraded kept growing (or nothing was served) for 15s")
	}
	snaps[len(names)] = degraded(t, a)
	l.stop()

	l.mu.Lock()
	for _, p := range l.problems {
		t.Error(p)
	}
	counts := map[string]int{}
	var worst time.Duration
	for _, o := range l.outcomes {
		key := strconv.Itoa(o.status)
		if o.layer != "" {
			key += " " + o.layer + "/" + o.reason
		}
		counts[key]++
		if o.latency > worst {
			worst = o.latency
		}
	}
	l.mu.Unlock()
	t.Logf("answers: %v; slowest %v", counts, worst.Round(time.Millisecond))
	if worst > latencyBound {
		t.Errorf("an answer took %v; want every answer within %v (the %v deadline plus slack)", worst, latencyBound, requestDeadline)
	}
	for p, name := range names {
		lat := l.latencies(p)
		dd := diff(snaps[p+1], snaps[p])
		t.Logf("%-16s %5d answers  p50 %7v  p99 %7v  max %7v  degraded %v", name, len(lat),
			quantile(lat, .5).Round(100*time.Microsecond), quantile(lat, .99).Round(100*time.Microsecond),
			quantile(lat, 1).Round(100*time.Microsecond), dd)
		if len(lat) == 0 {
			t.Errorf("phase %s: no answers", name)
		}
		if p == killed || p == paused {
			// The outage is bounded by the tight Redis timeouts and the health
			// breaker: tens of milliseconds, against a vendor of 5ms. 2s is
			// generous; an unbounded wait would be the 5s deadline.
			if p99 := quantile(lat, .99); p99 > 2*time.Second {
				t.Errorf("phase %s: p99 %v; want the outage to cost less than 2s", name, p99)
			}
			for _, layer := range []string{"user_rate_limiter", "global_rate_limiter"} {
				if dd[layer] <= 0 {
					t.Errorf("phase %s: resilience.degraded for %s did not grow (%v)", name, layer, dd)
				}
			}
		}
	}
	if n := l.ok.Load(); n == 0 {
		t.Errorf("no request was served")
	}
}
