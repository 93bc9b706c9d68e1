package fleet

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/sluice-go/sluice/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNewClientIsTight(t *testing.T) {
	c := NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	o := c.Options()
	if o.DialTimeout != 50*time.Millisecond || o.ReadTimeout != 50*time.Millisecond ||
		o.WriteTimeout != 50*time.Millisecond || o.PoolTimeout != 20*time.Millisecond ||
		o.MaxRetries != 0 || !o.ContextTimeoutEnabled {
		t.Errorf("not tight: dial %s read %s write %s pool %s retries %d ctx %v", o.DialTimeout, o.ReadTimeout,
			o.WriteTimeout, o.PoolTimeout, o.MaxRetries, o.ContextTimeoutEnabled)
	}
	// What the caller set is kept.
	c2 := NewClient(&redis.Options{Addr: "127.0.0.1:1", ReadTimeout: time.Second, MaxRetries: 2})
	defer c2.Close()
	if o := c2.Options(); o.ReadTimeout != time.Second || o.MaxRetries != 2 || o.DialTimeout != DialTimeout {
		t.Errorf("caller's values not kept: read %s retries %d dial %s", o.ReadTimeout, o.MaxRetries, o.DialTimeout)
	}
}

func TestNewClusterAndUniversalAreTight(t *testing.T) {
	cc := NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	defer cc.Close()
	if o := cc.Options(); o.ReadTimeout != ReadTimeout || o.PoolTimeout != PoolTimeout || o.MaxRetries > 0 || !o.ContextTimeoutEnabled {
		t.Errorf("cluster not tight: %+v", o)
	}
	uc := NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:1"}})
	defer uc.Close()
	c, ok := uc.(*redis.Client)
	if !ok {
		t.Fatalf("one address: got %T, want *redis.Client", uc)
	}
	if o := c.Options(); o.ReadTimeout != ReadTimeout || o.MaxRetries != 0 || !o.ContextTimeoutEnabled {
		t.Errorf("universal not tight: %+v", o)
	}
	uc2 := NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}})
	defer uc2.Close()
	if cc2, ok := uc2.(*redis.ClusterClient); !ok || cc2.Options().WriteTimeout != WriteTimeout {
		t.Errorf("two addresses: got %T, want a tight *redis.ClusterClient", uc2)
	}
}

func TestParseURL(t *testing.T) {
	c, err := ParseURL("redis://:pw@127.0.0.1:1/2?read_timeout=2s")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if o := c.Options(); o.DB != 2 || o.Password != "pw" || o.ReadTimeout != 2*time.Second || o.DialTimeout != DialTimeout || o.MaxRetries != 0 {
		t.Errorf("ParseURL: db %d read %s dial %s retries %d", o.DB, o.ReadTimeout, o.DialTimeout, o.MaxRetries)
	}
	if _, err := ParseURL("http://nope"); err == nil {
		t.Error("ParseURL accepted an http URL")
	}
}

// TestStalledRedisCostsTensOfMilliseconds: the point of the package. A
// SIGSTOPped redis-server makes a default go-redis client wait its 3 s read
// timeout; this client gives up within its 50 ms (bound generous for a
// loaded machine).
func TestStalledRedisCostsTensOfMilliseconds(t *testing.T) {
	srv := redistest.Start(t)
	c := NewClient(&redis.Options{Addr: srv.Addr})
	defer c.Close()
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redis not answering before the pause: %v", err)
	}
	srv.Pause()
	defer srv.Resume()
	start := time.Now()
	err := c.Ping(context.Background()).Err()
	took := time.Since(start)
	if err == nil {
		t.Fatal("a paused Redis answered")
	}
	if took > time.Second {
		t.Errorf("a call to a paused Redis took %s, want about 50ms (bound 1s)", took)
	}
}

func TestNilOptionsPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"NewClient":          func() { NewClient(nil) },
		"NewClusterClient":   func() { NewClusterClient(nil) },
		"NewUniversalClient": func() { NewUniversalClient(nil) },
	} {
		func() {
			defer func() {
				if r, _ := recover().(string); r != "fleet: "+name+": nil options" {
					t.Errorf("%s(nil) panicked with %q", name, r)
				}
			}()
			f()
		}()
	}
}
