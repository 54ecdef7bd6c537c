package config

import (
	"encoding/json"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/concordrpc/concord/coord/internal/condkv"
)

// Limits on what a version holds.
const (
	// MaxNameLen bounds a config name, in bytes.
	MaxNameLen = 256
	// MaxWriterLen bounds a writer name, in bytes.
	MaxWriterLen = 256
	// MaxValueSize bounds a value's protobuf encoding, in bytes: a version
	// is one JetStream message, whose default limit is 1 MiB.
	MaxValueSize = 512 << 10
	// maxEnvelopeSize bounds a stored envelope: the value in base64 plus
	// the other fields.
	maxEnvelopeSize = MaxValueSize*4/3 + 4<<10
)

// Entry is one stored version of a config, as Store reads it.
type Entry struct {
	// Name is the config's name.
	Name string
	// Version is the version's JetStream stream sequence: it grows with
	// every write to any config, so versions of one name are increasing
	// but not consecutive.
	Version uint64
	// Type is the full name of the value's message type.
	Type protoreflect.FullName
	// Value is the value's protobuf binary encoding.
	Value []byte
	// Writer is who wrote the version, as the writer said (the admin
	// credential's name).
	Writer string
	// Time is when the writer wrote it, by the writer's clock.
	Time time.Time
}

// Unmarshal decodes the entry's value into m, which must be of the
// entry's type (ErrInvalid otherwise).
func (e *Entry) Unmarshal(m proto.Message) error {
	if got := m.ProtoReflect().Descriptor().FullName(); got != e.Type {
		return fmt.Errorf("%w: %s version %d holds a %s, not a %s", ErrInvalid, e.Name, e.Version, e.Type, got)
	}
	if err := proto.Unmarshal(e.Value, m); err != nil {
		return fmt.Errorf("%w: %s version %d: %w", ErrCorrupt, e.Name, e.Version, err)
	}
	return nil
}

// envelope is the data of a version's message: JSON, so that an operator
// can read it with the nats CLI. The version is the message's sequence
// and is not stored in it (the local copy stores it).
type envelope struct {
	Type    string    `json:"type"`
	Value   []byte    `json:"value"` // protobuf binary, base64 in JSON
	Writer  string    `json:"writer"`
	Time    time.Time `json:"time"`
	Nonce   string    `json:"nonce,omitempty"`   // tells a writer its own write after an unclear outcome
	Version uint64    `json:"version,omitempty"` // only in the local copy
}

func (e *envelope) encode() ([]byte, error) { return json.Marshal(e) }

// decodeEnvelope decodes and checks an envelope read from the bucket or
// the local store: untrusted input, which it refuses with ErrCorrupt
// rather than trusting.
func decodeEnvelope(data []byte) (*envelope, error) {
	if len(data) > maxEnvelopeSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrCorrupt, len(data))
	}
	var e envelope
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if !protoreflect.FullName(e.Type).IsValid() {
		return nil, fmt.Errorf("%w: bad type name %q", ErrCorrupt, e.Type)
	}
	if len(e.Value) > MaxValueSize {
		return nil, fmt.Errorf("%w: value of %d bytes", ErrCorrupt, len(e.Value))
	}
	if err := checkWriter(e.Writer); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return &e, nil
}

func (e *envelope) entry(name string, version uint64) *Entry {
	return &Entry{Name: name, Version: version, Type: protoreflect.FullName(e.Type), Value: e.Value, Writer: e.Writer, Time: e.Time}
}

// CheckName reports whether name is a valid config name: 1 to MaxNameLen
// bytes of letters, digits and "-/_=.", not starting or ending with '.'
// and without "..". Model environments or zones as names ("pricing.eu",
// "prod/pricing"): every name is its own config with its own versions.
func CheckName(name string) error {
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: name of %d bytes, at most %d", ErrInvalid, len(name), MaxNameLen)
	}
	if err := condkv.CheckKey(name); err != nil {
		return fmt.Errorf("%w: name: %w", ErrInvalid, err)
	}
	return nil
}

// checkWriter reports whether w is a valid writer name: 1 to
// MaxWriterLen bytes of printable UTF-8.
func checkWriter(w string) error {
	if w == "" || len(w) > MaxWriterLen || !utf8.ValidString(w) {
		return fmt.Errorf("writer must be 1 to %d bytes of UTF-8", MaxWriterLen)
	}
	for _, r := range w {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("writer has the unprintable %U", r)
		}
	}
	return nil
}
