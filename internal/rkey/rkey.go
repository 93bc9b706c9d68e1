// Package rkey builds sluice's Redis keys, "sluice:{<escaped name>}:<kind>":
// one hash tag per name, so that every key one script touches lands in one
// Redis Cluster slot, and an escaping that no name can break out of.
package rkey

// Key returns "sluice:{" + Escape(name) + "}:" + kind.
func Key(name, kind string) string {
	return "sluice:{" + Escape(name) + "}:" + kind
}

// Escape makes s safe inside the hash tag of a key: every byte outside
// [A-Za-z0-9._-] becomes %XX, so the result holds no brace, colon, percent
// sign, newline or space, and distinct inputs stay distinct (the encoding is
// injective). It does not allocate when s needs no escaping.
func Escape(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !safe(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if safe(c) {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	return string(b)
}

func safe(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
}
