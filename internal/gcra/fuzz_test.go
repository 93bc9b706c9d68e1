package gcra

import (
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// noScripter satisfies redis.Scripter for stores whose keys are built but
// never sent.
type noScripter struct{ redis.Scripter }

// hashTag is the part of key Redis Cluster hashes: the bytes between the
// first '{' and the first '}' after it, when not empty; else the whole key.
func hashTag(key string) string {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return key
	}
	j := strings.IndexByte(key[i+1:], '}')
	if j <= 0 {
		return key
	}
	return key[i+1 : i+1+j]
}

// unescapeKey inverts rkey.Escape, failing on anything it cannot emit.
func unescapeKey(t *testing.T, s string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			if !safe(c) {
				t.Fatalf("escaped %q holds the unsafe byte %q", s, c)
			}
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(s) {
			t.Fatalf("escaped %q ends in a truncated escape", s)
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil || safe(byte(v)) || strings.ToUpper(s[i+1:i+3]) != s[i+1:i+3] {
			t.Fatalf("escaped %q holds the escape %q, which rkey.Escape never emits", s, s[i:i+3])
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String()
}

// checkKey asserts the shape of a state key: sluice:{<prefix>:<key>}:gcra,
// one hash tag, the one intended, no line break, and prefix and key
// recoverable from it.
func checkKey(t *testing.T, built, prefix, key string) {
	t.Helper()
	if strings.ContainsAny(built, "\r\n") {
		t.Fatalf("key %q holds a line break", built)
	}
	if strings.Count(built, "{") != 1 || strings.Count(built, "}") != 1 {
		t.Fatalf("key %q holds more than one brace pair", built)
	}
	if !strings.HasPrefix(built, "sluice:{") || !strings.HasSuffix(built, "}:gcra") {
		t.Fatalf("key %q is not sluice:{...}:gcra", built)
	}
	tag := hashTag(built)
	if want := built[len("sluice:{") : len(built)-len("}:gcra")]; tag != want {
		t.Fatalf("key %q hashes on %q, want %q", built, tag, want)
	}
	p, k, ok := strings.Cut(tag, ":")
	if !ok || strings.Contains(k, ":") {
		t.Fatalf("hash tag %q is not <prefix>:<key> with one colon", tag)
	}
	if got := unescapeKey(t, p); got != prefix {
		t.Fatalf("key %q names prefix %q, want %q", built, got, prefix)
	}
	if got := unescapeKey(t, k); got != key {
		t.Fatalf("key %q names user %q, want %q", built, got, key)
	}
}

// FuzzRedisKey: for any prefixes and user keys, the Redis key holds exactly
// one hash tag, the one sluice intends (the whole <prefix>:<key>, so the
// script's keys share a slot), no line break, decodes back to its prefix and
// user key, and two distinct (prefix, user key) pairs never share a key. So a
// user key with braces, colons or newlines cannot reach another user's or
// another limiter's state.
func FuzzRedisKey(f *testing.F) {
	for _, s := range [][4]string{
		{"user_rate", "alice", "user_rate", "bob"},
		{"user_rate", "a:b", "user_rate:a", "b"},
		{"p", "}:gcra\nsluice:{other", "p", "other"},
		{"p", "{victim}", "p", "victim"},
		{"a", "%3A", "a", ":"},
		{"", "", "", ":"},
		{"ginapp_user", "default:1000ms:10:key", "ginapp_user:default", "1000ms:10:key"},
		{"p\r\n", "\x00\xff", "p", "\u00e9"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, p1, k1, p2, k2 string) {
		key1 := NewRedisStore(noScripter{}, p1, 0).Key(k1)
		key2 := NewRedisStore(noScripter{}, p2, 0).Key(k2)
		checkKey(t, key1, p1, k1)
		checkKey(t, key2, p2, k2)
		if (p1 != p2 || k1 != k2) && key1 == key2 {
			t.Fatalf("(%q, %q) and (%q, %q) share the key %q", p1, k1, p2, k2, key1)
		}
	})
}

// safe is the set of bytes rkey.Escape leaves as they are.
func safe(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
}
