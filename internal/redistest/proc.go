package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Proc is a redis-server process started by Launch. Programs that have no
// testing.TB (benchmarks) use it directly; Server is built on it.
type Proc struct {
	Addr   string
	dir    string
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has exited and been reaped
}

// Launch starts redis-server on 127.0.0.1:port, keeping nothing on disk and
// its log in dir, and waits until it answers PING. It fails as soon as the
// process exits (a taken port, a bad argument), with the log.
func Launch(dir string, port int, extraArgs ...string) (*Proc, error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--daemonize", "no", "--protected-mode", "no", "--logfile", filepath.Join(dir, "redis.log"),
	}, extraArgs...)
	cmd := exec.Command("redis-server", args...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	p := &Proc{Addr: addr, dir: dir, cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	if err := p.waitReady(); err != nil {
		p.Stop()
		log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
		return nil, fmt.Errorf("%w; log:\n%s", err, log)
	}
	return p, nil
}

func (p *Proc) waitReady() error {
	c := redis.NewClient(&redis.Options{Addr: p.Addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		// Any reply from the server means it is up: a server started with
		// --requirepass answers NOAUTH to an unauthenticated PING.
		if err == nil || isReply(err) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s not ready after %s: %w", p.Addr, readyTimeout, err)
		}
		select {
		case <-p.exited:
			return fmt.Errorf("redis-server on %s exited", p.Addr)
		case <-time.After(20 * time.Millisecond): // polling for readiness, not settling
		}
	}
}

// isReply reports whether err is an error reply from a running server (such
// as NOAUTH) rather than a failure to reach it.
func isReply(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.HasPrefix(err.Error(), "NOAUTH")
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// Stop kills the process (resuming it first if it was paused) and waits
// until it has exited. It is idempotent.
func (p *Proc) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	_ = p.cmd.Process.Kill()
	<-p.exited
}
