package coord

import (
	"regexp"
	"testing"
)

// kvKeyRE is what a NATS KV key (and so a subject token run) may hold.
var kvKeyRE = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)

// FuzzLimitKey checks that any limit key, whatever a caller put in it,
// becomes a valid KV key of fixed size: never a subject the server
// refuses (a long one closed the connection: issue 11), never a wildcard,
// never an empty token.
func FuzzLimitKey(f *testing.F) {
	for _, seed := range []string{"", "tenant", "a.b", "*", ">", "a b", "\x00", string(make([]byte, 5000))} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, key string) {
		k := limitKey(key)
		if len(k) != 44 || !kvKeyRE.MatchString(k) {
			t.Fatalf("limitKey(%q) = %q: not a 44-byte KV key", key, k)
		}
		if k2 := limitKey(key); k2 != k {
			t.Fatalf("limitKey is not deterministic: %q then %q", k, k2)
		}
	})
}
