package ttlmap

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func set(m *Map, key string, d, now int64) {
	m.Update(key, now, func(int64) (int64, bool) { return d, true })
}

func TestDeadlinesAndExpiry(t *testing.T) {
	m := New(ForKeys(100))
	set(m, "a", 10, 0)
	if d, ok := m.Get("a", 9); !ok || d != 10 {
		t.Fatalf("Get before the deadline = %d, %v", d, ok)
	}
	if _, ok := m.Get("a", 10); ok {
		t.Fatal("an entry at its deadline is the same as none")
	}
	m.Update("a", 10, func(d int64) (int64, bool) {
		if d != 0 {
			t.Fatalf("an expired entry reads %d, want 0", d)
		}
		return 0, false
	})
	if m.Len() != 0 || m.Bytes() != 0 {
		t.Fatalf("an expired entry looked at and not stored stays: %d entries, %d bytes", m.Len(), m.Bytes())
	}
	set(m, "b", 10, 0)
	m.Delete("b")
	if m.Len() != 0 || m.Bytes() != 0 {
		t.Fatalf("Delete left %d entries, %d bytes", m.Len(), m.Bytes())
	}
}

// A digest and a key that equals it never share an entry, and long keys
// differing only at the end keep distinct entries.
func TestLongKeysAreHashedApart(t *testing.T) {
	m := New(ForKeys(100))
	long := strings.Repeat("x", 5000)
	sum := sha256.Sum256([]byte(long))
	keys := []string{long, long + "y", string(sum[:]), strings.Repeat("z", MaxKeyBytes), strings.Repeat("z", MaxKeyBytes+1)}
	for i, k := range keys {
		set(m, k, int64(100+i), 0)
	}
	for i, k := range keys {
		if d, ok := m.Get(k, 0); !ok || d != int64(100+i) {
			t.Fatalf("key %d (%d bytes) reads %d, %v: shares an entry", i, len(k), d, ok)
		}
	}
	if b := m.Bytes(); b > int64(len(keys))*MaxEntryBytes {
		t.Fatalf("%d keys hold %d bytes, want at most %d", len(keys), b, len(keys)*MaxEntryBytes)
	}
}

// Whatever the mix of key lengths, the accounted bytes stay within the budget
// and a full map keeps taking new keys.
func TestBytesStayWithinBudget(t *testing.T) {
	m := New(ForKeys(640))
	for i := 0; i < 20_000; i++ {
		set(m, fmt.Sprintf("%d%s", i, strings.Repeat("k", i%200)), 1<<62, 0)
		if i%1000 == 0 && m.Bytes() > ForKeys(640) {
			t.Fatalf("after %d keys: %d bytes, budget %d", i, m.Bytes(), ForKeys(640))
		}
	}
	if m.Bytes() > ForKeys(640) || m.Len() < 640 {
		t.Fatalf("%d keys, %d bytes; want room for 640 within %d bytes", m.Len(), m.Bytes(), ForKeys(640))
	}
	if _, ok := m.Get("19999"+strings.Repeat("k", 19999%200), 0); !ok {
		t.Fatal("the newest key was not kept")
	}
}
