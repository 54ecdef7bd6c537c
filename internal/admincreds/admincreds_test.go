package admincreds

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const tok = "0123456789abcdef0123456789abcdef" // 32 bytes

func TestParse(t *testing.T) {
	cs, err := Parse([]byte("# comment\n\nadmin " + tok + "\n  ci-bot\t" + tok + "x  \n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 || cs[0] != (Credential{"admin", tok}) || cs[1] != (Credential{"ci-bot", tok + "x"}) {
		t.Fatalf("parsed %+v", cs)
	}
	for _, bad := range []string{
		"admin",                                 // no token
		"admin " + tok + " extra",               // three fields
		"admin short",                           // token too short
		"ad/min " + tok,                         // bad name
		strings.Repeat("n", 65) + " " + tok,     // name too long
		"admin " + strings.Repeat("t", 257),     // token too long
		"admin " + tok + "\nadmin " + tok + "x", // duplicate name
		"a " + tok + "\nb " + tok,               // shared token
		"admin " + tok[:31] + "\x7f",            // unprintable token
		strings.Repeat("#", MaxFileSize+1),      // too big
	} {
		if _, err := Parse([]byte(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%.40q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestEnsureCreatesOnceWithPrivateMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "admin.creds")
	created, err := Ensure(path, "admin")
	if err != nil || !created {
		t.Fatalf("Ensure = %v, %v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	first, err := Read(path)
	if err != nil || len(first) != 1 || first[0].Name != "admin" || len(first[0].Token) != 64 {
		t.Fatalf("Read = %+v, %v", first, err)
	}
	created, err = Ensure(path, "admin")
	if err != nil || created {
		t.Fatalf("second Ensure = %v, %v; want the file kept", created, err)
	}
	again, _ := Read(path)
	if again[0] != first[0] {
		t.Fatal("second Ensure changed the credential")
	}
	if err := os.WriteFile(path, []byte("# nothing\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(path); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Read of an empty file = %v, want ErrInvalid", err)
	}
}

func TestCheck(t *testing.T) {
	s := NewSet([]Credential{{"a", tok + "a"}, {"b", tok + "b"}})
	if name, ok := s.Check(tok + "b"); !ok || name != "b" {
		t.Fatalf("Check(b) = %q, %v", name, ok)
	}
	for _, wrong := range []string{"", tok, tok + "c", tok + "a "} {
		if name, ok := s.Check(wrong); ok {
			t.Fatalf("Check(%q) accepted as %q", wrong, name)
		}
	}
}

func TestBearerToken(t *testing.T) {
	for in, want := range map[string]string{"Bearer abc": "abc", "bearer  abc ": "abc", "BEARER x": "x"} {
		if got, ok := BearerToken(in); !ok || got != want {
			t.Errorf("BearerToken(%q) = %q, %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "Bearer", "Bearer ", "Bearer   ", "Basic abc", "abc"} {
		if got, ok := BearerToken(in); ok {
			t.Errorf("BearerToken(%q) = %q, want none", in, got)
		}
	}
}

func TestPick(t *testing.T) {
	one := []Credential{{"a", tok}}
	two := []Credential{{"a", tok}, {"b", tok}}
	if c, err := Pick(one, ""); err != nil || c.Name != "a" {
		t.Fatalf("Pick(one) = %v, %v", c, err)
	}
	if _, err := Pick(two, ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Pick(two, \"\") = %v, want ErrInvalid", err)
	}
	if c, err := Pick(two, "b"); err != nil || c.Name != "b" {
		t.Fatalf("Pick(two, b) = %v, %v", c, err)
	}
	if _, err := Pick(two, "c"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Pick(two, c) = %v, want ErrInvalid", err)
	}
}

// FuzzParse: any file content parses or is refused with ErrInvalid, and
// every parsed credential checks against its own token.
func FuzzParse(f *testing.F) {
	f.Add([]byte("admin " + tok + "\n"))
	f.Add([]byte("# c\n\nx " + tok + "\ny " + tok + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cs, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		s := NewSet(cs)
		for _, c := range cs {
			if name, ok := s.Check(c.Token); !ok || name != c.Name {
				t.Fatalf("credential %q does not check: %q %v", c.Name, name, ok)
			}
		}
	})
}
