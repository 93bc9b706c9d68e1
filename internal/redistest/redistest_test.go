package redistest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
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
