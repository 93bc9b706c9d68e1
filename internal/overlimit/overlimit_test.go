package overlimit

import (
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCacheRemembersUntilThenForgets(t *testing.T) {
	c := New(0)
	now := time.Unix(100, 0)
	c.Reject("u", now.Add(time.Second), now)
	if _, ok := c.Until("u", now.Add(999*time.Millisecond)); !ok {
		t.Fatal("forgot before until")
	}
	if _, ok := c.Until("u", now.Add(time.Second)); ok {
		t.Fatal("remembered at until")
	}
	if _, ok := c.Until("v", now); ok {
		t.Fatal("an unknown key is rejected")
	}
}

func TestCacheIsBounded(t *testing.T) {
	c := New(320)
	now := time.Unix(100, 0)
	for i := 0; i < 10_000; i++ {
		c.Reject(fmt.Sprint(i), now.Add(time.Hour), now)
	}
	n := 0
	for i := range c.shard {
		n += len(c.shard[i].m)
	}
	if n > 320 {
		t.Fatalf("holds %d keys, bound 320", n)
	}
}
