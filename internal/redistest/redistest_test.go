package redistest

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/sluice-go/sluice/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNewAnswers(t *testing.T) {
	s := New(t)
	c := s.Client()
	ctx := context.Background()
	if err := c.Set(ctx, s.Key("k"), "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if v := c.Get(ctx, s.Key("k")).Val(); v != "v" {
		t.Fatalf("got %q, want v", v)
	}
}

func TestKillPauseResumeRestart(t *testing.T) {
	s := Start(t)
	c := redis.NewClient(&redis.Options{Addr: s.Addr, ReadTimeout: 200 * time.Millisecond,
		WriteTimeout: 200 * time.Millisecond, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	s.Pause()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered while paused")
	}
	s.Resume()
	c2 := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c2.Close()
	if err := c2.Ping(ctx).Err(); err != nil {
		t.Fatalf("after resume: %v", err)
	}
	s.Kill()
	if err := c2.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered after kill")
	}
	s.Restart()
	if err := c2.Ping(ctx).Err(); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster start is slow")
	}
	cl := StartCluster(t)
	c := cl.Client()
	ctx := context.Background()
	// Keys in different slots land on different masters.
	seen := map[string]bool{}
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		if err := c.Set(ctx, cl.Prefix+k, "1", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		n, err := c.MasterForKey(ctx, cl.Prefix+k)
		if err != nil {
			t.Fatal(err)
		}
		seen[n.Options().Addr] = true
	}
	if len(seen) < 2 {
		t.Fatalf("keys landed on %d masters, want several", len(seen))
	}
	info, err := c.ClusterInfo(ctx).Result()
	if err != nil || !strings.Contains(info, "cluster_known_nodes:3") {
		t.Fatalf("cluster info: %v %s", err, info)
	}
}

// TestClusterWithReplicasFailsOver: killing the master of a key hands its
// slots to the replica, which serves the key's replicated value.
func TestClusterWithReplicasFailsOver(t *testing.T) {
	testenv.Long(t) // six servers and a failover: about 12s
	cl := StartClusterWithReplicas(t)
	c := cl.Client()
	ctx := context.Background()
	info, err := c.ClusterInfo(ctx).Result()
	if err != nil || !strings.Contains(info, "cluster_known_nodes:6") || !strings.Contains(info, "cluster_size:3") {
		t.Fatalf("cluster info: %v %s", err, info)
	}
	key := cl.Prefix + "k"
	victim := cl.MasterOf(key)
	// Written on the master, acknowledged by its replica before it dies.
	direct := redis.NewClient(&redis.Options{Addr: victim.Addr, PoolSize: 1})
	defer direct.Close()
	if err := direct.Set(ctx, key, "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := direct.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT = %d, %v; want the replica's acknowledgement", n, err)
	}
	victim.Kill()
	cl.WaitFailover(victim)
	if now := cl.MasterOf(key); now == victim {
		t.Fatalf("%s still serves %q after failover", victim.Addr, key)
	}
	v, err := cl.Client().Get(ctx, key).Result()
	if err != nil || v != "v" {
		t.Fatalf("after failover GET = %q, %v; want the replicated value", v, err)
	}
}

// TestLaunchWithPassword: a server started with --requirepass answers NOAUTH
// to the readiness PING; Launch must take that as ready, not wait out its
// timeout and fail (which, through Start, skipped such tests outside CI).
func TestLaunchWithPassword(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not on PATH")
	}
	p, err := Launch(t.TempDir(), FreePort(t), "--requirepass", "pw-7f3a")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	c := redis.NewClient(&redis.Options{Addr: p.Addr, Password: "pw-7f3a"})
	defer c.Close()
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("PING with the password: %v", err)
	}
}
