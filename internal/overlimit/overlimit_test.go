package overlimit

import (
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluice-go/sluice/internal/ttlmap"
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
	if b := c.m.Bytes(); b > ttlmap.ForKeys(320) {
		t.Fatalf("holds %d bytes, bound %d (320 keys of the longest form)", b, ttlmap.ForKeys(320))
	}
	if n := c.Len(); n < 320 {
		t.Fatalf("holds %d keys, room for at least 320", n)
	}
}
