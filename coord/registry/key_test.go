package registry

import (
	"strings"
	"testing"

	"github.com/concordrpc/concord/coord/internal/condkv"
)

func TestEscapeToken(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"greeter", "greeter"},
		{"greeter.v1.Greeter", "greeter=2Ev1=2EGreeter"},
		{"a-b_c", "a-b_c"},
		{"x=y", "x=3Dy"},
		{"sp ace/é", "sp=20ace=2F=C3=A9"},
		{"*.>", "=2A=2E=3E"},
	} {
		if got := escapeToken(tc.in); got != tc.want {
			t.Errorf("escapeToken(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got, ok := unescapeToken(tc.want); !ok || got != tc.in {
			t.Errorf("unescapeToken(%q) = %q, %v", tc.want, got, ok)
		}
	}
	for _, bad := range []string{"", "a.b", "=", "=2", "=2e", "=41", "a=ZZ", "é"} {
		if got, ok := unescapeToken(bad); ok {
			t.Errorf("unescapeToken(%q) = %q, want rejected", bad, got)
		}
	}
	if s, id, ok := splitKey(instanceKey("a.b", "c.d")); !ok || s != "a.b" || id != "c.d" {
		t.Errorf("splitKey(instanceKey) = %q, %q, %v", s, id, ok)
	}
	// A service's pattern matches none of the keys of a service it is a
	// prefix of.
	if p, k := servicePattern("a"), instanceKey("a.b", "x"); strings.HasPrefix(k, strings.TrimSuffix(p, "*")) {
		t.Errorf("pattern %q matches key %q", p, k)
	}
}

// FuzzEscapeToken checks that escaping is a canonical, injective mapping
// onto valid single key tokens, and that decoding untrusted keys never
// panics.
func FuzzEscapeToken(f *testing.F) {
	for _, s := range []string{"", "greeter.v1.Greeter", "=2E", "a=ZZ", "\x00\xff", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if u, ok := unescapeToken(s); ok && escapeToken(u) != s {
			t.Fatalf("unescapeToken(%q) = %q, which escapes to %q", s, u, escapeToken(u))
		}
		if s == "" {
			return
		}
		e := escapeToken(s)
		for i := 0; i < len(e); i++ {
			if !plain(e[i]) && e[i] != '=' {
				t.Fatalf("escapeToken(%q) = %q has byte %q", s, e, e[i])
			}
		}
		if u, ok := unescapeToken(e); !ok || u != s {
			t.Fatalf("round trip of %q: %q, %v", s, u, ok)
		}
		_, _, _ = splitKey(s)
		// Any service name and instance ID that Register accepts make a
		// key the conditional KV layer accepts (no subject break-out).
		if checkName("service", s) == nil {
			if err := condkv.CheckKey(instanceKey(s, s)); err != nil {
				t.Fatalf("instanceKey(%q, %q): %v", s, s, err)
			}
		}
	})
}

// FuzzDecodeRegistration checks that a record read from the bucket (which
// anything able to write there controls) never panics the decoder, and
// that whatever it accepts is a registration Register would have written.
func FuzzDecodeRegistration(f *testing.F) {
	f.Add([]byte(`{"service":"s","id":"i","base_url":"http://127.0.0.1:1","metadata":{"k":"v"}}`), "s", "i")
	f.Add([]byte(`{"service":"s","id":"i","base_url":"javascript:alert(1)"}`), "s", "i")
	f.Add([]byte(`{"service":"s","id":"i","base_url":"http://h","metadata":{"k":null}}`), "s", "i")
	f.Add([]byte(`[]`), "", "")
	f.Fuzz(func(t *testing.T, data []byte, service, id string) {
		g, err := decodeRegistration(data, service, id)
		if err != nil {
			return
		}
		if g.Service != service || g.ID != id {
			t.Fatalf("record under %q/%q accepted as %q/%q", service, id, g.Service, g.ID)
		}
		if err := g.check(); err != nil {
			t.Fatalf("accepted a record Register refuses: %v", err)
		}
		b, err := g.encode()
		if err != nil {
			t.Fatalf("accepted record does not re-encode: %v", err)
		}
		if _, err := decodeRegistration(b, service, id); err != nil {
			t.Fatalf("re-encoded record refused: %v", err)
		}
	})
}
