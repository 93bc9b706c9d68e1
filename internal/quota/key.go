package quota

import "strings"

// Key kinds.
const (
	KindRequests = "req"
	KindCost     = "cost"
	KindCooldown = "cooldown"
	KindMembers  = "members"
)

// Key returns "sluice:{<escaped name>}:<kind>". The name is escaped so that no
// name can alter the hash tag or collide with another name: every byte other
// than [A-Za-z0-9._-] becomes %XX (so '{', '}', ':', '%', spaces and newlines
// never appear raw), which is injective.
func Key(name, kind string) string {
	return "sluice:{" + Escape(name) + "}:" + kind
}

// Escape percent-encodes name as described on Key.
func Escape(name string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(name))
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}
