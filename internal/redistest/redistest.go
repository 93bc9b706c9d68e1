// Package redistest gives tests a real Redis: the one named by REDIS_URL, or a
// redis-server started on a free loopback port and stopped when the test ends.
// It can also start a private instance to kill, pause and resume, and a
// 3-master Redis Cluster on loopback ports, with or without a replica per
// master.
//
// Without Redis the helpers skip the test with a message saying how to get one;
// when CI=true they fail it instead.
package redistest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// readyTimeout bounds how long a started server may take to answer PING.
const readyTimeout = 20 * time.Second

// Server is a Redis server for one test.
type Server struct {
	// Addr is host:port.
	Addr string
	// URL is a redis:// URL for Addr.
	URL string
	// Prefix is unique to this test; use it to namespace keys, since a server
	// from REDIS_URL is shared with other tests.
	Prefix string

	t     testing.TB
	own   bool
	dir   string
	port  int
	extra []string

	mu   sync.Mutex
	proc *Proc
}

var seq struct {
	sync.Mutex
	n int
}

func uniquePrefix(t testing.TB) string {
	seq.Lock()
	seq.n++
	n := seq.n
	seq.Unlock()
	return fmt.Sprintf("t%d-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9, n)
}

func unavailable(t testing.TB, why string) {
	t.Helper()
	msg := "redistest: no Redis for this test (" + why + "); set REDIS_URL=redis://127.0.0.1:6379/0 " +
		"or install redis-server (apt-get install redis-server)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " [CI=true: a missing Redis is a failure]")
	}
	t.Skip(msg)
}

// New returns the Redis named by REDIS_URL if set and reachable, else starts a
// private one. Use Start when the test kills or pauses the server.
func New(t testing.TB) *Server {
	t.Helper()
	if u := os.Getenv("REDIS_URL"); u != "" {
		opt, err := redis.ParseURL(u)
		if err != nil {
			t.Fatalf("redistest: REDIS_URL %q: %v", u, err)
		}
		c := redis.NewClient(opt)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Ping(ctx).Err(); err != nil {
			unavailable(t, fmt.Sprintf("REDIS_URL %q does not answer: %v", u, err))
		}
		return &Server{Addr: opt.Addr, URL: u, Prefix: uniquePrefix(t), t: t}
	}
	return Start(t)
}

// Start starts a private redis-server on a free loopback port, stopped (and its
// directory removed) when the test ends.
func Start(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		unavailable(t, "redis-server is not on PATH")
	}
	port := FreePort(t)
	dir := t.TempDir()
	s := &Server{
		Addr:   net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Prefix: uniquePrefix(t),
		t:      t,
		own:    true,
		dir:    dir,
		port:   port,
		extra:  extraArgs,
	}
	s.URL = "redis://" + s.Addr + "/0"
	if err := s.start(); err != nil {
		unavailable(t, err.Error())
	}
	t.Cleanup(s.stop)
	return s
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := Launch(s.dir, s.port, s.extra...)
	if err != nil {
		return err
	}
	s.proc = p
	return nil
}

func (s *Server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	s.proc.Stop()
	s.proc = nil
}

func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.own || s.proc != nil
}

func (s *Server) mustOwn(op string) {
	s.t.Helper()
	if !s.own {
		s.t.Fatalf("redistest: %s needs a private server: use redistest.Start, not New", op)
	}
}

// Client returns a go-redis client for the server with go-redis's defaults
// but ContextTimeoutEnabled (which sluice's constructors require), closed
// when the test ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, ContextTimeoutEnabled: true})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Key returns s.Prefix + ":" + name, for tests that namespace their keys.
func (s *Server) Key(name string) string { return s.Prefix + ":" + name }

// Kill sends SIGKILL and waits for the process to exit.
func (s *Server) Kill() {
	s.t.Helper()
	s.mustOwn("Kill")
	s.stop()
}

// Restart starts a killed server again on the same port (empty: it keeps
// nothing on disk) and waits until it answers.
func (s *Server) Restart() {
	s.t.Helper()
	s.mustOwn("Restart")
	s.stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
}

// Pause stops the process with SIGSTOP: connections stay open and nothing answers.
func (s *Server) Pause() {
	s.t.Helper()
	s.mustOwn("Pause")
	s.signal(syscall.SIGSTOP)
}

// Resume continues a paused server with SIGCONT.
func (s *Server) Resume() {
	s.t.Helper()
	s.mustOwn("Resume")
	s.signal(syscall.SIGCONT)
}

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		s.t.Fatalf("redistest: server on %s is not running", s.Addr)
	}
	if err := s.proc.Signal(sig); err != nil {
		s.t.Fatalf("redistest: signal %v: %v", sig, err)
	}
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Cluster is a Redis Cluster on loopback ports: 3 masters, and with
// StartClusterWithReplicas one replica per master.
type Cluster struct {
	// Addrs are every node's host:port, in the order of Nodes.
	Addrs []string
	// Nodes are the nodes, which a test may kill, pause or resume.
	Nodes []*Server
	// Prefix is unique to this test.
	Prefix string
	t      testing.TB
	ids    []string // cluster node ids, in the order of Nodes
}

// StartCluster starts 3 masters in cluster mode, assigns the 16384 slots with
// redis-cli --cluster create and waits for cluster_state:ok. Everything is
// stopped when the test ends.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	return startCluster(t, 0)
}

// StartClusterWithReplicas starts 3 masters and 3 replicas in cluster mode
// (redis-cli --cluster create --cluster-replicas 1) with a node timeout of 2s,
// and waits until every node agrees the cluster is ok and every replica is in
// sync with its master, so that killing a master fails over to its replica.
// Everything is stopped when the test ends.
func StartClusterWithReplicas(t testing.TB) *Cluster {
	t.Helper()
	return startCluster(t, 1)
}

func startCluster(t testing.TB, replicas int) *Cluster {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		unavailable(t, "redis-cli is not on PATH")
	}
	// Registered first, so it runs last: after the test's clients are closed.
	t.Cleanup(func() { waitDialProbes(t) })
	c := &Cluster{Prefix: uniquePrefix(t), t: t}
	for i := 0; i < 3*(1+replicas); i++ {
		busPort := FreePort(t)
		n := Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000", "--cluster-port", strconv.Itoa(busPort))
		c.Nodes = append(c.Nodes, n)
		c.Addrs = append(c.Addrs, n.Addr)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	out, err := exec.Command("redis-cli", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	ctx := context.Background()
	for _, n := range c.Nodes {
		cl := redis.NewClient(&redis.Options{Addr: n.Addr})
		id, err := cl.ClusterMyID(ctx).Result()
		cl.Close()
		if err != nil {
			t.Fatalf("redistest: CLUSTER MYID on %s: %v", n.Addr, err)
		}
		c.ids = append(c.ids, id)
	}
	c.waitFor("cluster_state:ok on every node with every replica in sync", func(cl *redis.Client) bool {
		info, err := cl.ClusterInfo(ctx).Result()
		if err != nil || !strings.Contains(info, "cluster_state:ok") ||
			!strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(len(c.Nodes))+"\r") {
			return false
		}
		repl, err := cl.Info(ctx, "replication").Result()
		return err == nil && (strings.Contains(repl, "role:master") || strings.Contains(repl, "master_link_status:up"))
	})
	return c
}

// waitFor polls every live node until cond holds on all of them, for at most
// readyTimeout.
func (c *Cluster) waitFor(what string, cond func(*redis.Client) bool) {
	c.t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for _, n := range c.Nodes {
		if !n.running() {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1})
		for !cond(cl) {
			if time.Now().After(deadline) {
				cl.Close()
				c.t.Fatalf("redistest: cluster: no %s after %s (node %s)", what, readyTimeout, n.Addr)
			}
			time.Sleep(50 * time.Millisecond) // polling the cluster's state, not settling
		}
		cl.Close()
	}
}

// Client returns a cluster client seeded with every node, with go-redis's
// defaults but ContextTimeoutEnabled (which sluice's constructors require),
// closed when the test ends.
func (c *Cluster) Client() *redis.ClusterClient {
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs, ContextTimeoutEnabled: true})
	c.t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// MasterOf returns the node that serves key now.
func (c *Cluster) MasterOf(key string) *Server {
	c.t.Helper()
	cl := c.Client()
	n, err := cl.MasterForKey(context.Background(), key)
	if err != nil {
		c.t.Fatalf("redistest: master for %q: %v", key, err)
	}
	for _, s := range c.Nodes {
		if s.Addr == n.Options().Addr {
			return s
		}
	}
	c.t.Fatalf("redistest: master %s for %q is not a node of this cluster", n.Options().Addr, key)
	return nil
}

// WaitFailover waits (at most 20s, polling) until every live node marks the
// killed master as failed, holds none of its slots by it any more (its
// replica took them over) and reports cluster_state:ok.
func (c *Cluster) WaitFailover(killed *Server) {
	c.t.Helper()
	id := ""
	for i, n := range c.Nodes {
		if n == killed {
			id = c.ids[i]
		}
	}
	if id == "" {
		c.t.Fatalf("redistest: %s is not a node of this cluster", killed.Addr)
	}
	ctx := context.Background()
	c.waitFor("failover of "+killed.Addr, func(cl *redis.Client) bool {
		info, err := cl.ClusterInfo(ctx).Result()
		if err != nil || !strings.Contains(info, "cluster_state:ok") {
			return false
		}
		nodes, err := cl.ClusterNodes(ctx).Result()
		if err != nil {
			return false
		}
		for _, line := range strings.Split(nodes, "\n") {
			f := strings.Fields(line)
			if len(f) >= 8 && f[0] == id {
				// <id> <addr> <flags> <master> <ping> <pong> <epoch> <link> [slots...]
				return strings.Contains(","+f[2]+",", ",fail,") && len(f) == 8
			}
		}
		return false
	})
}

// waitDialProbes waits, at most 5s, for go-redis's background dial probes to
// end. After repeated dial failures (a killed node) a client's pool probes the
// address once a second until it is closed, and notices that it was closed
// only at its next probe.
func waitDialProbes(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	buf := make([]byte, 4<<20)
	for {
		n := runtime.Stack(buf, true)
		if !bytes.Contains(buf[:n], []byte("pool.(*ConnPool).tryDial")) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("redistest: go-redis dial probes still running 5s after the test: a client was not closed")
			return
		}
		time.Sleep(50 * time.Millisecond) // polling for the probes' end
	}
}
