package admincreds

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// MaxFileSize bounds a credentials file.
const MaxFileSize = 64 << 10

// Bounds of a credential's parts.
const (
	MaxNameLen  = 64
	MinTokenLen = 32
	MaxTokenLen = 256
)

// ErrInvalid reports a malformed credentials file or credential.
var ErrInvalid = errors.New("admincreds: invalid credentials")

// Credential is one named bearer token.
type Credential struct {
	Name  string
	Token string
}

// Set is a parsed credentials file, checked in constant time per entry.
type Set struct {
	names []string
	sums  [][sha256.Size]byte
}

// Parse reads a credentials file's content. Duplicate names and tokens
// are refused: a write's recorded writer must name one credential.
func Parse(data []byte) ([]Credential, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrInvalid, MaxFileSize)
	}
	var out []Credential
	seen := map[string]bool{}
	tokens := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 1024), MaxFileSize)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Fields(text)
		if len(f) != 2 {
			return nil, fmt.Errorf("%w: line %d: want a name and a token separated by spaces", ErrInvalid, line)
		}
		c := Credential{Name: f[0], Token: f[1]}
		if err := c.check(); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("%w: line %d: the name %q is used twice", ErrInvalid, line, c.Name)
		}
		if tokens[c.Token] {
			return nil, fmt.Errorf("%w: line %d: %s's token is another credential's too", ErrInvalid, line, c.Name)
		}
		seen[c.Name], tokens[c.Token] = true, true
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return out, nil
}

// check validates a credential's name and token.
func (c Credential) check() error {
	if c.Name == "" || len(c.Name) > MaxNameLen {
		return fmt.Errorf("%w: a name is 1 to %d bytes", ErrInvalid, MaxNameLen)
	}
	for _, r := range c.Name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._@-", r)) {
			return fmt.Errorf("%w: the name %q may hold only letters, digits and . _ @ -", ErrInvalid, c.Name)
		}
	}
	if len(c.Token) < MinTokenLen || len(c.Token) > MaxTokenLen {
		return fmt.Errorf("%w: %s's token is %d bytes, want %d to %d", ErrInvalid, c.Name, len(c.Token), MinTokenLen, MaxTokenLen)
	}
	for i := 0; i < len(c.Token); i++ {
		if b := c.Token[i]; b <= ' ' || b > '~' {
			return fmt.Errorf("%w: %s's token may hold only printable ASCII without spaces", ErrInvalid, c.Name)
		}
	}
	return nil
}

// Read reads and parses the credentials file at path; a file with no
// credential is an error.
func Read(path string) ([]Credential, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	cs, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(cs) == 0 {
		return nil, fmt.Errorf("%w: %s holds no credential", ErrInvalid, path)
	}
	return cs, nil
}

// Ensure creates path with one new credential named name (a random
// 256-bit token, file mode 0600, directories 0700) unless the file
// exists. It reports whether it created the file.
func Ensure(path, name string) (created bool, err error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return false, err
	}
	c := Credential{Name: name, Token: hex.EncodeToString(raw[:])}
	if err := c.check(); err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	_, err = fmt.Fprintf(f, "# Concord admin credentials: one \"name token\" per line.\n# The name is recorded as the writer of each change.\n%s %s\n", c.Name, c.Token)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return false, err
	}
	return true, nil
}

// NewSet indexes credentials for Check.
func NewSet(cs []Credential) *Set {
	s := &Set{}
	for _, c := range cs {
		s.names = append(s.names, c.Name)
		s.sums = append(s.sums, sha256.Sum256([]byte(c.Token)))
	}
	return s
}

// Check returns the name of the credential whose token is token. Every
// entry is compared, in constant time, whatever matches.
func (s *Set) Check(token string) (name string, ok bool) {
	sum := sha256.Sum256([]byte(token))
	for i := range s.sums {
		if subtle.ConstantTimeCompare(sum[:], s.sums[i][:]) == 1 && !ok {
			name, ok = s.names[i], true
		}
	}
	return name, ok
}

// BearerToken returns the token of an Authorization header value of the
// form "Bearer <token>" (the scheme is case-insensitive).
func BearerToken(header string) (string, bool) {
	const prefix = "bearer "
	if len(header) <= len(prefix) || !strings.EqualFold(header[:len(prefix)], prefix) {
		return "", false
	}
	t := strings.TrimSpace(header[len(prefix):])
	return t, t != ""
}

// Pick returns the credential named name, or the only one when name is "".
func Pick(cs []Credential, name string) (Credential, error) {
	if name == "" {
		if len(cs) == 1 {
			return cs[0], nil
		}
		return Credential{}, fmt.Errorf("%w: %d credentials in the file; say which one to use", ErrInvalid, len(cs))
	}
	for _, c := range cs {
		if c.Name == name {
			return c, nil
		}
	}
	return Credential{}, fmt.Errorf("%w: no credential named %q", ErrInvalid, name)
}
