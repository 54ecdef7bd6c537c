package registry

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/concordrpc/concord/coord"
	"github.com/concordrpc/concord/coord/internal/condkv"
)

// hdrLease carries the registrar's lease ID, random per Register call, so
// a registrar can tell its own message from another's.
const hdrLease = "Concord-Registrar"

// hdrTTL is the per-message TTL header JetStream sets from WithMsgTTL.
const hdrTTL = "Nats-TTL"

// store reads and writes registry keys with conditional publishes through
// condkv: one round trip each, and a refresh keeps the TTL (kv.Update
// would drop it). Deregistration writes a purge marker whose expiry leaves
// nothing behind, so deregistered instances do not accumulate.
type store struct {
	b *condkv.Bucket
}

func openStore(node *coord.Node) *store {
	return &store{b: condkv.New(node.JetStream(), node.Conn(), coord.BucketRegistry)}
}

// put writes data under key with a ttl lease, only if the key's last
// message has sequence expect (0: the subject has no message). It returns
// the new message's sequence.
func (s *store) put(ctx context.Context, key string, data []byte, lease string, expect uint64, ttl time.Duration) (uint64, error) {
	h := nats.Header{}
	h.Set(hdrLease, lease)
	return s.b.Put(ctx, key, data, h, expect, ttl)
}

// remove replaces key's message with a short-lived purge marker, only if
// the key's last message has sequence expect.
func (s *store) remove(ctx context.Context, key string, expect uint64) error {
	_, err := s.b.Purge(ctx, key, expect)
	return err
}

// current is the state of a key as last read.
type current struct {
	seq   uint64        // sequence of the key's last message; 0 if none
	live  bool          // holds a registration (not absent, not a marker)
	lease string        // the registration's lease ID
	ttl   time.Duration // the registration's TTL, or 0 if unknown
}

// last reads key's last message from the stream leader: a hint, since
// conditional writes are the authority.
func (s *store) last(ctx context.Context, key string) (current, error) {
	e, err := s.b.Last(ctx, key)
	if err != nil || !e.Live {
		return current{seq: e.Seq}, err
	}
	c := current{seq: e.Seq, live: true, lease: e.Header.Get(hdrLease)}
	if d, err := time.ParseDuration(e.Header.Get(hdrTTL)); err == nil {
		c.ttl = d
	}
	return c, nil
}

// isClosed reports an error from a closed connection: no later call can
// succeed.
func isClosed(err error) bool {
	return errors.Is(err, nats.ErrConnectionClosed)
}
