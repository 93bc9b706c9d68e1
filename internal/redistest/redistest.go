// Package redistest gives tests a real Redis: the one named by REDIS_URL, or a
// redis-server started on a free loopback port and stopped when the test ends.
// It can also start a private instance to kill, pause and resume, and a
// 3-master Redis Cluster on loopback ports.
//
// Without Redis the helpers skip the test with a message saying how to get one;
// when CI=true they fail it instead.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
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

func (s *Server) mustOwn(op string) {
	s.t.Helper()
	if !s.own {
		s.t.Fatalf("redistest: %s needs a private server: use redistest.Start, not New", op)
	}
}

// Client returns a go-redis client for the server, closed when the test ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
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

// Cluster is a 3-master Redis Cluster on loopback ports.
type Cluster struct {
	// Addrs are the masters' host:port.
	Addrs []string
	// Nodes are the masters, which a test may kill, pause or resume.
	Nodes []*Server
	// Prefix is unique to this test.
	Prefix string
	t      testing.TB
}

// StartCluster starts 3 masters in cluster mode, assigns the 16384 slots with
// redis-cli --cluster create and waits for cluster_state:ok. Everything is
// stopped when the test ends.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		unavailable(t, "redis-cli is not on PATH")
	}
	c := &Cluster{Prefix: uniquePrefix(t), t: t}
	for i := 0; i < 3; i++ {
		busPort := FreePort(t)
		n := Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000", "--cluster-port", strconv.Itoa(busPort))
		c.Nodes = append(c.Nodes, n)
		c.Addrs = append(c.Addrs, n.Addr)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.Command("redis-cli", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(readyTimeout)
	for _, addr := range c.Addrs {
		cl := redis.NewClient(&redis.Options{Addr: addr})
		for {
			info, err := cl.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				cl.Close()
				t.Fatalf("redistest: cluster not ok after %s: %v %s", readyTimeout, err, info)
			}
			time.Sleep(50 * time.Millisecond) // polling for readiness
		}
		cl.Close()
	}
	return c
}

// Client returns a cluster client, closed when the test ends.
func (c *Cluster) Client() *redis.ClusterClient {
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	c.t.Cleanup(func() { _ = cl.Close() })
	return cl
}
