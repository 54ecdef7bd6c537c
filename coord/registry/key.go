package registry

import (
	"fmt"
	"strings"
)

// maxNameLen caps service names and instance IDs, in bytes, so a key
// (each byte may take three after escaping) stays far below NATS limits.
const maxNameLen = 255

// checkName reports whether s can be a service name or an instance ID.
func checkName(what, s string) error {
	if s == "" || len(s) > maxNameLen {
		return fmt.Errorf("%w: %s %q: use 1 to %d bytes", ErrInvalidRegistration, what, s, maxNameLen)
	}
	return nil
}

// escapeToken maps any string to one KV key token: letters, digits, '-'
// and '_' stay as they are; every other byte, '.' and '=' included, becomes
// "=XX" (upper-case hex). The mapping is injective, so distinct services
// never share a key prefix, and keys stay readable for common names
// ("greeter.v1.Greeter" -> "greeter=2Ev1=2EGreeter").
func escapeToken(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !plain(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if plain(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('=')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xF])
	}
	return b.String()
}

// unescapeToken inverts escapeToken. It reports false for a token that
// escapeToken cannot have produced.
func unescapeToken(t string) (string, bool) {
	if t == "" {
		return "", false
	}
	if !strings.Contains(t, "=") {
		for i := 0; i < len(t); i++ {
			if !plain(t[i]) {
				return "", false
			}
		}
		return t, true
	}
	var b strings.Builder
	b.Grow(len(t))
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case plain(c):
			b.WriteByte(c)
		case c == '=' && i+2 < len(t):
			hi, ok1 := unhex(t[i+1])
			lo, ok2 := unhex(t[i+2])
			if !ok1 || !ok2 || plain(hi<<4|lo) {
				return "", false // not canonical: escapeToken never escapes a plain byte
			}
			b.WriteByte(hi<<4 | lo)
			i += 2
		default:
			return "", false
		}
	}
	return b.String(), true
}

func plain(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// instanceKey is the KV key of a service's instance: "<service>.<id>",
// each escaped into one token.
func instanceKey(service, id string) string {
	return escapeToken(service) + "." + escapeToken(id)
}

// servicePattern matches the keys of every instance of service.
func servicePattern(service string) string { return escapeToken(service) + ".*" }

// splitKey inverts instanceKey.
func splitKey(key string) (service, id string, ok bool) {
	s, i, found := strings.Cut(key, ".")
	if !found {
		return "", "", false
	}
	if service, ok = unescapeToken(s); !ok {
		return "", "", false
	}
	if id, ok = unescapeToken(i); !ok {
		return "", "", false
	}
	return service, id, true
}
