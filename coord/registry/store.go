package registry

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/concordrpc/concord/coord"
)

// Headers on the messages this package writes and reads.
const (
	// hdrLease carries the registrar's lease ID, random per Register call,
	// so a registrar can tell its own message from another's.
	hdrLease  = "Concord-Registrar"
	hdrKVOp   = "KV-Operation"
	hdrMarker = "Nats-Marker-Reason"
	hdrRollup = "Nats-Rollup"
	hdrTTL    = "Nats-TTL"
)

// markerTTL is how long a deregistration marker stays. It is a purge
// marker, whose expiry leaves nothing behind, so deregistered instances do
// not accumulate in the bucket.
const markerTTL = time.Second

// store reads and writes registry keys through the bucket's stream with
// conditional publishes: one round trip each, and a refresh keeps the TTL
// (kv.Update would drop it).
type store struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	prefix string // $KV.<bucket>.
}

func openStore(ctx context.Context, js jetstream.JetStream) (*store, error) {
	s, err := js.Stream(ctx, "KV_"+coord.BucketRegistry)
	if err != nil {
		return nil, err
	}
	return &store{js: js, stream: s, prefix: "$KV." + coord.BucketRegistry + "."}, nil
}

// put writes data under key with a ttl lease, only if the key's last
// message has sequence expect (0: the subject has no message). It returns
// the new message's sequence.
func (s *store) put(ctx context.Context, key string, data []byte, lease string, expect uint64, ttl time.Duration) (uint64, error) {
	m := nats.NewMsg(s.prefix + key)
	m.Data = data
	m.Header.Set(hdrLease, lease)
	ack, err := s.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(expect), jetstream.WithMsgTTL(ttl))
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// remove replaces key's message with a short-lived purge marker, only if
// the key's last message has sequence expect.
func (s *store) remove(ctx context.Context, key string, expect uint64) error {
	m := nats.NewMsg(s.prefix + key)
	m.Header.Set(hdrKVOp, "PURGE")
	m.Header.Set(hdrRollup, "sub")
	_, err := s.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(expect), jetstream.WithMsgTTL(markerTTL))
	return err
}

// current is the state of a key as last read.
type current struct {
	seq   uint64        // sequence of the key's last message; 0 if none
	live  bool          // holds a registration (not absent, not a marker)
	lease string        // the registration's lease ID
	ttl   time.Duration // the registration's TTL, or 0 if unknown
}

// last reads key's last message. On a replicated bucket the answer may
// come from a lagging replica: it is a hint, and conditional writes are
// the authority.
func (s *store) last(ctx context.Context, key string) (current, error) {
	m, err := s.stream.GetLastMsgForSubject(ctx, s.prefix+key)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return current{}, nil
	}
	if err != nil {
		return current{}, err
	}
	c := current{seq: m.Sequence}
	if m.Header.Get(hdrKVOp) != "" || m.Header.Get(hdrMarker) != "" {
		return c, nil
	}
	c.live, c.lease = true, m.Header.Get(hdrLease)
	if d, err := time.ParseDuration(m.Header.Get(hdrTTL)); err == nil {
		c.ttl = d
	}
	return c, nil
}

// isClosed reports an error from a closed connection: no later call can
// succeed.
func isClosed(err error) bool {
	return errors.Is(err, nats.ErrConnectionClosed)
}
