package config

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"buf.build/go/protovalidate"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/internal/condkv"
)

// HistoryDepth is how many versions of each config the bucket keeps
// (coord.BucketConfig's History): older versions are gone for History and
// Rollback.
const HistoryDepth = 16

// readBackWait bounds the read that resolves a write's unclear outcome.
const readBackWait = 5 * time.Second

// Store reads and writes the versions of configs in the cluster's config
// bucket (coord.BucketConfig). Writes are validated and conditional; see
// the package doc. It is safe for concurrent use.
type Store struct {
	b      *condkv.Bucket
	js     jetstream.JetStream
	opts   options
	valid  func() (protovalidate.Validator, error)
	logger *slog.Logger
}

// NewStore returns a Store on node. Options: WithValidator, WithTypes,
// WithLogger.
func NewStore(node *coord.Node, opts ...Option) *Store {
	o := newOptions(opts)
	s := &Store{b: bucketOf(node), js: node.JetStream(), opts: o, logger: o.logger}
	s.valid = sync.OnceValues(func() (protovalidate.Validator, error) {
		if o.validator != nil {
			return o.validator, nil
		}
		return protovalidate.New()
	})
	return s
}

type bucketKey struct{}

// bucketOf returns node's config bucket (one per node, shared).
func bucketOf(node *coord.Node) *condkv.Bucket {
	return node.Shared(bucketKey{}, func() any {
		return condkv.New(node.JetStream(), node.Conn(), coord.BucketConfig)
	}).(*condkv.Bucket)
}

// Validate checks msg against its protovalidate rules. A violation is an
// error wrapping ErrInvalid whose text lists the violations (errors.As
// finds the *protovalidate.ValidationError); rules that fail to compile
// are a plain error.
func (s *Store) Validate(msg proto.Message) error {
	if msg == nil || !msg.ProtoReflect().IsValid() {
		return fmt.Errorf("%w: no value", ErrInvalid)
	}
	v, err := s.valid()
	if err != nil {
		return fmt.Errorf("config: protovalidate unavailable: %w", err)
	}
	err = v.Validate(msg)
	var verr *protovalidate.ValidationError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &verr):
		return fmt.Errorf("%w: %w", ErrInvalid, verr)
	}
	return fmt.Errorf("config: validation failed to run: %w", err)
}

// Get returns the current version of the config name, read from the
// stream's leader. Errors: ErrInvalid (a bad name), ErrNotFound,
// ErrCorrupt, or the read's error.
func (s *Store) Get(ctx context.Context, name string) (*Entry, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	e, _, err := s.last(ctx, name)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	return e, nil
}

// last returns the config's current entry (nil if none) and the sequence
// a conditional write must expect.
func (s *Store) last(ctx context.Context, name string) (*Entry, uint64, error) {
	le, err := s.b.Last(ctx, name)
	if err != nil {
		return nil, 0, fmt.Errorf("config: read %s: %w", name, err)
	}
	if !le.Live {
		return nil, le.Seq, nil
	}
	env, err := decodeEnvelope(le.Data)
	if err != nil {
		return nil, le.Seq, fmt.Errorf("%s version %d: %w", name, le.Seq, err)
	}
	return env.entry(name, le.Seq), le.Seq, nil
}

// Set writes msg as the next version of the config name, only if the
// config's current version is expect (0: only if the config has no
// version), and returns the new version. msg must pass its protovalidate
// rules and, if the config has a version, be of the same message type
// (the first version fixes the type); writer names who writes (the admin
// credential's name, 1 to MaxWriterLen printable bytes).
//
// Errors: ErrInvalid (with the violations) and ErrConflict (naming the
// current version) when nothing was written; another error when the
// bucket could not be reached, or when a write timed out and reading it
// back could not tell whether it was stored.
func (s *Store) Set(ctx context.Context, name string, msg proto.Message, expect uint64, writer string) (uint64, error) {
	if err := CheckName(name); err != nil {
		return 0, err
	}
	if err := checkWriter(writer); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := s.Validate(msg); err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	value, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %w", ErrInvalid, name, err)
	}
	return s.write(ctx, name, msg.ProtoReflect().Descriptor().FullName(), value, expect, writer)
}

// write stores a validated value as name's next version.
func (s *Store) write(ctx context.Context, name string, typ protoreflect.FullName, value []byte, expect uint64, writer string) (uint64, error) {
	if len(value) > MaxValueSize {
		return 0, fmt.Errorf("%w: %s: value of %d bytes, at most %d", ErrInvalid, name, len(value), MaxValueSize)
	}
	cur, seq, err := s.last(ctx, name)
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return 0, err
	}
	if seq != expect {
		return 0, conflict(name, seq, expect)
	}
	if cur != nil && cur.Type != typ {
		return 0, fmt.Errorf("%w: %s holds %s, not %s", ErrInvalid, name, cur.Type, typ)
	}
	var nonce [12]byte
	_, _ = rand.Read(nonce[:])
	env := &envelope{Type: string(typ), Value: value, Writer: writer, Time: time.Now().UTC(), Nonce: hex.EncodeToString(nonce[:])}
	data, err := env.encode()
	if err != nil {
		return 0, fmt.Errorf("config: encode %s: %w", name, err)
	}
	v, err := s.b.Put(ctx, name, data, nil, expect, 0)
	if err == nil {
		return v, nil
	}
	if coord.IsConflict(err) {
		_, now, lerr := s.last(ctx, name)
		if lerr != nil && !errors.Is(lerr, ErrCorrupt) {
			return 0, fmt.Errorf("%w: %s changed from version %d", ErrConflict, name, expect)
		}
		return 0, conflict(name, now, expect)
	}
	if coord.IsRefused(err) {
		return 0, fmt.Errorf("config: write %s: %w", name, err)
	}
	// The outcome is unclear (a timeout): read back.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readBackWait)
	defer cancel()
	le, lerr := s.b.Last(rctx, name)
	if lerr == nil && le.Live {
		if got, derr := decodeEnvelope(le.Data); derr == nil && got.Nonce == env.Nonce {
			return le.Seq, nil
		}
	}
	if lerr == nil && le.Seq != expect {
		return 0, fmt.Errorf("%w: %s is at version %d, not %d (after an unclear write: %v)", ErrConflict, name, le.Seq, expect, err)
	}
	return 0, fmt.Errorf("config: write %s, outcome unknown: %w", name, err)
}

func conflict(name string, current, expect uint64) error {
	if current == 0 {
		return fmt.Errorf("%w: %s has no version, not version %d", ErrConflict, name, expect)
	}
	return fmt.Errorf("%w: %s is at version %d, not %d", ErrConflict, name, current, expect)
}

// History returns up to limit of the config's kept versions (at most
// HistoryDepth), newest first; limit <= 0 means all. It reads the stream's
// leader, one request per kept message. Errors: ErrInvalid (a bad name),
// ErrNotFound (no version), or the read's error. A version that cannot be
// decoded is left out and logged.
func (s *Store) History(ctx context.Context, name string, limit int) ([]*Entry, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	out, err := s.kept(ctx, name)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	slices.Reverse(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// kept reads the config's kept versions, oldest first.
func (s *Store) kept(ctx context.Context, name string) ([]*Entry, error) {
	st, err := s.js.Stream(ctx, "KV_"+coord.BucketConfig)
	if err != nil {
		return nil, fmt.Errorf("config: history of %s: %w", name, err)
	}
	subj := s.b.Subject(name)
	var out []*Entry
	next := uint64(1)
	// Bounded: the bucket keeps HistoryDepth messages per key, markers
	// included; as many again allow for writes during the walk.
	for range 2 * HistoryDepth {
		m, err := st.GetMsg(ctx, next, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("config: history of %s: %w", name, err)
		}
		next = m.Sequence + 1
		if condkv.IsMarker(m.Header) {
			out = out[:0] // a delete or purge ends the earlier history
			continue
		}
		env, err := decodeEnvelope(m.Data)
		if err != nil {
			s.logger.Warn("config: skipping a corrupt version", slog.String("name", name), slog.Uint64("version", m.Sequence), slog.Any("error", err))
			continue
		}
		out = append(out, env.entry(name, m.Sequence))
	}
	return out, nil
}

// version reads one kept version of name.
func (s *Store) version(ctx context.Context, name string, version uint64) (*Entry, error) {
	st, err := s.js.Stream(ctx, "KV_"+coord.BucketConfig)
	if err != nil {
		return nil, fmt.Errorf("config: read %s version %d: %w", name, version, err)
	}
	m, err := st.GetMsg(ctx, version)
	if errors.Is(err, jetstream.ErrMsgNotFound) || (err == nil && (m.Subject != s.b.Subject(name) || condkv.IsMarker(m.Header))) {
		return nil, fmt.Errorf("%w: %s version %d", ErrNotFound, name, version)
	}
	if err != nil {
		return nil, fmt.Errorf("config: read %s version %d: %w", name, version, err)
	}
	env, err := decodeEnvelope(m.Data)
	if err != nil {
		return nil, fmt.Errorf("%s version %d: %w", name, version, err)
	}
	return env.entry(name, version), nil
}

// Rollback writes the value of the kept version `version` of name as its
// next version, only if the current version is expect, and returns the
// new version. The old value is validated again against the rules of its
// type as the Store knows it (WithTypes), since rules may have tightened.
// Errors: those of Set, and ErrNotFound for a version that is not kept
// (see HistoryDepth) or whose type the Store does not know.
func (s *Store) Rollback(ctx context.Context, name string, version, expect uint64, writer string) (uint64, error) {
	if err := CheckName(name); err != nil {
		return 0, err
	}
	old, err := s.version(ctx, name, version)
	if err != nil {
		return 0, err
	}
	mt, err := s.opts.types.FindMessageByName(old.Type)
	if err != nil {
		return 0, fmt.Errorf("%w: type %s of %s version %d: %w", ErrNotFound, old.Type, name, version, err)
	}
	msg := mt.New().Interface()
	if err := old.Unmarshal(msg); err != nil {
		return 0, err
	}
	return s.Set(ctx, name, msg, expect, writer)
}
